"""Batch throughput: engine="local" against engine="ray" with 1, 2 and 4 workers.

N `single` runs (researcher: 2 model calls each) on the simulated provider, all on one
PostgreSQL store (the Ray workers need it; the local engine is measured on it too, and
on SQLite, for the baseline). Each configuration is timed end to end (`await batch`:
Ray's actor start included) and again for a 1-run batch, whose time is the fixed cost;
runs/s = (N - 1) / (t_N - t_1) is the steady rate. The Ray cluster is a local one with
`--cpus` CPUs, started once, before the clock.

    eval "$(scripts/start-postgres.sh)"
    .venv/bin/python benchmarks/bench_batch.py [--runs 400] [--latency 0] [--cpus 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid

from taskorch_nb import Orchestrator

ONE = {"workflow": "single", "archetype": "researcher"}


def fresh_database(base: str) -> str:
    import psycopg

    name = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return base.rsplit("/", 1)[0] + "/" + name


async def timed(store: str, runs: int, latency: float, engine: str,
                workers: int | None, concurrency: int) -> float:
    orch = Orchestrator(store=store, latency=latency, keep_workspaces=10_000)
    try:
        tasks = [f"Summarize topic {i}" for i in range(runs)]
        options = {"workers": workers} if engine == "ray" else {}
        start = time.perf_counter()
        batch = await orch.map(tasks, budget=1000, engine=engine, max_concurrency=concurrency,
                               **options, **ONE)
        wall = time.perf_counter() - start
        assert batch.status["COMPLETED"] == runs, batch.status
        return wall
    finally:
        await orch.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per model call")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--store", default=os.environ.get("TASKORCH_TEST_PG_URL"),
                        help="a PostgreSQL URL (default: $TASKORCH_TEST_PG_URL)")
    args = parser.parse_args()
    if not args.store:
        parser.error("needs a PostgreSQL URL: eval \"$(scripts/start-postgres.sh)\" first")
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=max(args.cpus, 4), include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    print(f"{args.runs} single runs (2 calls each), {args.latency:g} s per call, "
          f"{os.cpu_count()} cores, concurrency {args.concurrency}")
    print(f"{'engine':<22}{'1 run s':>9}{'N runs s':>10}{'runs/s':>9}{'x local PG':>11}")
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        configs = [("local (SQLite)", "local", None, None),
                   ("local (PostgreSQL)", "local", None, "pg"),
                   ("ray, 1 worker", "ray", 1, "pg"), ("ray, 2 workers", "ray", 2, "pg"),
                   ("ray, 4 workers", "ray", 4, "pg")]
        for label, engine, workers, kind in configs:
            store = (fresh_database(args.store) if kind == "pg"
                     else os.path.join(scratch, f"{uuid.uuid4().hex}.db"))
            one = asyncio.run(timed(store, 1, args.latency, engine, workers, args.concurrency))
            full = asyncio.run(timed(store, args.runs, args.latency, engine, workers,
                                     args.concurrency))
            rate = (args.runs - 1) / max(full - one, 1e-9)
            rows.append((label, one, full, rate))
            base = rows[1][3] if len(rows) > 1 else rate  # local on the same PostgreSQL
            print(f"{label:<22}{one:>9.2f}{full:>10.2f}{rate:>9.0f}{rate / base:>11.2f}")
    ray.shutdown()


if __name__ == "__main__":
    main()
