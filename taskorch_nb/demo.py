"""The offline demo behind `taskorch-nb demo`: the seed flows on the embedded defaults.

Each flow runs for real (simulated provider, loopback servers, a temporary
store) on a `FakeClock` where waiting would only bore the reader, and returns a
`FlowResult` whose lines are printed as the report.
"""

from __future__ import annotations

import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskorch_nb.core.clock import FakeClock
from taskorch_nb.core.events import Event
from taskorch_nb.core.orchestrator import Orchestrator
from taskorch_nb.core.retry import RetryPolicy
from taskorch_nb.testing import FlakyTool


@dataclass
class FlowResult:
    number: int
    title: str
    ok: bool
    lines: list[str] = field(default_factory=list)
    runs: list[Any] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


def _describe(event: Event) -> str:
    name = getattr(event, "name", None) or getattr(event, "tool", "")
    extra = ""
    if event.type == "retry.scheduled":
        extra = f" wait {event.wait:.1f} s"  # type: ignore[attr-defined]
    elif event.type == "tool.failed":
        extra = f" attempt {event.attempt}: {event.error}"  # type: ignore[attr-defined]
    elif event.type == "pattern.applied":
        extra = f" -> {event.prompt}"  # type: ignore[attr-defined]
    return f"  t={event.ts:6.1f}s  {event.type:<20} {name}{extra}"


async def flow1_self_healing(home: Path) -> FlowResult:
    """504 x3 -> backoff -> circuit opens -> pattern -> fallback -> half-open -> closed."""
    clock = FakeClock()
    orch = Orchestrator(store=home / "flow1.db", clock=clock, retry=RetryPolicy(jitter=0.0))
    events: list[Event] = []
    orch.subscribe(events.append)
    search = FlakyTool([504, 504, 504], result=lambda query: f"live results for {query!r}")

    @orch.tool(fallback="cached_search")
    async def search_api(query: str) -> str:
        return await search(query=query)

    @orch.tool()
    def cached_search(query: str) -> str:
        return f"cached results for {query!r}"

    first = await orch.call_tool("search_api", query="user authentication")
    clock.advance(30.0)
    probe = await orch.call_tool("search_api", query="session tokens")
    state = orch.circuits["search_api"].state
    orch.close()
    result = FlowResult(1, "Self-healing: retry, open, learn, fall back, recover", ok=False)
    result.events = events
    result.lines = [_describe(e) for e in events]
    result.lines += [f"  result: {first}", f"  after 30 s the probe got: {probe}",
                     f"  breaker now {state.value}"]
    result.ok = first.startswith("cached") and probe.startswith("live") and state == "CLOSED"
    return result


FLOWS: dict[int, Callable[[Path], Awaitable[FlowResult]]] = {
    1: flow1_self_healing,
}


async def run_demo(*, report_path: str | None = None, flows: str = "all") -> int:
    """Run the chosen flows, print the report; exit code 0 when every flow did its job."""
    chosen = sorted(FLOWS) if flows == "all" else [int(n) for n in flows.split(",") if n]
    unknown = [n for n in chosen if n not in FLOWS]
    if unknown:
        print(f"unknown flow(s) {unknown}; available: {sorted(FLOWS)}")
        return 2
    results: list[FlowResult] = []
    with tempfile.TemporaryDirectory(prefix="taskorch-demo-") as tmp:
        for number in chosen:
            result = await FLOWS[number](Path(tmp))
            results.append(result)
            mark = "ok " if result.ok else "FAIL"
            print(f"\n[{mark}] Flow {number}: {result.title}")
            for line in result.lines:
                print(line)
    passed = sum(r.ok for r in results)
    print(f"\n{passed} of {len(results)} flows did what the seed diagrams say.")
    return 0 if passed == len(results) else 1
