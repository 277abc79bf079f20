"""BatchWorker, what each Ray actor is, run in this process on a SQLite file."""

from __future__ import annotations

import functools
from decimal import Decimal

from taskorch_nb import FakeClock, Orchestrator
from taskorch_nb.batch.actor import BatchWorker
from taskorch_nb.batch.worker import worker_id

ONE = {"workflow": "single", "archetype": "researcher", "max_rounds": None, "names": {}}


async def test_it_runs_pauses_and_resumes_against_the_stored_ledger(tmp_path) -> None:
    path = str(tmp_path / "t.db")
    driver = Orchestrator(store=path, clock=FakeClock())
    ledger = driver.store.ledger("batch-a", "0.05")
    worker = BatchWorker(functools.partial(Orchestrator, store=path, clock=FakeClock()),
                         "batch-a")
    assert worker.where() == worker_id()
    summary = await worker.run("Summarize tides", ONE, None, Decimal("0.05"))
    assert summary.status == "PAUSED"
    assert summary.error.startswith("batch budget exceeded")
    ledger.extend(1)
    resumed = await worker.resume(summary.run_id, Decimal(1))
    assert resumed.status == "COMPLETED"
    assert ledger.state().spent == resumed.spent > 0
    assert ledger.state().reserved == 0
    worker.close()
    driver.close()
