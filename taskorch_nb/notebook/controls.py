"""The dashboard's buttons: act on a run, its breakers and remote patterns where you look.

`Controls` does what a click asks through the public API only: `run.resume(extra_budget=
...)`, a breaker's `reset()` / `trip()`, `immune.approve()` / `reject()`. Each action runs
inside `acting(user)`, so the events it causes (`run.resumed`, `budget.extended`,
`circuit.reset`, `circuit.opened`, `pattern.approved`, ...) name the person, and the run's
`events_df()` shows who did what. Stop emits `run.stopped` and cancels the run's task the
way an interrupt does: the run records itself CANCELLED.

Clicks are handled by the kernel between cell executions and while a cell awaits, never
while a cell blocks in a sync loop; so a resume started by a click runs as a task on the
kernel's loop, and Stop reaches a run started with `--background` or awaited in a cell.
Where no kernel runs (a static export, an HTML page) `static_html` draws the same controls
disabled. Bad input (an amount that is not money) is a one-line message beside the button.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import html
import os
import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

from taskorch_nb.core.events import RunEvent, acting, scope
from taskorch_nb.core.money import format_usd, parse_usd
from taskorch_nb.engine.run import Run, RunStatus
from taskorch_nb.errors import TaskorchError
from taskorch_nb.notebook.display import NO_MATH

RESUMABLE = frozenset({RunStatus.PAUSED, RunStatus.INTERRUPTED})
_STARTS = frozenset({"run.started", "run.resumed"})
_ENDS = frozenset({"run.completed", "run.failed", "run.paused", "run.cancelled"})


def current_user() -> str:
    """Who clicked: JupyterHub's user when there is one, else the login name."""
    hub = os.environ.get("JUPYTERHUB_USER")
    if hub:
        return hub
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER (containers)
        return "unknown"


class Controls:
    """The actions behind the buttons for one orchestrator (and the run a dashboard shows).

    `watch(event)` must see the run's events on the emitting thread: a `run.started` or
    `run.resumed` tells which task on which loop runs it now, which is what Stop cancels.
    `tasks` holds the resumes started here (a test awaits them); `message` is the last
    outcome or error, shown beside the buttons.
    """

    def __init__(self, orch: Any, run: Run | None = None, *, actor: str | None = None) -> None:
        self.orch = orch
        self.run = run
        self.actor = actor or current_user()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.message = ""
        self.on_change: Callable[[], None] | None = None
        """Called after an action (the dashboard redraws its controls)."""
        self.feed: Callable[[Any], None] | None = None
        """Where an action's events go when no bus subscription carries them (a dashboard
        that stopped following its finished run still shows what its buttons did)."""
        self._running: tuple[asyncio.AbstractEventLoop, asyncio.Task[Any]] | None = None
        self.stop_reachable = False
        """The run runs on the main thread's loop, so a Stop click can arrive while it runs
        (a blocking cell's run is stopped with the kernel's interrupt instead)."""

    # -- following the run ---------------------------------------------------------

    def watch(self, event: Any) -> None:
        """Note the task running the run (from its start event) and forget it at its end."""
        etype = event.type
        if etype in _STARTS:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # emitted outside a loop: nothing to cancel from here
                return
            task = asyncio.current_task(loop)
            if task is not None:
                self._running = (loop, task)
                # a click is handled on the kernel's main thread, and only while it is free:
                # a run on another thread's loop belongs to a cell that blocks until it ends
                self.stop_reachable = threading.current_thread() is threading.main_thread()
        elif etype in _ENDS:
            self._running = None

    @property
    def can_resume(self) -> bool:
        return self.run is not None and self.run.status in RESUMABLE and not self._busy()

    @property
    def can_stop(self) -> bool:
        return (self.run is not None and self.run.status is RunStatus.RUNNING
                and self._running is not None)

    def _busy(self) -> bool:
        return any(not task.done() for task in self.tasks)

    def _changed(self, message: str) -> None:
        self.message = message
        if self.on_change is not None:
            self.on_change()

    # -- actions -------------------------------------------------------------------

    def resume(self, extra_budget: Any) -> asyncio.Task[Any] | Run:
        """Add `extra_budget` USD and resume the paused run: a task on the running loop
        (a click in a kernel), or to the end here when no loop runs (a script)."""
        run = self._need_run()
        amount = parse_usd(extra_budget, "the extra budget")
        if run.status not in RESUMABLE:
            raise TaskorchError(f"run {run.id} is {run.status.value}: only a PAUSED or "
                                "INTERRUPTED run resumes")
        coro = run.resume(extra_budget=amount)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        with scope(run_id=run.id), acting(self.actor, until="run.resumed"):
            if loop is None:
                from taskorch_nb.engine.sync import wait_for

                result = wait_for(coro)
                self._changed(f"{self.actor} added {format_usd(amount)}: run "
                              f"{run.status.value}")
                return result
            task = loop.create_task(coro, name=f"taskorch-resume-{run.id}")
        self.tasks.add(task)
        task.add_done_callback(self._resumed)
        self._changed(f"{self.actor} added {format_usd(amount)} and resumed")
        return task

    def _resumed(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if task.cancelled():
            self._changed("resume stopped: run CANCELLED")
            return
        exc = task.exception()
        if exc is not None:  # shown where the click was, not lost in a background task
            self._changed(f"resume failed: {type(exc).__name__}: {exc}")
        else:
            status = self.run.status.value if self.run is not None else "?"
            self._changed(f"run {status}")

    def stop(self) -> bool:
        """Cancel the running run like an interrupt (`run.stopped`, then `run.cancelled`);
        False when it is not running (nothing happens)."""
        run = self._need_run()
        running = self._running
        if run.status is not RunStatus.RUNNING or running is None:
            self._changed(f"run {run.status.value}: nothing to stop")
            return False
        loop, task = running
        self.orch.bus.emit(RunEvent(type="run.stopped", run_id=run.id, task=run.task,
                                    workflow=run.workflow, status=run.status.value,
                                    actor=self.actor))
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        if current is loop:
            task.cancel()
        else:  # the run's loop is another thread's (a blocking cell's worker)
            with contextlib.suppress(RuntimeError):  # that loop closed: the run ended
                loop.call_soon_threadsafe(task.cancel)
        self._changed(f"{self.actor} stopped the run")
        return True

    def reset_circuit(self, name: str) -> None:
        """Close breaker `name` by hand (`circuit.reset`)."""
        breaker = self._breaker(name)
        with self._acting():
            breaker.reset()
        self._changed(f"{self.actor} reset {name}")

    def open_circuit(self, name: str) -> None:
        """Open breaker `name` by hand and hold it open until reset (`circuit.opened`)."""
        breaker = self._breaker(name)
        with self._acting():
            breaker.trip()
        self._changed(f"{self.actor} opened {name}")

    def approve(self, pattern: str) -> Any:
        """Let a remote pattern's text reach the model (`pattern.approved`)."""
        with self._acting():
            decided = self.orch.immune.approve(pattern, by=self.actor)
        self._changed(f"{self.actor} approved {pattern}")
        return decided

    def reject(self, pattern: str) -> Any:
        """Keep a remote pattern's text away from the model (`pattern.rejected`)."""
        with self._acting():
            decided = self.orch.immune.reject(pattern, by=self.actor)
        self._changed(f"{self.actor} rejected {pattern}")
        return decided

    @contextlib.contextmanager
    def _acting(self) -> Iterator[None]:
        """Inside: events name the actor, belong to the run, and reach `feed`."""
        feed = self.feed
        mine = None
        if feed is not None:
            actor = self.actor

            def mine(event: Any) -> None:
                if event.actor == actor:
                    feed(event)

        unsubscribe = self.orch.subscribe(mine) if mine is not None else None
        try:
            with self._scope(), acting(self.actor):
                yield
        finally:
            if unsubscribe is not None:
                unsubscribe()

    def attempt(self, action: Callable[..., Any], *args: Any) -> bool:
        """Run a button's action; a refusal (bad amount, unknown name) becomes the message."""
        try:
            action(*args)
        except (TaskorchError, ValueError, KeyError) as exc:
            text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            self._changed(" ".join(str(text).split()))
            return False
        return True

    def _need_run(self) -> Run:
        if self.run is None:
            raise TaskorchError("this view shows no run")
        return self.run

    def _breaker(self, name: str) -> Any:
        breaker = self.orch.circuits.get(name)
        if breaker is None:
            known = ", ".join(sorted(self.orch.circuits)) or "none"
            raise TaskorchError(f"no breaker named {name!r}; known: {known}")
        return breaker

    def _scope(self) -> contextlib.AbstractContextManager[None]:
        """Actions from a run's dashboard belong to that run's post-mortem."""
        return scope(run_id=self.run.id) if self.run is not None else contextlib.nullcontext()


def default_extra(run: Run | None) -> Decimal:
    """The amount the resume field starts with: the run's limit again, at least $1."""
    limit = run.guard.limit if run is not None else None
    return max(Decimal(str(limit)) if limit else Decimal(0), Decimal(1))


def resume_label(amount_text: str) -> str:
    """`Add $2.00 and resume` (the amount as typed when it is not money yet)."""
    try:
        shown = format_usd(parse_usd(amount_text))
    except ValueError:
        shown = amount_text.strip() or "$?"
    return f"Add {shown} and resume"


_DISABLED = ('<button disabled title="needs a running kernel" style="margin-right:4px">'
             "{}</button>")


def static_html(*, resume: bool, stop: bool, circuits: list[str],
                patterns: list[str]) -> str:
    """The controls as disabled HTML buttons, for views without a kernel."""
    parts: list[str] = []
    if resume:
        parts.append(_DISABLED.format("Add $ and resume"))
    if stop:
        parts.append(_DISABLED.format("Stop"))
    for name in circuits:
        label = html.escape(name)
        parts.append(f"<span>{label}</span> " + _DISABLED.format("Reset")
                     + _DISABLED.format("Open"))
    for name in patterns:
        label = html.escape(name)
        parts.append(f"<span>{label}</span> " + _DISABLED.format("Approve")
                     + _DISABLED.format("Reject"))
    if not parts:
        return ""
    return ('<div class="taskorch-controls taskorch-static"><i>Controls need a running '
            "kernel:</i><br>" + "<br>".join(parts) + "</div>")


# -- the widgets ---------------------------------------------------------------------------


def _show(widget: Any, visible: bool) -> None:
    display = "" if visible else "none"
    if widget.layout.display != display:
        widget.layout.display = display


def _write(widget: Any, trait: str, value: Any) -> None:
    if getattr(widget, trait) != value:
        setattr(widget, trait, value)


class ResumeView:
    """Beside the gauge of a paused run: an amount, "Add $X and resume", the outcome."""

    def __init__(self, w: Any) -> None:
        self.controls: Controls | None = None
        self.amount = w.Text(value="", placeholder="1.00", layout=w.Layout(width="6em"))
        self.amount.add_class("taskorch-resume-amount")
        self.button = w.Button(description="Add $ and resume", button_style="warning",
                               icon="play", layout=w.Layout(width="auto", min_width="14em"))
        self.button.add_class("taskorch-resume")
        self.note = w.HTML(value="")  # not a Label: MathJax would typeset its dollars
        self.note.add_class("taskorch-control-note")
        self.box = w.HBox([self.amount, self.button], layout=w.Layout(flex="0 0 auto"))
        self.box.add_class("taskorch-resume-box")
        self.amount.observe(self._typed, names="value")
        self.button.on_click(self._click)
        _show(self.box, False)

    def bind(self, controls: Controls) -> None:
        self.controls = controls
        if not self.amount.value:
            self.amount.value = f"{default_extra(controls.run):.2f}"

    def _typed(self, change: dict[str, Any]) -> None:
        self.button.description = resume_label(change["new"])

    def _click(self, _button: Any = None) -> None:
        if self.controls is not None:
            self.controls.attempt(self.controls.resume, self.amount.value)

    def refresh(self) -> None:
        controls = self.controls
        _show(self.box, controls is not None and controls.can_resume)
        message = html.escape(controls.message) if controls is not None else ""
        style = "color:#555;font-style:italic;margin-left:1em"
        _write(self.note, "value",
               f'<span class="{NO_MATH}" style="{style}">{message}</span>' if message else "")


class StopView:
    """A Stop button, shown while the run runs on a loop a click can reach."""

    def __init__(self, w: Any) -> None:
        self.controls: Controls | None = None
        self.button = w.Button(description="Stop", button_style="danger", icon="stop",
                               tooltip="cancel the run, like an interrupt",
                               layout=w.Layout(width="auto"))
        self.button.add_class("taskorch-stop")
        self.button.on_click(self._click)
        _show(self.button, False)

    def _click(self, _button: Any = None) -> None:
        if self.controls is not None:
            self.controls.attempt(self.controls.stop)

    def refresh(self) -> None:
        controls = self.controls
        _show(self.button, controls is not None and controls.can_stop
              and controls.stop_reachable)


class BreakerButtons:
    """Reset and Open for one breaker (Open quarantines it until Reset)."""

    def __init__(self, w: Any, name: str, get_controls: Callable[[], Controls | None]) -> None:
        self.name = name
        self._controls = get_controls
        self.reset = w.Button(description="Reset", tooltip=f"close {name} now",
                              layout=w.Layout(width="auto"))
        self.reset.add_class("taskorch-circuit-reset")
        self.open = w.Button(description="Open", button_style="danger",
                             tooltip=f"quarantine {name} until reset",
                             layout=w.Layout(width="auto"))
        self.open.add_class("taskorch-circuit-open")
        self.reset.on_click(lambda _b: self._act("reset_circuit"))
        self.open.on_click(lambda _b: self._act("open_circuit"))
        self.box = w.HBox([self.reset, self.open])
        _show(self.box, False)

    def _act(self, action: str) -> None:
        controls = self._controls()
        if controls is not None:
            controls.attempt(getattr(controls, action), self.name)

    def refresh(self, held: bool) -> None:
        _show(self.box, self._controls() is not None)
        _write(self.open, "disabled", held)


class PatternReview:
    """Remote patterns whose text waits for a person: the text, Approve and Reject.

    Rows come from `immune.pending()` when bound and from `pattern.*` events; a decided
    pattern keeps its row with the decision and who made it.
    """

    def __init__(self) -> None:
        self.controls: Controls | None = None
        self.rows: dict[str, dict[str, Any]] = {}
        self._widget: Any = None
        self._row_widgets: dict[str, tuple[Any, Any, Any, Any]] = {}

    def bind(self, controls: Controls) -> None:
        self.controls = controls
        immune = getattr(controls.orch, "immune", None)
        for pattern in immune.pending() if immune is not None else []:
            self.rows[pattern.name] = {"tool": pattern.tool, "text": pattern.corrective_prompt,
                                       "source": pattern.source, "decision": "pending",
                                       "by": None}

    def update(self, event: Any) -> None:
        etype = event.type
        if etype in ("pattern.approved", "pattern.rejected"):
            row = self.rows.setdefault(event.name, {"tool": event.tool, "text": event.prompt,
                                                    "source": event.source})
            row.update(decision=etype.split(".", 1)[1], by=event.actor)
        elif etype == "pattern.merged" and self.controls is not None:
            self.bind(self.controls)  # a hub's text arrived: it may wait for a person now

    @property
    def pending(self) -> list[str]:
        return [name for name, row in self.rows.items() if row["decision"] == "pending"]

    @property
    def widget(self) -> Any:
        if self._widget is None:
            import ipywidgets as w

            self._w = w
            self._heading = w.HTML(value="<b>Remote patterns to review</b>")
            self._widget = w.VBox([self._heading])
            self._widget.add_class("taskorch-patterns")
            self.refresh()
        return self._widget

    def refresh(self) -> None:
        if self._widget is None:
            return
        w, added = self._w, False
        for name, row in self.rows.items():
            parts = self._row_widgets.get(name)
            if parts is None:
                text = w.HTML()
                approve = w.Button(description="Approve", button_style="success",
                                   tooltip=f"let {name}'s text reach the model",
                                   layout=w.Layout(width="auto"))
                approve.add_class("taskorch-pattern-approve")
                reject = w.Button(description="Reject", tooltip=f"keep {name}'s text out",
                                  layout=w.Layout(width="auto"))
                reject.add_class("taskorch-pattern-reject")
                approve.on_click(lambda _b, n=name: self._act("approve", n))
                reject.on_click(lambda _b, n=name: self._act("reject", n))
                box = w.HBox([text, approve, reject])
                box.add_class("taskorch-pattern-row")
                parts = self._row_widgets[name] = (box, text, approve, reject)
                added = True
            box, text, approve, reject = parts
            _write(text, "value", _pattern_html(name, row))
            decided = row["decision"] != "pending"
            for button in (approve, reject):
                _show(button, self.controls is not None and not decided)
        if added:
            self._widget.children = (self._heading, *(p[0] for p in self._row_widgets.values()))
        _show(self._widget, bool(self.rows))

    def _act(self, action: str, name: str) -> None:
        if self.controls is not None:
            self.controls.attempt(getattr(self.controls, action), name)
            self.refresh()


def _pattern_html(name: str, row: dict[str, Any]) -> str:
    decision = row["decision"]
    who = f" by {html.escape(row['by'])}" if row.get("by") else ""
    return (f'<div class="{NO_MATH}" data-decision="{decision}" style="min-width:28em">'
            f"<code>{html.escape(name)}</code> ({html.escape(str(row.get('tool')))}, from "
            f"{html.escape(str(row.get('source')))}): <i>{decision}{who}</i><br>"
            f"<span style='font-size:11px'>{html.escape(row.get('text') or '')}</span></div>")
