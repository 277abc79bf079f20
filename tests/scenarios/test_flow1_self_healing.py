"""Seed flow 1, as the diagram reads: 504 x3 -> backoff 2 s, 4 s -> circuit opens ->
the immune system names `search_api_timeout`, injects a corrective prompt ->
`cached_search` answers -> 30 s later HALF_OPEN -> one probe succeeds -> CLOSED."""

from __future__ import annotations

from taskorch_nb import CircuitState, FakeClock, Orchestrator, RetryPolicy
from taskorch_nb.testing import FlakyTool


async def test_self_healing_recovery_flow() -> None:
    clock = FakeClock()
    orch = Orchestrator(store=":memory:", clock=clock, retry=RetryPolicy(jitter=0.0))
    events = []
    orch.subscribe(events.append)
    search = FlakyTool([504, 504, 504], result=lambda query: f"live results for {query}")

    @orch.tool(fallback="cached_search")
    async def search_api(query: str) -> str:
        return await search(query=query)

    @orch.tool()
    def cached_search(query: str) -> str:
        return f"cached results for {query}"

    # O->>CB: check circuit state -> CLOSED
    assert orch.circuits["search_api"].state is CircuitState.CLOSED

    # A->>T: call search API ... three 504s, backoff 2 s and 4 s, then cached_search.
    result = await orch.call_tool("search_api", query="user auth")
    assert result == "cached results for user auth"
    assert len(search.calls) == 3
    assert clock.slept == [2.0, 4.0]

    timeline = [(e.type, e.name if hasattr(e, "name") else e.tool) for e in events]
    assert timeline == [
        ("tool.failed", "search_api"),        # failure #1, circuit still CLOSED
        ("retry.scheduled", "search_api"),    # retry with backoff (2 s)
        ("tool.failed", "search_api"),        # failure #2
        ("retry.scheduled", "search_api"),    # retry with backoff (4 s)
        ("tool.failed", "search_api"),        # failure #3
        ("circuit.opened", "search_api"),     # CIRCUIT OPENS
        ("pattern.learned", "search_api_timeout"),   # IM: pattern "search_api_timeout"
        ("pattern.applied", "search_api_timeout"),   # IM->>A: inject corrective prompt
        ("tool.fallback", "cached_search"),   # A->>T: call cached_search instead
        ("tool.succeeded", "cached_search"),  # success, results returned
        ("pattern.recovered", "search_api_timeout"),
    ]
    waits = [e.wait for e in events if e.type == "retry.scheduled"]
    assert waits == [2.0, 4.0]
    failed = [e for e in events if e.type == "tool.failed"]
    assert [(e.attempt, e.status, e.category, e.ts) for e in failed] == [
        (1, 504, "timeout", 0.0), (2, 504, "timeout", 2.0), (3, 504, "timeout", 6.0)
    ]
    applied = next(e for e in events if e.type == "pattern.applied")
    assert "search_api" in applied.prompt
    assert "cached_search" in applied.prompt
    assert orch.circuits["search_api"].state is CircuitState.OPEN

    # While OPEN the fallback is taken without touching the tool.
    assert await orch.call_tool("search_api", query="again") == "cached results for again"
    assert len(search.calls) == 3

    # 30 s later: HALF_OPEN; the probe goes to the tool itself and succeeds: CLOSED.
    clock.advance(30.0)
    assert orch.circuits["search_api"].state is CircuitState.HALF_OPEN
    assert await orch.call_tool("search_api", query="q") == "live results for q"
    assert orch.circuits["search_api"].state is CircuitState.CLOSED
    tail = [e.type for e in events][-3:]
    assert tail == ["circuit.half_opened", "circuit.closed", "tool.succeeded"]
    half = next(e for e in events if e.type == "circuit.half_opened")
    assert half.ts == 36.0  # opened at 6 s, reset_timeout 30 s

    patterns = orch.immune.patterns()
    assert [(p.name, p.fallback, p.recovered >= 1) for p in patterns] == [
        ("search_api_timeout", "cached_search", True)
    ]
    orch.close()
