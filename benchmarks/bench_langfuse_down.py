"""What a dead Langfuse costs: per run, and at exit.

Run: .venv/bin/python benchmarks/bench_langfuse_down.py [--runs 3] [--flush-timeout 5]
Baseline: the same runs with Langfuse off, measured in the same process. Outages:
a closed port (connection refused) and a blackhole (accepts, never answers, the
loopback `HangingServer` of tests/). "awaited flush" replays the old runner, which
awaited `exporter.flush` after every run, for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from taskorch_nb import Orchestrator
from taskorch_nb.tracing.langfuse import LangfuseExporter
from tests.langfuse_server import HangingServer, closed_port


async def session(url: str | None, runs: int, flush_timeout: float, workdir: Path, *,
                  awaited: bool = False) -> tuple[list[float], float]:
    exporter = None
    if url is not None:
        exporter = LangfuseExporter(public_key=f"pk-bench-{time.monotonic_ns()}",
                                    secret_key="sk", base_url=url,
                                    timeout=flush_timeout, flush_timeout=flush_timeout)
    orch = Orchestrator(store=":memory:", langfuse=exporter if exporter else False)
    per_run = []
    for n in range(runs):
        start = time.perf_counter()
        await orch.run("Summarise", workflow="single", archetype="researcher",
                       workspace=workdir / f"{time.monotonic_ns()}-{n}")
        if awaited and exporter is not None:
            await asyncio.to_thread(exporter.flush)  # what the runner did before issue 15
        per_run.append(time.perf_counter() - start)
    start = time.perf_counter()
    await orch.aclose()
    return per_run, time.perf_counter() - start


async def main(runs: int, flush_timeout: float) -> None:
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        blackhole = stack.enter_context(HangingServer()).url
        refused = stack.enter_context(closed_port())
        work = Path(tmp)
        base, _ = await session(None, runs, flush_timeout, work)
        base_run = statistics.median(base)
        print(f"baseline (Langfuse off): median run {base_run * 1000:.1f} ms")
        print(f"{'outage':<12} {'mode':<14} {'median run ms':>14} {'added ms':>9} "
              f"{'close s':>8}")
        for name, url in (("closed port", refused), ("blackhole", blackhole)):
            for mode in ("background", "awaited flush"):
                per_run, close = await session(url, runs, flush_timeout, work,
                                               awaited=mode == "awaited flush")
                med = statistics.median(per_run)
                print(f"{name:<12} {mode:<14} {med * 1000:>14.1f} "
                      f"{(med - base_run) * 1000:>9.1f} {close:>8.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--flush-timeout", type=float, default=5.0)
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.flush_timeout))
