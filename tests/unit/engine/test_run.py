from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from decimal import Decimal

import pytest

from taskorch_nb import ConfigurationError, FakeClock, Orchestrator, RunStatus, history
from taskorch_nb.core.store import Store
from taskorch_nb.errors import UnknownToolError, WorkflowError

TASK = "Add user authentication"


async def test_pause_on_budget_and_resume_without_repeating_a_call(tmp_path) -> None:
    full = Orchestrator(store=":memory:", clock=FakeClock())
    reference = await full.run(TASK, workspace=tmp_path / "ref")
    assert reference.status is RunStatus.COMPLETED
    full_cost = reference.cost.spent
    full_calls = full.provider.call_count

    orch = Orchestrator(store=":memory:", clock=FakeClock())
    half = (full_cost / 2).quantize(Decimal("0.0001"))
    run = await orch.run(TASK, budget=half, workspace=tmp_path / "ws")
    assert run.status is RunStatus.PAUSED
    assert "budget exceeded" in run.error
    assert run.events[-1].type == "run.paused"
    assert run.cost.spent <= half
    calls_before = orch.provider.call_count

    await run.resume(extra_budget=1.0)
    assert run.status is RunStatus.COMPLETED, run.error
    assert run.cost.spent <= half + 1
    # No model call repeated: the provider saw exactly as many calls as the uninterrupted run.
    assert orch.provider.call_count == full_calls
    assert calls_before < full_calls
    assert run.cost.spent == full_cost
    completed = [e for e in run.events if e.type == "llm.completed"]
    assert len(completed) == full_calls
    assert [e.type for e in run.events].count("run.resumed") == 1
    with pytest.raises(WorkflowError, match="only PAUSED or INTERRUPTED"):
        await run.resume()
    full.close()
    orch.close()


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


def test_bad_orchestrator_settings() -> None:
    with pytest.raises(ConfigurationError, match="unknown provider 'gpt'"):
        Orchestrator(provider="gpt", store=":memory:")
    with pytest.raises(ConfigurationError, match="no price for model 'sim-mystery'"):
        Orchestrator(model="sim-mystery", store=":memory:")
    Orchestrator(model="sim-mystery", store=":memory:",
                 prices={"sim-mystery": {"input": 1, "output": 2}}).close()


def test_run_sync_works_inside_a_running_loop(tmp_path) -> None:
    orch = Orchestrator(store=":memory:", clock=FakeClock())

    async def in_a_notebook_cell():
        return orch.run_sync("Write a haiku", workflow="single", archetype="researcher",
                             workspace=tmp_path)

    run = asyncio.run(in_a_notebook_cell())
    assert run.status is RunStatus.COMPLETED
    assert "Write a haiku" in run.output
    orch.close()


async def test_background_run_is_awaitable(tmp_path) -> None:
    orch = Orchestrator(store=":memory:", clock=FakeClock())
    run = await orch.start("Document the API", workflow="single", archetype="architect",
                           workspace=tmp_path)
    assert run.status in (RunStatus.PENDING, RunStatus.RUNNING)
    assert await run is run
    assert run.status is RunStatus.COMPLETED
    orch.close()


async def test_run_renders_as_text_and_html(tmp_path) -> None:
    orch = Orchestrator(store=":memory:", clock=FakeClock())
    run = await orch.run("Explain <b>tags</b>", workflow="single", archetype="researcher",
                         workspace=tmp_path)
    bundle = run._repr_mimebundle_()
    assert "status=COMPLETED" in bundle["text/plain"]
    assert "Explain &lt;b&gt;tags&lt;/b&gt;" in bundle["text/html"]
    assert "<b style='color:#2e7d32'>COMPLETED</b>" in bundle["text/html"]
    assert "cost=$0.03 of $5.00" in bundle["text/plain"]
    assert ">$5.00</span>" in bundle["text/html"]
    report = run.cost._repr_mimebundle_()
    assert "$5.00" in report["text/plain"]
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


async def test_red_step_writes_tests_only(tmp_path) -> None:
    from taskorch_nb.testing import SimReply, SimRequest, SimulatedProvider

    seen: list[str] = []

    def builder(request: SimRequest) -> SimReply | dict:
        results = [m["content"] for m in request.messages if m["role"] == "tool"]
        if results:
            seen.append(results[-1])
            return {"files_written": [], "notes": "done"}
        return SimReply.call("write_file", {"path": "app.py", "content": "x = 1\n"})

    clock = FakeClock()
    orch = Orchestrator(SimulatedProvider(clock=clock, responder=builder), "sim-small",
                        store=":memory:", clock=clock)
    run = await orch.run("Add an app", workflow="single", archetype="builder",
                         workspace=tmp_path)
    assert run.status is RunStatus.COMPLETED
    assert "RED step writes tests only" in seen[0]  # refused, and the model is told why
    assert seen[1].startswith("wrote")  # the GREEN step may write code
    assert (tmp_path / "app.py").read_text() == "x = 1\n"
    orch.close()


def test_stored_status_is_interrupted_only_for_a_dead_process() -> None:
    from taskorch_nb.engine.runner import stored_status

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    for status in ("RUNNING", "PENDING"):
        assert stored_status({"status": status, "pid": gone.pid}) is RunStatus.INTERRUPTED
        assert stored_status({"status": status, "pid": None}) is RunStatus.INTERRUPTED
        assert stored_status({"status": status, "pid": os.getpid()}) is RunStatus(status)
    for status in ("PAUSED", "COMPLETED", "FAILED", "CANCELLED"):
        assert stored_status({"status": status, "pid": gone.pid}) is RunStatus(status)


async def test_a_run_that_writes_nothing_makes_no_workspace_folder(tmp_path) -> None:
    orch = Orchestrator(store=tmp_path / "t.db", clock=FakeClock())
    looked = await orch.run("Summarise the repo", workflow="single", archetype="researcher")
    assert looked.status is RunStatus.COMPLETED, looked.error
    assert looked.metrics()["tool_calls"] == 1  # it listed its (empty) workspace
    assert not looked.workspace.exists()
    built = await orch.run("Add user authentication", workflow="single", archetype="builder")
    assert built.status is RunStatus.COMPLETED, built.error
    assert (built.workspace / "auth.py").is_file()
    orch.close()
