"""USD amounts as people read them: one format for every front end.

A cent or more shows whole cents (`$0.69`, `$1,234.50`), so a budget line never
mixes precisions ("$0.69 of $1.00", not "$0.6884 of $1.00"). Below a cent, where a
single model call often lands, two significant digits keep the amount visible
(`$0.0012`, `$0.000034`) instead of rounding it to `$0.00`.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

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


__all__ = ["format_usd"]
