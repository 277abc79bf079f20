"""Seed flow 6, as the diagram reads, from an MCP client: request
(`spawn_archetype_agent`) -> safety checks (budget, circuits, relevant patterns)
-> execution (traced) -> learning -> response with the result and its metrics.

The server is the real process (`python -m taskorch_nb.mcp.server`, what
`taskorch-nb mcp` runs) on stdio; the test reads the events from the same SQLite
store the notebook and the CLI use, while the server is still up.
"""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path

from mcp import Client, StdioServerParameters

import taskorch_nb
from taskorch_nb.core.store import Store


async def test_mcp_spawned_builder_runs_the_whole_lifecycle(tmp_path: Path) -> None:
    home = tmp_path / "home"
    server = StdioServerParameters(
        command=sys.executable, args=["-m", "taskorch_nb.mcp.server"],
        env={"TASKORCH_HOME": str(home), "TMPDIR": str(tmp_path)})

    async with Client(server) as client:
        # Request.
        result = await client.call_tool("spawn_archetype_agent", {
            "archetype": "builder", "task": "Add a slugify function", "budget": 1.0})
        answer = result.structured_content
        store = Store(home / "taskorch.db")  # the shared store, read while the server is up
        try:
            events = store.events(answer["run_id"])
        finally:
            store.close()

    types = [e.type for e in events]
    assert types[0] == "run.started"
    assert types[-1] == "run.completed"

    # Safety checks: budget, circuits and relevant patterns, at intake and again before
    # every agent step (then with the agent's tools).
    first_agent = types.index("agent.started")
    assert types[1:4] == ["safety.checked"] * 3
    assert [e.detail["check"] for e in events[1:4]] == ["budget", "circuits", "patterns"]
    budget, circuits, patterns = events[first_agent - 3:first_agent]
    assert [e.detail["check"] for e in (budget, circuits, patterns)] == [
        "budget", "circuits", "patterns"]
    assert budget.agent == circuits.agent == patterns.agent == "builder"
    assert budget.detail["ok"] is True
    assert Decimal(budget.detail["limit"]) == Decimal("1")
    assert circuits.detail["open"] == []
    assert {"write_file", "simulated:sim-small"} <= circuits.detail["states"].keys()
    assert patterns.detail["relevant"] == []

    # Execution: the Builder's model calls and its file writes, traced as events.
    first_llm = types.index("llm.completed")
    writes = [i for i, e in enumerate(events)
              if e.type == "tool.succeeded" and e.tool == "write_file"]
    assert first_agent < first_llm < writes[0]
    assert len(writes) == 2  # tests first (RED), then the code (GREEN)
    assert {e.agent for e in events if e.type == "llm.completed"} == {"builder"}

    # Learning, then the response.
    learning = types.index("learning.completed")
    assert writes[-1] < learning < len(types) - 1
    assert events[learning].detail["learned"] == []

    # The response carries the result and its metrics, matching the store.
    assert result.is_error is False
    assert answer["status"] == "COMPLETED"
    assert "files_written" in answer["output"]
    assert answer["metrics"]["llm_calls"] == types.count("llm.completed") == 4
    assert answer["metrics"]["tool_calls"] >= len(writes)
    assert answer["cost"]["spent"] > 0
    assert answer["cost"]["by_agent"].keys() == {"builder"}
    assert answer["events"] == len(events)
    assert events[-1].detail["metrics"]["llm_calls"] == 4

    # A run started over MCP is in the notebook's history.
    history = taskorch_nb.history(store=home / "taskorch.db")
    row = history.set_index("run_id").loc[answer["run_id"]]
    assert (row["status"], row["workflow"]) == ("COMPLETED", "single")
    assert row["spent"] == answer["cost"]["spent"]
