from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from taskorch_nb import ConfigurationError, FakeClock, Orchestrator, RunStatus
from taskorch_nb.errors import WorkflowError

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
