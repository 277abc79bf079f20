"""One worker process of a Ray batch: its own Orchestrator on the shared store.

A plain class (Ray wraps it in `ray.remote` on the driver), so importing it needs no
Ray. The Orchestrator is built at the worker's first run, not when the worker starts:
it then reads the breakers other workers already opened from the store, and
`watch_circuits` tells it of those opened later.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from taskorch_nb.batch.shared import SharedLedger
from taskorch_nb.batch.worker import (
    RunSummary,
    adopt,
    create_run,
    execute,
    worker_id,
)


class BatchWorker:
    """Runs a batch's tasks in this process, many at a time on its event loop."""

    def __init__(self, recipe: Callable[[], Any], ledger: str) -> None:
        self._recipe = recipe
        self._ledger_name = ledger
        self._host: Any = None
        self._ledger: SharedLedger | None = None

    def _ready(self) -> tuple[Any, SharedLedger]:
        if self._host is None or self._ledger is None:
            self._host = self._recipe()
            self._ledger = SharedLedger(self._host.store.ledger(self._ledger_name))
        return self._host, self._ledger

    async def run(self, task: str, options: dict[str, Any], run_budget: Decimal | None,
                  batch_budget: Decimal) -> RunSummary:
        host, ledger = self._ready()
        run = create_run(host, ledger, task, options, run_budget, batch_budget)
        return await execute(host, run)

    async def resume(self, run_id: str, extra: Decimal | None) -> RunSummary:
        host, ledger = self._ready()
        host.runner.forget(run_id)  # another worker may have run it since: reload
        run = adopt(host.runner.get(run_id), ledger)
        return await execute(host, run, extra=extra, resumed=True)

    def where(self) -> str:
        return worker_id()

    def close(self) -> None:
        if self._host is not None:
            self._host.close()
            self._host = None


__all__ = ["BatchWorker"]
