"""One run of a batch: created inside the batch's budget, executed, summed up, and
where it ran kept with it."""

from __future__ import annotations

import os
import socket

from taskorch_nb import FakeClock, Orchestrator, RunStatus
from taskorch_nb.batch.guard import BatchRunGuard
from taskorch_nb.batch.worker import create_run, execute, worker_id
from taskorch_nb.core.budget import BudgetGuard

ONE = {"workflow": "single", "archetype": "researcher", "max_rounds": None, "names": {}}


def test_worker_id_is_host_and_pid() -> None:
    assert worker_id() == f"{socket.gethostname()}:{os.getpid()}"


async def test_a_run_keeps_where_it_ran_in_the_store(tmp_path) -> None:
    path = str(tmp_path / "t.db")
    orch = Orchestrator(store=path, clock=FakeClock())
    ledger = BudgetGuard(3)
    run = create_run(orch, ledger, "Summarize tides", ONE, None, ledger.limit)
    assert isinstance(run.guard, BatchRunGuard)
    assert run.guard.limit == 3  # no cap of its own: the batch's budget
    summary = await execute(orch, run)
    assert summary.status == "COMPLETED"
    assert summary.worker == run.worker == worker_id()
    assert summary.spent == run.cost.spent == ledger.spent > 0
    assert summary.provider_calls == orch.provider.call_count == 2
    orch.close()

    again = Orchestrator(store=path, clock=FakeClock())
    loaded = again.get_run(run.id)
    assert loaded.worker == worker_id()
    assert loaded.status is RunStatus.COMPLETED
    again.runner.forget(run.id)
    assert again.get_run(run.id) is not loaded  # read from the store again
    again.close()
