"""One worker process of a Ray batch: its own Orchestrator on the shared store.

A plain class (Ray wraps it in `ray.remote` on the driver), so importing it needs no
Ray. The Orchestrator is built at the worker's first run, not when the worker starts:
it then reads the breakers other workers already opened from the store, and
`watch_circuits` tells it of those opened later.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from taskorch_nb.batch.shared import SharedLedger
from taskorch_nb.batch.worker import (
    RunSummary,
    adopt,
    create_run,
    execute,
    summarize,
    worker_id,
)


class BatchWorker:
    """Runs a batch's tasks in this process, many at a time on its event loop."""

    def __init__(self, recipe: Callable[[], Any], ledger: str) -> None:
        self._recipe = recipe
        self._ledger_name = ledger
        self._host: Any = None
        self._ledger: SharedLedger | None = None
        self._cancelled: dict[int, RunSummary] = {}
        """By the driver's key: the runs a cancel ended (saved CANCELLED), for `close`."""

    def _ready(self) -> tuple[Any, SharedLedger]:
        if self._host is None or self._ledger is None:
            self._host = self._recipe()
            self._ledger = SharedLedger(self._host.store.ledger(self._ledger_name))
        return self._host, self._ledger

    async def run(self, task: str, options: dict[str, Any], run_budget: Decimal | None,
                  batch_budget: Decimal, key: int = -1) -> RunSummary:
        host, ledger = self._ready()
        run = create_run(host, ledger, task, options, run_budget, batch_budget)
        return await self._execute(key, host, run, extra=None, resumed=False)

    async def resume(self, run_id: str, extra: Decimal | None, key: int = -1) -> RunSummary:
        host, ledger = self._ready()
        host.runner.forget(run_id)  # another worker may have run it since: reload
        run = adopt(host.runner.get(run_id), ledger)
        return await self._execute(key, host, run, extra=extra, resumed=True)

    async def _execute(self, key: int, host: Any, run: Any, *, extra: Decimal | None,
                       resumed: bool) -> RunSummary:
        try:
            return await execute(host, run, extra=extra, resumed=resumed)
        except asyncio.CancelledError:
            # `ray.cancel` from the driver: the runner saved the run CANCELLED; the driver
            # learns its id and state from `close` (a cancelled call returns nothing).
            self._cancelled[key] = summarize(host, run)
            raise

    def where(self) -> str:
        return worker_id()

    def close(self) -> dict[int, RunSummary]:
        """Write what the store still holds and stop; the runs a cancel ended, by key."""
        if self._host is not None:
            self._host.close()
            self._host = None
        cancelled, self._cancelled = self._cancelled, {}
        return cancelled


__all__ = ["BatchWorker"]
