"""What every command shares: one-line errors, exit 2 on bad input, checked option values."""

from __future__ import annotations

import argparse
from decimal import Decimal

import pytest

from taskorch_nb.clikit import (
    EXIT_USAGE,
    OneLineParser,
    one_line,
    price_pair,
    rate,
    require_extra,
    say,
    usd,
    whole,
)
from taskorch_nb.errors import ConfigurationError


def parser() -> OneLineParser:
    cli = OneLineParser(prog="taskorch-nb")
    cli.add_argument("--budget", type=usd)
    cli.add_argument("--workers", type=whole(1, 8))
    cli.add_argument("--rate", type=rate)
    cli.add_argument("--price-per-mtok", type=price_pair)
    return cli


def test_good_values_parse_to_their_types() -> None:
    args = parser().parse_args(["--budget", "$2.50", "--workers", "8", "--rate", "0.5",
                                "--price-per-mtok", "0.15, 0"])
    assert (args.budget, args.workers, args.rate) == (Decimal("2.50"), 8, 0.5)
    assert args.price_per_mtok == ("0.15", "0")


@pytest.mark.parametrize(("argv", "said"), [
    (["--budget", "lots"], "argument --budget: a USD amount above $0 and at most "
                           "$1,000,000,000 (e.g. 2.50), got 'lots'"),
    (["--workers", "many"], "argument --workers: must be a whole number, not 'many'"),
    (["--workers", "9"], "argument --workers: must be from 1 to 8, not 9"),
    (["--rate", "nan"], "argument --rate: must be more than 0, not nan"),
    (["--rate", "inf"], "argument --rate: must be more than 0, not inf"),
    (["--rate", "-1"], "argument --rate: must be more than 0, not -1"),
    (["--rate", "fast"], "argument --rate: must be a number, not 'fast'"),
    (["--price-per-mtok", "0.15"], "argument --price-per-mtok: must be IN,OUT "
                                   "(e.g. 0.15,0.60), not '0.15'"),
    (["--colour", "red"], "unrecognized arguments: --colour red"),
])
def test_bad_input_is_one_line_on_stderr_and_exit_2(
        argv: list[str], said: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parser().parse_args(argv)
    assert exited.value.code == EXIT_USAGE
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"taskorch-nb: {said} (see taskorch-nb --help)\n"


def test_whole_without_a_maximum() -> None:
    at_least_two = whole(2)
    assert at_least_two("1000000") == 1_000_000
    with pytest.raises(argparse.ArgumentTypeError, match=r"^must be >= 2, not 1$"):
        at_least_two("1")
    assert at_least_two.__name__ == "whole number"  # what argparse names in its message


def test_say_and_one_line_flatten_whitespace(capsys: pytest.CaptureFixture[str]) -> None:
    assert one_line("a\n  b\tc ") == "a b c"
    say("taskorch-hub", ValueError("bad\nthing"))
    assert capsys.readouterr().err == "taskorch-hub: bad thing\n"


def test_require_extra_names_the_pip_extra_of_what_is_missing() -> None:
    require_extra("hub", "json", "argparse")  # present: nothing happens
    with pytest.raises(ConfigurationError) as info:
        require_extra("hub", "json", "surely_not_installed_xyz", "nor_this_xyz")
    assert str(info.value) == (
        "needs surely_not_installed_xyz, nor_this_xyz, which the 'hub' extra installs: "
        "pip install 'taskorch_nb[hub]'")
