"""Starting, resuming and summing up one run of a batch, wherever it executes.

The same steps serve the local engine (in this process) and each Ray worker (in its
own process, with its own Orchestrator on the shared store): create the run, put its
guard inside the batch's budget, execute, and report a `RunSummary`, a small picklable
record the driver counts and shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from taskorch_nb.batch.guard import BatchRunGuard, Ledger
from taskorch_nb.core.process import worker_id

#: The states a batch counts, in the order the dashboard shows them.
STATUSES = ("QUEUED", "RUNNING", "PAUSED", "COMPLETED", "FAILED", "CANCELLED", "INTERRUPTED")


#: Seconds a run refused by reservations other runs hold waits before it tries again.
MONEY_POLL = 0.05


@dataclass(frozen=True, slots=True)
class RunSummary:
    """What the driver needs of one run: its id, state, spend and where it ran."""

    run_id: str
    status: str
    spent: Decimal = Decimal(0)
    worker: str | None = None
    error: str | None = None
    provider_calls: int = 0
    """The worker's provider calls so far (all its runs): attempts really sent."""


class RunnerLike(Protocol):
    def create(self, task: str, **options: Any) -> Any: ...

    def save(self, run: Any) -> None: ...

    async def execute(self, run: Any, *, resumed: bool = False) -> Any: ...

    async def resume(self, run: Any, *, extra_budget: Any = None) -> Any: ...

    def get(self, run_id: str) -> Any: ...

    def forget(self, run_id: str) -> None: ...


class Host(Protocol):
    """What a batch needs of an Orchestrator (engine/ satisfies it; batch/ stands below)."""

    runner: RunnerLike
    provider: Any
    circuits: dict[str, Any]
    store: Any
    clock: Any


def create_run(host: Host, ledger: Ledger, task: str, options: dict[str, Any],
               run_budget: Decimal | None, batch_budget: Decimal) -> Any:
    """A PENDING run whose guard reserves against `ledger` too; its own cap is
    `run_budget`, or the batch's budget when runs have no cap of their own."""
    run = host.runner.create(task, budget=batch_budget if run_budget is None else run_budget,
                             **options)
    run.guard = BatchRunGuard.wrapping(run.guard, ledger)
    return run


def adopt(run: Any, ledger: Ledger) -> Any:
    """A run loaded from the store (another process made it) back inside the batch."""
    if not isinstance(run.guard, BatchRunGuard):
        run.guard = BatchRunGuard.wrapping(run.guard, ledger)
    return run


async def execute(host: Host, run: Any, *, extra: Decimal | None = None,
                  resumed: bool = False) -> RunSummary:
    """Execute (or resume, with `extra` USD more for the run's own cap) and sum up; the
    runner records `run.worker` and saves it with the run (the driver reads it back).
    A run the batch's cancel ended resumes too: from its checkpoint when it had started
    (nothing paid is asked again), from the start when it had not."""
    if resumed and run.status.value == "CANCELLED":
        if extra is not None:
            run.guard.extend(extra)
        await host.runner.execute(run, resumed=bool(run.events))
    elif resumed:
        await host.runner.resume(run, extra_budget=extra)
    else:
        await host.runner.execute(run)
    # Paused only because other runs held the money for their calls in flight: go on
    # once they settle (nothing paid is repeated), until the batch's money is really gone.
    guard = run.guard
    while run.status.value == "PAUSED" and guard.waits_for_money():
        # Resume once the call would fit again (or the money is really gone), not blindly:
        # each try that fails is a pause more in the run's events.
        while guard.batch.remaining < guard.refused and guard.waits_for_money():
            await host.clock.sleep(MONEY_POLL)
        if guard.waits_for_money():
            await host.runner.resume(run)
    return summarize(host, run)


#: Why a run that never started is PAUSED.
NOT_STARTED = "batch budget exceeded before this run started; resume the batch with extra_budget="


#: Why a run that never started is CANCELLED.
CANCELLED_QUEUED = "batch cancelled before this run started; batch.resume() starts it"


def park(host: Host, run: Any, status: str = "PAUSED", reason: str = NOT_STARTED) -> RunSummary:
    """End a run that has not started, as `status` with `reason` (PAUSED: the batch's money
    is gone; CANCELLED: the batch was cancelled): saved, no event, no call.
    `batch.resume(...)` starts it like the runs that did start."""
    run.status = type(run.status)(status)
    run.error = reason
    host.runner.save(run)
    return RunSummary(run.id, status, error=reason)


def out_of_money(summary: RunSummary) -> bool:
    """The run paused because the batch's budget is spent (not held by others: `execute`
    waits those out), so runs still queued would only start to pause."""
    return summary.status == "PAUSED" and (summary.error or "").startswith(
        ("batch budget exceeded", "shared budget"))


def summarize(host: Host, run: Any) -> RunSummary:
    return RunSummary(run_id=run.id, status=run.status.value, spent=run.guard.spent,
                      worker=run.worker, error=run.error,
                      provider_calls=int(getattr(host.provider, "call_count", 0)))


__all__ = ["CANCELLED_QUEUED", "STATUSES", "Host", "RunSummary", "adopt", "create_run", "execute",
           "out_of_money", "park", "summarize", "worker_id"]
