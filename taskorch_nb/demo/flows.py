"""The seed flows as the demo runs them, each for real on the embedded defaults.

Each flow runs for real (simulated provider, a hub process on loopback, a
temporary store) on a `FakeClock` where waiting would only bore the reader, and
returns a `FlowResult`: the lines the demo prints and what its charts need.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskorch_nb.core.clock import FakeClock
from taskorch_nb.core.events import Event
from taskorch_nb.core.retry import RetryPolicy
from taskorch_nb.engine.orchestrator import Orchestrator
from taskorch_nb.testing import FlakyTool


@dataclass
class FlowResult:
    number: int
    title: str
    ok: bool
    lines: list[str] = field(default_factory=list)
    runs: list[Any] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    """Extra numbers for the flow's charts (e.g. the naive agent's bill)."""


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


async def flow2_budget(home: Path) -> FlowResult:
    """A $5.00 budget: calls approved and settled, a warning under 20 %, a rejection."""
    from taskorch_nb.core.events import scope
    from taskorch_nb.errors import BudgetExceededError
    from taskorch_nb.llm.simulated import SimReply, SimulatedProvider

    clock = FakeClock()
    provider = SimulatedProvider(clock=clock, latency=(2.0, 6.0),
                                 responder=lambda r: SimReply(text="x" * 4800))
    orch = Orchestrator(provider, "sim-small", budget=5.00, store=home / "flow2.db", clock=clock)
    events: list[Event] = []
    orch.subscribe(events.append)
    result = FlowResult(2, "Budget: approve before, settle after, warn, reject, report", ok=False)
    calls = 0
    with scope(agent="builder"):
        while True:
            try:
                await orch.complete([{"role": "user", "content": "next step"}], max_tokens=1500)
            except BudgetExceededError as exc:
                result.lines.append(f"  call {calls + 1}: REJECTED - {exc}")
                break
            calls += 1
            settled = next(e for e in reversed(events) if e.type == "budget.settled")
            warned = any(e.type == "budget.warning" for e in events[-6:])
            note = "  <- WARNING: under 20 % left (still approved)" if warned else ""
            result.lines.append(f"  call {calls:2}: approved, 1,200 tokens, "
                                f"${settled.amount:.4f} spent, ${settled.remaining:.2f} left{note}")
    report = orch.budget.report()
    result.lines.append("  " + str(report).replace("\n", "\n  "))
    orch.close()
    result.events = events
    result.ok = report.spent <= report.limit and orch.budget.status == "exceeded"
    return result


async def flow3_multi_agent(home: Path) -> FlowResult:
    """Researcher -> Architect -> Builder (tests first) -> QC (real pytest) -> fix -> approve."""
    orch = Orchestrator(store=home / "flow3.db", clock=FakeClock(), budget=5.0,
                        latency=(0.5, 3.0))
    run = await orch.run("Add user authentication", workspace=home / "flow3-workspace")
    result = FlowResult(3, "Multi-agent: research, design, build, QC, fix loop", ok=False)
    for e in run.events:
        if e.type == "phase.started":
            result.lines.append(f"  phase {e.phase} (round {e.detail['round']})")  # type: ignore[attr-defined]
        elif e.type in ("qc.passed", "qc.failed"):
            result.lines.append(f"    QC: {e.detail['summary']}")  # type: ignore[attr-defined]
        elif e.type == "tool.succeeded" and getattr(e, "tool", "") == "write_file":
            result.lines.append("    builder wrote a file")
    files = sorted(p.relative_to(run.workspace).as_posix() for p in run.workspace.rglob("*.py"))
    result.lines += [f"  files: {', '.join(files)}", f"  status: {run.status.value}",
                     f"  {run.cost}".replace("\n", "\n  ")]
    result.runs.append(run)
    result.events = run.events
    orch.close()
    result.ok = run.status == "COMPLETED"
    return result


@contextlib.contextmanager
def _hub(home: Path, projects: list[str]) -> Iterator[tuple[str, dict[str, str]]]:
    """A real hub process on 127.0.0.1 (port 0) and a token per project."""
    cli = [sys.executable, "-m", "taskorch_nb.cli", "hub"]
    db = str(home / "hub.db")
    tokens = {
        name: subprocess.run([*cli, "token", name, "--db", db], capture_output=True, text=True,
                             check=True).stdout.strip()
        for name in projects
    }
    log = home / "hub.log"
    with log.open("w") as out:
        server = subprocess.Popen([*cli, "--db", db, "--port", "0"], stdout=out,
                                  stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while server.poll() is None and time.monotonic() < deadline:
            found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", log.read_text())
            if found:
                yield found.group(1), tokens
                return
            time.sleep(0.05)
        raise RuntimeError(f"the federation hub did not start: {log.read_text()[-500:]}")
    finally:
        server.terminate()
        server.wait(timeout=10)


async def flow4_federation(home: Path) -> FlowResult:
    """A learns a pattern and pushes it; B and C sync; B recovers at its first failure."""
    from taskorch_nb.federation import FederationClient

    result = FlowResult(4, "Federation: learned once, shared, recovered at first failure",
                        ok=False)
    names = ["project-a", "project-b", "project-c"]
    with _hub(home, names) as (url, tokens):
        projects = {}
        for name in names:
            clock = FakeClock()
            orch = Orchestrator(store=home / f"flow4-{name}.db", clock=clock,
                                retry=RetryPolicy(jitter=0.0),
                                federation=FederationClient(url, token=tokens[name],
                                                            project=name))
            broken = FlakyTool(always=504)
            orch.tool(broken, name="search_api", fallback="cached_search")
            orch.tool(lambda query: f"cached results for {query}", name="cached_search")
            projects[name] = (orch, clock, broken)
        a, a_clock, a_tool = projects["project-a"]
        await a.call_tool("search_api", query="q")
        result.lines.append(f"  A: {len(a_tool.calls)} calls to the failing tool, waits "
                            f"{a_clock.slept} s, learned {a.immune.patterns()[0].name}")
        pushed = await a.federation.push()
        result.lines.append(f"  A pushed to the hub at {url}: {pushed['accepted']} accepted")
        synced = await asyncio.gather(*(projects[n][0].federation.sync() for n in names[1:]))
        result.lines.append(f"  B and C synced in parallel: merged {[s['merged'] for s in synced]}")
        b, b_clock, b_tool = projects["project-b"]
        await b.call_tool("search_api", query="z")
        result.lines.append(f"  B met the same failure: {len(b_tool.calls)} call, waits "
                            f"{b_clock.slept} s: recovered at once")
        result.data["calls"] = {"A (learned)": len(a_tool.calls), "B (federated)":
                                len(b_tool.calls)}
        result.data["patterns"] = b.immune.patterns_df()
        for orch, _, _ in projects.values():
            await orch.federation.aclose()
            orch.close()
    result.ok = len(b_tool.calls) == 1 and b_clock.slept == []
    return result


async def flow5_observability(home: Path) -> FlowResult:
    """One trace per run: agent, generation (tokens, cost, latency), tool and QC spans."""
    orch = Orchestrator(store=home / "flow5.db", clock=FakeClock(), latency=(0.4, 1.2))
    run = await orch.run("Add user authentication", workspace=home / "flow5-workspace")
    spans, scores = run.spans()
    orch.close()
    result = FlowResult(5, "Observability: one trace, agent/generation/tool spans, scores",
                        ok=False)
    exported = "exported to Langfuse" if orch.langfuse is not None else (
        "kept locally (set LANGFUSE_PUBLIC_KEY/SECRET_KEY to export to Langfuse)")
    result.lines.append(f"  trace {run.id}: {len(spans)} spans, {exported}")
    kinds: dict[str, int] = {}
    for span in spans:
        kinds[span.kind] = kinds.get(span.kind, 0) + 1
    result.lines.append("  " + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())))
    for span in spans:
        if span.kind == "generation":
            a = span.attributes
            result.lines.append(
                f"    {a.get('agent', ''):<10} {a.get('model')}: {a.get('input_tokens')} in / "
                f"{a.get('output_tokens')} out tokens, ${a.get('cost')}, "
                f"{a.get('latency', 0):.2f} s"
            )
    result.lines.append("  scores: " + ", ".join(f"{s.name}={s.value:.4g}" for s in scores))
    result.runs.append(run)
    result.events = run.events
    result.ok = {s.name for s in scores} == {"quality", "cost"} and kinds.get("generation", 0) > 0
    return result


async def flow6_lifecycle(home: Path) -> FlowResult:
    """Request -> safety checks -> execution -> learning -> response with metrics."""
    orch = Orchestrator(store=home / "flow6.db", clock=FakeClock(), budget=2.0,
                        latency=(0.5, 2.0))
    run = await orch.run("Add a rate limiter", workflow="single", archetype="builder",
                         workspace=home / "flow6-workspace")
    stages = {"run.started": "1. request intake", "safety.checked": "2. safety check",
              "agent.started": "3. execution", "learning.completed": "4. learning",
              "run.completed": "5. response"}
    result = FlowResult(6, "Lifecycle: intake, safety, execution, learning, response", ok=False)
    for e in run.events:
        if e.type in stages:
            extra = getattr(e, "detail", {}).get("check", "")
            result.lines.append(f"  {stages[e.type]:<18} {e.type} {extra}")
    result.lines.append(f"  metrics: {run.metrics()}")
    result.runs.append(run)
    result.events = run.events
    orch.close()
    result.ok = run.status == "COMPLETED"
    return result


async def flow7_before_after(home: Path) -> FlowResult:
    """The same broken API under a naive retry loop and under the orchestrator."""
    from decimal import Decimal

    from taskorch_nb.agents.archetypes import Archetype, register_archetype
    from taskorch_nb.llm.simulated import SimReply, SimulatedProvider
    from taskorch_nb.testing import naive_retry_agent

    clock = FakeClock()
    cost_per_search = Decimal("0.05")
    naive = await naive_retry_agent(
        SimulatedProvider(clock=clock), Orchestrator(store=":memory:").prices,
        FlakyTool(always=504), task="Find auth docs", tool_cost=cost_per_search,
        max_iterations=500, query="q",
    )
    register_archetype(Archetype(name="searcher", tools=("search_api",),
                                 system_prompt="Search, then answer as JSON."))

    def searcher(request: Any) -> Any:
        results = [m["content"] for m in request.messages if m["role"] == "tool"]
        return ({"answer": f"found: {results[-1]}"} if results
                else SimReply.call("search_api", {"query": "auth docs"}))

    orch = Orchestrator(SimulatedProvider(clock=clock, latency=1.0, responder=searcher),
                        "sim-small",
                        store=home / "flow7.db", clock=clock)
    orch.tool(FlakyTool(always=504), name="search_api", fallback="cached_search",
              cost=cost_per_search)
    orch.tool(lambda query: f"cached results for {query}", name="cached_search")
    run = await orch.run("Find auth docs", workflow="single", archetype="searcher",
                         workspace=home / "flow7-workspace")
    orch.close()
    result = FlowResult(7, "Before/after: a naive retry loop vs the orchestrator", ok=False)
    result.lines = [
        f"  without: {naive.iterations} immediate retries (stopped here only because the demo "
        f"must end), ${naive.cost:.2f} and counting, task not done",
        f"  with:    2 backoffs, circuit opened, fallback used, task {run.status.value}, "
        f"${run.cost.spent:.4f}",
    ]
    result.runs.append(run)
    result.events = run.events
    result.data["costs"] = {f"naive ({naive.iterations} retries)": float(naive.cost),
                            "orchestrator": float(run.cost.spent)}
    result.ok = run.status == "COMPLETED" and run.cost.spent * 10 < naive.cost
    return result


FLOWS: dict[int, Callable[[Path], Awaitable[FlowResult]]] = {
    1: flow1_self_healing,
    2: flow2_budget,
    3: flow3_multi_agent,
    4: flow4_federation,
    5: flow5_observability,
    6: flow6_lifecycle,
    7: flow7_before_after,
}
