"""Cost per run at scale: 2,000 concurrent `single` runs at 1 s per model call, and events_df.

Run: .venv/bin/python benchmarks/bench_scale.py [--runs 2000] [--latency 1.0]
                                                [--events 1000000] [--skip-naive]

1. Runs. Every run is the researcher (2 model calls) on the simulated provider, real
   clock and loop, a SQLite file store (money durable). Ideal wall time: the calls
   back to back, all runs in parallel (2 x latency). The baseline, measured in the
   same process: the same provider answering the same two requests per run with no
   engine around it (what the loop and the provider cost on their own). Engine CPU
   per run = CPU per run of the runs - CPU per run of the baseline. The runs are
   measured cold (first batch of the process), warm (a second batch on a fresh
   orchestrator), and warm with the cyclic GC off (how much of it is the GC's: 2,000
   runs in flight keep about 100 tracked objects each, which every full collection
   walks).
2. events_df of N events (the mix of `bench_frames.py`) against the naive
   `pd.DataFrame([e.to_record() ...])` on the same events.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_frames import make_events

from taskorch_nb import Orchestrator
from taskorch_nb.tracing.frames import events_df


def _recorded_requests(orch: Orchestrator) -> list[tuple[list[dict], dict[str, Any]]]:
    """Capture what one run sends its provider (the baseline replays it)."""
    calls: list[tuple[list[dict], dict[str, Any]]] = []
    provider = orch.provider
    original = provider.complete

    async def recording(messages: list[dict], **options: Any) -> Any:
        calls.append(([dict(m) for m in messages], dict(options)))
        return await original(messages, **options)

    provider.complete = recording  # type: ignore[method-assign]
    return calls


async def _measure(runs: int, go: Any) -> tuple[float, float, list[Any]]:
    """Wall and CPU seconds of `runs` concurrent `go()`, and their results."""
    gc.collect()
    cpu, start = time.process_time(), time.perf_counter()
    results = await asyncio.gather(*(go(i) for i in range(runs)))
    return time.perf_counter() - start, time.process_time() - cpu, results


async def _engine(runs: int, latency: float, tmp: Path, *,
                  gc_off: bool) -> tuple[float, float, int, float, list[Any]]:
    """Wall, CPU, completed runs, calls per run of `runs` concurrent runs on a fresh
    orchestrator (file store), and the requests one run sends its provider."""
    orch = Orchestrator(store=tmp / f"taskorch-{gc_off}.db", latency=latency, budget=5.0)
    calls = _recorded_requests(orch)
    warm = await orch.run("warm up", workflow="single", archetype="researcher")
    assert warm.status == "COMPLETED", warm.error
    requests = list(calls)
    del orch.provider.complete  # stop recording
    if gc_off:
        gc.disable()

    async def run(i: int) -> Any:
        return await orch.run(f"Summarise topic {i}", workflow="single", archetype="researcher")

    before = orch.provider.call_count
    wall, cpu, results = await _measure(runs, run)
    per_run = (orch.provider.call_count - before) / runs
    gc.enable()
    await orch.aclose()
    done = sum(r.status == "COMPLETED" for r in results)
    return wall, cpu, done, per_run, requests


async def runs_table(runs: int, latency: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        wall, cpu, done, per_run, requests = await _engine(runs, latency, Path(tmp),
                                                           gc_off=False)
        provider = Orchestrator(latency=latency, store=":memory:").provider

        async def floor(_: int) -> None:
            for messages, options in requests:
                await provider.complete(messages, **options)

        base_wall, base_cpu, _ = await _measure(runs, floor)
        # Again, in a process whose heap already grew once (as in a notebook's second cell).
        w_wall, w_cpu, _, _, _ = await _engine(runs, latency, Path(tmp), gc_off=False)
        f_wall, f_cpu, f_done, _, _ = await _engine(runs, latency, Path(tmp), gc_off=True)
    ideal = len(requests) * latency
    print(f"{runs:,} concurrent single runs (researcher), {per_run:.0f} model calls each at "
          f"{latency:g} s; ideal wall {ideal:.2f} s; completed {done:,} and {f_done:,}")
    print(f"{'path':<44}{'wall s':>8}{'of ideal':>10}{'CPU us/run':>12}")
    print(f"{'provider alone, no engine (baseline)':<44}{base_wall:>8.2f}"
          f"{ideal / base_wall:>10.1%}{base_cpu / runs * 1e6:>12.0f}")
    print(f"{'orch.run (engine, SQLite file store, cold)':<44}{wall:>8.2f}"
          f"{ideal / wall:>10.1%}{cpu / runs * 1e6:>12.0f}")
    print(f"{'engine CPU per run (difference)':<44}{'':>8}{'':>10}"
          f"{(cpu - base_cpu) / runs * 1e6:>12.0f}")
    print(f"{'orch.run again (warm process)':<44}{w_wall:>8.2f}"
          f"{ideal / w_wall:>10.1%}{w_cpu / runs * 1e6:>12.0f}")
    print(f"{'orch.run again, cyclic GC off':<44}{f_wall:>8.2f}"
          f"{ideal / f_wall:>10.1%}{f_cpu / runs * 1e6:>12.0f}")


def frames_table(n: int, naive: bool) -> None:
    import pandas as pd

    events = make_events(n)
    times, cpus = [], []
    for _ in range(3):
        gc.collect()
        cpu, start = time.process_time(), time.perf_counter()
        frame = events_df(events)
        times.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    print(f"\nevents_df: {n:,} events -> {frame.shape}, best of 3 (CPU s: best "
          f"{min(cpus):.2f})")
    print(f"{'method':<44}{'seconds':>8}{'speed-up':>10}")
    fast = min(times)
    if naive:
        gc.collect()
        start = time.perf_counter()
        pd.DataFrame([e.to_record() for e in events])
        slow = time.perf_counter() - start
        print(f"{'pd.DataFrame([e.to_record() ...]) (baseline)':<44}{slow:>8.2f}")
        print(f"{'events_df':<44}{fast:>8.2f}{slow / fast:>9.1f}x")
    else:
        print(f"{'events_df':<44}{fast:>8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--skip-runs", action="store_true")
    parser.add_argument("--skip-frames", action="store_true")
    args = parser.parse_args()
    if not args.skip_runs:
        asyncio.run(runs_table(args.runs, args.latency))
    if not args.skip_frames:
        frames_table(args.events, not args.skip_naive)


if __name__ == "__main__":
    main()
