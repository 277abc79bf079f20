"""Budget guard throughput: reserve + commit pairs per second, 1 and 8 threads.

Baseline, measured in the same run: a bare `threading.Lock` guarding two
Decimal additions (the least any thread-safe ledger must do). Also the price
prices the guard is fed from: `PriceTable.cost` (genai-prices' calculation,
memoised per model), its worst case, and genai-prices' `calc_price` itself.

    .venv/bin/python benchmarks/bench_budget.py [--ops N]
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable
from decimal import Decimal

from taskorch_nb.core.budget import BudgetGuard
from taskorch_nb.core.events import EventBus
from taskorch_nb.core.pricing import PriceTable

AMOUNT = Decimal("0.0012")
ACTUAL = Decimal("0.0010")


def run_threads(threads: int, ops: int, body: Callable[[int], None]) -> float:
    """Ops per second of `body(n)` split over `threads` threads started together."""
    per_thread = ops // threads
    start = threading.Barrier(threads + 1)

    def worker() -> None:
        start.wait()
        body(per_thread)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in pool:
        t.join()
    return per_thread * threads / (time.perf_counter() - t0)


def baseline(threads: int, ops: int) -> float:
    lock = threading.Lock()
    totals = {"spent": Decimal(0), "reserved": Decimal(0)}

    def body(n: int) -> None:
        for _ in range(n):
            with lock:
                totals["reserved"] += AMOUNT
            with lock:
                totals["reserved"] -= AMOUNT
                totals["spent"] += ACTUAL

    return run_threads(threads, ops, body)


def guarded(threads: int, ops: int, *, with_bus: bool) -> float:
    limit = ACTUAL * ops * 2
    bus = EventBus()
    bus.subscribe(lambda e: None)
    guard = BudgetGuard(limit, on_event=bus.emit if with_bus else None)

    def body(n: int) -> None:
        for _ in range(n):
            guard.commit(guard.reserve(AMOUNT, agent="a", model="m"), ACTUAL)

    rate = run_threads(threads, ops, body)
    assert guard.reserved == 0
    assert guard.report().calls == ops // threads * threads
    return rate


def best(fn: Callable[[], float], repeat: int = 3) -> float:
    return max(fn() for _ in range(repeat))


def per_call_us(fn: Callable[[], object], n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=80_000, help="reserve+commit pairs per run")
    ops = parser.parse_args().ops

    print(f"reserve+commit pairs per second ({ops} pairs, best of 3)")
    print(f"{'threads':>7}  {'bare lock':>12}  {'guard':>12}  {'guard+bus':>12}  "
          f"{'guard/lock':>10}  {'us/pair':>8}")
    for threads in (1, 8):
        base = best(lambda t=threads: baseline(t, ops))
        plain = best(lambda t=threads: guarded(t, ops, with_bus=False))
        bus = best(lambda t=threads: guarded(t, ops, with_bus=True))
        print(f"{threads:>7}  {base:>12,.0f}  {plain:>12,.0f}  {bus:>12,.0f}  "
              f"{plain / base:>10.2f}  {1e6 / plain:>8.2f}")

    from genai_prices import Usage, calc_price

    table = PriceTable()
    table.resolve("anthropic", "claude-sonnet-4-5")
    n = 20_000
    fresh = iter(range(10**9))

    def repeated() -> object:
        return table.cost("anthropic", "claude-sonnet-4-5", input_tokens=1200, output_tokens=300,
                          cached_tokens=200, cache_write_tokens=100)

    def new_counts() -> object:  # counts never seen before: genai-prices calculates
        return table.cost("anthropic", "claude-sonnet-4-5", input_tokens=1200,
                          output_tokens=next(fresh), cached_tokens=200, cache_write_tokens=100)

    def worst() -> object:  # a growing prompt: a new estimate every call
        return table.worst_case("anthropic", "claude-sonnet-4-5",
                                input_tokens=next(fresh) % 300_000, max_tokens=1024)

    def calc() -> object:  # the same usage priced by genai-prices from scratch
        usage = Usage(input_tokens=1200, output_tokens=next(fresh), cache_read_tokens=200,
                      cache_write_tokens=100)
        return calc_price(usage, "claude-sonnet-4-5", provider_id="anthropic")

    cases = {"hit": (repeated, n), "miss": (new_counts, n // 10), "reserve": (worst, n),
             "theirs": (calc, n // 10)}
    best_us: dict[str, float] = {}
    for _ in range(3):  # interleaved, best of 3: the machine's load hits all alike
        for name, (fn, calls) in cases.items():
            best_us[name] = min(best_us.get(name, float("inf")), per_call_us(fn, calls))
    hit, miss, reserve, theirs = (best_us[k] for k in ("hit", "miss", "reserve", "theirs"))
    print()
    print("price of one call, claude-sonnet-4-5 with cache reads and writes (us)")
    print(f"{'PriceTable.cost (counts seen)':<36}{hit:>8.2f}")
    print(f"{'PriceTable.cost (new counts)':<36}{miss:>8.2f}")
    print(f"{'PriceTable.worst_case':<36}{reserve:>8.2f}")
    print(f"{'genai_prices.calc_price':<36}{theirs:>8.2f}")

if __name__ == "__main__":
    main()
