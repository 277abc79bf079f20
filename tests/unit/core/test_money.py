"""core/money.py: one parser and one format for every door money comes in and goes out by.

parse_usd: one rule, one message. format_usd: whole cents from a cent up, two significant
digits below.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from taskorch_nb.core.money import MAX_USD, format_usd, parse_usd
from taskorch_nb.errors import ConfigurationError

ACCEPTED = [
    (5, Decimal("5")),
    (2.5, Decimal("2.5")),
    (0.1, Decimal("0.1")),  # through str: not 0.1000000000000000055511151231257827
    ("2.50", Decimal("2.50")),
    ("  $2.50 ", Decimal("2.50")),
    ("$ 3", Decimal("3")),
    ("1e3", Decimal("1000")),
    (Decimal("0.0001"), Decimal("0.0001")),
    ("1000000000", MAX_USD),
]

REFUSED = [
    "lots",
    "",
    "$",
    "2,50",
    "nan",
    "NaN",
    "sNaN",
    "inf",
    "-Infinity",
    float("nan"),
    float("inf"),
    Decimal("Infinity"),
    -1,
    "-0.01",
    0,
    "0",
    0.0,
    "1e999999",  # a finite Decimal with a million digits
    10**400,
    "1000000000.01",
    True,
    None,
    [5],
    b"5",
]


@pytest.mark.parametrize(("value", "expected"), ACCEPTED)
def test_accepted_amounts(value: object, expected: Decimal) -> None:
    parsed = parse_usd(value, "budget")
    assert parsed == expected
    assert type(parsed) is Decimal


@pytest.mark.parametrize("value", REFUSED)
def test_refused_amounts_get_one_message_naming_the_setting(value: object) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_usd(value, "--budget")
    message = str(info.value)
    assert message.startswith("--budget must be a USD amount above $0 and at most "
                              "$1,000,000,000 (e.g. 2.50), got ")
    assert len(message) < 160  # 10**400 is not printed in full


@pytest.mark.parametrize(("value", "expected"), [(0, Decimal(0)), ("0.00", Decimal(0)),
                                                 ("-0", Decimal(0)), ("0.05", Decimal("0.05"))])
def test_zero_where_zero_is_allowed(value: object, expected: Decimal) -> None:
    assert parse_usd(value, "cost", allow_zero=True) == expected
    assert not parse_usd(value, "cost", allow_zero=True).is_signed()


@pytest.mark.parametrize("value", [-1, "nan", "1e999999", "free"])
def test_allow_zero_still_refuses_the_rest(value: object) -> None:
    with pytest.raises(ConfigurationError,
                       match=r"^cost must be a USD amount from \$0 to \$1,000,000,000 "):
        parse_usd(value, "cost", allow_zero=True)


def test_it_is_a_value_error_too() -> None:
    # argparse, traitlets and pydantic all turn a ValueError into their own usage error.
    with pytest.raises(ValueError, match="amount must be"):
        parse_usd("x")



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
