"""Seed flow 7, as the diagram reads: the same failing API under a naive agent (immediate
retries, no end) and under the orchestrator (backoff, circuit opens, backup tool, task
complete). The naive bill grows with the outage; the orchestrator's is a small constant."""

from __future__ import annotations

from decimal import Decimal

from taskorch_nb import Archetype, FakeClock, Orchestrator, RunStatus, register_archetype
from taskorch_nb.testing import (
    FlakyTool,
    SimReply,
    SimRequest,
    SimulatedProvider,
    naive_retry_agent,
)

SEARCH_COST = Decimal("0.05")  # the paid search API bills every request

register_archetype(Archetype(
    name="searcher",
    system_prompt="Find what the task needs with the search tool, then answer as JSON.",
    tools=("search_api",),
))


def searcher(request: SimRequest) -> SimReply | dict:
    results = [m["content"] for m in request.messages if m["role"] == "tool"]
    if results:
        return {"answer": f"found: {results[-1]}"}
    return SimReply.call("search_api", {"query": "user authentication"})


async def orchestrated(outage_calls: int, clock: FakeClock) -> tuple[Decimal, int, object]:
    provider = SimulatedProvider(clock=clock, responder=searcher)
    orch = Orchestrator(provider, model="sim-small", store=":memory:", clock=clock)
    broken = FlakyTool([504] * outage_calls, result="live results")
    orch.tool(broken, name="search_api", fallback="cached_search", cost=SEARCH_COST)
    orch.tool(lambda query: f"cached results for {query}", name="cached_search")
    run = await orch.run("Find auth docs", workflow="single", archetype="searcher")
    orch.close()
    return run.cost.spent, len(broken.calls), run


async def test_naive_retry_loop_burns_money_the_orchestrator_does_not() -> None:
    clock = FakeClock()

    # WITHOUT TASK ORCHESTRATOR: call fails, retry immediately, again and again ...
    broken = FlakyTool(always=504)
    provider = SimulatedProvider(clock=clock)
    naive = {
        n: await naive_retry_agent(provider, broken, task="Find auth docs",
                                   tool_cost=SEARCH_COST, max_iterations=n, query="q")
        for n in (50, 100)
    }
    assert not naive[50].succeeded
    assert not naive[100].succeeded
    assert naive[100].cost == 2 * naive[50].cost  # the bill grows with the outage, no end
    assert clock.slept == []  # no backoff at all

    # WITH TASK ORCHESTRATOR: 2 s, 4 s backoff, circuit opens, backup tool, task complete.
    cost_50, reached_50, run = await orchestrated(50, clock)
    cost_100, reached_100, _ = await orchestrated(100, clock)
    assert run.status is RunStatus.COMPLETED, run.error
    assert run.output is not None
    assert "cached results for user authentication" in run.output
    types = [e.type for e in run.events]
    assert types.count("retry.scheduled") == 2
    first, second = (e.wait for e in run.events if e.type == "retry.scheduled")
    assert 1.8 <= first <= 2.2
    assert 3.6 <= second <= 4.4
    assert "circuit.opened" in types
    assert "pattern.applied" in types
    assert (reached_50, reached_100) == (3, 3)  # three attempts, then never again
    assert cost_50 == cost_100  # a constant, whatever the outage
    assert run.cost.by_tool == {"search_api": 3 * SEARCH_COST}
    assert cost_50 < naive[50].cost / 10
    print(f"\nnaive (50 retries): ${naive[50].cost:.2f}; naive (100): ${naive[100].cost:.2f}; "
          f"orchestrated: ${cost_50:.4f}")
