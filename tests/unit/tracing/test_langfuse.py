"""Langfuse export through the official SDK to a loopback server that decodes the wire."""

from __future__ import annotations

import itertools
import time
from collections import defaultdict
from decimal import Decimal

import pytest

from taskorch_nb.core.events import EventBus, Notice, RunEvent, ToolEvent, scope
from taskorch_nb.testing import FakeClock
from taskorch_nb.tracing.langfuse import LangfuseExporter
from tests.langfuse_server import FakeLangfuse, HangingServer, ReceivedSpan, closed_port
from tests.unit.tracing.test_spans import self_healing_run

pytest.importorskip("langfuse")

_keys = itertools.count()


def make_exporter(url: str, warnings: list[Notice], **kwargs: float) -> LangfuseExporter:
    # the SDK keeps one client per public key in a process: a fresh key per exporter
    n = next(_keys)
    return LangfuseExporter(public_key=f"pk-test-{n}-{time.monotonic_ns()}",
                            secret_key="sk-test", base_url=url, on_warning=warnings.append,
                            **kwargs)


def by_trace(spans: list[ReceivedSpan]) -> dict[str, list[ReceivedSpan]]:
    traces: dict[str, list[ReceivedSpan]] = defaultdict(list)
    for span in spans:
        traces[span.trace_id].append(span)
    return traces


def test_runs_arrive_as_traces_with_agents_generations_costs_and_scores() -> None:
    clock = FakeClock()
    bus = EventBus(clock)
    warnings: list[Notice] = []
    starts: list[float] = []
    bus.subscribe(lambda e: starts.append(e.wall) if e.type == "run.started" else None)
    with FakeLangfuse() as server:
        exporter = make_exporter(server.url, warnings)
        bus.subscribe(exporter)
        self_healing_run(bus, clock, "run-a")
        self_healing_run(bus, clock, "run-b")
        assert exporter.flush(15.0)
        assert exporter.close(5.0)
        received = server.received

    assert warnings == []
    traces = by_trace(received.spans)
    assert len(traces) == 2
    assert starts[0] == FakeClock.EPOCH
    sessions = {s.attributes.get("session.id") for s in received.spans}
    assert sessions == {"run-a", "run-b"}
    for spans in traces.values():
        assert len({s.attributes.get("session.id") for s in spans}) == 1  # one trace per run
        ids = {s.span_id: s for s in spans}
        roots = [s for s in spans if s.parent_span_id not in ids]
        assert [r.name for r in roots] == ["Add auth"]
        agents = {s.span_id: s for s in spans if s.type == "agent"}
        assert {a.name for a in agents.values()} == {"researcher", "qc"}
        generations = [s for s in spans if s.type == "generation"]
        assert len(generations) == 2
        assert all(g.parent_span_id in agents for g in generations)
        for g in generations:
            assert g.json_attr("langfuse.observation.usage_details") == {
                "input": 120, "output": 40, "input_cached_tokens": 20, "total": 160}
            assert g.attributes["langfuse.observation.model.name"] == "sim-small"
        cost = sum(Decimal(str(g.json_attr("langfuse.observation.cost_details")["total"]))
                   for g in generations)
        assert cost == Decimal("0.0350")  # the run's reported cost
        assert sorted(s.type for s in spans if s.type in ("tool", "evaluator")) == [
            "evaluator", "tool", "tool", "tool", "tool"]
        # real times from the events (FakeClock wall time), not the export time
        root = roots[0]
        assert root.start_ns in {round(wall * 1e9) for wall in starts}
        assert min(s.start_ns for s in spans) == root.start_ns

    scores = {(s["traceId"], s["name"]): s["value"] for s in received.scores}
    assert set(scores) == {(t, n) for t in traces for n in ("quality", "cost")}
    assert all(scores[t, "quality"] == 0.75 for t in traces)
    assert all(scores[t, "cost"] == pytest.approx(0.035) for t in traces)
    assert any(auth.startswith("Basic ") for auth in received.auth)


def test_a_burst_of_ten_thousand_events_loses_no_span() -> None:
    clock = FakeClock()
    bus = EventBus(clock)
    warnings: list[Notice] = []
    with FakeLangfuse() as server:
        exporter = make_exporter(server.url, warnings)
        bus.subscribe(exporter)
        with scope(run_id="burst"):
            bus.emit(RunEvent(type="run.started", task="burst"))
            for i in range(4_999):
                bus.emit(ToolEvent(type="tool.called", tool="t", call_id=f"c{i}"))
                bus.emit(ToolEvent(type="tool.succeeded", tool="t", call_id=f"c{i}"))
            bus.emit(RunEvent(type="run.completed", status="completed"))
        assert exporter.flush(60.0)
        exporter.close(5.0)
        received = len(server.received.spans)
    assert warnings == []
    assert exporter.exported_spans == 5_000
    assert received == 5_000


def test_adhoc_tool_calls_are_sent_on_flush() -> None:
    bus = EventBus(FakeClock())
    warnings: list[Notice] = []
    with FakeLangfuse() as server:
        exporter = make_exporter(server.url, warnings)
        bus.subscribe(exporter)
        bus.emit(ToolEvent(type="tool.called", tool="search_api", call_id="x"))
        bus.emit(ToolEvent(type="tool.succeeded", tool="search_api", call_id="x"))
        assert exporter.flush(15.0)
        exporter.close(5.0)
        spans = server.received.spans
    assert sorted(s.name for s in spans) == ["adhoc", "search_api"]
    assert len({s.trace_id for s in spans}) == 1


@pytest.mark.parametrize("outage", ["closed port", "hanging server"])
def test_an_unreachable_langfuse_gives_a_warning_within_the_timeout(outage: str) -> None:
    clock = FakeClock()
    bus = EventBus(clock)
    warnings: list[Notice] = []
    server = HangingServer() if outage == "hanging server" else None
    with server or closed_port() as target:
        url = target.url if isinstance(target, HangingServer) else target
        exporter = make_exporter(url, warnings, timeout=1.0)
        bus.subscribe(exporter)
        self_healing_run(bus, clock, "run-down")
        flushed = exporter.flush(3.0)  # a wait for the real network, bounded by its timeout
        exporter.close(1.0)
    assert not flushed
    assert warnings
    assert {w.type for w in warnings} == {"tracing.warning"}
    assert {w.level for w in warnings} == {"warning"}
    assert any(url in w.message for w in warnings)
    reasons = {w.detail["reason"] for w in warnings}
    assert reasons <= {"unreachable", "timeout", "sdk"}
    if outage == "hanging server":
        # the SDK would hang on for ~17 s: the flush gave up at its own bound instead
        assert "timeout" in reasons


def test_subscriber_call_only_queues() -> None:
    exporter = LangfuseExporter(public_key="pk-queue", secret_key="sk", base_url="http://x")
    exporter(RunEvent(type="agent.started", run_id="r", agent="a"))
    assert exporter.close(2.0)  # nothing finished: nothing to send, no client started
    assert exporter.exported_spans == 0


def test_from_env_needs_both_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LANGFUSE_PUBLIC_KEY", raising=False)
    monkeypatch.delenv("LANGFUSE_SECRET_KEY", raising=False)
    assert LangfuseExporter.from_env() is None
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", "pk-env")
    assert LangfuseExporter.from_env() is None
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", "sk-env")
    monkeypatch.setenv("LANGFUSE_BASE_URL", "http://127.0.0.1:9/")
    monkeypatch.setenv("LANGFUSE_TIMEOUT", "2")
    exporter = LangfuseExporter.from_env()
    assert exporter is not None
    assert (exporter.base_url, exporter.timeout) == ("http://127.0.0.1:9", 2.0)
    exporter.close(1.0)


def test_missing_keys_are_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LANGFUSE_PUBLIC_KEY", raising=False)
    monkeypatch.delenv("LANGFUSE_SECRET_KEY", raising=False)
    with pytest.raises(ValueError, match="public_key and secret_key"):
        LangfuseExporter()
