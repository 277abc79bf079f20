"""One tool-name rule: what the orchestrator refuses, the hub refuses with the same reason."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from taskorch_nb import Orchestrator
from taskorch_nb.core.pattern_record import PatternRecord
from taskorch_nb.core.toolname import tool_name_problem
from taskorch_nb.errors import ConfigurationError

BAD = ["web search", "", "9lives", "t" * 101, "semi;colon", "tab\tname", "ünïcode"]
GOOD = ["search_api", "federation:hub", "simulated:sim-small", "a.b-c", "_private", "t" * 100]


def record(tool: str) -> dict[str, object]:
    return {"signature": "ab" * 16, "name": "x_timeout", "tool": tool, "category": "timeout",
            "first_seen": 1.0, "last_seen": 2.0}


@pytest.mark.parametrize("name", BAD)
def test_a_bad_name_is_refused_by_both_with_one_reason(name: str) -> None:
    reason = tool_name_problem(name)
    assert reason is not None
    with Orchestrator(store=":memory:") as orch:
        with pytest.raises(ConfigurationError) as refused:
            orch.tool(lambda query: query, name=name)
        assert reason in str(refused.value)
        assert name not in orch.tools
    with pytest.raises(ValidationError) as invalid:
        PatternRecord.model_validate(record(name))
    assert reason in str(invalid.value)


@pytest.mark.parametrize("name", GOOD)
def test_a_good_name_is_accepted_by_both(name: str) -> None:
    assert tool_name_problem(name) is None
    assert PatternRecord.model_validate(record(name)).tool == name


def test_an_unnamed_lambda_and_a_bad_fallback_are_refused() -> None:
    with Orchestrator(store=":memory:") as orch:
        with pytest.raises(ConfigurationError, match=r"'<lambda>'.*\(pass name=\)"):
            orch.tool(lambda query: query)
        with pytest.raises(ConfigurationError, match="tool fallback: tool name 'web search'"):
            orch.tool(lambda query: query, name="search", fallback="web search")
