"""`Batch`: many runs of one workflow under one budget, on one engine.

A batch owns the budget all its runs share (a `Ledger`), the runs' order, and the
engine that executes them (`local`: asyncio in this process; `ray`: worker processes
on a Ray cluster). When the batch's budget runs out, the runs still to go end PAUSED
like any run out of money; when the batch is cancelled, they end CANCELLED; either way
`resume(extra_budget=...)` continues all of them, and only them.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import Generator, Iterable
from decimal import Decimal
from typing import Any, Protocol

from taskorch_nb.batch.worker import STATUSES, RunSummary
from taskorch_nb.core.budget import CostReport
from taskorch_nb.core.display import mimebundle
from taskorch_nb.core.money import format_usd, parse_usd
from taskorch_nb.errors import ConfigurationError, WorkflowError

#: The states of a run `resume()` continues.
RESUMABLE = ("PAUSED", "CANCELLED", "INTERRUPTED")

#: How many runs of a batch are in flight at once when `max_concurrency` is not given.
DEFAULT_CONCURRENCY = 64


class BatchEngine(Protocol):
    """Executes a batch's runs: first time (`start`) and again (`resume`)."""

    name: str

    def prepare(self, batch: Batch) -> None: ...

    async def start(self, batch: Batch) -> None: ...

    async def resume(self, batch: Batch, run_ids: list[str], extra: Decimal | None) -> None: ...

    def runs(self, batch: Batch) -> list[Any]: ...

    def cost(self, batch: Batch) -> CostReport: ...

    def extend(self, batch: Batch, extra: Decimal) -> None: ...

    def cancel_queued(self, batch: Batch) -> None: ...

    def breakers(self, batch: Batch) -> dict[str, dict[str, Any]]: ...

    def events(self, batch: Batch) -> list[Any]: ...


def check_tasks(tasks: Iterable[str]) -> list[str]:
    """The tasks as a list; an empty batch or a task that is not text is a caller's slip."""
    if isinstance(tasks, str):
        raise ConfigurationError("map() takes a list of tasks, got one string: wrap it in [...]"
                                 " or use run()")
    items = list(tasks)
    if not items:
        raise ConfigurationError("map() got no tasks: pass a non-empty list of task texts")
    for index, task in enumerate(items):
        if not isinstance(task, str) or not task.strip():
            raise ConfigurationError(f"task #{index} is {task!r}: every task must be a "
                                     "non-empty text")
    return items


def check_concurrency(value: Any) -> int:
    if value is None:
        return DEFAULT_CONCURRENCY
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"max_concurrency must be a whole number >= 1, got {value!r}")
    return value


class Batch:
    """Runs of one workflow over many tasks, sharing one `budget`.

    `await batch` (or `batch.wait()`) waits for every run; `status` counts the runs by
    state (QUEUED: not started yet), `cost` is the batch's spend against its budget,
    `runs` the `Run`s in task order (each with `run.worker`, "host:pid" where it ran),
    `events_df()` every event of every run, `resume(extra_budget=...)` continues the
    runs that did not finish (PAUSED, CANCELLED, INTERRUPTED).
    """

    def __init__(self, tasks: list[str], *, budget: Decimal, run_budget: Decimal | None,
                 options: dict[str, Any], engine: BatchEngine, max_concurrency: int) -> None:
        self.id = f"batch-{uuid.uuid4().hex[:12]}"
        self.tasks = tasks
        self.budget = budget
        self.run_budget = run_budget
        """The cap of each run (None: only the batch's budget bounds a run)."""
        self.options = options
        """What every run gets: workflow, archetype, max_rounds, names, ..."""
        self.engine = engine
        self.max_concurrency = max_concurrency
        self.summaries: list[RunSummary | None] = [None] * len(tasks)
        """Per task: what its run reported last (None: not started)."""
        self.error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = False

    # -- state ---------------------------------------------------------------------------

    @property
    def status(self) -> dict[str, int]:
        """Runs by state: QUEUED, RUNNING, PAUSED, COMPLETED, FAILED, CANCELLED,
        INTERRUPTED (every key present, zeros included)."""
        counts = Counter("QUEUED" if s is None or s.status == "PENDING" else s.status
                         for s in self.summaries)
        return {state: counts.get(state, 0) for state in STATUSES}

    @property
    def done(self) -> bool:
        """Every run ended or paused: nothing is queued or running."""
        status = self.status
        return status["QUEUED"] == 0 and status["RUNNING"] == 0

    @property
    def cost(self) -> CostReport:
        """The batch's spend against its budget (by agent and model: summed over runs)."""
        return self.engine.cost(self)

    @property
    def runs(self) -> list[Any]:
        """The `Run`s in task order (runs not started yet are left out)."""
        return self.engine.runs(self)

    def breakers(self) -> dict[str, dict[str, Any]]:
        """The breakers the batch's runs go through, by name (state, failures, ...)."""
        return self.engine.breakers(self)

    def events_df(self) -> Any:
        """Every event of every run of the batch as one DataFrame (`run_id` tells them
        apart), in the order they happened."""
        from taskorch_nb.tracing.frames import events_df

        return events_df(self.engine.events(self))

    def workers(self) -> dict[str, int]:
        """How many runs each worker ("host:pid") ran."""
        return dict(Counter(s.worker for s in self.summaries if s is not None and s.worker))

    # -- running -------------------------------------------------------------------------

    def schedule(self) -> Batch:
        """Start on the running loop; `await batch` waits. Once only."""
        if not self._started:
            self._started = True
            self._loop = asyncio.get_running_loop()
            self._task = self._loop.create_task(self._drive(self.engine.start))
            self._task.add_done_callback(self._ended)
        return self

    def _ended(self, task: asyncio.Task[None]) -> None:
        # Before any waiter wakes (the first callback of the task): a cancelled batch's
        # queued runs will never start by themselves, so they are not left QUEUED.
        if task.cancelled():
            self.engine.cancel_queued(self)

    async def wait(self) -> Batch:
        """Start if not started, and wait for every run; an engine failure is raised."""
        self.schedule()
        assert self._task is not None
        await asyncio.shield(self._task)
        if self.error is not None:
            raise self.error
        return self

    async def _drive(self, step: Any) -> None:
        try:
            await step(self)
        except Exception as exc:  # kept for `wait()` and the dashboard, and raised there
            self.error = exc
            raise

    def cancel(self) -> None:
        """Stop a started batch (from any thread): its running runs end CANCELLED (cost and
        events kept), and so do the queued ones (saved, no event, reason "batch cancelled
        before this run started"); `await batch` raises `CancelledError`. `resume()`
        continues them all later."""
        task, loop = self._task, self._loop
        if task is None or loop is None or task.done():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            task.cancel()
        else:
            with contextlib.suppress(RuntimeError):  # its loop closed: the batch had ended
                loop.call_soon_threadsafe(task.cancel)

    def __await__(self) -> Generator[Any, None, Batch]:
        return self.wait().__await__()

    async def resume(self, extra_budget: float | str | Decimal | None = None) -> Batch:
        """Continue the runs that did not finish (PAUSED, CANCELLED by `cancel()`,
        INTERRUPTED), each once, with `extra_budget` USD more for the batch (each run's own
        cap grows by as much when the runs have none). A run cut short goes on from its
        checkpoint: what it paid for is not asked again. `cancel()` stops it as it stops
        the first start."""
        if not self.done:
            raise WorkflowError(f"batch {self.id} is still running ({self._counts()}): "
                                "await it before resume()")
        extra = None if extra_budget is None else parse_usd(extra_budget, "extra_budget")
        waiting = [s.run_id for s in self.summaries
                   if s is not None and s.status in RESUMABLE]
        if extra is not None:
            self.budget += extra
            self.engine.extend(self, extra)
        if waiting:
            # A task of its own, as the first start: `cancel()` stops a resume too.
            self.error = None
            self._loop = asyncio.get_running_loop()
            self._task = self._loop.create_task(
                self._drive(lambda batch: self.engine.resume(batch, waiting, extra)))
            self._task.add_done_callback(self._ended)
            await self.wait()
        return self

    # -- display -------------------------------------------------------------------------

    def _counts(self) -> str:
        return ", ".join(f"{n} {state}" for state, n in self.status.items() if n)

    def __repr__(self) -> str:
        cost = self.cost
        return (f"Batch({self.id!r}, {len(self.tasks)} runs on {self.engine.name}: "
                f"{self._counts()}; cost={format_usd(cost.spent)} of {format_usd(cost.limit)})")

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return mimebundle(self, repr(self), include, exclude)


__all__ = ["DEFAULT_CONCURRENCY", "RESUMABLE", "Batch", "BatchEngine", "check_concurrency",
           "check_tasks"]
