"""The dashboard as plain text: for terminals, the CLI, logs and `text/plain` outputs.

The widgets in `widgets.py` and this module show the same state; both read the
components' public attributes, so neither holds information the other lacks.
One log line per event (`describe_event`) lives here too: the run monitor's log
uses it in both views. Alerts come from `taskorch_nb.core.alerts`, money from
`taskorch_nb.core.money`: the CLI, MCP and the log sinks say the same.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Protocol

from taskorch_nb.core.alerts import one_line, qc_summary
from taskorch_nb.core.money import format_usd


class GaugeView(Protocol):
    """What the text needs of a budget gauge (the widget's `BudgetGauge` is one)."""

    limit: Decimal | None
    spent: Decimal
    reserved: Decimal
    remaining: Decimal
    colour: str
    value: float
    word: str


class PanelView(Protocol):
    """What the text needs of a circuit panel."""

    rows: Mapping[str, Mapping[str, Any]]

    def seconds_to_half_open(self, name: str) -> float | None: ...


class MonitorView(Protocol):
    """What the text needs of a run monitor."""

    phases: Sequence[str]
    done: Any
    phase: str | None
    rounds: Mapping[str, int]
    run_id: str | None
    status: str
    task: str | None
    alerts: Sequence[str]
    log: Sequence[str]

#: Plain-text names of the gauge colours.
GAUGE_WORDS = {"green": "ok", "yellow": "LOW", "red": "EXCEEDED"}


def countdown(seconds: float | None) -> str:
    """Whole seconds left, rounded up (a breaker 0.2 s from half-open shows `1 s`)."""
    if seconds is None:
        return ""
    return f"{math.ceil(seconds)} s" if seconds > 0 else "now"


def describe_event(event: Any) -> str:
    """One log line for an event (no timestamp); a person's action says who (`by ada`)."""
    line = _describe(event)
    actor = getattr(event, "actor", None)
    return f"{line} (by {actor})" if actor else line


def _describe(event: Any) -> str:
    kind = type(event).__name__
    etype = event.type
    if kind == "BudgetEvent":
        who = " ".join(x for x in (event.agent, event.model, event.tool) if x)
        return (
            f"{etype} {format_usd(event.amount)}{' ' + who if who else ''}: spent "
            f"{format_usd(event.spent)} of {format_usd(event.limit)}, "
            f"{format_usd(event.remaining)} left"
        )
    if kind == "CircuitEvent":
        prev = event.previous
        move = (
            f"{state_name(prev)} -> {state_name(event.state)}" if prev else state_name(event.state)
        )
        return f"{etype} {event.name}: {move}, failures {event.failures}"
    if kind == "ToolEvent":
        return _describe_tool(event)
    if kind == "PatternEvent":
        fallback = event.fallback
        return f"{etype} {event.name}" + (f" -> {fallback}" if fallback else "")
    if kind == "LLMEvent":
        line = f"{etype} {event.model}" + (f" ({event.agent})" if event.agent else "")
        if etype == "llm.completed":
            line += f" {event.input_tokens}+{event.output_tokens} tok {format_usd(event.cost)}"
            if event.latency is not None:
                line += f" {event.latency:.2f}s"
        elif etype == "llm.failed":
            line += f": {event.status or ''} {one_line(event.error or '', 50)}".rstrip()
        return line
    if kind == "RunEvent":
        return _describe_run(event)
    if kind == "Notice":
        return f"{etype} [{event.level}]: {one_line(event.message, 70)}"
    return etype


def _describe_tool(event: Any) -> str:
    etype, tool = event.type, event.tool
    if etype == "tool.failed":
        why = " ".join(str(x) for x in (event.category, event.status) if x is not None)
        return f"{etype} {tool} attempt {event.attempt}: {why or one_line(event.error or '', 40)}"
    if etype == "retry.scheduled":
        wait = f" in {event.wait:.1f}s" if event.wait is not None else ""
        return f"{etype} {tool}{wait} (attempt {event.attempt})"
    if etype == "tool.fallback":
        return f"{etype} {tool} for {event.fallback_of}"
    if etype == "tool.succeeded" and event.duration is not None:
        return f"{etype} {tool} in {event.duration:.2f}s"
    return f"{etype} {tool} (attempt {event.attempt})"


def _describe_run(event: Any) -> str:
    etype = event.type
    if etype.startswith("qc."):
        return f"{etype}: {qc_summary(event.detail)}"
    if etype == "run.started":
        return f"{etype}: {one_line(event.task or '', 50)}"
    if etype.startswith("phase."):
        return f"{etype} {event.phase}"
    if etype.startswith("agent."):
        return f"{etype} {event.agent}" + (f" ({event.phase})" if event.phase else "")
    if etype == "safety.checked":
        return f"{etype} {event.detail.get('check', '')}".rstrip()
    return etype + (f" ({event.status})" if event.status else "")


def state_name(state: Any) -> str:
    """`CircuitState.OPEN`, `"open"`, `"half-open"` -> `OPEN`, `OPEN`, `HALF_OPEN`."""
    name = getattr(state, "name", None) or str(state)
    return name.upper().replace("-", "_")


def gauge_text(gauge: GaugeView, width: int = 20) -> str:
    """`Budget [#####---------------]  $1.00 of $5.00 spent (20%) ...`."""
    if gauge.limit is None:
        return (
            f"Budget  {format_usd(gauge.spent)} spent, {format_usd(gauge.reserved)} reserved "
            f"(no limit){'  ' + gauge.word if gauge.colour == 'red' else ''}"
        )
    filled = round(gauge.value * width)
    bar = "#" * filled + "-" * (width - filled)
    return (
        f"Budget  [{bar}] {format_usd(gauge.spent)} of {format_usd(gauge.limit)} spent "
        f"({gauge.value:.0%}), {format_usd(gauge.reserved)} reserved, "
        f"{format_usd(gauge.remaining)} left"
        f"  {gauge.word}"
    )


def circuits_text(panel: PanelView) -> str:
    """A line per breaker: name, state, failures, time to half-open."""
    if not panel.rows:
        return "Circuits  (none yet)"
    lines = ["Circuits"]
    width = max(len(name) for name in panel.rows)
    for name, row in panel.rows.items():
        wait = countdown(panel.seconds_to_half_open(name))
        lines.append(
            f"  {name:<{width}}  {row['state']:<9}  failures {row['failures']}"
            + (f"  half-open in {wait}" if wait else "")
        )
    return "\n".join(lines)


def stepper_text(monitor: MonitorView) -> str:
    """`[x] research > [x] design > [>] build (round 2) > [ ] qc`."""
    steps = []
    for phase in monitor.phases:
        mark = "x" if phase in monitor.done else (">" if phase == monitor.phase else " ")
        rounds = monitor.rounds.get(phase, 0)
        steps.append(f"[{mark}] {phase}" + (f" (round {rounds})" if rounds > 1 else ""))
    return " > ".join(steps)


def monitor_text(monitor: MonitorView) -> str:
    """Status and stepper, then alerts and the recent event log."""
    task = f": {one_line(monitor.task)}" if monitor.task else ""
    head = f"Run {monitor.run_id + ' ' if monitor.run_id else ''}[{monitor.status}]{task}"
    lines = [head, "  " + stepper_text(monitor)]
    if monitor.alerts:
        lines.append("Alerts")
        lines.extend(f"  ! {alert}" for alert in monitor.alerts)
    if monitor.log:
        lines.append("Recent events")
        lines.extend(f"  {line}" for line in monitor.log)
    return "\n".join(lines)


def render_text(gauge: GaugeView, panel: PanelView, monitor: MonitorView) -> str:
    """The whole dashboard as plain text."""
    return "\n".join((monitor_text(monitor), gauge_text(gauge), circuits_text(panel)))
