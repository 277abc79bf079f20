"""engine="ray": a batch over worker processes sharing one PostgreSQL store.

The slow tests start a local Ray (num_cpus=2) once for the module and stop it after.
"""

from __future__ import annotations

import asyncio
import functools
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest

from taskorch_nb import (
    CircuitBreaker,
    ConfigurationError,
    FakeClock,
    Orchestrator,
    RetryPolicy,
    RunStatus,
)

PG_ENV = "TASKORCH_TEST_PG_URL"
ONE = {"workflow": "single", "archetype": "researcher"}
WORST = Decimal("0.17")  # a researcher call's worst-case reservation on sim-small

needs_pg = pytest.mark.skipif(
    not os.environ.get(PG_ENV),
    reason=f"{PG_ENV} is not set; start one with: eval \"$(scripts/start-postgres.sh)\"")
slow_pg = [pytest.mark.slow, pytest.mark.postgres, needs_pg]


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A new, empty database for one test (its own breakers, ledger and runs)."""
    import psycopg

    base = os.environ[PG_ENV]
    name = f"batch_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield base.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _cost_of_one() -> Decimal:
    with Orchestrator(store=":memory:", clock=FakeClock()) as orch:
        run = orch.run_sync("Summarize topic 0", **ONE)
        assert run.status is RunStatus.COMPLETED
        return run.cost.spent


def test_a_ray_batch_on_sqlite_is_refused(tmp_path) -> None:
    with Orchestrator(store=str(tmp_path / "t.db"), clock=FakeClock()) as orch:
        with pytest.raises(ConfigurationError, match="engine='ray' needs a PostgreSQL store"):
            orch.map(["a task"], engine="ray")
        assert orch.history().empty


def test_a_setting_that_cannot_reach_a_worker_is_named() -> None:
    pytest.importorskip("ray")
    from taskorch_nb.batch.ray_engine import check_recipe, import_ray

    recipe = functools.partial(Orchestrator, breaker=CircuitBreaker(failure_threshold=2),
                               retry=RetryPolicy(initial_wait=0.1))
    with pytest.raises(ConfigurationError, match=r"cannot be sent to another process: "
                       r"breaker \(CircuitBreaker: .*lock"):
        check_recipe(import_ray(), recipe)
    check_recipe(import_ray(), functools.partial(Orchestrator, retry=RetryPolicy()))


def test_importing_the_package_and_a_local_batch_load_no_ray() -> None:
    code = ("import sys, taskorch_nb\n"
            "orch = taskorch_nb.Orchestrator(store=':memory:')\n"
            "orch.map_sync(['a task'], workflow='single', archetype='researcher')\n"
            "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == "[]"


@pytest.mark.usefixtures("ray_cluster")
@pytest.mark.parametrize("_", [pytest.param(None, id="pg", marks=slow_pg)])
async def test_forty_runs_on_two_workers_share_the_budget_to_the_cent(_, pg_url) -> None:
    one = _cost_of_one()
    budget = one * 20 + WORST
    tasks = [f"Summarize topic {i}" for i in range(40)]
    async with Orchestrator(store=pg_url) as orch:
        batch = await orch.map(tasks, budget=budget, engine="ray", workers=2,
                               max_concurrency=4, **ONE)
        status = batch.status
        assert status["COMPLETED"] >= 1
        assert status["PAUSED"] == 40 - status["COMPLETED"] > 0
        runs = batch.runs
        assert [r.task for r in runs] == tasks
        pids = {r.worker.rsplit(":", 1)[1] for r in runs if r.worker}
        assert len(pids) == 2  # two worker processes, neither of them this one
        assert str(os.getpid()) not in pids
        cost = batch.cost
        assert cost.spent <= budget  # exact Decimal: to the cent, and below it
        # It stopped only when no call fit: each refused run asked for more than is left.
        asked = [[e.amount for e in r.events if e.type == "budget.rejected"][-1]
                 for r in runs if r.status is RunStatus.PAUSED and r.events]
        assert asked
        assert cost.limit - cost.spent < min(asked)
        assert cost.reserved == 0
        assert cost.spent == sum(r.cost.spent for r in runs)
        paused = [r for r in runs if r.status is RunStatus.PAUSED]
        assert all("budget exceeded" in r.error for r in paused)
        assert {e.type for r in paused for e in r.events[-1:]} == {"run.paused"}
        # Once the money was gone, the queued runs were parked, not sent to a worker.
        parked = [r for r in paused if not r.events]
        assert parked
        assert all(r.worker is None for r in parked)

        await batch.resume(extra_budget=2)
        assert batch.status["COMPLETED"] == 40
        runs = batch.runs
        assert batch.cost.spent == sum(r.cost.spent for r in runs)
        assert batch.cost.calls == 80  # two model calls per run: none paid twice
        assert batch.cost.limit == budget + 2
        frame = batch.events_df()
        assert (frame["type"] == "run.completed").sum() == 40


@pytest.mark.usefixtures("ray_cluster")
@pytest.mark.parametrize("_", [pytest.param(None, id="pg", marks=slow_pg)])
async def test_a_breaker_one_worker_opens_stops_the_others(_, pg_url) -> None:
    fast = RetryPolicy(initial_wait=0.01, max_wait=0.05)
    async with Orchestrator(store=pg_url, faults="p1:503", retry=fast) as orch:
        # One run at a time: the second worker starts after the first opened the breaker.
        batch = await orch.map([f"Summarize topic {i}" for i in range(40)], budget=5,
                               engine="ray", workers=2, max_concurrency=1, **ONE)
        assert batch.status["PAUSED"] == 40
        calls = {}
        for summary in batch.summaries:
            calls[summary.worker] = max(calls.get(summary.worker, 0), summary.provider_calls)
        assert len(calls) == 2
        # Three attempts (the retry policy's, and the breaker's threshold) by the first
        # worker, then nothing: not 3 x 40.
        assert sorted(calls.values()) == [0, 3]
        runs = batch.runs
        assert "503" in runs[0].error
        assert all("is OPEN" in r.error for r in runs[1:])
        assert batch.breakers()[orch.model_key()]["state"] == "OPEN"
        assert batch.cost.spent == 0


@pytest.mark.usefixtures("ray_cluster")
@pytest.mark.parametrize("_", [pytest.param(None, id="pg", marks=slow_pg)])
async def test_a_cancelled_batch_ends_its_runs_cancelled_and_gives_back_what_they_held(
        _, pg_url) -> None:
    async with Orchestrator(store=pg_url, latency=60.0) as orch:  # every call hangs
        batch = orch.map([f"Summarize topic {i}" for i in range(6)], budget=5, engine="ray",
                         workers=2, max_concurrency=4, **ONE)
        ledger = orch.store.ledger(batch.id)
        while ledger.state().reserved == 0:  # the workers' first calls are in flight
            await asyncio.sleep(0.05)
        batch.cancel()
        with pytest.raises(asyncio.CancelledError):
            await batch
        state = ledger.state()
        assert state.reserved == 0  # the killed workers' reservations were given back
        assert state.spent == 0
        assert ledger.holders() == {}
        # The runs in flight ended CANCELLED and were saved so, by their workers, at once:
        # not RUNNING until their process is gone. The tasks never sent were saved
        # CANCELLED by the driver: nothing is left QUEUED, all of it resumable.
        stored = orch.store.runs()
        assert {row["status"] for row in stored} == {"CANCELLED"}
        assert batch.status["CANCELLED"] == len(stored) == 6
        runs = batch.runs
        assert sorted(r.id for r in runs) == sorted(row["id"] for row in stored)
        started = [r for r in runs if r.events]
        assert started, "no run had started"
        assert all(r.status is RunStatus.CANCELLED and r.worker for r in started)
        never = [r for r in runs if not r.events]
        assert all(r.worker is None and r.error.startswith("batch cancelled before")
                   for r in never)
        assert len(started) + len(never) == 6


@pytest.mark.usefixtures("ray_cluster")
@pytest.mark.parametrize("_", [pytest.param(None, id="pg", marks=slow_pg)])
async def test_resume_after_a_cancel_runs_on_workers_what_did_not_finish_once(
        _, pg_url) -> None:
    async with Orchestrator(store=pg_url, latency=1.0) as orch:
        tasks = [f"Summarize topic {i}" for i in range(8)]
        batch = orch.map(tasks, budget=5, engine="ray", workers=2, max_concurrency=2, **ONE)
        ledger = orch.store.ledger(batch.id)
        while ledger.state().reserved == 0:  # the workers' first calls are in flight
            await asyncio.sleep(0.05)
        batch.cancel()
        with pytest.raises(asyncio.CancelledError):
            await batch
        status = batch.status
        assert status["QUEUED"] == status["RUNNING"] == 0
        assert sum(status.values()) == 8
        assert status["CANCELLED"] == 8 - status["COMPLETED"] > 0
        finished = {r.id: len(r.events) for r in batch.runs if r.status is RunStatus.COMPLETED}

        await batch.resume(extra_budget=1)
        assert batch.status["COMPLETED"] == 8
        runs = batch.runs
        assert [r.task for r in runs] == tasks
        assert all(len(r.events) == finished[r.id] for r in runs if r.id in finished)
        for run in runs:
            kinds = [e.type for e in run.events]
            assert kinds.count("run.started") == kinds.count("run.completed") == 1, kinds
        assert len({r.worker for r in runs}) >= 2
        cost = batch.cost
        assert cost.calls == 16  # two paid calls per run: none paid twice
        assert cost.spent == sum(r.cost.spent for r in runs)
        assert cost.reserved == 0
        assert cost.limit == 6
