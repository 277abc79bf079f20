"""Calling-thread cost of tracing per event, and a 10,000-event burst exported to Langfuse.

Run: .venv/bin/python benchmarks/bench_tracing.py [--events 50000]
Baseline: `EventBus.emit` with no subscriber, measured in the same run. The
burst goes through the official SDK to the loopback fake Langfuse in tests/.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from taskorch_nb.core.events import (
    BudgetEvent,
    Event,
    EventBus,
    LLMEvent,
    RunEvent,
    ToolEvent,
)
from taskorch_nb.testing import FakeClock
from taskorch_nb.tracing.langfuse import LangfuseExporter
from taskorch_nb.tracing.spans import SpanBuilder
from tests.langfuse_server import FakeLangfuse


def run_events(run_id: str, calls: int) -> list[Event]:
    """A run's events in the proportions a real run has: llm calls, budget, tools."""
    money = {k: Decimal("0.01") for k in ("amount", "spent", "reserved", "limit", "remaining")}
    out: list[Event] = [RunEvent(type="run.started", run_id=run_id, task="bench"),
                        RunEvent(type="phase.started", run_id=run_id, phase="build"),
                        RunEvent(type="agent.started", run_id=run_id, agent="builder",
                                 phase="build")]
    for i in range(calls):
        c = f"c{i}"
        llm = {"run_id": run_id, "call_id": c, "provider": "simulated", "model": "sim-small",
               "agent": "builder", "phase": "build"}
        out += [BudgetEvent(type="budget.approved", run_id=run_id, **money),
                LLMEvent(type="llm.requested", **llm),
                LLMEvent(type="llm.completed", input_tokens=100, output_tokens=20,
                         cost=Decimal("0.001"), latency=0.5, **llm),
                BudgetEvent(type="budget.settled", run_id=run_id, **money),
                ToolEvent(type="tool.called", run_id=run_id, tool="search", call_id=c,
                          agent="builder"),
                ToolEvent(type="tool.succeeded", run_id=run_id, tool="search", call_id=c,
                          agent="builder", duration=0.1)]
    out += [RunEvent(type="agent.completed", run_id=run_id, agent="builder"),
            RunEvent(type="phase.completed", run_id=run_id, phase="build"),
            RunEvent(type="run.completed", run_id=run_id, status="completed")]
    return out


def workload(n_events: int) -> list[Event]:
    events: list[Event] = []
    run = 0
    while len(events) < n_events:
        events += run_events(f"run-{run}", 50)
        run += 1
    return events


def per_event_us(subscriber: object | None, n_events: int, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        bus = EventBus(FakeClock())
        if subscriber is not None:
            bus.subscribe(subscriber() if callable(subscriber) else subscriber)  # type: ignore[arg-type]
        events = workload(n_events)
        gc.collect()
        start = time.perf_counter()
        for event in events:
            bus.emit(event)
        best = min(best, (time.perf_counter() - start) / len(events) * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=50_000)
    args = parser.parse_args()

    with FakeLangfuse() as server:
        exporters: list[LangfuseExporter] = []

        def exporter() -> LangfuseExporter:
            ex = LangfuseExporter(public_key=f"pk-bench-{len(exporters)}", secret_key="sk",
                                  base_url=server.url, on_warning=print)
            exporters.append(ex)
            return ex

        base = per_event_us(None, args.events)
        local = per_event_us(SpanBuilder, args.events)
        export = per_event_us(exporter, args.events)
        for ex in exporters:
            ex.close(120.0)

        print(f"Calling-thread cost per event ({args.events:,} events, best of 3)")
        print(f"{'configuration':<40}{'us/event':>10}{'overhead':>10}")
        print(f"{'bus.emit, no subscriber (baseline)':<40}{base:>10.2f}{'':>10}")
        print(f"{'+ SpanBuilder (local trace)':<40}{local:>10.2f}{local - base:>+10.2f}")
        print(f"{'+ LangfuseExporter (enqueue only)':<40}{export:>10.2f}{export - base:>+10.2f}")

        burst = FakeClock()
        bus = EventBus(burst)
        ex = LangfuseExporter(public_key="pk-bench-burst", secret_key="sk",
                              base_url=server.url, on_warning=print)
        bus.subscribe(ex)
        before = len(server.received.spans)
        events = [RunEvent(type="run.started", run_id="burst", task="burst")]
        for i in range(4_999):
            events += [ToolEvent(type="tool.called", run_id="burst", tool="t", call_id=f"{i}"),
                       ToolEvent(type="tool.succeeded", run_id="burst", tool="t",
                                 call_id=f"{i}")]
        events.append(RunEvent(type="run.completed", run_id="burst", status="completed"))
        start = time.perf_counter()
        for event in events:
            bus.emit(event)
        emitted = time.perf_counter() - start
        ok = ex.flush(120.0)
        exported = time.perf_counter() - start
        ex.close(10.0)
        received = len(server.received.spans) - before
        print()
        print(f"Burst of {len(events):,} events -> {ex.exported_spans:,} spans")
        print(f"{'emit on the calling thread':<40}{emitted * 1000:>10.1f} ms")
        print(f"{'until flushed to the loopback Langfuse':<40}{exported * 1000:>10.1f} ms")
        print(f"{'spans received by the server':<40}{received:>10,}  (flush ok: {ok})")


if __name__ == "__main__":
    main()
