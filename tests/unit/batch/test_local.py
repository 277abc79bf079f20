"""The local engine: at most `max_concurrency` runs at once, on this process's loop."""

from __future__ import annotations

import asyncio

import pytest

from taskorch_nb import FakeClock, Orchestrator, RunStatus

ONE = {"workflow": "single", "archetype": "researcher"}


async def test_no_more_runs_at_once_than_max_concurrency() -> None:
    orch = Orchestrator(store=":memory:", clock=FakeClock(), latency=1.0)
    running, most = set(), [0]

    def watch(event) -> None:
        if event.type == "run.started":
            running.add(event.run_id)
            most[0] = max(most[0], len(running))
        elif event.type in ("run.completed", "run.failed", "run.paused"):
            running.discard(event.run_id)

    orch.subscribe(watch)
    batch = await orch.map([f"Summarize topic {i}" for i in range(9)], budget=5,
                           max_concurrency=3, **ONE)
    assert batch.status["COMPLETED"] == 9
    assert most[0] == 3
    orch.close()


async def test_a_cancelled_batch_counts_its_runs_cancelled() -> None:
    orch = Orchestrator(store=":memory:", latency=30.0)  # real clock: calls hang
    batch = orch.map([f"Summarize topic {i}" for i in range(4)], budget=5, max_concurrency=2,
                     **ONE)
    while batch.status["RUNNING"] < 2:
        await asyncio.sleep(0.01)
    batch.cancel()
    with pytest.raises(asyncio.CancelledError):
        await batch
    status = batch.status
    # The queued runs are cancelled with the batch (saved so, no event): nothing waits.
    assert status["CANCELLED"] == 4
    assert sum(status.values()) == 4
    assert batch.done
    runs = batch.runs
    assert {r.status for r in runs} == {RunStatus.CANCELLED}
    never = [r for r in runs if not r.events]
    assert len(never) == 2
    assert all(r.error.startswith("batch cancelled before this run started") for r in never)
    assert {row["status"] for row in orch.store.runs()} == {"CANCELLED"}
    assert orch.provider.call_count == 2  # each was cancelled inside its first call
    assert batch.cost.spent == 0
    assert batch.cost.reserved == 0  # the cancelled calls gave their reservations back

    # A resume can be cancelled as the first run was: the same runs wait again.
    resuming = asyncio.ensure_future(batch.resume())
    while batch.status["RUNNING"] < 2:
        await asyncio.sleep(0.01)
    batch.cancel()
    with pytest.raises(asyncio.CancelledError):
        await resuming
    assert batch.status["CANCELLED"] == 4
    assert orch.provider.call_count == 4

    orch.provider.latency = 0.0
    await batch.resume()
    assert batch.status["COMPLETED"] == 4
    assert batch.cost.calls == 8  # two paid calls per run
    assert orch.provider.call_count == 4 + 8  # the calls cut short are asked again, once
    await orch.aclose()


async def test_resume_after_a_cancel_runs_exactly_the_runs_that_did_not_finish() -> None:
    clock = FakeClock()
    orch = Orchestrator(store=":memory:", clock=clock, latency=1.0)
    batch = orch.map([f"Summarize topic {i}" for i in range(6)], budget=5, max_concurrency=2,
                     **ONE)

    def cancel_at_the_first_end(event) -> None:
        if event.type == "run.completed":
            batch.cancel()

    stop = orch.subscribe(cancel_at_the_first_end)
    with pytest.raises(asyncio.CancelledError):
        await batch
    stop()
    status = batch.status
    assert status["QUEUED"] == status["RUNNING"] == 0
    assert status["COMPLETED"] >= 1
    assert status["CANCELLED"] == 6 - status["COMPLETED"] >= 4  # at least the queued ones
    assert sum(status.values()) == 6
    finished = {r.id: len(r.events) for r in batch.runs if r.status is RunStatus.COMPLETED}
    spent_before, calls_before = batch.cost.spent, batch.cost.calls
    assert calls_before == 2 * len(finished) + sum(
        1 for r in batch.runs if r.status is RunStatus.CANCELLED for e in r.events
        if e.type == "llm.completed")

    await batch.resume(extra_budget=1)
    assert batch.status["COMPLETED"] == 6
    runs = batch.runs
    # The runs that had finished were left alone; every other ran to its end once.
    assert all(len(r.events) == finished[r.id] for r in runs if r.id in finished)
    assert all(sum(e.type == "run.completed" for e in r.events) == 1 for r in runs)
    assert all(sum(e.type == "run.started" for e in r.events) == 1 for r in runs)
    # Exactly-once money: two paid calls per run, the batch's spend is its runs' spend.
    cost = batch.cost
    assert cost.calls == 12
    assert cost.spent == sum(r.cost.spent for r in runs) > spent_before
    assert cost.reserved == 0
    assert cost.limit == 6
    await orch.aclose()


async def test_a_batch_cancelled_before_its_first_run_cancels_them_all() -> None:
    orch = Orchestrator(store=":memory:", clock=FakeClock())
    batch = orch.map([f"Summarize topic {i}" for i in range(3)], budget=5, **ONE)
    batch.cancel()  # scheduled, not started yet
    with pytest.raises(asyncio.CancelledError):
        await batch
    assert batch.status["CANCELLED"] == 3
    assert orch.provider.call_count == 0
    await batch.resume()
    assert batch.status["COMPLETED"] == 3
    await orch.aclose()
