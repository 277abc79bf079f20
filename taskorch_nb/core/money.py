"""USD amounts as people type them: one parser for every door money comes in by.

The CLI's `--budget`, the magic's `--budget` and `Orchestrate.budget`, the MCP
tools' budgets, `BudgetGuard`, `Orchestrator(budget=...)` and a tool's `cost`
all read amounts here, so they accept and refuse the same things with the
same message. Amounts are `Decimal`: floats go through `str`, so `0.1` is 0.1.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

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


__all__ = ["MAX_USD", "parse_usd"]
