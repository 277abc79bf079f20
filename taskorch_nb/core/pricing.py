"""What a model call costs, in USD, as `Decimal`.

Prices come from, in order: the user's overrides, the simulated provider's
table, and the offline snapshot bundled with `genai-prices` (never the
network). A model with no known price is a `ConfigurationError` naming the fix,
never a silent $0. Each (provider, model) is looked up once; later costs are a
dict hit and a few Decimal multiplications.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from taskorch_nb.core.clock import Clock, RealClock
from taskorch_nb.errors import ConfigurationError

_MTOK = Decimal(1_000_000)
_ZERO = Decimal(0)

#: Keys of the mapping form of a price override.
OVERRIDE_KEYS = ("input", "output", "cached_input", "per_request")


def to_decimal(value: Any, what: str) -> Decimal:
    """A finite Decimal from a Decimal, int, float or numeric string (bool refused).

    Floats go through `str` so `0.1` means 0.1, not its binary expansion.
    """
    if isinstance(value, bool) or not isinstance(value, Decimal | int | float | str):
        raise ValueError(f"{what} must be a number, not {type(value).__name__} {value!r}")
    try:
        result = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation:
        raise ValueError(f"{what} must be a number, not {value!r}") from None
    if not result.is_finite():
        raise ValueError(f"{what} must be finite, not {value!r}")
    return result


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """USD per million tokens for one model.

    `cached_input_per_mtok` is the price of input tokens read from the prompt
    cache (None: billed as ordinary input). `per_request` is a flat fee per call
    (a few search models). `tiers` hold the whole price from a threshold on:
    `(start, price)` applies to every token once a call has more than `start`
    input tokens (the providers' "cliff" pricing, as genai-prices models it).
    """

    input_per_mtok: Decimal
    output_per_mtok: Decimal
    cached_input_per_mtok: Decimal | None = None
    per_request: Decimal = _ZERO
    tiers: tuple[tuple[int, ModelPrice], ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        for name in ("input_per_mtok", "output_per_mtok", "cached_input_per_mtok", "per_request"):
            raw = getattr(self, name)
            if raw is None and name == "cached_input_per_mtok":
                continue
            value = to_decimal(raw, name)
            if value < 0:
                raise ValueError(f"{name} must not be negative, got {value}")
            object.__setattr__(self, name, value)
        object.__setattr__(self, "tiers", tuple(sorted(self.tiers, key=lambda t: t[0])))

    def for_input(self, input_tokens: int) -> ModelPrice:
        """The flat price that applies to a call with this many input tokens."""
        price = self
        for start, tier in self.tiers:
            if input_tokens > start:
                price = tier
        return price


#: The simulated provider's models: deliberately expensive, so budget warnings,
#: rejections and pauses show up on the few thousand tokens of a demo run.
SIMULATED_PRICES: dict[str, ModelPrice] = {
    "sim-small": ModelPrice(Decimal(50), Decimal(150), Decimal(5)),
    "sim-large": ModelPrice(Decimal(200), Decimal(600), Decimal(20)),
}


def _fix_hint(model: str) -> str:
    return (
        f"pass prices={{{model!r}: {{'input': ..., 'output': ...}}}} (USD per million tokens)"
    )


def _override(model: str, value: ModelPrice | Mapping[str, Any]) -> ModelPrice:
    """A user price, as given or from `{"input": 1.5, "output": 2, "cached_input": 0.1}`."""
    if isinstance(value, ModelPrice):
        return value
    if not isinstance(value, Mapping):
        raise ConfigurationError(
            f"price for model {model!r} must be a ModelPrice or a mapping, not "
            f"{type(value).__name__}: {_fix_hint(model)}"
        )
    unknown = sorted(set(value) - set(OVERRIDE_KEYS))
    missing = [key for key in ("input", "output") if key not in value]
    if unknown or missing:
        problem = f"unknown keys {unknown}" if unknown else f"missing {missing}"
        raise ConfigurationError(
            f"price for model {model!r}: {problem}; allowed keys are "
            f"{', '.join(OVERRIDE_KEYS)}: {_fix_hint(model)}"
        )
    try:
        return ModelPrice(
            input_per_mtok=value["input"],
            output_per_mtok=value["output"],
            cached_input_per_mtok=value.get("cached_input"),
            per_request=value.get("per_request", _ZERO),
        )
    except ValueError as exc:
        raise ConfigurationError(
            f"price for model {model!r}: {exc}; use non-negative numbers: {_fix_hint(model)}"
        ) from exc


def _flat(value: Any, input_tokens: int) -> Decimal | None:
    """One genai-prices price key at a given input size (tiers are cliffs on input tokens)."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        return value
    price = value.base  # genai_prices.types.TieredPrices
    for tier in value.tiers:
        if input_tokens > tier.start:
            price = tier.price
    return price


def _from_genai(prices: Any) -> ModelPrice | None:
    """Our flat price (with tiers) from a genai-prices `ModelPrice`; None if not per token."""
    keys = ("input_mtok", "output_mtok", "cache_read_mtok")
    raw = {key: getattr(prices, key, None) for key in keys}
    if raw["input_mtok"] is None and raw["output_mtok"] is None:
        return None
    requests = getattr(prices, "requests_kcount", None)
    per_request = requests / 1000 if isinstance(requests, Decimal) else _ZERO

    def at(input_tokens: int) -> ModelPrice:
        return ModelPrice(
            input_per_mtok=_flat(raw["input_mtok"], input_tokens) or _ZERO,
            output_per_mtok=_flat(raw["output_mtok"], input_tokens) or _ZERO,
            cached_input_per_mtok=_flat(raw["cache_read_mtok"], input_tokens),
            per_request=per_request,
        )

    starts = sorted({t.start for v in raw.values() if hasattr(v, "tiers") for t in v.tiers})
    base = at(0)
    if not starts:
        return base
    return ModelPrice(
        base.input_per_mtok,
        base.output_per_mtok,
        base.cached_input_per_mtok,
        per_request,
        tiers=tuple((start, at(start + 1)) for start in starts),
    )


class PriceTable:
    """Resolves and caches model prices; computes call costs and worst-case reservations.

    `clock` dates the snapshot lookup (some prices change on a given day); a
    `FakeClock` therefore gives the prices of its epoch, 2026-01-01.
    """

    def __init__(
        self,
        overrides: Mapping[str, ModelPrice | Mapping[str, Any]] | None = None,
        *,
        clock: Clock | None = None,
    ) -> None:
        self._overrides = {model: _override(model, p) for model, p in (overrides or {}).items()}
        self._clock = clock or RealClock()
        self._cache: dict[tuple[str, str], ModelPrice] = {}

    def resolve(self, provider: str, model: str) -> ModelPrice:
        """The model's price: user override, simulated table, then the genai-prices snapshot."""
        key = (provider, model)
        price = self._cache.get(key)
        if price is None:
            price = self._lookup(provider, model)
            self._cache[key] = price
        return price

    def _lookup(self, provider: str, model: str) -> ModelPrice:
        if model in self._overrides:
            return self._overrides[model]
        if provider == "simulated" and model in SIMULATED_PRICES:
            return SIMULATED_PRICES[model]
        from genai_prices.data_snapshot import get_snapshot  # ~0.4 s import: only when needed

        snapshot = get_snapshot()
        # A simulated or self-hosted provider genai-prices does not know: match by model name.
        provider_id: str | None = provider
        if provider == "simulated" or not _known_provider(snapshot, provider):
            provider_id = None
        try:
            _, info = snapshot.find_provider_model(model, None, provider_id, None)
        except LookupError:
            raise ConfigurationError(
                f"no price for model {model!r} (provider {provider!r}): {_fix_hint(model)}"
            ) from None
        when = datetime.fromtimestamp(self._clock.wall(), tz=UTC)
        price = _from_genai(info.get_prices(when))
        if price is None:
            raise ConfigurationError(
                f"no per-token price for model {model!r} (provider {provider!r}) in genai-prices: "
                f"{_fix_hint(model)}"
            )
        return price

    def cost(
        self,
        provider: str,
        model: str,
        *,
        input_tokens: int,
        output_tokens: int,
        cached_tokens: int = 0,
    ) -> Decimal:
        """USD for one call; `input_tokens` includes the cached ones, output the reasoning ones."""
        _check_tokens(input_tokens=input_tokens, output_tokens=output_tokens, cached=cached_tokens)
        if cached_tokens > input_tokens:
            raise ValueError(
                f"cached_tokens ({cached_tokens}) cannot exceed input_tokens ({input_tokens}), "
                "which include them"
            )
        price = self.resolve(provider, model).for_input(input_tokens)
        cached_price = price.cached_input_per_mtok
        if cached_price is None:
            cached_price = price.input_per_mtok
        per_mtok = (
            (input_tokens - cached_tokens) * price.input_per_mtok
            + cached_tokens * cached_price
            + output_tokens * price.output_per_mtok
        )
        return per_mtok / _MTOK + price.per_request

    def worst_case(
        self, provider: str, model: str, *, input_tokens: int, max_tokens: int
    ) -> Decimal:
        """The most a call can cost: all input at the full price plus `max_tokens` of output."""
        _check_tokens(input_tokens=input_tokens, max_tokens=max_tokens)
        price = self.resolve(provider, model).for_input(input_tokens)
        per_mtok = input_tokens * price.input_per_mtok + max_tokens * price.output_per_mtok
        return per_mtok / _MTOK + price.per_request

    def __repr__(self) -> str:
        return f"PriceTable(overrides={sorted(self._overrides)})"


def _known_provider(snapshot: Any, provider: str) -> bool:
    from genai_prices.data_snapshot import find_provider_by_id

    return find_provider_by_id(snapshot.providers, provider) is not None


def _check_tokens(**counts: int) -> None:
    for name, count in counts.items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"{name} must be a non-negative int, got {count!r}")


__all__ = ["OVERRIDE_KEYS", "SIMULATED_PRICES", "ModelPrice", "PriceTable", "to_decimal"]
