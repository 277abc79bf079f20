"""A run capped in tokens or requests pauses like one out of money, and resumes."""

from __future__ import annotations

from taskorch_nb import FakeClock, Orchestrator, RunStatus


async def test_request_cap_pauses_the_run_and_extra_requests_resume_it(tmp_path) -> None:
    orch = Orchestrator(store=str(tmp_path / "t.db"), clock=FakeClock())
    run = await orch.run("Build a CSV parser", max_requests=2, workspace=tmp_path / "ws")
    assert run.status is RunStatus.PAUSED
    assert run.error.startswith("request limit reached: 2 of 2 model requests made")
    assert run.guard.requests == 2
    assert [e.type for e in run.events if e.type == "llm.completed"] == ["llm.completed"] * 2
    orch.close()

    # Another process: the caps come back from the checkpoint.
    again = Orchestrator(store=str(tmp_path / "t.db"), clock=FakeClock())
    stored = again.get_run(run.id)
    assert stored.guard.max_requests == 2
    done = await again.resume(stored, extra_requests=100)
    assert done.status is RunStatus.COMPLETED
    assert done.guard.requests == again.provider.call_count + 2
    again.close()


async def test_token_cap_pauses_a_run(tmp_path) -> None:
    orch = Orchestrator(store=":memory:", clock=FakeClock())
    run = await orch.run("Build a CSV parser", max_tokens=3000, workspace=tmp_path)
    assert run.status is RunStatus.PAUSED
    assert "token limit reached" in run.error
    assert 0 < run.guard.tokens <= 3000
    orch.close()
