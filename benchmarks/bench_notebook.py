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
- the batch cost: applying N queued events and redrawing once (`flush()`);
- in a real kernel (jupyter_client + ipykernel, the venv's python): events a
  second the dashboard absorbs while the kernel still answers another execute
  request (`1+1`, sent every 200 ms) within 100 ms; baseline: the same latency
  with no events flowing.

    .venv/bin/python benchmarks/bench_notebook.py [--events N] [--seconds S]
        [--rates 1000,10000,50000,100000,150000,0] [--kernel-seconds S]
        [--skip-kernel | --kernel-only]
"""

from __future__ import annotations

import argparse
import ast
import statistics
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

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
from taskorch_nb.testing import FakeClock


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


class Feeder:
    """Runs inside the kernel: a Dashboard with its widgets, on a real-clock EventBus, fed
    from a worker thread at a target rate (in 10 ms slices, as fast as it can if behind)."""

    def __init__(self, n_events: int = 20_000) -> None:
        self.events = sample_events(n_events)
        self.dash = Dashboard(limit=Decimal(1000), max_rate=10.0)
        self.dash.widget  # noqa: B018  (real widgets: redraws send comm messages)
        self.bus = EventBus()
        self.bus.subscribe(self.dash.subscriber)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._emitted = 0
        self._elapsed = 0.0

    def start(self, per_second: int) -> str:
        self._stop.clear()
        self._emitted, self._renders = 0, self.dash.renders
        self._thread = threading.Thread(target=self._run, args=(per_second,), daemon=True)
        self._thread.start()
        return "started"

    def _run(self, per_second: int) -> None:
        """0 events a second means as many as the thread can emit."""
        emit, events, stop = self.bus.emit, self.events, self._stop.is_set
        chunk = max(1, per_second // 100) if per_second else 1000
        k, i, slices = len(events), 0, 0
        t0 = time.perf_counter()
        while not stop():
            for _ in range(chunk):
                emit(events[i])
                i = i + 1 if i + 1 < k else 0
            self._emitted += chunk
            slices += 1
            pause = t0 + slices / 100 - time.perf_counter()
            if per_second and pause > 0:
                time.sleep(pause)
        self._elapsed = time.perf_counter() - t0

    def stop(self) -> dict[str, float]:
        """Stop feeding; what was fed, what was still queued, how long the queue took to apply."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        pending = self.dash.pending
        t0 = time.perf_counter()
        while self.dash.pending and time.perf_counter() < t0 + 10:
            time.sleep(0.005)
        return {
            "emitted": self._emitted,
            "seconds": self._elapsed,
            "pending": pending,
            "drain": time.perf_counter() - t0,
            "left": self.dash.pending,
            "renders": self.dash.renders - self._renders,
        }


KERNEL_SETUP = """
import sys
sys.path.insert(0, {bench_dir!r})
import bench_notebook
feeder = bench_notebook.Feeder()
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Kernel:
    """A real ipykernel (the `python3` spec: this interpreter) and a blocking client."""

    def __init__(self) -> None:
        from jupyter_client import KernelManager

        self.manager = KernelManager(kernel_name="python3", transport="ipc")
        self.manager.start_kernel(cwd=str(Path(__file__).resolve().parent.parent))
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    def execute(
        self, code: str, *, expressions: dict[str, str] | None = None, timeout: float = 60
    ) -> tuple[float, dict[str, Any]]:
        """Run `code`; (seconds from request to reply, the reply's user expressions)."""
        t0 = time.perf_counter()
        msg_id = self.client.execute(
            code, store_history=False, user_expressions=expressions or {}
        )
        while True:
            reply = self.client.get_shell_msg(timeout=timeout)
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        latency = time.perf_counter() - t0
        content = reply["content"]
        if content["status"] != "ok":
            raise RuntimeError(f"kernel: {content.get('ename')}: {content.get('evalue')}")
        values = {}
        for key, result in content.get("user_expressions", {}).items():
            if result["status"] != "ok":
                raise RuntimeError(f"kernel: {key}: {result.get('ename')}: {result.get('evalue')}")
            values[key] = ast.literal_eval(result["data"]["text/plain"])
        return latency, values

    def latencies(self, seconds: float, every: float = 0.2) -> list[float]:
        """Round trips of `1+1` sent every `every` seconds for `seconds`."""
        out: list[float] = []
        t0 = time.perf_counter()
        while time.perf_counter() < t0 + seconds:
            out.append(self.execute("1+1")[0])
            pause = t0 + len(out) * every - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        return out

    def close(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


def kernel_table(rates: list[int], seconds: float) -> None:
    """Events/s absorbed while `1+1` still answers: p50/p95/max latency per offered rate."""
    started = time.perf_counter()
    kernel = Kernel()
    try:
        bench_dir = str(Path(__file__).resolve().parent)
        _, info = kernel.execute(
            KERNEL_SETUP.format(bench_dir=bench_dir),
            expressions={"python": "sys.executable", "n": "len(feeder.events)"},
        )
        kernel.latencies(1.0)  # warm up
        rows = [("none (baseline)", None, kernel.latencies(seconds))]
        for per_second in rates:
            kernel.execute(f"feeder.start({per_second})")
            samples = kernel.latencies(seconds)
            _, stats = kernel.execute("", expressions={"stats": "feeder.stop()"})
            rows.append((f"{per_second:,}" if per_second else "max", stats["stats"], samples))
    finally:
        kernel.close()

    print(f"Real kernel ({info['python']}), `1+1` every 200 ms for {seconds:.0f} s per row, "
          f"budget 100 ms")
    print(f"{'offered ev/s':>15}{'absorbed ev/s':>15}{'queued':>8}{'drain ms':>10}"
          f"{'redraws/s':>11}{'n':>4}{'p50 ms':>8}{'p95 ms':>8}{'max ms':>8}{'p95<=100':>10}")
    for name, stats, samples in rows:
        ms = [x * 1000 for x in samples]
        p50, p95 = statistics.median(ms), percentile(ms, 0.95)
        if stats is None:
            absorbed = queued = drain = redraws = "-"
        else:
            if stats["left"]:
                raise RuntimeError(f"{name}: {stats['left']} events never applied")
            absorbed = f"{stats['emitted'] / (stats['seconds'] + stats['drain']):,.0f}"
            queued = f"{stats['pending']:,}"
            drain = f"{stats['drain'] * 1000:.0f}"
            redraws = f"{stats['renders'] / stats['seconds']:.1f}"
        print(f"{name:>15}{absorbed:>15}{queued:>8}{drain:>10}{redraws:>11}{len(ms):>4}"
              f"{p50:>8.1f}{p95:>8.1f}{max(ms):>8.1f}{'yes' if p95 <= 100 else 'NO':>10}")
    print(f"absorbed = events emitted (EventBus.emit -> Dashboard.subscriber) / (feeding time + "
          f"time to apply what was still queued at the stop); 'max' = as fast as the thread "
          f"emits. Kernel part: {time.perf_counter() - started:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rates", default="1000,10000,50000,100000,150000,0",
                        help="events/s offered in the kernel; 0 = as fast as possible")
    parser.add_argument("--kernel-seconds", type=float, default=3.0)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--skip-kernel", action="store_true")
    which.add_argument("--kernel-only", action="store_true")
    args = parser.parse_args()
    if not args.kernel_only:
        in_process(args)
    if not args.skip_kernel:
        if not args.kernel_only:
            print()
        kernel_table([int(r) for r in args.rates.split(",")], args.kernel_seconds)


def in_process(args: argparse.Namespace) -> None:
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
