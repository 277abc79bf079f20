"""Spans derived from the event stream: parenting, attempts, waits, breakers, QC, scores."""

from __future__ import annotations

from decimal import Decimal

import pytest

from taskorch_nb.core.events import CircuitEvent, EventBus, LLMEvent, RunEvent, ToolEvent, scope
from taskorch_nb.testing import FakeClock
from taskorch_nb.tracing.spans import ADHOC_TRACE, Span, SpanBuilder, build_spans


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def bus(clock: FakeClock) -> EventBus:
    return EventBus(clock)


@pytest.fixture
def builder(bus: EventBus) -> SpanBuilder:
    b = SpanBuilder()
    bus.subscribe(b)
    return b


def llm_call(bus: EventBus, clock: FakeClock, call_id: str, agent: str, phase: str,
             cost: str, *, seconds: float = 1.5) -> None:
    common = {"call_id": call_id, "provider": "simulated", "model": "sim-small",
              "agent": agent, "phase": phase}
    bus.emit(LLMEvent(type="llm.requested", **common))
    clock.advance(seconds)
    bus.emit(LLMEvent(type="llm.completed", input_tokens=120, output_tokens=40, cached_tokens=20,
                      cost=Decimal(cost), latency=seconds, **common))


def self_healing_run(bus: EventBus, clock: FakeClock, run_id: str = "run-1") -> None:
    """Flow 1 and 3 in miniature: a tool retried twice, a circuit, a fallback, a QC verdict."""
    with scope(run_id=run_id):
        bus.emit(RunEvent(type="run.started", task="Add auth", workflow="full"))
        bus.emit(RunEvent(type="phase.started", phase="research"))
        bus.emit(RunEvent(type="agent.started", agent="researcher", phase="research"))
        llm_call(bus, clock, "llm-1", "researcher", "research", "0.0100")
        for attempt in (1, 2):
            bus.emit(ToolEvent(type="tool.called", tool="search_api", call_id="t-1",
                               attempt=attempt, agent="researcher"))
            clock.advance(5.0)
            bus.emit(ToolEvent(type="tool.failed", tool="search_api", call_id="t-1",
                               attempt=attempt, category="timeout", status=504,
                               error="gateway timeout", duration=5.0, agent="researcher"))
            if attempt == 1:
                bus.emit(ToolEvent(type="retry.scheduled", tool="search_api", call_id="t-1",
                                   attempt=2, wait=2.0, agent="researcher"))
                clock.advance(2.0)
        bus.emit(CircuitEvent(type="circuit.opened", name="search_api", state="open",
                              previous="closed", failures=3))
        bus.emit(ToolEvent(type="tool.fallback", tool="cached_search", call_id="t-1",
                           fallback_of="search_api", agent="researcher"))
        bus.emit(ToolEvent(type="tool.called", tool="cached_search", call_id="t-1",
                           agent="researcher"))
        clock.advance(0.1)
        bus.emit(ToolEvent(type="tool.succeeded", tool="cached_search", call_id="t-1",
                           duration=0.1, agent="researcher"))
        bus.emit(ToolEvent(type="tool.called", tool="search_api", call_id="t-2",
                           agent="researcher"))
        bus.emit(ToolEvent(type="tool.succeeded", tool="search_api", call_id="t-2",
                           agent="researcher"))
        bus.emit(RunEvent(type="agent.completed", agent="researcher", phase="research"))
        bus.emit(RunEvent(type="phase.completed", phase="research"))
        bus.emit(RunEvent(type="phase.started", phase="qc"))
        bus.emit(RunEvent(type="agent.started", agent="qc", phase="qc"))
        llm_call(bus, clock, "llm-2", "qc", "qc", "0.0250")
        clock.advance(3.0)
        bus.emit(RunEvent(type="qc.failed", phase="qc", agent="qc",
                          detail={"approved": False, "tests_passed": 3, "tests_failed": 1,
                                  "tests_errors": 0, "tests_total": 4, "findings": []}))
        bus.emit(RunEvent(type="agent.completed", agent="qc", phase="qc"))
        bus.emit(RunEvent(type="phase.completed", phase="qc"))
        bus.emit(RunEvent(type="run.completed", status="completed",
                          detail={"output": "done",
                                  "cost": {"spent": "0.0350", "limit": "5.00"}}))


def by_kind(spans: list[Span], kind: str) -> list[Span]:
    return [s for s in spans if s.kind == kind]


def test_one_trace_per_run_with_phases_agents_and_generations(
    bus: EventBus, clock: FakeClock, builder: SpanBuilder
) -> None:
    self_healing_run(bus, clock)
    spans = builder.spans("run-1")
    assert {s.trace_id for s in spans} == {"run-1"}
    (root,) = by_kind(spans, "trace")
    assert root.parent_id is None
    assert (root.status, root.name, root.start, root.end) == ("ok", "Add auth", 0.0, clock.now())
    phases = {s.name: s for s in by_kind(spans, "phase")}
    assert set(phases) == {"research", "qc"}
    assert all(p.parent_id == root.span_id and p.status == "ok" for p in phases.values())
    agents = {s.name: s for s in by_kind(spans, "agent")}
    assert agents["researcher"].parent_id == phases["research"].span_id
    assert agents["qc"].parent_id == phases["qc"].span_id
    gens = by_kind(spans, "generation")
    assert [g.parent_id for g in gens] == [agents["researcher"].span_id, agents["qc"].span_id]
    first = gens[0]
    assert first.duration == pytest.approx(1.5)
    assert first.attributes["model"] == "sim-small"
    assert (first.attributes["input_tokens"], first.attributes["output_tokens"],
            first.attributes["cached_tokens"]) == (120, 40, 20)
    assert first.attributes["cost"] == Decimal("0.0100")
    assert first.attributes["latency"] == 1.5
    assert first.end_wall == FakeClock.EPOCH + first.end


def test_tool_spans_one_per_attempt_with_waits_breaker_state_and_fallback(
    bus: EventBus, clock: FakeClock, builder: SpanBuilder
) -> None:
    self_healing_run(bus, clock)
    spans = builder.spans("run-1")
    researcher = next(s for s in spans if s.kind == "agent" and s.name == "researcher")
    tools = by_kind(spans, "tool")
    assert [(t.name, t.attributes["attempt"], t.status) for t in tools] == [
        ("search_api", 1, "error"),
        ("search_api", 2, "error"),
        ("cached_search", 1, "ok"),
        ("search_api", 1, "ok"),
    ]
    assert all(t.parent_id == researcher.span_id for t in tools)
    assert [t.attributes["wait"] for t in tools] == [None, 2.0, None, None]
    assert tools[0].attributes["category"] == "timeout"
    assert tools[0].attributes["status_code"] == 504
    assert tools[0].duration == 5.0
    assert tools[2].attributes["fallback_of"] == "search_api"
    assert [t.attributes["breaker_state"] for t in tools] == ["closed", "closed", "closed",
                                                              "open"]
    assert {t.attributes["phase"] for t in tools} == {"research"}


def test_qc_verdict_is_an_evaluator_span_and_scores_quality_and_cost(
    bus: EventBus, clock: FakeClock, builder: SpanBuilder
) -> None:
    self_healing_run(bus, clock)
    spans = builder.spans("run-1")
    qc_agent = next(s for s in spans if s.kind == "agent" and s.name == "qc")
    (verdict,) = by_kind(spans, "evaluator")
    assert verdict.parent_id == qc_agent.span_id
    assert verdict.status == "error"
    assert verdict.start == qc_agent.start
    assert verdict.end == qc_agent.end == clock.now()
    assert (verdict.attributes["tests_passed"], verdict.attributes["tests_total"]) == (3, 4)
    assert verdict.attributes["verdict"] == "failed"
    scores = {s.name: s for s in builder.scores("run-1")}
    assert scores["quality"].value == 0.75
    assert scores["quality"].comment == "3/4 tests passed"
    assert scores["cost"].value == pytest.approx(0.035)
    assert scores["cost"].comment == "spent $0.04 of $5.00"


def test_cost_score_falls_back_to_the_sum_of_generation_costs(
    bus: EventBus, clock: FakeClock, builder: SpanBuilder
) -> None:
    with scope(run_id="run-2"):
        bus.emit(RunEvent(type="run.started", task="t"))
        llm_call(bus, clock, "a", "builder", "build", "0.125")
        llm_call(bus, clock, "b", "builder", "build", "0.250")
        bus.emit(RunEvent(type="run.failed", status="failed", detail={}))
    scores = {s.name: s for s in builder.scores("run-2")}
    assert scores["cost"].value == pytest.approx(0.375)
    assert "quality" not in scores  # no QC verdict, no quality judgement
    root = by_kind(builder.spans("run-2"), "trace")[0]
    assert (root.status, root.attributes["run_status"]) == ("error", "failed")
    # without an agent span, generations hang from the trace
    assert {g.parent_id for g in by_kind(builder.spans("run-2"), "generation")} == {root.span_id}


def test_run_end_closes_interrupted_spans_and_resume_reopens_the_trace(
    bus: EventBus, clock: FakeClock, builder: SpanBuilder
) -> None:
    with scope(run_id="run-3"):
        bus.emit(RunEvent(type="run.started", task="t"))
        bus.emit(RunEvent(type="phase.started", phase="build"))
        bus.emit(RunEvent(type="agent.started", agent="builder", phase="build"))
        bus.emit(LLMEvent(type="llm.requested", call_id="x", provider="p", model="m",
                          agent="builder"))
        clock.advance(1.0)
        bus.emit(RunEvent(type="run.paused", status="paused"))
        spans = builder.spans("run-3")
        assert all(s.end == 1.0 for s in spans)
        assert [s.status for s in spans] == ["ok", "error", "error", "error"]
        assert spans[3].attributes["interrupted"] == "run.paused"
        bus.emit(RunEvent(type="run.resumed"))
        assert builder.spans("run-3")[0].status == "open"
        bus.emit(RunEvent(type="run.completed", status="completed"))
    assert builder.spans("run-3")[0].status == "ok"


def test_events_without_a_run_go_to_the_adhoc_trace(
    bus: EventBus, clock: FakeClock, builder: SpanBuilder
) -> None:
    bus.emit(ToolEvent(type="tool.called", tool="search_api", call_id="c"))
    bus.emit(ToolEvent(type="tool.succeeded", tool="search_api", call_id="c", duration=0.0))
    spans = builder.spans(ADHOC_TRACE)
    assert [(s.kind, s.trace_id) for s in spans] == [("trace", "adhoc"), ("tool", "adhoc")]
    assert spans[1].parent_id == spans[0].span_id
    assert builder.spans("run-1") == []


def test_listeners_see_each_span_as_it_closes(
    bus: EventBus, clock: FakeClock, builder: SpanBuilder
) -> None:
    closed: list[str] = []
    remove = builder.add_listener(lambda span: closed.append(span.kind))
    self_healing_run(bus, clock)
    assert closed[-1] == "trace"
    assert closed.count("tool") == 4
    assert closed.count("generation") == 2
    remove()
    self_healing_run(bus, clock, "run-9")
    assert len(closed) == 12


def test_replay_of_stored_events_gives_the_same_spans(
    bus: EventBus, clock: FakeClock, builder: SpanBuilder
) -> None:
    events = []
    bus.subscribe(events.append)
    self_healing_run(bus, clock)
    spans, scores = build_spans(events)
    assert spans == builder.spans("run-1")
    assert scores == builder.scores("run-1")
    builder.forget("run-1")
    assert builder.spans("run-1") == []
