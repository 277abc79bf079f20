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
The buttons themselves are in `buttons.py`. Bad input (an amount that is not money) is
a one-line message (`message`) beside the button, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

from taskorch_nb.core.events import RunEvent, acting, person, scope
from taskorch_nb.core.money import format_usd, parse_usd
from taskorch_nb.engine.run import Run, RunStatus
from taskorch_nb.errors import TaskorchError

RESUMABLE = frozenset({RunStatus.PAUSED, RunStatus.INTERRUPTED})
_STARTS = frozenset({"run.started", "run.resumed"})
_ENDS = frozenset({"run.completed", "run.failed", "run.paused", "run.cancelled"})


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
        self.actor = actor or person()
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


class GuardControls(Controls):
    """The dashboard's actions on a guard (`%%orchestrate --guard`) instead of a run.

    Stop makes the guard refuse the agent's next model call (`run.stopped`, then the
    refusal): the cell ends with the report saying why. "Add $X" raises the guard's limit
    (`budget.extended`): an agent refused for money goes on at its next call. Both act
    only while the guard is open, and are thread-safe (the cell's code runs on a worker).
    """

    def __init__(self, orch: Any, guard: Any, *, actor: str | None = None) -> None:
        super().__init__(orch, None, actor=actor)
        self.guard = guard
        self.stop_reachable = True  # `guard.stop` only sets a flag the next call reads

    def watch(self, event: Any) -> None:
        """Nothing to note: the guard, not a task, is what the buttons act on."""

    @property
    def can_resume(self) -> bool:
        return self.guard.open and self.guard._halted is None

    @property
    def can_stop(self) -> bool:
        return self.guard.open and self.guard._halted is None

    def resume(self, extra_budget: Any) -> None:
        """Add `extra_budget` USD to the open guard's limit."""
        amount = parse_usd(extra_budget, "the extra budget")
        self._need_open()
        with self._acting():
            self.guard.add_budget(amount)
        self._changed(f"{self.actor} added {format_usd(amount)}: the agent's next call may "
                      "spend it")

    def stop(self) -> bool:
        """Refuse the agent's next model call; False when the guard is closed or stopped."""
        guard = self._need_open()
        if guard._halted is not None:
            self._changed(f"guard {guard.name!r} is stopped already")
            return False
        with self._acting():
            self.orch.bus.emit(RunEvent(type="run.stopped", task=f"guard {guard.name}",
                                        workflow="guard", status="RUNNING"))
        guard.stop(f"stopped by {self.actor} from the dashboard")
        self._changed(f"{self.actor} stopped the guard: the agent's next model call is refused")
        return True

    def _need_open(self) -> Any:
        if not self.guard.open:
            raise TaskorchError(f"guard {self.guard.name!r} is closed: its cell has ended")
        return self.guard

    def _scope(self) -> contextlib.AbstractContextManager[None]:
        """Actions belong to the guard's events (its report and `events_df`)."""
        return scope(run_id=self.guard.run_id)
