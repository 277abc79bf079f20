"""Spans and scores derived from the event stream: the local trace of every run.

There is no second bookkeeping: a `SpanBuilder` subscribes to the bus and turns
events into spans as they arrive (`build_spans` replays stored events the same
way). One trace per run: a root span (`kind="trace"`) from `run.started` to the
terminal `run.*` event, phase spans under it, agent spans under their phase,
generation spans under their agent, one tool span per attempt, QC as an
evaluator span, and the scores `quality` and `cost` on the trace. Span ids are
`<trace_id>:<seq of the opening event>`, so a replay gives the same ids.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from taskorch_nb.core.events import Event
from taskorch_nb.core.money import format_usd

#: Trace id of events that belong to no run (e.g. `call_tool` outside a run).
ADHOC_TRACE = "adhoc"

#: Run events that end a run's trace (`run.resumed` reopens it).
TERMINAL_RUN_EVENTS = frozenset({"run.completed", "run.failed", "run.paused", "run.cancelled"})

_TERMINAL_STATUS = {
    "run.completed": "ok",
    "run.paused": "ok",
    "run.failed": "error",
    "run.cancelled": "error",
}

SpanListener = Callable[["Span"], Any]


@dataclass(slots=True)
class Span:
    """One timed step of a trace; times are the clock's monotonic and wall seconds."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    kind: str
    """`trace`, `phase`, `agent`, `generation`, `tool` or `evaluator`."""
    start: float
    end: float | None
    start_wall: float
    end_wall: float | None
    status: str
    """`ok`, `error` or `open` (not closed yet)."""
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def duration(self) -> float | None:
        """Seconds from start to end (None while open)."""
        return None if self.end is None else self.end - self.start


@dataclass(slots=True)
class Score:
    """A number attached to a trace: `quality` (tests passed share) or `cost` (USD)."""

    trace_id: str
    name: str
    value: float
    comment: str | None = None


class _Trace:
    """What the builder knows about one run while its events arrive."""

    __slots__ = ("agents", "fallbacks", "gen_cost", "gens", "phases", "root", "scores", "spans",
                 "tools", "waits")

    def __init__(self, root: Span) -> None:
        self.root = root
        self.spans: list[Span] = [root]
        self.phases: dict[str, Span] = {}
        self.agents: dict[str, Span] = {}
        self.gens: dict[str, Span] = {}
        self.tools: dict[tuple[Any, str, int], Span] = {}
        self.waits: dict[tuple[Any, str, int], float] = {}
        self.fallbacks: dict[tuple[Any, str], str] = {}
        self.scores: dict[str, Score] = {}
        self.gen_cost = Decimal(0)

    def current_phase(self) -> Span | None:
        # the most recently opened phase still open (dicts keep insertion order)
        return next(reversed(self.phases.values()), None) if self.phases else None

    def current_agent(self, name: str | None) -> Span | None:
        agents = self.agents
        if name is not None:
            return agents.get(name)
        return next(reversed(agents.values()), None) if agents else None


class SpanBuilder:
    """Event-bus subscriber that keeps the spans and scores of every run.

    Cheap on the calling thread (a dict lookup for events it ignores, one small
    object per opened span). `add_listener(fn)` calls `fn(span)` when a span closes.
    """

    def __init__(self) -> None:
        self._traces: dict[str, _Trace] = {}
        self._breakers: dict[str, str] = {}
        self._listeners: tuple[SpanListener, ...] = ()
        self._lock = threading.Lock()
        self._handlers: dict[str, Callable[[Event], None]] = {
            "run.started": self._run_started,
            "run.resumed": self._run_resumed,
            "phase.started": self._phase_started,
            "phase.completed": self._phase_completed,
            "agent.started": self._agent_started,
            "agent.completed": self._agent_completed,
            "llm.requested": self._llm_requested,
            "llm.completed": self._llm_ended,
            "llm.failed": self._llm_ended,
            "tool.called": self._tool_called,
            "tool.succeeded": self._tool_ended,
            "tool.failed": self._tool_ended,
            "retry.scheduled": self._retry_scheduled,
            "tool.fallback": self._tool_fallback,
            "qc.passed": self._qc,
            "qc.failed": self._qc,
            **{t: self._run_ended for t in TERMINAL_RUN_EVENTS},
            **{
                t: self._circuit
                for t in ("circuit.opened", "circuit.half_opened", "circuit.closed",
                          "circuit.rejected")
            },
        }

    # -- public API -------------------------------------------------------------------

    def __call__(self, event: Event) -> None:
        handler = self._handlers.get(event.type)
        if handler is not None:
            with self._lock:
                handler(event)

    def add_listener(self, fn: SpanListener) -> Callable[[], None]:
        """Call `fn(span)` each time a span closes; returns the remover."""
        self._listeners = (*self._listeners, fn)

        def remove() -> None:
            self._listeners = tuple(f for f in self._listeners if f is not fn)

        return remove

    def spans(self, run_id: str) -> list[Span]:
        """The spans of one run (or `"adhoc"`), in the order they opened."""
        with self._lock:
            trace = self._traces.get(run_id)
            return list(trace.spans) if trace else []

    def scores(self, run_id: str) -> list[Score]:
        """The scores of one run (`quality` once QC has judged, `cost` once it ended)."""
        with self._lock:
            trace = self._traces.get(run_id)
            return list(trace.scores.values()) if trace else []

    def run_ids(self) -> list[str]:
        """Every trace id seen so far, in order of first appearance."""
        with self._lock:
            return list(self._traces)

    def forget(self, run_id: str) -> None:
        """Drop what is kept about a run (an exporter does this after sending it)."""
        with self._lock:
            self._traces.pop(run_id, None)

    def prune(self, run_id: str) -> None:
        """Drop the closed spans of a trace that never ends (the adhoc one), keeping its root."""
        with self._lock:
            trace = self._traces.get(run_id)
            if trace is not None:
                trace.spans = [s for s in trace.spans if s.end is None or s is trace.root]

    # -- helpers ------------------------------------------------------------------------

    def _trace(self, event: Event) -> _Trace:
        run_id = event.run_id or ADHOC_TRACE
        trace = self._traces.get(run_id)
        if trace is None:
            # first event of a run whose run.started we did not see (or adhoc work)
            root = Span(run_id, f"{run_id}:root", None, run_id, "trace", event.ts, None,
                        event.wall, None, "open", {"run_id": event.run_id})
            trace = self._traces[run_id] = _Trace(root)
        return trace

    def _open(self, trace: _Trace, event: Event, parent: Span, name: str, kind: str,
              attributes: dict[str, Any]) -> Span:
        root = trace.root
        span = Span(root.trace_id, f"{root.trace_id}:{event.seq}", parent.span_id, name, kind,
                    event.ts, None, event.wall, None, "open", attributes)
        trace.spans.append(span)
        return span

    def _close(self, span: Span, event: Event, status: str) -> None:
        span.end = event.ts
        span.end_wall = event.wall
        span.status = status
        if self._listeners:
            for fn in self._listeners:
                fn(span)

    # -- handlers (called under the lock) -------------------------------------------------

    def _run_started(self, event: Event) -> None:
        run_id = event.run_id or ADHOC_TRACE
        trace = self._traces.get(run_id)
        if trace is None:
            trace = self._trace(event)
        trace.root.name = getattr(event, "task", None) or run_id
        trace.root.start, trace.root.start_wall = event.ts, event.wall
        trace.root.attributes.update(task=getattr(event, "task", None),
                                     workflow=getattr(event, "workflow", None))

    def _run_resumed(self, event: Event) -> None:
        root = self._trace(event).root
        root.end = root.end_wall = None
        root.status = "open"
        root.attributes["resumed"] = root.attributes.get("resumed", 0) + 1

    def _run_ended(self, event: Event) -> None:
        trace = self._trace(event)
        status = _TERMINAL_STATUS[event.type]
        for group in (trace.tools, trace.gens, trace.agents, trace.phases):
            for span in group.values():  # still open: the run ended under them
                span.attributes["interrupted"] = event.type
                self._close(span, event, "error")
            group.clear()
        root = trace.root
        root.attributes["run_status"] = getattr(event, "status", None) or event.type[4:]
        detail = getattr(event, "detail", None) or {}
        spent = _spent(detail)
        if spent is None:
            spent = trace.gen_cost
        report = detail.get("cost") if isinstance(detail.get("cost"), dict) else {}
        limit = report.get("limit") if report else None
        comment = f"spent {format_usd(spent)}" + (f" of {format_usd(limit)}" if limit else "")
        trace.scores["cost"] = Score(root.trace_id, "cost", float(spent), comment)
        root.attributes["cost"] = spent
        self._close(root, event, status)

    def _phase_started(self, event: Event) -> None:
        trace = self._trace(event)
        phase = getattr(event, "phase", None) or "phase"
        span = self._open(trace, event, trace.root, phase, "phase", {"phase": phase})
        old = trace.phases.pop(phase, None)
        if old is not None:  # a phase restarted without completing
            self._close(old, event, "error")
        trace.phases[phase] = span

    def _phase_completed(self, event: Event) -> None:
        trace = self._trace(event)
        span = trace.phases.pop(getattr(event, "phase", None) or "phase", None)
        if span is not None:
            self._close(span, event, "error" if getattr(event, "status", None) == "failed"
                        else "ok")

    def _agent_started(self, event: Event) -> None:
        trace = self._trace(event)
        agent = getattr(event, "agent", None) or "agent"
        phase = getattr(event, "phase", None)
        parent = (trace.phases.get(phase) if phase else None) or trace.current_phase() \
            or trace.root
        span = self._open(trace, event, parent, agent, "agent", {"agent": agent, "phase": phase})
        old = trace.agents.pop(agent, None)
        if old is not None:
            self._close(old, event, "error")
        trace.agents[agent] = span

    def _agent_completed(self, event: Event) -> None:
        trace = self._trace(event)
        span = trace.agents.pop(getattr(event, "agent", None) or "agent", None)
        if span is not None:
            self._close(span, event, "error" if getattr(event, "status", None) == "failed"
                        else "ok")

    def _llm_requested(self, event: Any) -> None:
        trace = self._traces.get(event.run_id or ADHOC_TRACE) or self._trace(event)
        agents = trace.agents
        parent = (agents.get(event.agent) if event.agent else None) \
            or trace.current_agent(None) or trace.current_phase() or trace.root
        trace_id = trace.root.trace_id
        span = Span(trace_id, f"{trace_id}:{event.seq}", parent.span_id,
                    f"{event.provider}:{event.model}", "generation", event.ts, None, event.wall,
                    None, "open",
                    {"model": event.model, "provider": event.provider, "agent": event.agent,
                     "phase": event.phase, "call_id": event.call_id})
        trace.spans.append(span)
        trace.gens[event.call_id] = span

    def _llm_ended(self, event: Any) -> None:
        trace = self._traces.get(event.run_id or ADHOC_TRACE) or self._trace(event)
        span = trace.gens.pop(event.call_id, None)
        if span is None:  # requested before we subscribed: a zero-length span
            self._llm_requested(event)
            span = trace.gens.pop(event.call_id)
        attrs = span.attributes
        attrs["input_tokens"] = event.input_tokens
        attrs["output_tokens"] = event.output_tokens
        attrs["cached_tokens"] = event.cached_tokens
        attrs["latency"] = event.latency
        if event.cost is not None:
            attrs["cost"] = event.cost
            trace.gen_cost += event.cost
        if event.type == "llm.failed":
            attrs["status_code"] = event.status
            attrs["error"] = event.error
            self._close(span, event, "error")
        else:
            self._close(span, event, "ok")

    def _tool_called(self, event: Any) -> None:
        trace = self._traces.get(event.run_id or ADHOC_TRACE) or self._trace(event)
        agent = event.agent
        parent = (trace.agents.get(agent) if agent else trace.current_agent(None)) or trace.root
        key = (event.call_id, event.tool, event.attempt)
        pattrs = parent.attributes
        trace_id = trace.root.trace_id
        span = Span(trace_id, f"{trace_id}:{event.seq}", parent.span_id, event.tool, "tool",
                    event.ts, None, event.wall, None, "open",
                    {"tool": event.tool, "call_id": event.call_id, "attempt": event.attempt,
                     "wait": trace.waits.pop(key, None) if trace.waits else None,
                     "breaker_state": self._breakers.get(event.tool, "closed"),
                     "agent": agent or pattrs.get("agent"), "phase": pattrs.get("phase"),
                     "fallback_of": trace.fallbacks.pop(key[:2], None) if trace.fallbacks
                     else None})
        trace.spans.append(span)
        trace.tools[key] = span

    def _tool_ended(self, event: Any) -> None:
        trace = self._traces.get(event.run_id or ADHOC_TRACE) or self._trace(event)
        span = trace.tools.pop((event.call_id, event.tool, event.attempt), None)
        if span is None:
            self._tool_called(event)
            span = trace.tools.pop((event.call_id, event.tool, event.attempt))
        attrs = span.attributes
        attrs["duration"] = event.duration
        if event.type == "tool.failed":
            attrs["category"] = event.category
            attrs["status_code"] = event.status
            attrs["error"] = event.error
            self._close(span, event, "error")
        else:
            self._close(span, event, "ok")

    def _retry_scheduled(self, event: Any) -> None:
        self._trace(event).waits[(event.call_id, event.tool, event.attempt)] = event.wait

    def _tool_fallback(self, event: Any) -> None:
        self._trace(event).fallbacks[(event.call_id, event.tool)] = event.fallback_of

    def _circuit(self, event: Any) -> None:
        self._breakers[event.name] = event.state

    def _qc(self, event: Any) -> None:
        trace = self._trace(event)
        parent = trace.current_agent(getattr(event, "agent", None) or "qc") \
            or trace.phases.get("qc") or trace.current_phase() or trace.root
        detail = dict(getattr(event, "detail", None) or {})
        passed = int(detail.get("tests_passed") or 0)
        total = int(detail.get("tests_total") or 0)
        attrs = {**detail, "verdict": event.type[3:], "agent": getattr(event, "agent", None),
                 "phase": "qc"}
        span = self._open(trace, event, parent, "qc_verdict", "evaluator", attrs)
        # the verdict is the end of QC's work: the span covers it from its parent's start
        if parent is not trace.root:
            span.start, span.start_wall = parent.start, parent.start_wall
        self._close(span, event, "ok" if event.type == "qc.passed" else "error")
        quality = passed / total if total else 0.0
        trace.scores["quality"] = Score(trace.root.trace_id, "quality", quality,
                                        f"{passed}/{total} tests passed")


def _decimal(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise ValueError(f"not an amount of money: {value!r}") from exc


def _spent(detail: dict[str, Any]) -> Decimal | None:
    """The run's spent USD from `detail["cost"]["spent"]` (a CostReport dict), if present."""
    report = detail.get("cost")
    if isinstance(report, dict) and report.get("spent") is not None:
        return _decimal(report["spent"])
    return None


def build_spans(events: Iterable[Event]) -> tuple[list[Span], list[Score]]:
    """Replay stored events into spans and scores (every run, in order of appearance)."""
    builder = SpanBuilder()
    for event in events:
        builder(event)
    spans: list[Span] = []
    scores: list[Score] = []
    for run_id in builder.run_ids():
        spans.extend(builder.spans(run_id))
        scores.extend(builder.scores(run_id))
    return spans, scores
