"""The dashboard as plain text: one log line per event, the gauge, breakers, the stepper."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest

from taskorch_nb.core.circuit import CircuitState
from taskorch_nb.core.events import (
    BudgetEvent,
    CircuitEvent,
    Event,
    LLMEvent,
    Notice,
    PatternEvent,
    RunEvent,
    ToolEvent,
)
from taskorch_nb.notebook.text import (
    circuits_text,
    countdown,
    describe_event,
    gauge_text,
    monitor_text,
    render_text,
    state_name,
    stepper_text,
)

D = Decimal


@pytest.mark.parametrize(("event", "line"), [
    (BudgetEvent(type="budget.approved", amount=D("0.004"), spent=D("1"), reserved=D("0.004"),
                 limit=D("5"), remaining=D("3.996"), agent="builder", model="gpt-4o"),
     "budget.approved $0.004 builder gpt-4o: spent $1.00 of $5.00, $4.00 left"),
    (BudgetEvent(type="budget.rejected", amount=D("2"), spent=D("4"), reserved=D(0),
                 limit=D("5"), remaining=D("1")),
     "budget.rejected $2.00: spent $4.00 of $5.00, $1.00 left"),
    (CircuitEvent(type="circuit.opened", name="search", state="open", previous="closed",
                  failures=3),
     "circuit.opened search: CLOSED -> OPEN, failures 3"),
    (CircuitEvent(type="circuit.rejected", name="search", state=CircuitState.OPEN, failures=3),
     "circuit.rejected search: OPEN, failures 3"),
    (ToolEvent(type="tool.failed", tool="search", attempt=2, category="timeout", status=504),
     "tool.failed search attempt 2: timeout 504"),
    (ToolEvent(type="tool.failed", tool="search", error="boom\n  went   the tool"),
     "tool.failed search attempt 1: boom went the tool"),
    (ToolEvent(type="retry.scheduled", tool="search", attempt=3, wait=1.25),
     "retry.scheduled search in 1.2s (attempt 3)"),
    (ToolEvent(type="tool.fallback", tool="cached_search", fallback_of="search"),
     "tool.fallback cached_search for search"),
    (ToolEvent(type="tool.succeeded", tool="search", duration=0.5),
     "tool.succeeded search in 0.50s"),
    (ToolEvent(type="tool.called", tool="search"), "tool.called search (attempt 1)"),
    (PatternEvent(type="pattern.applied", name="search_timeout", signature="s", tool="search",
                  category="timeout", fallback="cached_search"),
     "pattern.applied search_timeout -> cached_search"),
    (LLMEvent(type="llm.completed", call_id="c", provider="p", model="m", agent="qc",
              input_tokens=120, output_tokens=30, cost=D("0.0012"), latency=0.4),
     "llm.completed m (qc) 120+30 tok $0.0012 0.40s"),
    (LLMEvent(type="llm.failed", call_id="c", provider="p", model="m", status=429,
              error="rate limited"),
     "llm.failed m: 429 rate limited"),
    (LLMEvent(type="llm.requested", call_id="c", provider="p", model="m"), "llm.requested m"),
    (RunEvent(type="run.started", task="Write a\ncalculator"), "run.started: Write a calculator"),
    (RunEvent(type="phase.started", phase="build"), "phase.started build"),
    (RunEvent(type="agent.started", agent="builder", phase="build"),
     "agent.started builder (build)"),
    (RunEvent(type="safety.checked", detail={"check": "qc_runner"}), "safety.checked qc_runner"),
    (RunEvent(type="qc.failed", detail={"outcome": "no_tests_collected"}),
     "qc.failed: no tests collected (pytest exit 5)"),
    (RunEvent(type="run.completed", status="completed"), "run.completed (completed)"),
    (Notice(type="tracing.warning", message="langfuse unreachable", level="warning"),
     "tracing.warning [warning]: langfuse unreachable"),
    (Event(type="custom.thing"), "custom.thing"),
])
def test_describe_event(event: Event, line: str) -> None:
    assert describe_event(event) == line


def test_a_long_task_is_cut_to_one_short_line() -> None:
    line = describe_event(RunEvent(type="run.started", task="x" * 80))
    assert line == "run.started: " + "x" * 49 + "…"


@pytest.mark.parametrize(("seconds", "text"), [(None, ""), (0.2, "1 s"), (3.0, "3 s"),
                                               (0, "now"), (-1, "now")])
def test_countdown_rounds_up(seconds: float | None, text: str) -> None:
    assert countdown(seconds) == text


@pytest.mark.parametrize(("state", "name"), [(CircuitState.HALF_OPEN, "HALF_OPEN"),
                                             ("half-open", "HALF_OPEN"), ("open", "OPEN")])
def test_state_name(state: Any, name: str) -> None:
    assert state_name(state) == name


FIVE, ONE, HALF, REST = D("5"), D("1"), D("0.5"), D("3.5")


@dataclass
class Gauge:
    limit: Decimal | None = FIVE
    spent: Decimal = ONE
    reserved: Decimal = HALF
    remaining: Decimal = REST
    colour: str = "green"
    value: float = 0.2
    word: str = "ok"


def test_gauge_with_a_limit_draws_a_bar() -> None:
    assert gauge_text(Gauge(), width=10) == (
        "Budget  [##--------] $1.00 of $5.00 spent (20%), $0.50 reserved, $3.50 left  ok")
    assert gauge_text(Gauge(colour="yellow", value=0.9, word="LOW"), width=10).endswith("  LOW")
    refused = Gauge(colour="red", value=0.9, word="refused $0.60 (near limit)")
    assert gauge_text(refused, width=10).endswith("left  refused $0.60 (near limit)")


def test_gauge_without_a_limit_says_so() -> None:
    assert gauge_text(Gauge(limit=None)) == "Budget  $1.00 spent, $0.50 reserved (no limit)"
    red = Gauge(limit=None, colour="red", word="EXCEEDED")
    assert gauge_text(red).endswith("(no limit)  EXCEEDED")


@dataclass
class Panel:
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    waits: dict[str, float] = field(default_factory=dict)

    def seconds_to_half_open(self, name: str) -> float | None:
        return self.waits.get(name)


def test_circuits_align_names_and_count_down() -> None:
    assert circuits_text(Panel()) == "Circuits  (none yet)"
    panel = Panel(rows={"search": {"state": "OPEN", "failures": 3},
                        "llm": {"state": "CLOSED", "failures": 0}},
                  waits={"search": 4.1})
    assert circuits_text(panel).splitlines() == [
        "Circuits",
        "  search  OPEN       failures 3  half-open in 5 s",
        "  llm     CLOSED     failures 0",
    ]


@dataclass
class Monitor:
    phases: tuple[str, ...] = ("research", "design", "build", "qc")
    done: set[str] = field(default_factory=lambda: {"research", "design"})
    phase: str | None = "build"
    rounds: dict[str, int] = field(default_factory=lambda: {"build": 2, "research": 1})
    run_id: str | None = "run-1"
    status: str = "running"
    task: str | None = "Write\na calculator"
    alerts: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)


def test_stepper_marks_done_current_and_rounds() -> None:
    assert stepper_text(Monitor()) == (
        "[x] research > [x] design > [>] build (round 2) > [ ] qc")


def test_monitor_shows_alerts_and_log_only_when_there_are_some() -> None:
    quiet = monitor_text(Monitor())
    assert quiet.splitlines()[0] == "Run run-1 [running]: Write a calculator"
    assert "Alerts" not in quiet
    assert "Recent events" not in quiet
    busy = Monitor(run_id=None, task=None, alerts=["budget low"], log=["phase.started build"])
    assert monitor_text(busy).splitlines() == [
        "Run [running]",
        "  [x] research > [x] design > [>] build (round 2) > [ ] qc",
        "Alerts", "  ! budget low",
        "Recent events", "  phase.started build",
    ]


def test_render_text_is_monitor_then_gauge_then_circuits() -> None:
    text = render_text(Gauge(), Panel(), Monitor())
    assert text == "\n".join([monitor_text(Monitor()), gauge_text(Gauge()),
                              "Circuits  (none yet)"])
