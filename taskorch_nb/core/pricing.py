"""What a model call costs, in USD, as `Decimal`: genai-prices' own calculation.

Prices come from, in order: the user's overrides, the simulated provider's
table, and the offline snapshot bundled with `genai-prices` (never the
network). Whatever its source, a price becomes a genai-prices `ModelPrice` and
every cost is its `calc_price`: tiers, cache reads, cache writes and request
fees are priced by one calculation, theirs, never re-derived here. A model with
no known price is a `ConfigurationError` naming the fix, never a silent $0.

Speed: that calculation costs 25-200 us a call, so what depends on the model
alone is cached per model: the snapshot lookup, the price in force, the cost of
token counts already priced (a price is a pure function of the counts), and
the per-token rates of each tier that the worst-case reservation multiplies.
genai-prices itself (~0.4 s to import) is loaded only when a cost is first needed.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from taskorch_nb.core.clock import Clock, RealClock
from taskorch_nb.errors import ConfigurationError

_ZERO = Decimal(0)

#: Keys of the mapping form of a price override (USD per million tokens; per_request in USD).
OVERRIDE_KEYS = ("input", "output", "cache_read", "cache_write", "per_request")

#: Costs remembered per model before the memo starts over (a bound, not a tuning knob).
MEMO_SIZE = 4096


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
    """A flat price a user (or the simulator) gives: USD per million tokens.

    `cache_read_per_mtok` / `cache_write_per_mtok`: prompt tokens read from or
    written to the provider's cache (None: billed as ordinary input).
    `per_request`: a flat fee per call, in USD.
    """

    input_per_mtok: Decimal
    output_per_mtok: Decimal
    cache_read_per_mtok: Decimal | None = None
    per_request: Decimal = _ZERO
    cache_write_per_mtok: Decimal | None = None

    def __post_init__(self) -> None:
        for name in ("input_per_mtok", "output_per_mtok", "cache_read_per_mtok",
                     "cache_write_per_mtok", "per_request"):
            raw = getattr(self, name)
            if raw is None and name.startswith("cache_"):
                continue
            value = to_decimal(raw, name)
            if value < 0:
                raise ValueError(f"{name} must not be negative, got {value}")
            object.__setattr__(self, name, value)

    def to_genai(self) -> Any:
        """The same price as a genai-prices `ModelPrice`, so its calculation applies."""
        from genai_prices.types import ModelPrice as GenaiPrice

        keys: dict[str, Decimal | None] = {
            "input_mtok": self.input_per_mtok,
            "output_mtok": self.output_per_mtok,
            "cache_read_mtok": self.cache_read_per_mtok,
            "cache_write_mtok": self.cache_write_per_mtok,
            "requests_kcount": self.per_request * 1000 if self.per_request else None,
        }
        return GenaiPrice(**{k: v for k, v in keys.items() if v is not None})


#: A model that costs nothing (a self-hosted one): `PriceTable.resolve(..., default=FREE)`.
FREE = ModelPrice(_ZERO, _ZERO)

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
    """A user price, as given or from `{"input": 3, "output": 15, "cache_write": 3.75}`."""
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
            cache_read_per_mtok=value.get("cache_read"),
            cache_write_per_mtok=value.get("cache_write"),
            per_request=value.get("per_request", _ZERO),
        )
    except ValueError as exc:
        raise ConfigurationError(
            f"price for model {model!r}: {exc}; use non-negative numbers: {_fix_hint(model)}"
        ) from exc


def _calc(price: Any, input_tokens: int, output_tokens: int, cache_read: int = 0,
          cache_write: int = 0) -> Decimal:
    """genai-prices' calculation of one usage under one of its `ModelPrice`s."""
    from genai_prices import Usage

    usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens,
                  cache_read_tokens=cache_read, cache_write_tokens=cache_write)
    return price.calc_price(usage)["total_price"]


@dataclass(slots=True)
class _Rates:
    """Per-token USD of one tier, from genai-prices' calculation: the reservation's factors."""

    fixed: Decimal
    input: Decimal
    """The dearer of a fresh and a cache-written input token (a reservation must cover both)."""
    output: Decimal


@dataclass(slots=True)
class _State:
    """What is cached about one price in force: costs already computed, tier rates."""

    price: Any
    """genai-prices' `ModelPrice`."""
    memo: dict[tuple[int, int, int, int], Decimal] = field(default_factory=dict)
    rates: dict[int, _Rates | None] = field(default_factory=dict)
    starts: list[int] = field(init=False)

    def __post_init__(self) -> None:
        from genai_prices.types import TieredPrices

        # Tier starts of every price key: a call's tier is set by its input tokens.
        self.starts = sorted({tier.start for value in vars(self.price).values()
                              if isinstance(value, TieredPrices) for tier in value.tiers})

    def cost(self, key: tuple[int, int, int, int]) -> Decimal:
        cost = self.memo.get(key)
        if cost is None:
            cost = _calc(self.price, *key)
            if len(self.memo) >= MEMO_SIZE:
                self.memo.clear()
            self.memo[key] = cost
        return cost

    def worst(self, input_tokens: int, max_tokens: int) -> Decimal:
        band = bisect.bisect_left(self.starts, input_tokens)  # tiers apply above their start
        if band not in self.rates:
            self.rates[band] = self._rates_of(band)
        rates = self.rates[band]
        if rates is None:  # a tier too narrow to measure: price this call directly
            return max(_calc(self.price, input_tokens, max_tokens),
                       _calc(self.price, input_tokens, max_tokens, 0, input_tokens))
        return rates.fixed + input_tokens * rates.input + max_tokens * rates.output

    def _rates_of(self, band: int) -> _Rates | None:
        """The tier's rates, measured with genai-prices' calculation at two input sizes."""
        low = self.starts[band - 1] + 1 if band else 1
        if bisect.bisect_left(self.starts, low + 1) != band:
            return None
        base = _calc(self.price, low, 0)
        fresh = _calc(self.price, low + 1, 0) - base
        written = _calc(self.price, low, 0, 0, 1) - base + fresh
        output = _calc(self.price, low, 1) - base
        return _Rates(fixed=base - low * fresh, input=max(fresh, written), output=output)


#: The cached state of every price in use, shared by all tables of the process: a price
#: is the same wherever it is used, so a new Orchestrator starts warm. Keyed by a flat
#: price's value or a genai-prices price's identity (the state keeps that price alive).
_STATES: dict[Any, _State] = {}


def _state_of(key: Any, price: Callable[[], Any]) -> _State:
    state = _STATES.get(key)
    if state is None:
        if len(_STATES) >= MEMO_SIZE:  # only after many snapshot refreshes or user prices
            _STATES.clear()
        state = _STATES.setdefault(key, _State(price()))
    return state


class _Priced:
    """One model's price source: a flat price, or a genai-prices model (maybe dated)."""

    __slots__ = ("_dated", "_flat", "_info", "_state")

    def __init__(self, *, flat: ModelPrice | None = None, info: Any = None) -> None:
        self._flat = flat
        self._info = info
        self._dated = info is not None and isinstance(info.prices, list)
        self._state: _State | None = None

    def state(self, when: Callable[[], datetime]) -> _State:
        state = self._state
        if state is not None and not self._dated:
            return state
        if self._info is None:
            flat = self._flat
            assert flat is not None
            state = _state_of(flat, flat.to_genai)
        else:
            price = self._info.get_prices(when())
            if state is None or state.price is not price:
                state = _state_of(id(price), lambda: price)
                if state.price is not price:  # an id reused after a snapshot was dropped
                    state = _STATES[id(price)] = _State(price)
        self._state = state
        return state


class PriceTable:
    """Resolves and caches model prices; computes call costs and worst-case reservations.

    `clock` dates prices that change on a given day (or hour); a `FakeClock`
    therefore gives the prices of its epoch, 2026-01-01.
    """

    def __init__(
        self,
        overrides: Mapping[str, ModelPrice | Mapping[str, Any]] | None = None,
        *,
        clock: Clock | None = None,
    ) -> None:
        self._overrides = {model: _override(model, p) for model, p in (overrides or {}).items()}
        self._clock = clock or RealClock()
        self._cache: dict[tuple[str, str], _Priced] = {}

    def resolve(self, provider: str, model: str, *, default: ModelPrice | None = None,
                local: bool = False) -> bool:
        """Find the model's price (override, simulated table, genai-prices) and cache it;
        True when it is `default`.

        An unknown model is a `ConfigurationError`, unless `default` is given: the
        price of a model nobody lists (`FREE` for one served from a private address).
        `local`: the model is self-hosted, so only an override prices it (a public
        price for the same name is not what the machine costs); else `default`.
        """
        key = (provider, model)
        if key not in self._cache:
            if local and default is not None and model not in self._overrides:
                self._cache[key] = _Priced(flat=default)
            else:
                self._cache[key] = self._lookup(provider, model, default)
        return default is not None and self._cache[key]._flat is default

    def price(self, provider: str, model: str) -> Any:
        """The genai-prices `ModelPrice` in force for the model now."""
        return self._priced(provider, model).state(self._now).price

    def _priced(self, provider: str, model: str) -> _Priced:
        priced = self._cache.get((provider, model))
        if priced is None:
            priced = self._cache[(provider, model)] = self._lookup(provider, model, None)
        return priced

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.wall(), tz=UTC)

    def _lookup(self, provider: str, model: str, default: ModelPrice | None) -> _Priced:
        if model in self._overrides:
            return _Priced(flat=self._overrides[model])
        if provider == "simulated" and model in SIMULATED_PRICES:
            return _Priced(flat=SIMULATED_PRICES[model])
        from genai_prices.data_snapshot import find_provider_by_id, get_snapshot

        snapshot = get_snapshot()
        # A simulated or self-hosted provider genai-prices does not know: match by model name.
        provider_id: str | None = provider
        if provider == "simulated" or find_provider_by_id(snapshot.providers, provider) is None:
            provider_id = None
        try:
            _, info = snapshot.find_provider_model(model, None, provider_id, None)
        except LookupError:
            if default is not None:
                return _Priced(flat=default)
            raise ConfigurationError(
                f"no price for model {model!r} (provider {provider!r}): {_fix_hint(model)}"
            ) from None
        priced = _Priced(info=info)
        current = priced.state(self._now).price
        if current.input_mtok is None and current.output_mtok is None:
            raise ConfigurationError(
                f"no per-token price for model {model!r} (provider {provider!r}) in genai-prices: "
                f"{_fix_hint(model)}"
            )
        return priced

    def cost(
        self,
        provider: str,
        model: str,
        *,
        input_tokens: int,
        output_tokens: int,
        cached_tokens: int = 0,
        cache_write_tokens: int = 0,
    ) -> Decimal:
        """USD for one call, by genai-prices' calculation.

        `input_tokens` includes the cached ones (read, `cached_tokens`, and
        written, `cache_write_tokens`); `output_tokens` the reasoning ones.
        """
        if not (type(input_tokens) is type(output_tokens) is type(cached_tokens)
                is type(cache_write_tokens) is int) or min(
                    input_tokens, output_tokens, cached_tokens, cache_write_tokens) < 0:
            _check_tokens(input_tokens=input_tokens, output_tokens=output_tokens,
                          cached_tokens=cached_tokens, cache_write_tokens=cache_write_tokens)
        if cached_tokens + cache_write_tokens > input_tokens:
            raise ValueError(
                f"cached_tokens ({cached_tokens}) + cache_write_tokens ({cache_write_tokens}) "
                f"cannot exceed input_tokens ({input_tokens}), which include them"
            )
        state = self._priced(provider, model).state(self._now)
        return state.cost((input_tokens, output_tokens, cached_tokens, cache_write_tokens))

    def worst_case(
        self, provider: str, model: str, *, input_tokens: int, max_tokens: int
    ) -> Decimal:
        """The most a call can cost: `input_tokens` (an upper estimate) at the dearer of the
        input and cache-write prices, plus `max_tokens` of output, in the tier that applies
        to `input_tokens`."""
        if not (type(input_tokens) is type(max_tokens) is int) or min(input_tokens,
                                                                        max_tokens) < 0:
            _check_tokens(input_tokens=input_tokens, max_tokens=max_tokens)
        return self._priced(provider, model).state(self._now).worst(input_tokens, max_tokens)

    def __repr__(self) -> str:
        return f"PriceTable(overrides={sorted(self._overrides)})"


def _check_tokens(**counts: int) -> None:
    for name, count in counts.items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"{name} must be a non-negative int, got {count!r}")


__all__ = [
    "FREE", "OVERRIDE_KEYS", "SIMULATED_PRICES", "ModelPrice", "PriceTable", "to_decimal",
]
