"""Success-path overhead of `call_tool` against tenacity's `AsyncRetrying` alone.

Both wrap the same trivial async tool; the orchestrator records and persists
its event (SQLite store, batched writer) as in production. Two more rows time
the same call under a timeout and a sync tool (run in a worker thread), both
through the orchestrator's clock. Prints a table.
Run: .venv/bin/python benchmarks/bench_overhead.py [N]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tenacity import AsyncRetrying, stop_after_attempt, wait_exponential_jitter

from taskorch_nb import Orchestrator


async def tool(query: str) -> str:
    return query


async def bare(n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        await tool(query="q")
    return (time.perf_counter() - start) / n


async def tenacity_alone(n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(3),
            wait=wait_exponential_jitter(multiplier=2, max=30),
            reraise=True,
        ):
            with attempt:
                await tool(query="q")
    return (time.perf_counter() - start) / n


def sync_tool(query: str) -> str:
    return query


async def orchestrated(n: int, store: Path, **options: float) -> float:
    orch = Orchestrator(store=store)
    orch.tool(tool, name="search", **options)
    start = time.perf_counter()
    for _ in range(n):
        await orch.call_tool("search", query="q")
    elapsed = (time.perf_counter() - start) / n
    orch.close()
    return elapsed


async def orchestrated_sync(n: int, store: Path) -> float:
    orch = Orchestrator(store=store)
    orch.tool(sync_tool, name="search")
    start = time.perf_counter()
    for _ in range(n):
        await orch.call_tool("search", query="q")
    elapsed = (time.perf_counter() - start) / n
    orch.close()
    return elapsed


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rows: dict[str, list[float]] = {"bare await": [], "tenacity AsyncRetrying": [],
                                        "orch.call_tool (+event, SQLite)": [],
                                        "  ... with timeout=30": [],
                                        "  ... sync tool (worker thread)": []}
        for i in range(5):
            rows["bare await"].append(await bare(n))
            rows["tenacity AsyncRetrying"].append(await tenacity_alone(n))
            rows["orch.call_tool (+event, SQLite)"].append(
                await orchestrated(n, Path(tmp) / f"b{i}.db")
            )
            rows["  ... with timeout=30"].append(
                await orchestrated(n, Path(tmp) / f"t{i}.db", timeout=30.0)
            )
            rows["  ... sync tool (worker thread)"].append(
                await orchestrated_sync(max(1, n // 4), Path(tmp) / f"s{i}.db")
            )
    base = statistics.median(rows["tenacity AsyncRetrying"])
    print(f"{'path':<34} {'median us/call':>15} {'vs tenacity':>12}")
    for name, values in rows.items():
        med = statistics.median(values)
        print(f"{name:<34} {med * 1e6:>15.2f} {med / base:>11.2f}x")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000))
