"""`Controls`: the actions behind the buttons, on runs on other threads and without a loop."""

from __future__ import annotations

import asyncio
import threading
import time

from taskorch_nb import Orchestrator, RunStatus
from taskorch_nb.notebook.controls import Controls, GuardControls
from taskorch_nb.testing import FakeClock
from tests.unit.notebook.following import TASK, acted, dashboard_for


def test_stop_reaches_a_run_on_another_threads_loop(tmp_path) -> None:
    """A blocking cell runs its run on a worker thread's loop: Stop cancels it there."""
    orch = Orchestrator(store=":memory:", latency=0.5)
    run = orch.runner.create(TASK, workspace=tmp_path)
    dash, release = dashboard_for(orch, run)
    outcome: list[BaseException] = []

    def execute() -> None:
        try:
            asyncio.run(orch.runner.execute(run))
        except asyncio.CancelledError as exc:  # as the magic's Worker takes it
            outcome.append(exc)

    worker = threading.Thread(target=execute)
    worker.start()
    deadline = time.monotonic() + 60
    while not dash.controls.can_stop and time.monotonic() < deadline:
        time.sleep(0.005)
    dash.redraw()
    # no button: a click could not arrive while the cell that runs this blocks
    assert dash.widget.children[-1].layout.display == "none"
    assert dash.controls.stop() is True
    worker.join(60)
    release()
    assert len(outcome) == 1, (run.status, [e.type for e in run.events][-8:])
    assert run.status is RunStatus.CANCELLED
    assert acted(run.events) == [("run.stopped", "ada")]
    assert dash.controls.stop() is False  # nothing left to stop
    assert dash.controls.message == "run CANCELLED: nothing to stop"


def test_without_a_loop_a_resume_runs_to_the_end_here(tmp_path) -> None:
    orch = Orchestrator(store=":memory:", clock=FakeClock())
    run = orch.runner.create(TASK, workflow="single", budget="0.0005", workspace=tmp_path)
    asyncio.run(orch.runner.execute(run))
    controls = Controls(orch, run, actor="bob")
    assert controls.can_resume
    assert controls.resume("1") is run
    assert run.status is RunStatus.COMPLETED
    assert acted(run.events) == [("budget.extended", "bob"), ("run.resumed", "bob")]




def test_refusals_are_messages_and_change_nothing(tmp_path) -> None:
    orch = Orchestrator(store=":memory:", clock=FakeClock())
    controls = Controls(orch, actor="bob")
    seen: list = []
    orch.subscribe(seen.append)
    assert not controls.attempt(controls.reset_circuit, "nosuch")
    assert controls.message == ("no breaker named 'nosuch'; known: list_files, read_file, "
                                "search_files, write_file")
    assert not controls.attempt(controls.stop)
    assert controls.message == "this view shows no run"
    run = orch.runner.create(TASK, workflow="single", workspace=tmp_path)
    asyncio.run(orch.runner.execute(run))
    controls = Controls(orch, run, actor="bob")
    assert not controls.can_resume
    assert not controls.attempt(controls.resume, "1")
    assert controls.message == (f"run {run.id} is COMPLETED: only a PAUSED or INTERRUPTED "
                                "run resumes")
    assert [e for e in seen if e.actor] == []


def test_a_guards_controls_refuse_plainly_and_change_nothing() -> None:
    orch = Orchestrator(store=":memory:", clock=FakeClock())
    guard = orch.guard(1, name="cell")
    controls = GuardControls(orch, guard, actor="bob")
    assert not controls.can_stop
    assert not controls.can_resume
    assert not controls.attempt(controls.stop)
    assert controls.message == "guard 'cell' is closed: its cell has ended"
    with guard:
        assert controls.can_stop
        assert controls.can_resume
        assert not controls.attempt(controls.resume, "lots")
        assert controls.message.startswith("the extra budget must be a USD amount")
        assert controls.stop() is True
        assert not controls.can_stop
        assert not controls.can_resume
        assert controls.stop() is False
        assert controls.message == "guard 'cell' is stopped already"
    assert guard.budget.limit == 1
    assert acted(guard.events) == [("run.stopped", "bob")]
    assert guard.report().stopped is None  # no call was refused: the stop waited for one
