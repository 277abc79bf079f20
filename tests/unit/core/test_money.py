"""The one USD format: whole cents from a cent up, two significant digits below."""

from __future__ import annotations

from decimal import Decimal

import pytest

from taskorch_nb.core.money import format_usd


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal(0), "$0.00"),
        (Decimal(1), "$1.00"),
        (Decimal("1234.5"), "$1,234.50"),
        (Decimal("0.6884"), "$0.69"),  # never "$0.6884 of $1.00"
        (Decimal("0.6411"), "$0.64"),
        (Decimal("0.125"), "$0.13"),  # half up, as money is rounded for people
        (Decimal("0.01"), "$0.01"),
        (Decimal("0.0099"), "$0.0099"),
        (Decimal("0.00999"), "$0.01"),  # rounds up to a cent: shown as cents
        (Decimal("0.0012345"), "$0.0012"),
        (Decimal("0.005"), "$0.005"),
        (Decimal("0.000034"), "$0.000034"),
        (Decimal("-0.25"), "-$0.25"),
        (Decimal("-0.0012"), "-$0.0012"),
        (Decimal("-1500"), "-$1,500.00"),
        (Decimal("-0"), "$0.00"),
        (0.1, "$0.10"),
        (5, "$5.00"),
        ("2.5", "$2.50"),
        (None, "-"),
    ],
)
def test_format_table(value: object, text: str) -> None:
    assert format_usd(value) == text  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["abc", float("nan"), Decimal("Infinity"), True])
def test_what_is_not_an_amount_is_named(value: object) -> None:
    with pytest.raises(ValueError, match="not a USD amount"):
        format_usd(value)  # type: ignore[arg-type]
