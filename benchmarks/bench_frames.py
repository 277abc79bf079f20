"""Events to a DataFrame: `events_df` against the naive `pd.DataFrame([e.to_record() ...])`.

Run: .venv/bin/python benchmarks/bench_frames.py [--events 1000000] [--skip-naive]
Both are measured in the same run on the same events (a run-like mix of tool,
LLM, budget, circuit and run events).
"""

from __future__ import annotations

import argparse
import gc
import time
from decimal import Decimal

import pandas as pd

from taskorch_nb.core.events import (
    BudgetEvent,
    CircuitEvent,
    Event,
    EventBus,
    LLMEvent,
    RunEvent,
    ToolEvent,
)
from taskorch_nb.testing import FakeClock
from taskorch_nb.tracing.frames import cost_df, events_df, spans_df
from taskorch_nb.tracing.spans import build_spans


def make_events(n: int) -> list[Event]:
    bus = EventBus(FakeClock())
    money = {k: Decimal("0.0123") for k in ("amount", "spent", "reserved", "limit", "remaining")}
    out: list[Event] = []
    i = 0
    while len(out) < n:
        run = f"run-{i // 1000}"
        c = f"call-{i}"
        batch: list[Event] = [
            ToolEvent(type="tool.called", run_id=run, tool="search_api", call_id=c),
            ToolEvent(type="tool.failed", run_id=run, tool="search_api", call_id=c,
                      category="timeout", status=504, error="gateway timeout", duration=5.0),
            ToolEvent(type="tool.called", run_id=run, tool="search_api", call_id=c, attempt=2),
            ToolEvent(type="tool.succeeded", run_id=run, tool="search_api", call_id=c,
                      attempt=2, duration=0.2),
            LLMEvent(type="llm.requested", run_id=run, call_id=c, provider="simulated",
                     model="sim-small", agent="builder", phase="build"),
            LLMEvent(type="llm.completed", run_id=run, call_id=c, provider="simulated",
                     model="sim-small", agent="builder", phase="build", input_tokens=100,
                     output_tokens=20, cost=Decimal("0.0012"), latency=0.5),
            BudgetEvent(type="budget.settled", run_id=run, **money),
            RunEvent(type="agent.started", run_id=run, agent="builder", phase="build"),
            CircuitEvent(type="circuit.closed", run_id=run, name="search_api", state="closed"),
            RunEvent(type="agent.completed", run_id=run, agent="builder", phase="build"),
        ]
        for event in batch:
            out.append(bus.emit(event))
        i += 1
    return out[:n]


def timed(fn, *args):  # type: ignore[no-untyped-def]
    gc.collect()
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--skip-naive", action="store_true")
    args = parser.parse_args()

    events = make_events(args.events)
    # best of 3, as bench_scale.py: the first call of a process also pays the page
    # faults of a heap growing by the frame's size (shown on its own line)
    first, frame = timed(events_df, events)
    fast = min(first, *(timed(events_df, events)[0] for _ in range(2)))
    print(f"{len(events):,} events -> DataFrame {frame.shape}")
    print(f"{'method':<48}{'seconds':>10}{'speed-up':>10}")
    if not args.skip_naive:
        naive, _ = timed(lambda: pd.DataFrame([e.to_record() for e in events]))
        print(f"{'pd.DataFrame([e.to_record() ...]) (baseline)':<48}{naive:>10.2f}")
        print(f"{'events_df (from slots), best of 3':<48}{fast:>10.2f}{naive / fast:>9.1f}x")
    else:
        print(f"{'events_df (from slots), best of 3':<48}{fast:>10.2f}")
    print(f"{'events_df, first call of the process':<48}{first:>10.2f}")
    cut = events[: min(len(events), 100_000)]
    t_spans, (spans, _) = timed(build_spans, cut)
    t_sdf, sdf = timed(spans_df, spans)
    t_cost, cdf = timed(cost_df, cut)
    print(f"{f'build_spans ({len(cut):,} events -> {len(spans):,} spans)':<48}{t_spans:>10.2f}")
    print(f"{f'spans_df ({len(sdf):,} rows)':<48}{t_sdf:>10.2f}")
    print(f"{f'cost_df ({len(cdf):,} rows)':<48}{t_cost:>10.2f}")


if __name__ == "__main__":
    main()
