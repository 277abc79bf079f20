"""Live widgets for a run: budget gauge, circuit panel, run monitor, and the dashboard.

Each component is an event subscriber split in two steps: `update(event)`
changes its plain state (cheap, no widgets involved) and `refresh()` pushes that
state to its ipywidget, writing each trait at most once and only when it
changed; `apply(event)` does both. The `Dashboard` buffers events on the
emitting thread and applies them in batches, at most `max_rate` refreshes a
second (see `throttle.py`), so a burst of thousands of events costs the browser
a handful of updates.

Only built-in ipywidgets are used (no anywidget, no CDN), so the dashboard
renders in JupyterLab, Notebook 7, VS Code and Colab. ipywidgets is imported
when a widget is first needed: outside a notebook everything works as text.
"""

from __future__ import annotations

import html
import math
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from taskorch_nb.agents.workflow import PHASE_OF, PHASES
from taskorch_nb.core.alerts import ALERT_LEVELS, alert_for
from taskorch_nb.core.display import wanted
from taskorch_nb.core.events import Notice
from taskorch_nb.core.money import format_usd
from taskorch_nb.notebook import text as _text
from taskorch_nb.notebook.buttons import (
    BreakerButtons,
    PatternReview,
    ResumeView,
    StopView,
    static_html,
)
from taskorch_nb.notebook.controls import RESUMABLE, Controls
from taskorch_nb.notebook.display import NO_MATH
from taskorch_nb.notebook.throttle import Scheduler, Throttle

#: The lifecycle events the stepper follows.
_RUN_TYPES = frozenset(
    {
        "phase.started",
        "phase.completed",
        "run.started",
        "run.resumed",
        "run.completed",
        "run.failed",
        "run.paused",
        "run.cancelled",
    }
)
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
_BAR_STYLES = {"green": "success", "yellow": "warning", "red": "danger"}
_STATE_COLOURS = {"CLOSED": "#2e7d32", "OPEN": "#c62828", "HALF_OPEN": "#ef6c00"}
_LEVEL_COLOURS = {
    "danger": "#c62828",
    "warning": "#b26a00",
    "success": "#2e7d32",
    "info": "#1565c0",
}


def _dec(value: Any) -> Decimal | None:
    if value is None or isinstance(value, Decimal):
        return value
    return Decimal(str(value))


def _set(widget: Any, trait: str, value: Any) -> None:
    """Write a trait only when it changes: each write is a message to the browser."""
    if getattr(widget, trait) != value:
        setattr(widget, trait, value)


class _Part:
    """A dashboard part: `update(event)` changes its plain state, `refresh()` pushes that
    state to the widget `_build` makes when `widget` is first asked for."""

    _widget: Any

    def update(self, event: Any) -> None:
        raise NotImplementedError

    def refresh(self) -> None:
        raise NotImplementedError

    def _build(self, w: Any) -> Any:
        """The part's widget, made from the `ipywidgets` module `w`."""
        raise NotImplementedError

    def apply(self, event: Any) -> None:
        self.update(event)
        self.refresh()

    @property
    def widget(self) -> Any:
        """The part's ipywidget, built on first use."""
        if self._widget is None:
            import ipywidgets as w

            self._widget = self._build(w)
            self.refresh()
        return self._widget


class BudgetGauge(_Part):
    """Spent against the limit: green, yellow when under `warn_below` of it remains, red when
    a call was refused or the limit is passed.

    `value` is the fraction spent (0..1); `colour` is "green", "yellow" or "red".
    """

    def __init__(
        self,
        limit: Decimal | float | str | None = None,
        spent: Decimal | float | str = 0,
        reserved: Decimal | float | str = 0,
        warn_below: float = 0.20,
    ) -> None:
        self.limit: Decimal | None = _dec(limit)
        self.spent: Decimal = _dec(spent) or Decimal(0)
        self.reserved: Decimal = _dec(reserved) or Decimal(0)
        self.warn_below = Decimal(str(warn_below))
        self.rejected = False
        """A call was refused (or the budget overspent) since the last extension."""
        self.refused: Decimal | None = None
        """What the last refused call needed (None: none refused since the last extension)."""
        self.controls: Controls | None = None
        self._widget: Any = None

    @property
    def remaining(self) -> Decimal | None:
        if self.limit is None:
            return None
        return self.limit - self.spent - self.reserved

    @property
    def value(self) -> float:
        if not self.limit:
            return 0.0
        return float(min(max(self.spent / self.limit, Decimal(0)), Decimal(1)))

    @property
    def colour(self) -> str:
        if self.rejected or (self.limit is not None and self.spent >= self.limit):
            return "red"
        remaining = self.remaining
        if remaining is not None and remaining < self.warn_below * self.limit:  # type: ignore[operator]
            return "yellow"
        return "green"

    def update(self, event: Any) -> None:
        """Take the guard's numbers from a `budget.*` event; ignore anything else."""
        etype = event.type
        if not etype.startswith("budget.") or not hasattr(event, "spent"):
            return
        self.spent = _dec(event.spent) or Decimal(0)
        self.reserved = _dec(event.reserved) or Decimal(0)
        if event.limit is not None:
            self.limit = _dec(event.limit)
        if etype in ("budget.rejected", "budget.overspent"):
            self.rejected = True
            if etype == "budget.rejected":
                self.refused = _dec(event.amount)
        elif etype == "budget.extended":
            self.rejected, self.refused = False, None

    @property
    def word(self) -> str:
        """`ok`, `LOW`, `EXCEEDED` (spent reached the limit) or `refused $X (near limit)`:
        a refused call is not an exceeded budget."""
        if self.limit is not None and self.spent >= self.limit:
            return "EXCEEDED"
        if self.rejected and self.refused is not None:
            return f"refused {format_usd(self.refused)} (near limit)"
        return _text.GAUGE_WORDS[self.colour]

    def text(self) -> str:
        return _text.gauge_text(self)

    def bind(self, controls: Controls) -> None:
        """Offer "add $X and resume" while `controls`' run is paused."""
        self.controls = controls
        if self._widget is not None:
            self._resume.bind(controls)

    def _build(self, w: Any) -> Any:
        """An `HBox(FloatProgress, Label, resume box, note)`."""
        self._bar = w.FloatProgress(value=0.0, min=0.0, max=1.0, description="Budget")
        # HTML, not Label: ipywidgets typesets a Label's text with MathJax ("$0.12 / $1.00"
        # would become math); the span's classes keep MathJax out of the amounts.
        self._label = w.HTML(value="")
        self._label.add_class("taskorch-gauge-label")
        self._resume = ResumeView(w)
        if self.controls is not None:
            self._resume.bind(self.controls)
        box = w.HBox([self._bar, self._label, self._resume.box, self._resume.note],
                     layout=w.Layout(flex_flow="row wrap", align_items="center"))
        box.add_class("taskorch-gauge")
        return box

    def refresh(self) -> None:
        if self._widget is None:
            return
        _set(self._bar, "value", self.value)
        _set(self._bar, "bar_style", _BAR_STYLES[self.colour])
        label = html.escape(self._label_text())
        _set(self._label, "value", f'<span class="{NO_MATH}">{label}</span>')
        self._resume.refresh()

    def _label_text(self) -> str:
        word = self.word
        if self.limit is None:
            return f"{format_usd(self.spent)} spent (no limit)"
        return (
            f"{format_usd(self.spent)} / {format_usd(self.limit)} "
            f"({format_usd(self.remaining)} left) {word}"
        )


class CircuitPanel(_Part):
    """A row per breaker (name, state, failures, seconds to half-open); rows appear as new
    breaker names arrive in `circuit.*` events or in the starting `snapshot`.

    "Now" for the countdown is `clock.now()` when a clock is given (the orchestrator's,
    same time base as the events' `ts` and `reset_at`), else the latest event's `ts`.
    """

    def __init__(
        self, clock: Any = None, snapshot: Mapping[str, Mapping[str, Any] | Any] | None = None
    ) -> None:
        self.clock = clock
        self.rows: dict[str, dict[str, Any]] = {}
        self._last_ts = 0.0
        self._widget: Any = None
        self._row_widgets: dict[str, Any] = {}
        self._buttons: dict[str, BreakerButtons] = {}
        self.controls: Controls | None = None
        for name, info in (snapshot or {}).items():
            self.rows[name] = _snapshot_row(name, info)

    def now(self) -> float:
        return self.clock.now() if self.clock is not None else self._last_ts

    def seconds_to_half_open(self, name: str) -> float | None:
        """Seconds until the open breaker `name` may probe (0 when due); None unless OPEN."""
        row = self.rows[name]
        if row["state"] != "OPEN" or row["reset_at"] is None:
            return None
        return max(0.0, row["reset_at"] - self.now())

    def countdowns(self) -> tuple[int, ...]:
        """Whole seconds left on each open breaker (what the view shows; it changes each second)."""
        waits = (self.seconds_to_half_open(name) for name in self.rows)
        return tuple(math.ceil(s) for s in waits if s is not None)

    def seen(self, ts: float) -> None:
        """Events happened up to `ts`: the clock-less "now" moves there."""
        if ts > self._last_ts:
            self._last_ts = ts

    def update(self, event: Any) -> None:
        """Follow `circuit.*` events; any event's `ts` moves the clock-less "now"."""
        ts = event.ts
        if ts > self._last_ts:
            self._last_ts = ts
        if not event.type.startswith("circuit.") or not hasattr(event, "name"):
            return
        row = self.rows.get(event.name)
        if row is None:
            row = self.rows[event.name] = _snapshot_row(event.name, {})
        row["state"] = _text.state_name(event.state)
        row["previous"] = _text.state_name(event.previous) if event.previous else row["state"]
        row["failures"] = event.failures
        row["reset_at"] = event.reset_at
        row["since"] = ts
        if event.type == "circuit.rejected":
            row["rejected"] += 1
        row["held"] = row["state"] == "OPEN" and event.reset_at is None
        if event.actor:
            row["by"] = event.actor

    def text(self) -> str:
        return _text.circuits_text(self)

    def _build(self, w: Any) -> Any:
        """A `VBox` with a heading and one `HTML` row per breaker."""
        self._heading = w.HTML(value="<b>Circuits</b>")
        box = w.VBox([self._heading])
        box.add_class("taskorch-circuits")
        return box

    def refresh(self) -> None:
        if self._widget is None:
            return
        import ipywidgets as w

        added = False
        for name in self.rows:
            row_widget = self._row_widgets.get(name)
            if row_widget is None:
                html_row = w.HTML()
                html_row.add_class("taskorch-circuit-row")
                buttons = self._buttons[name] = BreakerButtons(w, name, lambda: self.controls)
                row_widget = self._row_widgets[name] = w.HBox([html_row, buttons.box])
                row_widget.add_class("taskorch-circuit-line")
                added = True
            _set(row_widget.children[0], "value", self._row_html(name))
            self._buttons[name].refresh(bool(self.rows[name].get("held")))
        if added:  # children is one trait: write it once for all the new rows
            self._widget.children = (self._heading, *self._row_widgets.values())
        heading = "<b>Circuits</b>" + ("" if self.rows else " <i>(none yet)</i>")
        _set(self._heading, "value", heading)

    def _row_html(self, name: str) -> str:
        row = self.rows[name]
        state = row["state"]
        colour = _STATE_COLOURS.get(state, "#555")
        wait = _text.countdown(self.seconds_to_half_open(name))
        if row.get("held"):
            wait = ""
            by = f" by {html.escape(row['by'])}" if row.get("by") else ""
            note = f"<span>held open{by} until reset</span>"
        else:
            note = f"<span>half-open in {wait}</span>" if wait else ""
        return (
            f'<div class="taskorch-circuit" data-state="{state}" style="font-family:monospace">'
            f'<span style="display:inline-block;min-width:14em">{html.escape(name)}</span>'
            f'<span style="display:inline-block;min-width:7em;color:{colour};font-weight:bold">'
            f"&#9679; {state}</span>"
            f'<span style="display:inline-block;min-width:7em">failures {row["failures"]}</span>'
            + note
            + "</div>"
        )


def _snapshot_row(name: str, info: Mapping[str, Any] | Any) -> dict[str, Any]:
    """A row from a snapshot entry: a mapping or an object with `state`/`failures`/`reset_at`."""
    get: Callable[[str, Any], Any]
    get = info.get if isinstance(info, Mapping) else (lambda key, d: getattr(info, key, d))
    state = _text.state_name(get("state", "CLOSED"))
    return {
        "name": name,
        "state": state,
        "previous": state,
        "failures": int(get("failures", 0) or 0),
        "reset_at": get("reset_at", None),
        "since": None,
        "rejected": 0,
        "held": bool(get("held", False)),
    }


class RunMonitor(_Part):
    """Where the run is: a phase stepper (done ticked, current highlighted, round count on
    re-entry), alerts worth a look, and the last `log_size` events.
    """

    def __init__(
        self, phases: Sequence[str] = PHASES, *, log_size: int = 12, alert_size: int = 20
    ) -> None:
        self.phases: list[str] = list(phases)
        self.phase: str | None = None
        self.done: set[str] = set()
        self.rounds: dict[str, int] = {}
        self.status = "waiting"
        self.run_id: str | None = None
        self.task: str | None = None
        self.events = 0
        """Events seen."""
        self._origin: float | None = None
        self._recent: deque[Any] = deque(maxlen=log_size)
        self._alerts: deque[dict[str, Any]] = deque(maxlen=alert_size)
        self._widget: Any = None

    @property
    def alerts(self) -> list[str]:
        """Alert messages, oldest first; a repeat of the same type is counted, not re-listed."""
        return [a["text"] + (f" (x{a['count']})" if a["count"] > 1 else "") for a in self._alerts]

    @property
    def alert_levels(self) -> list[str]:
        """The level ("danger", "warning", "info", "success") of each alert."""
        return [a["level"] for a in self._alerts]

    @property
    def log(self) -> list[str]:
        """The recent events, one line each, with seconds since the first event."""
        origin = self._origin or 0.0
        return [f"{f'+{e.ts - origin:.2f}s':>9}  {_text.describe_event(e)}" for e in self._recent]

    def update(self, event: Any) -> None:
        self.events += 1
        if self._origin is None:
            self._origin = event.ts
        self._recent.append(event)
        etype = event.type
        if etype in _RUN_TYPES:
            self._follow_run(event)
        if etype in ALERT_LEVELS or isinstance(event, Notice) or event.actor:
            self._alert(event)

    def _alert(self, event: Any) -> None:
        alert = None if event.actor else alert_for(event)
        if event.actor or alert is not None:
            if alert is None:  # a person acted: say what and who, not a failure count
                level, message = "info", _text.describe_event(event)
            else:
                level, message = alert.level, alert.text
            etype = event.type
            key = (etype, getattr(event, "name", None) or getattr(event, "tool", None))
            last = self._alerts[-1] if self._alerts else None
            if last is not None and last["key"] == key:  # a repeat: count it, keep the newest text
                last.update(text=message, count=last["count"] + 1)
            else:
                self._alerts.append({"key": key, "level": level, "text": message, "count": 1})

    def _follow_run(self, event: Any) -> None:
        etype = event.type
        if etype == "phase.started" and event.phase:
            phase = event.phase
            if phase not in self.phases:
                self.phases.append(phase)
            # re-entering a phase (QC -> build) un-ticks it and every phase after it
            later = self.phases[self.phases.index(phase) :]
            self.done.difference_update(later)
            self.phase = phase
            self.rounds[phase] = self.rounds.get(phase, 0) + 1
            self.status = "running"
        elif etype == "phase.completed" and event.phase:
            self.done.add(event.phase)
        elif etype in ("run.started", "run.resumed"):
            if etype == "run.started":
                self.phase, self.done, self.rounds = None, set(), {}
                self.task = event.task
            self.run_id = event.run_id
            self.status = "running"
        elif etype in ("run.completed", "run.failed", "run.paused", "run.cancelled"):
            self.status = etype.split(".", 1)[1]
            if etype == "run.completed":
                self.phase = None

    def text(self) -> str:
        return _text.monitor_text(self)

    def _build(self, w: Any) -> Any:
        """A `VBox` of three `HTML`s: stepper, alerts, event log."""
        self._stepper, self._alert_box, self._log_box = w.HTML(), w.HTML(), w.HTML()
        self._stepper.add_class("taskorch-stepper")
        self._alert_box.add_class("taskorch-alerts")
        self._log_box.add_class("taskorch-log")
        box = w.VBox([self._stepper, self._alert_box, self._log_box])
        box.add_class("taskorch-monitor")
        return box

    def refresh(self) -> None:
        if self._widget is None:
            return
        _set(self._stepper, "value", self._stepper_html())
        _set(self._alert_box, "value", self._alerts_html())
        log = "\n".join(html.escape(line) for line in self.log)
        style = "font-size:11px;margin:0;line-height:1.35"
        _set(self._log_box, "value", f'<pre style="{style}">{log}</pre>')

    def _stepper_html(self) -> str:
        steps = []
        for phase in self.phases:
            rounds = self.rounds.get(phase, 0)
            label = html.escape(phase) + (f" (round {rounds})" if rounds > 1 else "")
            if phase in self.done:
                style, mark, state = "color:#2e7d32", "&#10003; ", "done"
            elif phase == self.phase:
                style = "background:#1565c0;color:white;font-weight:bold"
                mark, state = "&#9654; ", "current"
            else:
                style, mark, state = "color:#888", "", "todo"
            steps.append(
                f'<span class="taskorch-step" data-phase="{html.escape(phase)}" '
                f'data-state="{state}" style="padding:1px 6px;border-radius:8px;{style}">'
                f"{mark}{label}</span>"
            )
        status = html.escape(self.status)
        return f"<b>Run</b> <i>{status}</i> &nbsp; " + " &rarr; ".join(steps)

    def _alerts_html(self) -> str:
        if not self._alerts:
            return ""
        items = "".join(
            f'<li style="color:{_LEVEL_COLOURS[level]}">{html.escape(message)}</li>'
            for level, message in zip(self.alert_levels, self.alerts, strict=True)
        )
        return f'<ul class="{NO_MATH}" style="margin:0;padding-left:1.2em">{items}</ul>'


class Dashboard:
    """Gauge, circuit panel and run monitor in one view, fed by events, refreshed in batches.

    Subscribe it to a bus (`orch.subscribe(dashboard)`): calling it only queues the event
    (cheap, safe from any thread); a timer applies the queue and refreshes the widgets at
    most `max_rate` times a second, and always once after the last event. `flush()` does
    it now; `close()` does it a last time and stops the timer (later events then apply at
    once). `renders` counts the refreshes.

    `clock` is the orchestrator's clock (for the time to half-open); `rate_clock` and
    `scheduler` drive the throttle (real time and a timer thread unless given).
    """

    def __init__(
        self,
        *,
        limit: Decimal | float | str | None = None,
        clock: Any = None,
        circuits: Mapping[str, Mapping[str, Any] | Any] | None = None,
        max_rate: float = 10.0,
        spent: Decimal | float | str = 0,
        reserved: Decimal | float | str = 0,
        warn_below: float = 0.20,
        phases: Sequence[str] = PHASES,
        log_size: int = 12,
        rate_clock: Any = None,
        scheduler: Scheduler | None = None,
    ) -> None:
        self.gauge = BudgetGauge(limit, spent=spent, reserved=reserved, warn_below=warn_below)
        self.panel = CircuitPanel(clock=clock, snapshot=circuits)
        self.monitor = RunMonitor(phases, log_size=log_size)
        self.patterns = PatternReview()
        self.controls: Controls | None = None
        """The buttons' actions, once `follow` bound the dashboard to a run."""
        self.superseded = False
        """A newer dashboard follows this one's run; this one stopped following."""
        self._stop: StopView | None = None
        self._handle: Any = None
        self._throttle_args = {"max_rate": max_rate, "clock": rate_clock, "scheduler": scheduler}
        self.renders = 0
        """Widget refreshes done (each one applies a whole batch of events)."""
        self._ticks = clock is not None  # only a clock makes the countdown move between events
        self._shown_countdowns: tuple[int, ...] = ()
        self._buffer: deque[Any] = deque()
        self._families: dict[str, str] = {}  # event type -> "budget", "circuit", ...
        self._lock = threading.RLock()
        self._widget: Any = None
        self._throttle = Throttle(
            self._render, max_rate=max_rate, clock=rate_clock, scheduler=scheduler
        )
        self._request: Callable[[], None] = self._throttle.request
        self.subscriber: Callable[[Any], None] = self._make_subscriber()
        """The same as calling the dashboard, about 3x cheaper (a plain function: no
        `__call__` dispatch); subscribe this one on a hot bus."""

    def _make_subscriber(self) -> Callable[[Any], None]:
        append, throttle = self._buffer.append, self._throttle

        def subscriber(event: Any) -> None:
            append(event)
            if not throttle._pending:  # the hot path: a redraw is already armed
                self._request()

        return subscriber

    def __call__(self, event: Any) -> None:
        """Queue the event; a redraw follows within `1 / max_rate` seconds."""
        self.subscriber(event)

    def extend(self, events: Iterable[Any]) -> None:
        """Queue many events (a replay, a starting history)."""
        self._buffer.extend(events)
        self._request()

    def flush(self) -> None:
        """Apply every queued event and refresh the widgets now, in this thread."""
        self._throttle.flush()

    def close(self) -> None:
        """A last refresh; stop the timer. Events arriving later are applied at once.

        A dashboard shown with `display()` also renews its output's text and static HTML,
        which views without a kernel (exports) show instead of the live widget.
        """
        self._throttle.close()
        self._throttle.flush()
        self._request = self._throttle.flush
        handle = self._handle
        if handle is not None and threading.current_thread() is threading.main_thread():
            handle.update(self)

    def display(self) -> None:
        """Show the dashboard in the cell's output (IPython's `display`, with an id so
        `close` can renew its static part)."""
        from IPython.display import display

        self._handle = display(self, display_id=True)

    def _reopen(self) -> None:
        """Batch again after `close` (a resumed run streams events once more)."""
        self._throttle = Throttle(self._render, **self._throttle_args)
        self._request = self._throttle.request
        self.subscriber = self._make_subscriber()

    @classmethod
    def replay(cls, run: Any, orch: Any = None) -> Dashboard:
        """A run's dashboard rebuilt from its events, for views without a kernel (the HTML
        report): `static_controls()` shows what a live one would offer, disabled."""
        dash = cls(limit=run.guard.limit, phases=workflow_phases(run.workflow, run.archetype),
                   warn_below=run.guard.warn_below)
        dash.close()  # no timer: the events below apply at once
        dash.extend(run.events)
        dash.bind(Controls(orch, run))
        return dash

    # -- following a run ---------------------------------------------------------------

    def follow(self, orch: Any, run: Any) -> Callable[[], None]:
        """Feed the dashboard `run`'s events (and those of no run) from `orch`'s bus and give
        it buttons acting on them; returns `release`, to call when the cell is done.

        `release` lets go of the bus unless the run may still resume: a paused dashboard
        keeps following, so after `run.resume()` it shows the run to its end (then lets
        go). A newer dashboard following the same run supersedes this one, which says so.
        """
        previous = _FOLLOWING.get(run.id)
        older = previous() if previous is not None else None
        if older is not None and older is not self:
            older.supersede()
        _FOLLOWING[run.id] = weakref.ref(self)
        if self.monitor.events == 0:
            self.monitor.phases = list(workflow_phases(run.workflow, run.archetype))
        controls = Controls(orch, run)
        self.bind(controls)
        run_id = run.id
        watch = controls.watch
        released = False

        def subscriber(event: Any) -> None:
            event_run = event.run_id
            if event_run is not None and event_run != run_id:
                return
            etype = event.type
            if event_run is not None and etype in _WATCHED:
                watch(event)
                if etype == "run.resumed" and self.closed:
                    self._reopen()
            self.subscriber(event)
            if released and etype in _RUN_ENDS and run.status not in RESUMABLE:
                stop()

        unsubscribe = orch.subscribe(subscriber)

        def stop() -> None:
            unsubscribe()
            controls.feed = self.subscriber  # later clicks still show here
            self.close()
            if _FOLLOWING.get(run_id) is not None and _FOLLOWING[run_id]() is self:
                del _FOLLOWING[run_id]

        def release() -> None:
            nonlocal released
            released = True
            if self.superseded or run.status not in RESUMABLE:
                stop()

        self._unfollow = stop
        return release

    def bind(self, controls: Controls) -> None:
        """Give the gauge, panel, patterns and Stop their actions."""
        self.controls = controls
        controls.on_change = self.redraw
        self.gauge.bind(controls)
        self.panel.controls = controls
        self.patterns.bind(controls)
        if self._stop is not None:
            self._stop.controls = controls

    def supersede(self) -> None:
        """Stop following: a newer dashboard shows this run now."""
        self.superseded = True
        unfollow = getattr(self, "_unfollow", None)
        if unfollow is not None:
            unfollow()
        self.flush()
        self.monitor.status = "superseded by a newer dashboard"
        self.controls = None
        self.gauge.controls = self.panel.controls = None
        if self._widget is not None:
            self.gauge._resume.controls = None
        self.patterns.controls = None
        if self._stop is not None:
            self._stop.controls = None
        self.redraw()

    def redraw(self) -> None:
        """Refresh every widget now (after a click changed what the buttons offer)."""
        with self._lock:
            self._refresh()

    def _refresh(self) -> None:  # lock held
        if self._widget is not None:
            self.gauge.refresh()
            self.panel.refresh()
            self.monitor.refresh()
            self.patterns.refresh()
            if self._stop is not None:
                self._stop.refresh()

    @property
    def closed(self) -> bool:
        return self._throttle.closed

    @property
    def pending(self) -> int:
        """Events queued and not yet applied."""
        return len(self._buffer)

    def _render(self) -> None:
        with self._lock:
            buffer, popleft = self._buffer, self._buffer.popleft
            gauge, panel, monitor = self.gauge.update, self.panel.update, self.monitor.update
            families = self._families
            event = None
            # popleft up to the length seen now: appends racing with us wait for the next batch
            for _ in range(len(buffer)):
                event = popleft()
                etype = event.type
                family = families.get(etype)
                if family is None:
                    family = families[etype] = etype.partition(".")[0]
                if family == "budget":
                    gauge(event)
                elif family == "circuit":
                    panel(event)
                elif family == "pattern":
                    self.patterns.update(event)
                monitor(event)
            if event is not None:
                self.panel.seen(event.ts)
            countdowns = self.panel.countdowns()
            if event is None and countdowns == self._shown_countdowns:
                return
            self._shown_countdowns = countdowns
            self._refresh()
            self.renders += 1
        if self._ticks and any(countdowns):  # keep "half-open in N s" moving while open
            self._throttle.request(not_before=1.0)

    def text(self) -> str:
        """The dashboard as plain text (queued events applied first)."""
        self.flush()
        return _text.render_text(self.gauge, self.panel, self.monitor)

    @property
    def widget(self) -> Any:
        """The `VBox` to display, built on first use."""
        with self._lock:
            if self._widget is None:
                import ipywidgets as w

                self._stop = StopView(w)
                self._stop.controls = self.controls
                self._stop.refresh()
                self._widget = w.VBox([self.monitor.widget, self.gauge.widget, self.panel.widget,
                                       self.patterns.widget, self._stop.button])
                self._widget.add_class("taskorch-dashboard")
            return self._widget

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        plain = self.text()
        bundle: dict[str, Any] = {
            "text/plain": plain,
            "text/html": f'<div class="{NO_MATH}"><pre>{html.escape(plain)}</pre>'
            f"{self.static_controls()}</div>",
        }
        if wanted(WIDGET_VIEW, include, exclude):
            try:
                import ipywidgets  # noqa: F401
            except ImportError:  # no widgets installed: the text is the whole view
                pass
            else:
                view = self.widget._repr_mimebundle_() or {}
                bundle.update({k: v for k, v in view.items() if k != "text/plain"})
        return {k: v for k, v in bundle.items() if wanted(k, include, exclude)}

    def static_controls(self) -> str:
        """The buttons as disabled HTML, for views without a kernel (exports, reports)."""
        controls = self.controls
        return static_html(
            resume=controls is not None and controls.can_resume,
            stop=controls is not None and controls.can_stop,
            circuits=list(self.panel.rows) if controls is not None else [],
            patterns=self.patterns.pending if controls is not None else [],
        )

    def __repr__(self) -> str:
        return f"Dashboard(renders={self.renders}, pending={self.pending})"


#: The newest dashboard following each run (an older one is told it was superseded).
_FOLLOWING: dict[str, weakref.ref[Dashboard]] = {}
_WATCHED = frozenset({"run.started", "run.resumed", "run.completed", "run.failed",
                      "run.paused", "run.cancelled"})
_RUN_ENDS = frozenset({"run.completed", "run.failed", "run.paused", "run.cancelled"})


def workflow_phases(workflow: str, archetype: str | None = None) -> tuple[str, ...]:
    """The steps a run of `workflow` goes through, for its stepper: a `single` run has one
    (its archetype's phase); an unknown workflow's phases appear as they start."""
    if workflow == "full":
        return PHASES
    if workflow == "single":
        return (PHASE_OF.get(archetype or "builder", "work"),)
    return ()
