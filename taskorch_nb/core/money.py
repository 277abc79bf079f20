"""USD amounts in and out: one parser for every door money comes in by, one format
for every front end.

`parse_usd` serves the CLI's and the magic's `--budget`, `Orchestrate.budget`, the MCP
tools' budgets, `BudgetGuard`, `Orchestrator(budget=...)` and a tool's `cost`, so they
accept and refuse the same things with the same message. Amounts are `Decimal`: floats
go through `str`, so `0.1` is 0.1.

`format_usd`: a cent or more shows whole cents (`$0.69`, `$1,234.50`), so a budget line
never mixes precisions ("$0.69 of $1.00", not "$0.6884 of $1.00"). Below a cent, where a
single model call often lands, two significant digits keep the amount visible
(`$0.0012`, `$0.000034`) instead of rounding it to `$0.00`.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from taskorch_nb.errors import ConfigurationError

#: The largest amount accepted anywhere (a budget past it is a typo, not a plan).
MAX_USD = Decimal(1_000_000_000)

_ZERO = Decimal(0)


def parse_usd(value: object, what: str = "amount", *, allow_zero: bool = False) -> Decimal:
    """`value` (a number or a string like "2.50" or "$2.50") as a Decimal USD amount.

    Refuses non-numbers, NaN, infinities, negatives, zero (unless `allow_zero`)
    and anything above `MAX_USD` with one `ConfigurationError` naming `what`.
    """
    amount = _decimal(value)
    if amount is None or not _ZERO <= amount <= MAX_USD or (amount == 0 and not allow_zero):
        span = "from $0 to" if allow_zero else "above $0 and at most"
        example = "0.05" if allow_zero else "2.50"
        raise ConfigurationError(
            f"{what} must be a USD amount {span} $1,000,000,000 (e.g. {example}), "
            f"got {_shown(value)}"
        )
    return amount if amount else _ZERO  # -0 reads as 0


def _decimal(value: object) -> Decimal | None:
    if isinstance(value, bool):
        return None  # True is not one dollar
    try:
        if isinstance(value, Decimal | int):
            amount = Decimal(value)
        elif isinstance(value, float):
            amount = Decimal(str(value))
        elif isinstance(value, str):
            text = value.strip()
            amount = Decimal(text[1:].lstrip() if text.startswith("$") else text)
        else:
            return None
    except (InvalidOperation, ValueError):
        return None
    return amount if amount.is_finite() else None


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


_CENT = Decimal("0.01")


def format_usd(value: Decimal | float | int | str | None) -> str:
    """`$1,234.50`, `$0.69`, `$0.0012`, `-$0.25`; None (no amount known) is `-`."""
    if value is None:
        return "-"
    try:
        amount = value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"not a USD amount: {value!r}") from None
    if not amount.is_finite():
        raise ValueError(f"not a USD amount: {value!r}")
    sign, amount = ("-" if amount < 0 else ""), abs(amount)
    if 0 < amount < _CENT:
        exponent = Decimal(1).scaleb(amount.adjusted() - 1)  # two significant digits
        small = amount.quantize(exponent, rounding=ROUND_HALF_UP)
        if small < _CENT:
            return f"{sign}${small.normalize():f}"
    return f"{sign}${amount.quantize(_CENT, rounding=ROUND_HALF_UP):,.2f}"


__all__ = ["MAX_USD", "format_usd", "parse_usd"]
