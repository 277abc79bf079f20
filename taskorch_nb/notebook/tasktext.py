"""The task text of `%%orchestrate`: `{expr}` evaluated as IPython expands `{}` in a line.

The cell is the task for the agents, so a `{name}` fills in a variable, and so
does any expression (`{spec['name']}`, `{len(files)}`), evaluated in the user's
namespace like IPython's own `{}` expansion (`FullEvalFormatter`); `{{` and `}}`
are literal braces, as in f-strings. Unlike IPython's line expansion, `$name` is
left alone: tasks talk about money.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from IPython.core.error import UsageError
from IPython.utils.text import FullEvalFormatter

__all__ = ["expand_task", "magic_hint"]

_FORMATTER = FullEvalFormatter()
_FIELD = re.compile(r"\{([^{}]*)\}")
_PRICES_HINT = re.compile(r"pass prices=(\{.*\}) \(USD per million tokens\)")


def expand_task(text: str, namespace: Mapping[str, Any]) -> str:
    """The text with each `{expr}` replaced by its value in `namespace`; a one-line
    UsageError naming the field when one cannot be evaluated."""
    if "{" not in text and "}" not in text:
        return text
    try:
        return _FORMATTER.format(text, **namespace)
    except NameError as exc:
        name = getattr(exc, "name", None) or str(exc)
        raise UsageError(f"task mentions {{{name}}} but no such name is defined") from None
    except Exception as exc:  # the user's expression: any error it raises is theirs to see
        raise UsageError(f"task text {_failing_field(text, namespace)}: "
                         f"{type(exc).__name__}: {_one_line(exc)}") from None


def _failing_field(text: str, namespace: Mapping[str, Any]) -> str:
    """The first `{...}` of the text that does not evaluate on its own."""
    for match in _FIELD.finditer(text.replace("{{", "").replace("}}", "")):
        try:
            _FORMATTER.format(match.group(0), **namespace)
        except Exception:  # the one we are looking for
            return match.group(0)
    return "braces (unbalanced? write {{ and }} for literal ones)"


def _one_line(exc: BaseException) -> str:
    text = repr(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(text.split())


def magic_hint(message: str) -> str:
    """An error's fix said with the magic's own setting instead of the Python argument."""
    return _PRICES_HINT.sub(r"set %config Orchestrate.prices = \1 (USD per million tokens)",
                            message)
