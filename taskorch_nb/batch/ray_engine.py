"""engine="ray": a batch's runs on the worker processes of a Ray cluster.

The cluster is the one you connected (`ray.init(address=...)` before `map`), else a
local one is started with `workers` CPUs. Each worker is a Ray actor with its own
Orchestrator on the same PostgreSQL store, so runs, events and patterns land in one
place, the batch's budget is one ledger row every worker reserves against, and a
breaker one worker opens is seen by the others (NOTIFY). A SQLite file cannot be
shared by processes on several machines: a Ray batch on one is refused.

Ray is an extra (`pip install 'taskorch_nb[ray]'`) and imported only here, when a Ray
batch starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import tempfile
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from taskorch_nb.batch.shared import SharedLedger
from taskorch_nb.batch.worker import (
    CANCELLED_QUEUED,
    NOT_STARTED,
    Host,
    RunSummary,
    create_run,
    out_of_money,
    park,
)
from taskorch_nb.core.budget import CostReport
from taskorch_nb.core.process import alive
from taskorch_nb.errors import ConfigurationError

if TYPE_CHECKING:
    from taskorch_nb.batch.batch import Batch

log = logging.getLogger(__name__)

#: Seconds a cancelled batch waits for its workers to end their runs CANCELLED (each step).
STOP_WAIT = 10.0

#: A `{name}` in a task, as the runner fills them.
_NAME = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigurationError("engine='ray' needs Ray: pip install 'taskorch_nb[ray]'") \
            from None
    return ray


def check_store(store: Any) -> None:
    """Only a store every worker can reach and write at once: PostgreSQL."""
    if getattr(store, "dialect", "sqlite") != "postgresql":
        raise ConfigurationError(
            f"engine='ray' needs a PostgreSQL store the workers share; this Orchestrator's "
            f"store is SQLite ({store.path}), which other processes and machines cannot share: "
            "Orchestrator(store='postgresql://user:password@host:5432/db') (or set "
            "TASKORCH_STORE), or use engine='local'")


def check_recipe(ray: Any, recipe: Any) -> None:
    """Every setting the workers build their Orchestrator from must reach another process:
    said now, in one line, rather than as a serialization trace from inside Ray."""
    dumps = ray.cloudpickle.dumps
    stuck = []
    for name, value in sorted(getattr(recipe, "keywords", {}).items()):
        try:
            dumps(value)
        except Exception as exc:  # any failure to serialize: named below
            stuck.append(f"{name} ({type(value).__name__}: {exc})")
    if stuck:
        raise ConfigurationError(
            "engine='ray' builds each worker's Orchestrator from this one's settings, but "
            f"these cannot be sent to another process: {'; '.join(stuck)}. Give them by "
            "name or as plain settings, or use engine='local'")


def connect(ray: Any, workers: int | None) -> int:
    """Use the cluster `ray.init` connected to, or start a local one; the worker count."""
    if not ray.is_initialized():
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # no token notice on a local one
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    if workers is not None:
        return workers
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


class RayEngine:
    """Sends a batch's runs to `workers` Ray actors, round robin, `max_concurrency` in
    flight in all; the driver keeps only their summaries and reads the rest from the
    store."""

    name = "ray"

    def __init__(self, host: Host, *, recipe: Callable[[], Any], budget: Decimal,
                 workers: int | None) -> None:
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                    or workers < 1):
            raise ConfigurationError(f"workers must be a whole number >= 1, got {workers!r}")
        check_store(host.store)
        check_recipe(import_ray(), recipe)  # Ray missing, or a setting that cannot travel
        self.host = host
        self.recipe = recipe
        self.workers = workers
        self.budget = budget
        self.ledger: SharedLedger | None = None
        self.spent_out = False
        """The batch's money is gone: queued runs are parked PAUSED, not sent to workers."""

    def prepare(self, batch: Batch) -> None:
        """Check the options and every task's `{name}`s here (a run is made in a scratch
        folder and dropped: nothing saved), and make the batch's ledger in the store."""
        names = batch.options.get("names") or {}
        for index, task in enumerate(batch.tasks):
            missing = sorted({m for m in _NAME.findall(task) if m not in names}) if names else []
            if missing:
                raise ConfigurationError(f"task #{index} mentions {{{missing[0]}}} but no such "
                                         "name is defined")
        with tempfile.TemporaryDirectory(prefix="taskorch-probe-") as scratch:
            probe = self.host.runner.create(batch.tasks[0], budget=batch.budget,
                                            workspace=scratch, **batch.options)
            self.host.runner.forget(probe.id)
        self.ledger = SharedLedger(self.host.store.ledger(batch.id, batch.budget))

    async def start(self, batch: Batch) -> None:
        work = [(i, "run", (task, batch.options, batch.run_budget, batch.budget))
                for i, task in enumerate(batch.tasks)]
        await self._dispatch(batch, work)

    async def resume(self, batch: Batch, run_ids: list[str], extra: Decimal | None) -> None:
        where = {s.run_id: i for i, s in enumerate(batch.summaries) if s is not None}
        extra = extra if batch.run_budget is None else None
        await self._dispatch(batch, [(where[r], "resume", (r, extra)) for r in run_ids])

    async def _dispatch(self, batch: Batch, work: list[tuple[int, str, tuple[Any, ...]]]) -> None:
        ray = import_ray()
        from taskorch_nb.batch.actor import BatchWorker

        count = connect(ray, self.workers)
        per_worker = max(1, -(-batch.max_concurrency // count))
        actor = ray.remote(num_cpus=1)(BatchWorker).options(max_concurrency=per_worker)
        actors = [actor.remote(self.recipe, batch.id) for _ in range(count)]
        gate = asyncio.Semaphore(batch.max_concurrency)
        workers: list[str] = []
        sent: dict[int, Any] = {}  # by task index: the worker call in flight

        async def one(slot: int, index: int, method: str, args: tuple[Any, ...]) -> None:
            async with gate:
                previous = batch.summaries[index]
                if self.spent_out:
                    batch.summaries[index] = self._park(batch, method, args)
                    return
                batch.summaries[index] = RunSummary(previous.run_id if previous else "",
                                                    "RUNNING")
                try:
                    sent[index] = getattr(actors[slot % count], method).remote(*args, index)
                    batch.summaries[index] = await sent[index]
                    del sent[index]  # kept if it did not return: `_stop` cancels it
                    self.spent_out = self.spent_out or out_of_money(batch.summaries[index])
                except BaseException:
                    batch.summaries[index] = previous
                    raise

        try:
            workers += await asyncio.gather(*(handle.where.remote() for handle in actors))
            await asyncio.gather(*(one(n, i, m, a) for n, (i, m, a) in enumerate(work)))
        except BaseException:
            # Cancelled (or failed): the runs in flight end CANCELLED, then the workers stop.
            await self._stop(ray, batch, actors, sent)
            await self._reclaim(workers)
            raise
        for handle in actors:
            try:
                await handle.close.remote()  # flush what each worker's store still holds
            finally:
                ray.kill(handle)

    async def _stop(self, ray: Any, batch: Batch, actors: list[Any],
                    sent: dict[int, Any]) -> None:
        """Cancel the calls in flight (Ray cancels their asyncio task in the worker, so the
        runner saves each run CANCELLED, as the local engine does), take the workers'
        word for what they cancelled, and kill them. A worker that does not answer
        within `STOP_WAIT` is killed anyway: its runs read INTERRUPTED once it is gone."""
        for ref in sent.values():
            ray.cancel(ref)
        if sent:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*sent.values(), return_exceptions=True),
                                       STOP_WAIT)
        for handle in actors:
            try:
                cancelled = await asyncio.wait_for(handle.close.remote(), STOP_WAIT)
            except Exception as exc:  # the worker died or hangs: killed below all the same
                log.warning("taskorch: batch %s: a worker did not stop cleanly (%s: %s)",
                            batch.id, type(exc).__name__, exc)
                cancelled = {}
            finally:
                ray.kill(handle)
            for index, summary in cancelled.items():
                if 0 <= index < len(batch.summaries):
                    batch.summaries[index] = summary

    async def _reclaim(self, workers: list[str]) -> None:
        """Give back what the stopped workers held (their calls in flight will never settle
        it), once each is gone; a worker on another host is taken as gone once killed."""
        assert self.ledger is not None
        ledger = self.ledger.ledger
        here = socket.gethostname()
        for worker in workers:
            host, _, pid = worker.rpartition(":")
            for _ in range(100):  # ray.kill returns at once; the process ends soon after
                if host != here or not alive(int(pid)):
                    break
                await asyncio.sleep(0.05)
        for holder in ledger.holders():
            if holder.rpartition(":")[0] in workers:
                ledger.reclaim(holder)

    def _park(self, batch: Batch, method: str, args: tuple[Any, ...]) -> RunSummary:
        """A queued run once the money is gone: made PAUSED in the store by the driver, so
        `resume` finds it like the others; a paused one stays as it is."""
        if method == "resume":
            return RunSummary(args[0], "PAUSED", error=NOT_STARTED)
        assert self.ledger is not None
        task, options, run_budget, budget = args
        run = create_run(self.host, self.ledger, task, options, run_budget, budget)
        summary = park(self.host, run)
        self.host.runner.forget(run.id)
        return summary

    def cancel_queued(self, batch: Batch) -> None:
        """The batch was cancelled: the tasks never sent to a worker become runs saved
        CANCELLED by the driver, so `resume` finds them like the runs a worker cancelled."""
        assert self.ledger is not None
        for index, summary in enumerate(batch.summaries):
            if summary is None or not summary.run_id:
                run = create_run(self.host, self.ledger, batch.tasks[index], batch.options,
                                 batch.run_budget, batch.budget)
                batch.summaries[index] = park(self.host, run, "CANCELLED", CANCELLED_QUEUED)
                self.host.runner.forget(run.id)

    # -- what the driver shows -----------------------------------------------------------

    def runs(self, batch: Batch) -> list[Any]:
        """The runs as the store has them now (their events included)."""
        runner = self.host.runner
        loaded = []
        for summary in batch.summaries:
            if summary is None or not summary.run_id:
                continue
            runner.forget(summary.run_id)  # workers changed it: read it again
            loaded.append(runner.get(summary.run_id))
        return loaded

    def cost(self, batch: Batch) -> CostReport:
        assert self.ledger is not None
        return self.ledger.report()

    def extend(self, batch: Batch, extra: Decimal) -> None:
        assert self.ledger is not None
        self.ledger.extend(extra)
        self.spent_out = False

    def breakers(self, batch: Batch) -> dict[str, dict[str, Any]]:
        return dict(sorted(self.host.store.load_circuits().items()))

    def events(self, batch: Batch) -> list[Any]:
        store = self.host.store
        events = [e for s in batch.summaries if s is not None and s.run_id
                  for e in store.events(s.run_id)]
        events.sort(key=lambda e: (e.wall, e.seq))
        return events


__all__ = ["RayEngine", "check_recipe", "check_store", "connect", "import_ray"]
