"""engine="local": a batch's runs as asyncio tasks of this process, `max_concurrency` at once.

Runs are created up front (so a bad task fails `map()` before anything is spent) and
share one in-process `BudgetGuard` as the batch's budget, and this Orchestrator's
breakers: the first runs to meet a failing provider open its breaker for all the rest.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from taskorch_nb.batch.worker import (
    CANCELLED_QUEUED,
    Host,
    RunSummary,
    create_run,
    execute,
    out_of_money,
    park,
)
from taskorch_nb.core.budget import BudgetGuard, CostReport

if TYPE_CHECKING:
    from taskorch_nb.batch.batch import Batch


class LocalEngine:
    """Runs a batch on the host Orchestrator's own loop."""

    name = "local"

    def __init__(self, host: Host, *, budget: Decimal, warn_below: float = 0.20) -> None:
        self.host = host
        self.ledger = BudgetGuard(budget, warn_below=warn_below)
        """The batch's budget: every run's guard reserves here too."""
        self._runs: list[Any] = []
        self.spent_out = False
        """The batch's money is gone: queued runs are parked PAUSED, not started."""

    def prepare(self, batch: Batch) -> None:
        """Create every run (PENDING): a bad task or option raises here, before any run."""
        self._runs = [create_run(self.host, self.ledger, task, batch.options, batch.run_budget,
                                 batch.budget) for task in batch.tasks]
        batch.summaries = [RunSummary(run.id, "PENDING") for run in self._runs]

    async def start(self, batch: Batch) -> None:
        await self._execute(batch, range(len(self._runs)), extra=None, resumed=False)

    async def resume(self, batch: Batch, run_ids: list[str], extra: Decimal | None) -> None:
        wanted = set(run_ids)
        indexes = [i for i, run in enumerate(self._runs) if run.id in wanted]
        await self._execute(batch, indexes, extra=extra if batch.run_budget is None else None,
                            resumed=True)

    async def _execute(self, batch: Batch, indexes: Any, *, extra: Decimal | None,
                       resumed: bool) -> None:
        gate = asyncio.Semaphore(batch.max_concurrency)

        async def one(index: int) -> None:
            async with gate:
                run = self._runs[index]
                if self.spent_out:
                    batch.summaries[index] = park(self.host, run)
                    return
                batch.summaries[index] = RunSummary(run.id, "RUNNING")
                try:
                    batch.summaries[index] = await execute(self.host, run, extra=extra,
                                                           resumed=resumed)
                    self.spent_out = self.spent_out or out_of_money(batch.summaries[index])
                finally:
                    if batch.summaries[index].status == "RUNNING":  # cancelled mid-way
                        batch.summaries[index] = RunSummary(run.id, run.status.value,
                                                            run.guard.spent, run.worker,
                                                            run.error)

        await asyncio.gather(*(one(i) for i in indexes))

    def cancel_queued(self, batch: Batch) -> None:
        """The batch was cancelled: its runs not started yet end CANCELLED, resumable."""
        for index, summary in enumerate(batch.summaries):
            if summary is not None and summary.status == "PENDING":
                batch.summaries[index] = park(self.host, self._runs[index], "CANCELLED",
                                              CANCELLED_QUEUED)

    def runs(self, batch: Batch) -> list[Any]:
        return list(self._runs)

    def cost(self, batch: Batch) -> CostReport:
        return self.ledger.report()

    def extend(self, batch: Batch, extra: Decimal) -> None:
        self.ledger.extend(extra)
        self.spent_out = False

    def breakers(self, batch: Batch) -> dict[str, dict[str, Any]]:
        return {name: b.snapshot() for name, b in sorted(self.host.circuits.items())}

    def events(self, batch: Batch) -> list[Any]:
        events = [event for run in self._runs for event in run.events]
        events.sort(key=lambda e: e.seq)
        return events


__all__ = ["LocalEngine"]
