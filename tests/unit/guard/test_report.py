"""The guard's report: text, JSON, and the sums it shows."""

from __future__ import annotations

import json
from decimal import Decimal

from taskorch_nb.guard.report import GuardReport, ModelUse


def _report() -> GuardReport:
    return GuardReport(
        name="agent", spent=Decimal("0.30"), limit=Decimal("1"), remaining=Decimal("0.70"),
        calls=3, requests=3, tool_calls=2,
        by_model={"big": ModelUse(1, 100, 50, 0, Decimal("0.25")),
                  "small": ModelUse(2, 40, 10, 1, Decimal("0.05"))},
        refused={"budget_exceeded": 1}, stopped="budget_exceeded: no",
        breakers={"openai:big": "OPEN"}, patterns=["openai_big_timeout"])


def test_the_text_lists_models_costliest_first_and_why_it_stopped() -> None:
    text = str(_report())
    lines = text.splitlines()
    assert lines[0] == ("Guard 'agent': $0.30 of $1.00 ($0.70 left), 3 calls, 200 tokens, "
                        "2 tool calls")
    assert lines[1].startswith("  big: 1 calls")
    assert "1 counted from the stream" in lines[2]
    assert "stopped: budget_exceeded: no" in text
    assert "breakers: openai:big OPEN" in text


def test_to_dict_is_json() -> None:
    data = json.loads(json.dumps(_report().to_dict()))
    assert data["tokens"] == 200
    assert data["by_model"]["small"] == {"calls": 2, "input_tokens": 40, "output_tokens": 10,
                                         "estimated": 1, "cost": 0.05}
    assert _report()._repr_mimebundle_()["text/plain"] == str(_report())
