"""expand_task and magic_hint on their own (the magic's use: test_magics_task.py)."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError

from taskorch_nb.notebook.tasktext import expand_task, magic_hint


def test_text_without_braces_and_dollars_stay_as_they_are() -> None:
    assert expand_task("Spend $5 on $name", {"name": "x"}) == "Spend $5 on $name"


def test_unbalanced_braces_say_how_to_write_literal_ones() -> None:
    with pytest.raises(UsageError, match=r"write \{\{ and \}\} for literal ones"):
        expand_task("Add a } here", {})


def test_the_prices_hint_names_the_config_setting() -> None:
    message = ("no price for model 'm' (provider 'openai'): pass prices={'m': {'input': ..., "
               "'output': ...}} (USD per million tokens)")
    assert magic_hint(message) == (
        "no price for model 'm' (provider 'openai'): set %config Orchestrate.prices = "
        "{'m': {'input': ..., 'output': ...}} (USD per million tokens)")
    assert magic_hint("something else") == "something else"
