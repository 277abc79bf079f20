"""The Orchestrator's public surface: who pays for a call, the sync/async twins, old names."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import httpx
import pytest

from taskorch_nb import (
    Archetype,
    BudgetGuard,
    ConfigurationError,
    FakeClock,
    Orchestrator,
    RunStatus,
    register_archetype,
)
from taskorch_nb.agents import archetypes
from taskorch_nb.llm.openai import OpenAIProvider
from taskorch_nb.testing import FlakyTool, SimReply, SimRequest, SimulatedProvider

SEARCH_COST = Decimal("0.05")



@pytest.fixture(autouse=True)
def paying_searcher(monkeypatch: pytest.MonkeyPatch) -> None:
    """An agent that calls `search_api` once, registered for this module's tests only."""
    monkeypatch.setattr(archetypes, "_ARCHETYPES", dict(archetypes._ARCHETYPES))
    register_archetype(Archetype(name="paying_searcher", tools=("search_api",),
                                 system_prompt="Search once, then answer as JSON."))


def searcher(request: SimRequest) -> SimReply | dict:
    results = [m["content"] for m in request.messages if m["role"] == "tool"]
    if results:
        return {"answer": f"found: {results[-1]}"}
    return SimReply.call("search_api", {"query": "auth docs"})


def searching_orchestrator(requests: list[list[dict]] | None = None) -> Orchestrator:
    """The searcher agent's orchestrator; `requests` gets the messages of each model call."""
    clock = FakeClock()

    def respond(request: SimRequest) -> SimReply | dict:
        if requests is not None:
            requests.append([dict(m) for m in request.messages])
        return searcher(request)

    return Orchestrator(SimulatedProvider(clock=clock, responder=respond), "sim-small",
                        store=":memory:", clock=clock)


# -- the money path ----------------------------------------------------------------------------


async def test_a_metered_tool_inside_a_run_charges_the_run_never_the_session(tmp_path) -> None:
    orch = searching_orchestrator()
    orch.tool(lambda query: f"docs for {query}", name="search_api", cost=SEARCH_COST)
    run = await orch.run("Find auth docs", workflow="single", archetype="paying_searcher",
                         workspace=tmp_path)
    assert run.status is RunStatus.COMPLETED, run.error
    assert run.cost.by_tool == {"search_api": SEARCH_COST}
    assert run.cost.by_model["sim-small"] > 0
    assert run.cost.spent == SEARCH_COST + run.cost.by_model["sim-small"]
    session = orch.session_guard.report()
    assert (session.spent, session.calls) == (0, 0)
    await orch.aclose()


async def test_outside_a_run_the_session_guard_pays_unless_a_guard_is_named() -> None:
    orch = Orchestrator(store=":memory:", clock=FakeClock())
    seen: list[dict[str, Any]] = []

    @orch.tool(cost=SEARCH_COST)
    def search_api(query: str, guard: str = "none") -> str:  # a tool may call a parameter guard
        seen.append({"query": query, "guard": guard})
        return "ok"

    await orch.call_tool("search_api", query="q")
    assert orch.session_guard.spent == SEARCH_COST

    mine = BudgetGuard(1)
    await orch.call_tool("search_api", mine, query="q", guard="the tool's own argument")
    assert mine.spent == SEARCH_COST
    assert orch.session_guard.spent == SEARCH_COST
    assert seen[-1] == {"query": "q", "guard": "the tool's own argument"}

    await orch.complete([{"role": "user", "content": "hi"}], guard=mine)
    assert "sim-small" in mine.report().by_model
    assert "sim-small" not in orch.session_guard.report().by_model
    await orch.complete([{"role": "user", "content": "hi"}])
    assert "sim-small" in orch.session_guard.report().by_model
    await orch.aclose()


async def test_no_hidden_route_a_tool_that_calls_the_model_names_its_guard(tmp_path) -> None:
    # Inside a run, a tool of yours that calls the model without naming a guard is paid
    # by the session guard: the run's guard travels as an argument only.
    orch = searching_orchestrator()

    @orch.tool()
    async def search_api(query: str) -> str:
        await orch.complete([{"role": "user", "content": query}])
        return "docs"

    run = await orch.run("Find auth docs", workflow="single", archetype="paying_searcher",
                         workspace=tmp_path)
    assert run.status is RunStatus.COMPLETED, run.error
    assert orch.session_guard.report().calls == 1
    assert run.cost.calls == 2  # its own two model calls
    await orch.aclose()


async def test_the_run_receives_the_corrective_prompt_of_the_strategy_taken(tmp_path) -> None:
    requests: list[list[dict]] = []
    orch = searching_orchestrator(requests)
    orch.tool(FlakyTool(always=504), name="search_api", fallback="cached_search")
    orch.tool(lambda query: f"cached {query}", name="cached_search")
    run = await orch.run("Find auth docs", workflow="single", archetype="paying_searcher",
                         workspace=tmp_path)
    assert run.status is RunStatus.COMPLETED, run.error
    [applied] = [e for e in run.events if e.type == "pattern.applied"]
    assert applied.prompt
    first, second = requests
    assert applied.prompt not in [m["content"] for m in first]
    system = [m["content"] for m in second if m["role"] == "system"]
    assert applied.prompt in system  # the agent's next model call carries it
    await orch.aclose()


def test_budgets_are_amounts_and_guards_are_guards() -> None:
    orch = Orchestrator(budget="2.50", session_budget=0.5, store=":memory:")
    assert orch.default_budget == Decimal("2.50")
    assert orch.session_guard.limit == Decimal("0.5")
    assert Orchestrator(budget=3, store=":memory:").session_guard.limit == 3
    for bad, name in (({"budget": "1e999999"}, "budget"), ({"session_budget": -1},
                                                          "session_budget")):
        with pytest.raises(ConfigurationError, match=f"^{name} must be a USD amount"):
            Orchestrator(store=":memory:", **bad)
    orch.close()


def test_the_old_name_of_the_session_guard_warns() -> None:
    orch = Orchestrator(store=":memory:")
    with pytest.warns(DeprecationWarning, match=r"Orchestrator\.session_guard"):
        old = orch.budget
    assert old is orch.session_guard
    orch.close()


# -- twins -------------------------------------------------------------------------------------


def test_resume_sync_is_the_blocking_twin_of_resume(tmp_path) -> None:
    orch = Orchestrator(store=":memory:", clock=FakeClock())
    run = orch.run_sync("Add user authentication", budget=0.01, workspace=tmp_path)
    assert run.status is RunStatus.PAUSED
    again = orch.resume_sync(run.id, extra_budget=5.0)
    assert again is run
    assert run.status is RunStatus.COMPLETED, run.error
    orch.close()


async def test_start_is_awaited_and_returns_before_the_run_ends(tmp_path) -> None:
    orch = Orchestrator(store=":memory:", clock=FakeClock())
    run = await orch.start("Document the API", workflow="single", archetype="architect",
                           workspace=tmp_path)
    assert run.status is RunStatus.PENDING  # scheduled, not started yet
    assert await run is run
    assert run.status is RunStatus.COMPLETED
    with pytest.raises(ConfigurationError, match="task is empty"):
        await orch.start("  ")
    await orch.aclose()


class RecordingTransport(httpx.MockTransport):
    """An OpenAI-shaped answer to every request; remembers being closed."""

    def __init__(self) -> None:
        super().__init__(self.answer)
        self.closed = 0

    @staticmethod
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={
            "id": "c1", "object": "chat.completion", "model": "gpt-4o-mini",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "hello"}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
        })

    async def aclose(self) -> None:
        self.closed += 1


def openai_orchestrator(transport: RecordingTransport) -> Orchestrator:
    provider = OpenAIProvider(api_key="k", base_url="http://llm.test/v1", transport=transport)
    return Orchestrator(provider, "gpt-4o-mini", store=":memory:", langfuse=False)


MESSAGE = [{"role": "user", "content": "hi"}]


async def test_aclose_closes_the_provider() -> None:
    transport = RecordingTransport()
    async with openai_orchestrator(transport) as orch:
        assert (await orch.complete(MESSAGE)).text == "hello"
        assert transport.closed == 0
    assert transport.closed == 1


def test_close_closes_the_provider_from_sync_code() -> None:
    transport = RecordingTransport()
    orch = openai_orchestrator(transport)
    assert asyncio.run(orch.complete(MESSAGE)).text == "hello"
    orch.close()
    assert transport.closed == 1


async def test_close_works_inside_a_running_loop_too() -> None:
    transport = RecordingTransport()
    orch = openai_orchestrator(transport)
    await orch.complete(MESSAGE)
    orch.close()  # a notebook cell's `orch.close()`
    assert transport.closed == 1
