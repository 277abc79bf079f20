from __future__ import annotations

import asyncio
import threading
from decimal import Decimal

import pytest

from taskorch_nb import (
    BudgetGuard,
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    ConfigurationError,
    FakeClock,
    Orchestrator,
    RetryPolicy,
)
from taskorch_nb.errors import ToolArgumentsError, UnknownToolError
from taskorch_nb.testing import FlakyTool, http_error


def types(events) -> list[str]:
    return [e.type for e in events]


async def test_success_path_emits_one_event(orch: Orchestrator) -> None:
    seen: list = []
    orch.subscribe(seen.append)

    @orch.tool()
    async def echo(text: str) -> str:
        return text

    assert await orch.call_tool("echo", text="hi") == "hi"
    assert types(seen) == ["tool.succeeded"]
    assert seen[0].tool == "echo"
    assert seen[0].call_id


async def test_unknown_tool_lists_the_known_ones(orch: Orchestrator) -> None:
    orch.tool(lambda: 1, name="alpha")
    orch.tool(lambda: 2, name="beta")
    with pytest.raises(UnknownToolError, match=r"'gamma'.*alpha, beta"):
        await orch.call_tool("gamma")


async def test_fallback_to_unknown_tool_fails_at_first_need_naming_both(
    orch: Orchestrator,
) -> None:
    @orch.tool(fallback="nowhere")
    async def primary() -> str:
        raise http_error(503)

    with pytest.raises(UnknownToolError, match="'nowhere' \\(fallback of 'primary'\\)"):
        await orch.call_tool("primary")


async def test_fallback_may_be_declared_later_and_cycles_are_caught(orch: Orchestrator) -> None:
    @orch.tool(fallback="b", retry=RetryPolicy(max_attempts=1))
    async def a() -> str:
        raise http_error(503)

    @orch.tool(fallback="a", retry=RetryPolicy(max_attempts=1))
    async def b() -> str:
        raise http_error(503)

    with pytest.raises(ConfigurationError, match="cycle between 'b' and 'a'"):
        await orch.call_tool("a")


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [({}, "missing required argument"), ({"query": "q", "extra": 1}, "unexpected argument"),
     ({"query": 3}, "expected str")],
)
async def test_wrong_arguments_fail_at_call_and_are_not_retried(
    orch: Orchestrator, kwargs, reason
) -> None:
    flaky = FlakyTool()

    @orch.tool()
    async def search(query: str) -> str:
        return await flaky(query=query)

    seen: list = []
    orch.subscribe(seen.append)
    with pytest.raises(ToolArgumentsError, match=reason):
        await orch.call_tool("search", **kwargs)
    assert flaky.calls == []
    assert seen == []
    assert orch.circuits["search"].failures == 0


async def test_caller_error_from_the_tool_is_not_retried_nor_counted(
    orch: Orchestrator, clock: FakeClock
) -> None:
    flaky = FlakyTool(always=404)
    orch.tool(flaky, name="lookup", fallback=None)
    with pytest.raises(Exception, match="404"):
        await orch.call_tool("lookup")
    assert len(flaky.calls) == 1
    assert clock.slept == []
    assert orch.circuits["lookup"].failures == 0


async def test_exhausted_retries_raise_the_underlying_error_with_a_note(
    orch: Orchestrator, clock: FakeClock
) -> None:
    flaky = FlakyTool(always=502)
    orch.tool(flaky, name="api")
    with pytest.raises(Exception, match="502") as info:
        await orch.call_tool("api")
    assert type(info.value).__name__ == "HTTPStatusError"
    assert any("api_server_error" in n and "3 attempt" in n for n in info.value.__notes__)
    assert clock.slept == [2.0, 4.0]
    assert orch.circuits["api"].state is CircuitState.OPEN


async def test_open_breaker_without_fallback_raises_circuit_open(orch: Orchestrator) -> None:
    flaky = FlakyTool(always=500)
    orch.tool(flaky, name="api")
    with pytest.raises(Exception, match="500"):
        await orch.call_tool("api")
    with pytest.raises(CircuitOpenError) as info:
        await orch.call_tool("api")
    assert info.value.name == "api"
    assert len(flaky.calls) == 3


async def test_sync_tool_runs_in_a_worker_thread(orch: Orchestrator) -> None:
    @orch.tool()
    def where() -> str:
        return threading.current_thread().name

    assert await orch.call_tool("where") != threading.current_thread().name


async def test_timeout_is_a_transient_timeout_failure(clock: FakeClock) -> None:
    orch = Orchestrator(store=":memory:", clock=clock, retry=RetryPolicy(max_attempts=1))
    seen: list = []
    orch.subscribe(seen.append)

    @orch.tool(timeout=5.0)
    async def stuck() -> str:
        await asyncio.Event().wait()  # never answers
        return "never"

    with pytest.raises(TimeoutError):
        await orch.call_tool("stuck")
    [failed] = [e for e in seen if e.type == "tool.failed"]
    assert (failed.category, failed.duration) == ("timeout", 5.0)  # the timeout, in fake time
    assert clock.now() == 5.0
    orch.close()


async def test_a_sync_tool_is_not_timed_out_while_its_thread_works(clock: FakeClock) -> None:
    """Under a FakeClock the loop looks idle while the thread works; the clock holds still."""
    orch = Orchestrator(store=":memory:", clock=clock)
    started, release = threading.Event(), threading.Event()

    @orch.tool(timeout=5.0)
    def blocking() -> str:
        started.set()
        release.wait()
        return "done"

    call = asyncio.create_task(orch.call_tool("blocking"))
    await asyncio.to_thread(started.wait)
    await asyncio.to_thread(lambda: None)  # the loop blocks in its selector meanwhile
    assert not call.done()
    assert clock.now() == 0.0
    release.set()
    assert await call == "done"
    orch.close()


async def test_known_pattern_is_applied_at_first_failure_without_backoff(
    orch: Orchestrator, clock: FakeClock
) -> None:
    broken = FlakyTool(always=504)
    orch.tool(broken, name="search_api", fallback="cached_search",
              breaker=CircuitBreaker(failure_threshold=10))
    orch.tool(lambda **kw: "cached", name="cached_search")
    assert await orch.call_tool("search_api") == "cached"   # learns (3 attempts)
    assert len(broken.calls) == 3
    waits_before = list(clock.slept)
    seen: list = []
    orch.subscribe(seen.append)
    assert await orch.call_tool("search_api") == "cached"   # known: 1 attempt, no wait
    assert len(broken.calls) == 4
    assert clock.slept == waits_before
    assert types(seen) == ["tool.failed", "pattern.applied", "tool.fallback", "tool.succeeded",
                           "pattern.recovered"]


async def test_strategy_that_stops_working_is_demoted(orch: Orchestrator) -> None:
    broken = FlakyTool(always=504)
    backup = FlakyTool([], result="cached")
    orch.tool(broken, name="search_api", fallback="backup",
              breaker=CircuitBreaker(failure_threshold=1000))
    orch.tool(backup, name="backup", retry=RetryPolicy(max_attempts=1),
              breaker=CircuitBreaker(failure_threshold=1000))
    await orch.call_tool("search_api")
    backup.always = 500
    for _ in range(5):
        with pytest.raises(Exception, match="500"):
            await orch.call_tool("search_api")
    [pattern] = [p for p in orch.immune.patterns() if p.tool == "search_api"]
    assert pattern.demoted
    assert not pattern.known


async def test_thousand_concurrent_calls_never_reach_an_open_tool(clock: FakeClock) -> None:
    orch = Orchestrator(store=":memory:", clock=clock)
    reached: list[float] = []

    @orch.tool(fallback="cached")
    async def flaky() -> str:
        reached.append(clock.now())
        await asyncio.sleep(0)
        raise http_error(503)

    orch.tool(lambda: "cached", name="cached")
    seen: list = []
    orch.subscribe(seen.append)
    results = await asyncio.gather(*(orch.call_tool("flaky") for _ in range(1000)))
    assert set(results) == {"cached"}
    opened = [e.ts for e in seen if e.type == "circuit.opened"]
    assert opened
    for start in opened:
        inside = [t for t in reached if start < t < start + 30.0]
        assert inside == [], "a call reached the tool while its breaker was open"
    orch.close()


def test_bad_registration(orch: Orchestrator) -> None:
    with pytest.raises(ConfigurationError, match="own fallback"):
        orch.tool(lambda: 1, name="x", fallback="x")
    with pytest.raises(ConfigurationError, match="timeout"):
        orch.tool(lambda: 1, name="y", timeout=0)
    with pytest.raises(ConfigurationError, match=r"cost of tool 'z' must be a USD amount from \$0"):
        orch.tool(lambda: 1, name="z", cost=-0.01)
    with pytest.raises(ConfigurationError, match=r"to \$1,000,000,000 .*got '1e999999'"):
        orch.tool(lambda: 1, name="z", cost="1e999999")


# -- the money path: every call names the guard that pays ---------------------------------------


async def test_a_metered_call_charges_the_guard_it_names(orch: Orchestrator) -> None:
    orch.tool(lambda query: f"found {query}", name="search", cost="0.05")
    mine = BudgetGuard(1)
    assert await orch.tools.call("search", {"query": "q"}, guard=mine) == "found q"
    assert mine.spent == Decimal("0.05")
    assert mine.report().by_tool == {"search": Decimal("0.05")}
    assert orch.session_guard.spent == 0


async def test_a_metered_call_without_a_guard_is_refused_before_it_runs(
        orch: Orchestrator) -> None:
    paid = FlakyTool([], result="ok")
    orch.tool(paid, name="search", cost="0.05")
    with pytest.raises(ConfigurationError, match=r"'search' costs \$0.05 per request"):
        await orch.tools.call("search", {}, guard=None)
    assert paid.calls == []
    orch.tool(paid, name="report", cost="2")  # money reads as money everywhere
    with pytest.raises(ConfigurationError, match=r"'report' costs \$2\.00 per request"):
        await orch.tools.call("report", {}, guard=None)
    orch.tool(lambda: "free", name="free")
    assert await orch.tools.call("free", {}, guard=None) == "free"


async def test_retries_and_the_fallback_charge_the_same_guard(orch: Orchestrator) -> None:
    broken = FlakyTool(always=504)
    orch.tool(broken, name="search", fallback="backup", cost="0.05",
              breaker=CircuitBreaker(failure_threshold=10))
    orch.tool(lambda: "cached", name="backup", cost="0.01")
    mine = BudgetGuard(1)
    assert await orch.tools.call("search", {}, guard=mine) == "cached"
    assert len(broken.calls) == 3  # every failed request is billed too
    assert mine.report().by_tool == {"search": Decimal("0.15"), "backup": Decimal("0.01")}
    assert orch.session_guard.spent == 0


async def test_the_strategys_corrective_prompt_comes_back_to_the_caller(
        orch: Orchestrator) -> None:
    orch.tool(FlakyTool(always=504), name="search_api", fallback="cached_search",
              breaker=CircuitBreaker(failure_threshold=10))
    orch.tool(lambda: "cached", name="cached_search")
    prompts: list[str] = []
    await orch.tools.call("search_api", {}, guard=None, prompts=prompts)  # learned, applied
    await orch.tools.call("search_api", {}, guard=None)  # applied; nobody asked for prompts
    await orch.tools.call("search_api", {}, guard=None, prompts=prompts)  # applied again
    [pattern] = orch.immune.patterns()
    assert pattern.corrective_prompt
    assert "cached_search" in pattern.corrective_prompt
    assert prompts == [pattern.corrective_prompt] * 2


def test_a_tool_is_offered_as_one_frozen_schema(orch: Orchestrator) -> None:
    @orch.tool()
    async def lookup(query: str, limit: int = 3) -> str:
        """Find a thing."""
        return query

    offered = orch.tools["lookup"].offer()
    assert offered is orch.tools["lookup"].offer()  # built once, sized once
    assert offered == {"name": "lookup", "description": orch.tools["lookup"].description,
                       "parameters": {"type": "object", "required": ["query"],
                                      "properties": {"query": {"type": "string"},
                                                     "limit": {"type": "integer"}}}}
    with pytest.raises(TypeError, match="frozen"):
        offered["name"] = "other"
