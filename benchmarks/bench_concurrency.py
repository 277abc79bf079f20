"""200 concurrent `single` runs on the simulated provider at 50 ms per model call.

Ideal wall time: every run's model calls back to back, all runs in parallel, so
ideal = calls per run x 50 ms. Throughput = ideal / measured. Real clock, an
in-memory store. Run: .venv/bin/python benchmarks/bench_concurrency.py [RUNS]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

from taskorch_nb import Orchestrator

LATENCY = 0.050


async def main(runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        orch = Orchestrator(store=":memory:", latency=LATENCY, budget=5.0)
        # One warm-up run: imports, price lookups, the first workspace.
        await orch.run("warm up", workflow="single", archetype="researcher",
                       workspace=Path(tmp) / "warm")
        calls_before = orch.provider.call_count
        start = time.perf_counter()
        results = await asyncio.gather(*(
            orch.run(f"Summarise topic {i}", workflow="single", archetype="researcher",
                     workspace=Path(tmp) / f"ws{i}")
            for i in range(runs)
        ))
        wall = time.perf_counter() - start
        calls = (orch.provider.call_count - calls_before) / runs
        orch.close()
    ideal = calls * LATENCY
    ok = sum(r.status == "COMPLETED" for r in results)
    print(f"{'runs':>6} {'calls/run':>10} {'ideal s':>8} {'wall s':>8} {'throughput':>11}")
    print(f"{runs:>6} {calls:>10.1f} {ideal:>8.3f} {wall:>8.3f} {ideal / wall:>10.1%}")
    print(f"completed: {ok}/{runs}")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 200))
