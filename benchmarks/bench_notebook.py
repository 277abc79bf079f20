"""Notebook dashboard: how many events a second it absorbs, and how often it redraws.

The dashboard is an event subscriber on the run's hot path, so what matters is
the cost on the *calling* thread (queueing an event) and that redraws stay
throttled however fast events come. Measured in the same run:

- baseline: `list.append` of the same events (the least a subscriber can do);
- `Dashboard(event)` with its widgets built and the real timer thread batching
  redraws (the apply work runs there, competing for the GIL, as in a kernel);
- the same through `EventBus.emit` (stamping + delivery), against a bus whose
  only subscriber is `list.append`;
- a sustained feed for a few seconds: redraws per second actually done;
- the batch cost: applying N queued events and redrawing once (`flush()`).

    .venv/bin/python benchmarks/bench_notebook.py [--events N] [--seconds S]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from taskorch_nb.core.clock import FakeClock
from taskorch_nb.core.events import (
    BudgetEvent,
    CircuitEvent,
    EventBus,
    LLMEvent,
    RunEvent,
    ToolEvent,
)
from taskorch_nb.notebook.throttle import ManualScheduler
from taskorch_nb.notebook.widgets import Dashboard


def sample_events(n: int) -> list[Any]:
    """A run's mix: mostly tool calls and LLM calls, with budget, phase and circuit events."""
    out: list[Any] = []
    spent = Decimal(0)
    phases = ("research", "design", "build", "qc")
    for i in range(n):
        k = i % 10
        if k < 4:
            out.append(
                ToolEvent(
                    type="tool.called" if k % 2 else "tool.succeeded",
                    tool="search_api",
                    call_id=f"c{i}",
                    duration=0.01,
                    ts=i * 1e-3,
                )
            )
        elif k < 6:
            out.append(
                LLMEvent(
                    type="llm.completed",
                    call_id=f"l{i}",
                    provider="simulated",
                    model="sim-small",
                    agent="builder",
                    input_tokens=100,
                    output_tokens=20,
                    cost=Decimal("0.0001"),
                    latency=0.2,
                    ts=i * 1e-3,
                )
            )
        elif k < 8:
            spent += Decimal("0.0001")
            out.append(
                BudgetEvent(
                    type="budget.settled",
                    amount=Decimal("0.0001"),
                    spent=spent,
                    reserved=Decimal(0),
                    limit=Decimal(1000),
                    remaining=Decimal(1000) - spent,
                    ts=i * 1e-3,
                )
            )
        elif k == 8:
            out.append(RunEvent(type="phase.started", phase=phases[(i // 10) % 4], ts=i * 1e-3))
        else:
            state = ("open", "closed")[(i // 10) % 2]
            out.append(
                CircuitEvent(
                    type=f"circuit.{'opened' if state == 'open' else 'closed'}",
                    name=f"tool{(i // 10) % 5}",
                    state=state,
                    failures=3,
                    reset_at=i * 1e-3 + 30,
                    ts=i * 1e-3,
                )
            )
    return out


def rate(fn: Callable[[Any], None], events: list[Any]) -> float:
    t0 = time.perf_counter()
    for event in events:
        fn(event)
    return len(events) / (time.perf_counter() - t0)


def best(repeats: int, measure: Callable[[], float]) -> float:
    return max(measure() for _ in range(repeats))


def absorb(events: list[Any], *, fast: bool = False) -> tuple[float, int, float]:
    """Events/s on the calling thread, renders done, seconds to the last render."""
    dash = Dashboard(limit=Decimal(1000), max_rate=10.0)
    dash.widget  # noqa: B018  (redraws write real traits)
    t0 = time.perf_counter()
    feed = dash.subscriber if fast else dash
    for event in events:
        feed(event)
    elapsed = time.perf_counter() - t0
    dash.close()
    return len(events) / elapsed, dash.renders, time.perf_counter() - t0


def through_bus(events: list[Any], subscriber: Callable[[Any], None]) -> float:
    bus = EventBus(FakeClock())
    bus.subscribe(subscriber)
    return rate(bus.emit, events)


def sustained(events: list[Any], seconds: float) -> tuple[float, float, int]:
    """Feed events for `seconds`: (events/s, redraws/s, redraws)."""
    dash = Dashboard(limit=Decimal(1000), max_rate=10.0)
    dash.widget  # noqa: B018
    fed = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while time.perf_counter() < deadline:
        for event in events[:1000]:
            dash.subscriber(event)
        fed += 1000
    elapsed = time.perf_counter() - t0
    renders = dash.renders
    dash.close()
    return fed / elapsed, renders / elapsed, renders


def batch_cost(events: list[Any]) -> float:
    """Microseconds per event to apply a queued batch and redraw once."""
    clock = FakeClock()  # never advanced: the armed redraw waits, events stay queued
    dash = Dashboard(limit=Decimal(1000), rate_clock=clock, scheduler=ManualScheduler(clock))
    dash.widget  # noqa: B018
    for event in events:
        dash(event)
    t0 = time.perf_counter()
    dash.flush()
    return (time.perf_counter() - t0) / len(events) * 1e6


def paced(events: list[Any], per_second: int, seconds: float) -> tuple[float, int]:
    """Feed `per_second` events a second (in 10 ms slices) for `seconds`: (redraws/s, redraws)."""
    dash = Dashboard(limit=Decimal(1000), max_rate=10.0)
    dash.widget  # noqa: B018
    chunk = max(1, per_second // 100)
    t0 = time.perf_counter()
    slices = int(seconds * 100)
    for i in range(slices):
        for event in events[(i * chunk) % len(events) :][:chunk]:
            dash.subscriber(event)
        pause = t0 + (i + 1) / 100 - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
    elapsed = time.perf_counter() - t0
    renders = dash.renders
    dash.close()
    return renders / elapsed, renders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    events = sample_events(args.events)

    def appended() -> float:
        sink: list[Any] = []
        return rate(sink.append, events)

    base = best(args.repeats, appended)
    called = max(absorb(events) for _ in range(args.repeats))
    fast = max(absorb(events, fast=True) for _ in range(args.repeats))
    bus_base = best(args.repeats, lambda: through_bus(events, [].append))
    bus_dash = best(
        args.repeats, lambda: through_bus(events, Dashboard(limit=Decimal(1000)).subscriber)
    )
    per_event = min(batch_cost(events) for _ in range(args.repeats))

    print(f"Dashboard absorption, {args.events:,} events (best of {args.repeats})")
    print(f"{'calling thread':<46}{'events/s':>14}{'vs baseline':>13}")
    rows = [
        ("list.append (baseline)", base, base),
        ("Dashboard(event)", called[0], base),
        ("Dashboard.subscriber(event)", fast[0], base),
        ("EventBus.emit -> list.append (baseline)", bus_base, bus_base),
        ("EventBus.emit -> Dashboard.subscriber", bus_dash, bus_base),
    ]
    for name, value, ref in rows:
        print(f"{name:<46}{value:>14,.0f}{ref / value:>12.2f}x")
    print(f"burst of {args.events:,}: {fast[1]} redraws in {fast[2]:.2f} s (fed + final flush)")
    print(f"batch apply + one redraw (redraw thread): {per_event:.2f} us/event")
    print()
    print(f"{'redraws, max_rate=10':<46}{'redraws/s':>14}{'redraws':>13}")
    for offered in (100, 1_000, 10_000):
        per_s, count = paced(events, offered, args.seconds)
        print(
            f"{f'paced {offered:,} events/s for {args.seconds:.0f} s':<46}{per_s:>14.1f}{count:>13}"
        )
    feed_rate, redraw_rate, redraws = sustained(events, args.seconds)
    print(
        f"{f'flood ({feed_rate:,.0f} events/s) for {args.seconds:.0f} s':<46}"
        f"{redraw_rate:>14.1f}{redraws:>13}"
    )


if __name__ == "__main__":
    main()
