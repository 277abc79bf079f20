"""A local batch: counts, one shared budget, pause when it runs out, resume."""

from __future__ import annotations

import os
import socket
from decimal import Decimal

import pytest

from taskorch_nb import FakeClock, Orchestrator, RunStatus
from taskorch_nb.batch import Batch
from taskorch_nb.errors import WorkflowError

TASKS = [f"Summarize topic {i}" for i in range(12)]
ONE = {"workflow": "single", "archetype": "researcher"}


@pytest.fixture
def orch():
    made = Orchestrator(store=":memory:", clock=FakeClock())
    yield made
    made.close()


async def _cost_of_one(orch: Orchestrator) -> Decimal:
    run = await orch.run("Summarize topic 0", **ONE)
    assert run.status is RunStatus.COMPLETED
    return run.cost.spent


async def test_a_batch_counts_its_runs_and_sums_their_cost(orch) -> None:
    batch = orch.map(TASKS, budget=5, max_concurrency=4, **ONE)
    assert isinstance(batch, Batch)
    assert await batch is batch
    assert batch.status == {"QUEUED": 0, "RUNNING": 0, "PAUSED": 0, "COMPLETED": 12,
                            "FAILED": 0, "CANCELLED": 0, "INTERRUPTED": 0}
    assert batch.done
    runs = batch.runs
    assert [r.task for r in runs] == TASKS
    assert batch.cost.spent == sum(r.cost.spent for r in runs) > 0
    assert batch.cost.limit == Decimal(5)
    assert batch.cost.calls == orch.provider.call_count == 24  # two model calls per run
    here = f"{socket.gethostname()}:{os.getpid()}"
    assert {r.worker for r in runs} == {here}
    assert batch.workers() == {here: 12}
    frame = batch.events_df()
    assert set(frame["run_id"].dropna()) == {r.id for r in runs}
    assert frame["seq"].is_monotonic_increasing
    assert (frame["type"] == "run.completed").sum() == 12
    assert "12 COMPLETED" in repr(batch)


async def test_the_batch_budget_pauses_the_rest_and_resume_finishes_them(orch) -> None:
    one = await _cost_of_one(orch)
    calls_before = orch.provider.call_count
    worst = Decimal("0.17")  # a researcher call's worst-case reservation on sim-small
    budget = one * 4 + worst
    batch = await orch.map(TASKS, budget=budget, max_concurrency=3, **ONE)
    status = batch.status
    assert status["COMPLETED"] >= 1
    assert status["PAUSED"] == 12 - status["COMPLETED"] > 0
    assert batch.cost.spent <= budget
    # It stopped only when no call fit: each run that was refused asked for more than is left.
    asked = [[e.amount for e in r.events if e.type == "budget.rejected"][-1]
             for r in batch.runs if r.status is RunStatus.PAUSED and r.events]
    assert asked
    assert batch.cost.limit - batch.cost.spent < min(asked)
    paused = [r for r in batch.runs if r.status is RunStatus.PAUSED]
    assert all(r.error.startswith("batch budget exceeded") for r in paused)
    started = [r for r in paused if r.events]
    assert all(r.events[-1].type == "run.paused" for r in started)
    # Once a run found the money gone, the queued ones were not started only to pause.
    parked = [r for r in paused if not r.events]
    assert parked
    assert len(parked) + len(started) + status["COMPLETED"] == 12
    assert all("before this run started" in r.error for r in parked)
    assert len(started) <= 3  # at most the runs in flight when the money ran out

    await batch.resume(extra_budget=2)
    assert batch.status["COMPLETED"] == 12
    assert batch.cost.limit == budget + 2
    assert batch.cost.spent == sum(r.cost.spent for r in batch.runs)
    assert batch.cost.calls == 24
    # Nothing paid was asked again: two calls per run, whatever the pauses.
    assert orch.provider.call_count - calls_before == 24


async def test_a_run_cap_pauses_only_the_runs_that_pass_it(orch) -> None:
    one = await _cost_of_one(orch)
    batch = await orch.map(["Summarize topic 1", "Summarize topic 2"], budget=5,
                           run_budget=one / 2, **ONE)
    assert batch.status["PAUSED"] == 2
    assert all(r.error.startswith("budget exceeded") for r in batch.runs)
    assert all(r.cost.limit == one / 2 for r in batch.runs)


def test_map_sync_returns_the_finished_batch(orch) -> None:
    batch = orch.map_sync(TASKS[:3], budget=1, **ONE)
    assert batch.status["COMPLETED"] == 3


async def test_resume_waits_for_the_batch_to_end(orch) -> None:
    batch = orch.map(TASKS[:2], budget=1, **ONE)
    with pytest.raises(WorkflowError, match="still running"):
        await batch.resume(extra_budget=1)
    await batch
    assert batch.status["COMPLETED"] == 2


def test_names_fill_every_task(orch) -> None:
    batch = orch.map_sync(["Fix {thing} 1", "Fix {thing} 2"], budget=1, thing="login", **ONE)
    assert [r.task for r in batch.runs] == ["Fix login 1", "Fix login 2"]
