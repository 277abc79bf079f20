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
    assert status["CANCELLED"] == 2
    assert status["QUEUED"] == 2
    assert {r.status for r in batch.runs} == {RunStatus.CANCELLED, RunStatus.PENDING}
    assert orch.provider.call_count == 2  # each was cancelled inside its first call
    assert batch.cost.spent == 0
    assert batch.cost.reserved == 0  # the cancelled calls gave their reservations back
    await orch.aclose()
