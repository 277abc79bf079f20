"""The shared store: what a budget shared by processes costs, how fast breakers travel.

1. reserve + settle pairs per second through `BudgetGuard(ledger=...)`, 1 thread and
   PROCESSES processes x THREADS threads, on the SQLite file and on PostgreSQL;
   baseline in the same run: the in-memory guard alone.
2. breaker propagation: one process opens a breaker, another (listening) adopts it;
   the delay from the opening's wall time to the adoption, over `--trips` trips.

    eval "$(scripts/start-postgres.sh)"
    .venv/bin/python benchmarks/bench_shared_store.py [--ops N] [--trips N]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import tempfile
import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from decimal import Decimal

from taskorch_nb.core.backends import open_store
from taskorch_nb.core.budget import BudgetGuard

AMOUNT = Decimal("0.0012")
ACTUAL = Decimal("0.0010")
PROCESSES, THREADS = 3, 3


def _pairs(target: str | None, name: str, ops: int, threads: int) -> float:
    """Seconds for `ops` reserve+settle pairs over `threads` threads of this process."""
    store = open_store(target) if target else None
    ledger = store.ledger(name) if store else None
    guards = [BudgetGuard(10**6, ledger=ledger) for _ in range(threads)]
    start = threading.Barrier(threads + 1)

    errors: list[BaseException] = []

    def work(guard: BudgetGuard) -> None:
        start.wait()
        try:
            for _ in range(ops // threads):
                guard.commit(guard.reserve(AMOUNT), ACTUAL)
        except BaseException as exc:  # a figure from failed pairs would be a lie
            errors.append(exc)

    pool = [threading.Thread(target=work, args=(g,)) for g in guards]
    for t in pool:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - t0
    if store:
        store.close()
    if errors:
        raise errors[0]
    return elapsed


def ledger_throughput(pool: ProcessPoolExecutor, label: str, target: str | None,
                      ops: int) -> None:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    if target:
        setup = open_store(target)
        setup.ledger(name, 10**6)
        setup.close()
    one = ops / _pairs(target, name, ops, 1)
    # PROCESSES x THREADS at once: the slowest process sets the pace.
    futures = [pool.submit(_pairs, target, name, ops, THREADS) for _ in range(PROCESSES)]
    many = PROCESSES * ops / max(f.result() for f in futures)
    print(f"{label:<22} {one:>10,.0f} /s (1 thread)   "
          f"{many:>10,.0f} /s ({PROCESSES} processes x {THREADS} threads)")


def _open_breakers(url: str, prefix: str, trips: int) -> None:
    from taskorch_nb import Orchestrator

    orch = Orchestrator(store=url)
    for n in range(trips):
        breaker = orch.breaker(f"{prefix}-{n}")
        for _ in range(breaker.failure_threshold):
            breaker.record_failure()
        time.sleep(0.05)
    orch.close()


def breaker_propagation(pool: ProcessPoolExecutor, url: str, trips: int) -> None:
    from taskorch_nb import Orchestrator

    delays: list[float] = []
    done = threading.Event()
    prefix = f"bench-{uuid.uuid4().hex[:8]}"

    def heard(name: str, state: str, failures: int, opened_wall: float | None,
              held: bool) -> None:
        if name.startswith(prefix) and state == "OPEN" and opened_wall is not None:
            delays.append(time.time() - opened_wall)
            if len(delays) == trips:
                done.set()

    orch = Orchestrator(store=url)
    orch.store.watch_circuits(heard)
    time.sleep(0.5)  # the listener is connected
    pool.submit(_open_breakers, url, prefix, trips).result()
    done.wait(30)
    orch.close()
    ms = sorted(d * 1000 for d in delays)
    print(f"breaker OPEN seen by another process: {len(ms)}/{trips} trips, median "
          f"{statistics.median(ms):.1f} ms, max {ms[-1]:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ops", type=int, default=900)
    parser.add_argument("--trips", type=int, default=20)
    args = parser.parse_args()
    pg = os.environ.get("TASKORCH_TEST_PG_URL")
    spawn = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp, \
            ProcessPoolExecutor(PROCESSES, mp_context=spawn) as pool:
        ledger_throughput(pool, "in-memory guard", None, args.ops * 10)
        ledger_throughput(pool, "SQLite ledger", os.path.join(tmp, "t.db"), args.ops)
        if pg:
            ledger_throughput(pool, "PostgreSQL ledger", pg, args.ops)
            breaker_propagation(pool, pg, args.trips)
        else:
            print("TASKORCH_TEST_PG_URL is not set: PostgreSQL skipped")


if __name__ == "__main__":
    main()
