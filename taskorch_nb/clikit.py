"""What every `taskorch-nb` command shares: errors as one line, checked option values.

A command-line error is one line on stderr and a non-zero exit, never a usage
dump or a traceback: bad input is caught where it enters (an option's type, a
`ConfigurationError` from what it builds) and said in words that name the fix.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
from collections.abc import Callable
from decimal import Decimal
from typing import NoReturn

from taskorch_nb.errors import ConfigurationError

#: Exit statuses: 0 done, 1 the work failed, 2 bad input or settings, 3 paused on budget.
EXIT_FAILED, EXIT_USAGE, EXIT_PAUSED, EXIT_INTERRUPTED = 1, 2, 3, 130


def one_line(text: object) -> str:
    """`text` with every run of whitespace (newlines too) as one space."""
    return " ".join(str(text).split())


def say(prog: str, message: object) -> None:
    """`prog: message` as one line on stderr."""
    print(f"{prog}: {one_line(message)}", file=sys.stderr, flush=True)


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (`--help` still shows the usage)."""

    def error(self, message: str) -> NoReturn:
        say(self.prog, f"{message} (see {self.prog} --help)")
        self.exit(EXIT_USAGE)


def require_extra(extra: str, *modules: str) -> None:
    """`ConfigurationError` naming the pip extra when one of `modules` is not installed."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigurationError(
            f"needs {', '.join(missing)}, which the '{extra}' extra installs: "
            f"pip install 'taskorch_nb[{extra}]'"
        )


def usd(text: str) -> Decimal:
    """A USD amount > 0 (an option type): the one `parse_usd` every door uses."""
    from taskorch_nb.core.money import parse_usd

    try:
        return parse_usd(text, "USD")
    except ConfigurationError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("USD must be ")) from None


def price_pair(text: str) -> tuple[str, str]:
    """`IN,OUT`: USD per million input and output tokens (0 allowed; an option type)."""
    from taskorch_nb.core.money import parse_usd

    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"must be IN,OUT (e.g. 0.15,0.60), not {text!r}")
    try:
        for part in parts:
            parse_usd(part, "price", allow_zero=True)
    except ConfigurationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return parts[0], parts[1]


def whole(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An option type: an integer in [minimum, maximum]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"from {minimum} to {maximum}" if maximum is not None else f">= {minimum}"
            raise argparse.ArgumentTypeError(f"must be {bound}, not {value}")
        return value

    parse.__name__ = "whole number"
    return parse


def _positive(text: str, noun: str, bound: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {noun}, not {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be {bound}, not {text}")
    return value


def rate(text: str) -> float:
    """An option type: a finite number > 0."""
    return _positive(text, "a number", "more than 0")


def seconds(text: str) -> float:
    """An option type: a finite number of seconds > 0."""
    return _positive(text, "a number of seconds", "a number of seconds > 0")
