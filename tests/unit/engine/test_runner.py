"""The Runner: creating runs (input checked), executing them, finding them again in the
store after a crash, and listing them."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import socket
import subprocess
import sys
import textwrap
import weakref

import pandas as pd
import pytest

from taskorch_nb import ConfigurationError, FakeClock, Orchestrator, RunStatus, history
from taskorch_nb.core.store import Store
from taskorch_nb.engine.runner import interpolate, stored_status
from taskorch_nb.errors import UnknownToolError

CRASHER = textwrap.dedent("""
    import asyncio, sys, threading
    from taskorch_nb import FakeClock, Orchestrator
    from taskorch_nb.core.store import is_durable
    orch = Orchestrator(store=sys.argv[1], clock=FakeClock(), latency=0.4)
    completed = 0
    def freeze_after_four_calls(event):
        global completed
        completed += event.type == "llm.completed"
        if completed >= 4 and is_durable(event.type):
            # the store, subscribed first, has committed this event and all before it
            print("frozen", flush=True)
            threading.Event().wait()  # mid-run, until the test kills the process
    orch.subscribe(freeze_after_four_calls)
    asyncio.run(orch.run("Add user authentication", workspace=sys.argv[2]))
""")


@pytest.mark.slow
async def test_killed_run_keeps_its_events_and_resumes_to_completion(tmp_path) -> None:
    db = tmp_path / "taskorch.db"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CRASHER, str(db), str(tmp_path / "ws"),
        stdout=asyncio.subprocess.PIPE)
    try:
        said = await proc.stdout.readline()  # waits for the real process, no polling
        assert said == b"frozen\n", "the run ended before its fourth model call"
    finally:
        proc.kill()  # SIGKILL: no cleanup, no last flush
        await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    reader = Store(db)
    before = [e for e in reader.events() if e.type == "llm.completed"]
    reader.close()
    assert len(before) >= 4

    past = history(store=db)
    assert list(past["status"]) == ["INTERRUPTED"]
    run_id = past["run_id"][0]

    orch = Orchestrator(store=db, clock=FakeClock())
    run = orch.get_run(run_id)
    assert run.status is RunStatus.INTERRUPTED
    kept = [e for e in run.events if e.type == "llm.completed"]
    assert [e.call_id for e in kept] == [e.call_id for e in before]
    await run.resume()
    assert run.status is RunStatus.COMPLETED, run.error
    # Every call paid before the crash was replayed, not made again.
    total = [e for e in run.events if e.type == "llm.completed"]
    assert orch.provider.call_count == len(total) - len(before)
    assert list(history(store=db)["status"]) == ["COMPLETED"]
    orch.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"task": "   "}, "task is empty"),
        ({"task": "x", "workflow": "nope"}, "unknown workflow 'nope'; known: full, single"),
        ({"task": "x", "workflow": "single", "archetype": "wizard"}, "unknown archetype"),
        ({"task": "x", "max_rounds": 0}, "max_rounds must be an integer >= 1"),
        ({"task": "x", "budget": -1}, "budget must be a USD amount above \\$0"),
        ({"task": "x", "budget": 0}, "budget must be a USD amount above \\$0"),
        ({"task": "x", "budget": "lots"}, "got 'lots'"),
        ({"task": "x", "budget": "1e999999"}, "at most \\$1,000,000,000"),
        ({"task": "use {missing}", "known": 1}, "no such name"),
    ],
)
async def test_bad_run_input_is_a_clear_error(kwargs, message) -> None:
    orch = Orchestrator(store=":memory:", clock=FakeClock())
    task = kwargs.pop("task")
    with pytest.raises(ConfigurationError, match=message):
        await orch.run(task, **kwargs)
    orch.close()


async def test_unknown_extra_tool_is_named() -> None:
    orch = Orchestrator(store=":memory:", clock=FakeClock())
    with pytest.raises(UnknownToolError, match="'search'"):
        await orch.run("x", tools=["search"])
    orch.close()


async def test_unreachable_langfuse_never_fails_a_run(tmp_path) -> None:
    import socket
    import time as clock

    from taskorch_nb.tracing.langfuse import LangfuseExporter

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    warnings: list = []
    exporter = LangfuseExporter(public_key=f"pk-closed-{clock.monotonic_ns()}", secret_key="sk",
                                base_url=f"http://127.0.0.1:{port}", timeout=1.0,
                                flush_timeout=2.0)
    orch = Orchestrator(store=":memory:", clock=FakeClock(), langfuse=exporter)
    orch.subscribe(lambda e: warnings.append(e) if e.type == "tracing.warning" else None)
    run = await orch.run("Summarise", workflow="single", archetype="researcher",
                         workspace=tmp_path)
    orch.close()
    assert run.status is RunStatus.COMPLETED
    assert warnings, "an unreachable Langfuse must say so"
    assert {w.detail["reason"] for w in warnings} <= {"unreachable", "timeout", "sdk"}


def test_stored_status_is_interrupted_only_for_a_dead_process() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    for status in ("RUNNING", "PENDING"):
        assert stored_status({"status": status, "pid": gone.pid}) is RunStatus.INTERRUPTED
        assert stored_status({"status": status, "pid": None}) is RunStatus.INTERRUPTED
        assert stored_status({"status": status, "pid": os.getpid()}) is RunStatus(status)
        # a run on another host's worker: this host cannot ask its process, so it stays
        elsewhere = {"worker": f"other-{socket.gethostname()}:{gone.pid}"}
        assert stored_status({"status": status, "pid": gone.pid, "data": elsewhere}
                             ) is RunStatus(status)
        here = {"worker": f"{socket.gethostname()}:{gone.pid}"}
        assert stored_status({"status": status, "pid": gone.pid, "data": here}
                             ) is RunStatus.INTERRUPTED
    for status in ("PAUSED", "COMPLETED", "FAILED", "CANCELLED"):
        assert stored_status({"status": status, "pid": gone.pid}) is RunStatus(status)


def test_interpolate_fills_known_names_and_names_the_first_missing() -> None:
    assert interpolate("Fix {module} in {repo}", {"module": "auth", "repo": 7}) == "Fix auth in 7"
    assert interpolate("no names {here}", None) == "no names {here}"
    with pytest.raises(ConfigurationError, match=r"\{a\} but no such name"):
        interpolate("{b} and {a}", {"c": 1})


async def test_each_event_goes_to_its_own_run(tmp_path) -> None:
    orch = Orchestrator(store=":memory:", clock=FakeClock())
    first = await orch.run("Write a haiku", workflow="single", archetype="researcher",
                           workspace=tmp_path / "a")
    second = await orch.run("Write a limerick", workflow="single", archetype="researcher",
                            workspace=tmp_path / "b")
    orch.close()
    assert first.events
    assert second.events
    assert {e.run_id for e in first.events} == {first.id}
    assert {e.run_id for e in second.events} == {second.id}
    assert first.events[0].type == "run.started"
    assert first.events[-1].type == second.events[-1].type == "run.completed"


async def test_a_stored_run_is_found_again_and_an_unknown_one_is_named(tmp_path) -> None:
    db = tmp_path / "runs.db"
    orch = Orchestrator(store=db, clock=FakeClock())
    run = await orch.run("Write a haiku", workflow="single", archetype="researcher",
                         workspace=tmp_path / "ws")
    orch.close()
    again = Orchestrator(store=db, clock=FakeClock())
    try:
        found = again.get_run(run.id)
        assert found is not run
        assert (found.status, found.task, found.output) == (run.status, run.task, run.output)
        assert [e.type for e in found.events] == [e.type for e in run.events]
        assert found.cost.spent == run.cost.spent
        with pytest.raises(KeyError, match="no run 'run-missing'"):
            again.get_run("run-missing")
    finally:
        again.close()


async def test_history_lists_the_runs_with_their_money(tmp_path) -> None:
    orch = Orchestrator(store=":memory:", clock=FakeClock())
    done = await orch.run("First", workflow="single", archetype="researcher",
                          workspace=tmp_path / "a", budget=2)
    later = await orch.run("Second", workflow="single", archetype="researcher",
                           workspace=tmp_path / "b")
    frame = orch.history()
    orch.close()
    assert list(frame.columns) == ["run_id", "task", "workflow", "status", "created",
                                   "updated", "spent", "limit", "output", "worker"]
    assert set(frame["run_id"]) == {done.id, later.id}
    row = frame.set_index("run_id").loc[done.id]
    assert (row["task"], row["status"], row["limit"]) == ("First", "COMPLETED", 2.0)
    assert row["spent"] == float(done.cost.spent)
    assert isinstance(frame["created"].dtype, pd.DatetimeTZDtype)
    assert str(frame["created"].dtype.tz) == "UTC"


async def test_ended_runs_stay_in_memory_only_while_someone_holds_them(tmp_path) -> None:
    orch = Orchestrator(store=tmp_path / "t.db", clock=FakeClock())
    held = await orch.run("Summarise tides", workflow="single", archetype="researcher")
    dropped = await orch.run("Summarise winds", workflow="single", archetype="researcher")
    dropped_id, dropped_events = dropped.id, [e.type for e in dropped.events]
    gone = weakref.ref(dropped)
    del dropped
    gc.collect()
    assert gone() is None  # a batch of 20,000 does not stay in the kernel's memory
    assert orch.get_run(held.id) is held  # the run its user keeps is the same object
    again = orch.get_run(dropped_id)  # the other is read back from the store, whole
    assert (again.status, [e.type for e in again.events]) == (RunStatus.COMPLETED,
                                                               dropped_events)
    assert orch.get_run(dropped_id) is again
    orch.close()


async def test_every_run_records_where_it_ran(tmp_path) -> None:
    path = tmp_path / "taskorch.db"
    orch = Orchestrator(store=path, clock=FakeClock())
    waiting = orch.runner.create("Not started", workflow="single", archetype="researcher")
    assert waiting.worker is None  # a declared field: no run lacks it
    run = await orch.run("Summarize tides", workflow="single", archetype="researcher")
    here = f"{socket.gethostname()}:{os.getpid()}"
    assert run.worker == here
    orch.close()
    again = Orchestrator(store=path)  # read back from the store
    assert again.get_run(run.id).worker == here
    frame = again.history().set_index("run_id")
    assert frame.loc[run.id, "worker"] == here
    again.close()


async def test_forget_drops_this_process_copy_so_get_reads_the_store(tmp_path) -> None:
    orch = Orchestrator(store=tmp_path / "taskorch.db", clock=FakeClock())
    run = await orch.run("Summarize tides", workflow="single", archetype="researcher")
    assert orch.runner.get(run.id) is run
    # Another process changes the stored run (a batch's worker): forget our copy.
    orch.store.save_run(run.id, task=run.task, workflow=run.workflow, status="CANCELLED",
                        wall=orch.clock.wall(), data={"workspace": str(run.workspace)})
    orch.runner.forget(run.id)
    again = orch.runner.get(run.id)
    assert again is not run
    assert again.status is RunStatus.CANCELLED
    orch.runner.forget("run-never-made")  # nothing to drop is not an error
    orch.close()
