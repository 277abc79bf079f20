"""The seed flows as the demo runs them, each for real on the embedded defaults.

Each flow runs for real (simulated provider, a hub process on loopback, a
temporary store) on a `FakeClock` where waiting would only bore the reader, and
returns a `FlowResult`: the lines the demo prints and what its charts need.

The demo runs on the plainest install (`pip install taskorch-nb`, no extras). A
flow that would use an extra says so in one line and shows what it can without
it: flow 4 needs the `[hub]` extra to serve the hub, so without it project A
hands its patterns to B and C directly, in the hub's wire format.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import re
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskorch_nb.core.events import Event
from taskorch_nb.core.money import format_usd
from taskorch_nb.core.retry import RetryPolicy
from taskorch_nb.engine.orchestrator import Orchestrator
from taskorch_nb.testing import FakeClock, FlakyTool

#: What serving the federation hub imports (the `[hub]` extra).
HUB_MODULES = ("fastapi", "uvicorn", "sqlalchemy")


def _today() -> FakeClock:
    """A fake clock (no waiting) on today's date, so the report's time axes say when it ran."""
    return FakeClock(epoch=time.time())


def missing(*modules: str) -> list[str]:
    """The modules of `modules` that are not installed."""
    return [name for name in modules if importlib.util.find_spec(name) is None]


def _percent(part: Any, whole: Any) -> str:
    """One format for every share of a budget the demo prints (as `CostReport` does)."""
    return f"{float(part) / float(whole) * 100:.1f}%"


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
    clock = _today()
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

    clock = _today()
    provider = SimulatedProvider(clock=clock, latency=(2.0, 6.0),
                                 responder=lambda r: SimReply(text="x" * 4800))
    orch = Orchestrator(provider, "sim-small", budget=5.00, store=home / "flow2.db", clock=clock)
    events: list[Event] = []
    orch.subscribe(events.append)
    result = FlowResult(2, "Budget: approve before, settle after, warn, reject, report", ok=False)
    calls = 0
    warnings: list[Any] = []
    with scope(agent="builder"):
        while True:
            start = len(events)
            try:
                await orch.complete([{"role": "user", "content": "next step"}], max_tokens=1500)
            except BudgetExceededError as exc:
                result.lines.append(f"  call {calls + 1}: REJECTED - {exc}")
                break
            calls += 1
            mine = events[start:]
            done = next(e for e in mine if e.type == "llm.completed")
            settled = next(e for e in mine if e.type == "budget.settled")
            # The guard warns when what would be left after reserving the call's worst case
            # drops under 20 %; the settled cost is lower, so more is left afterwards.
            warning = next((e for e in mine if e.type == "budget.warning"), None)
            if warning is not None:
                warnings.append(warning)
                result.lines.append(
                    f"  call {calls:2}: WARNING: reserving up to {format_usd(warning.amount)} "
                    f"leaves {format_usd(warning.remaining)} "
                    f"({_percent(warning.remaining, warning.limit)}), under 20% (still approved)")
            left = (f"{format_usd(settled.remaining)} "
                    f"({_percent(settled.remaining, settled.limit)}) left")
            result.lines.append(f"  call {calls:2}: approved, {done.output_tokens:,} tokens, "
                                f"{format_usd(settled.amount)} spent, {left}")
    report = orch.session_guard.report()
    result.lines.append("  " + str(report).replace("\n", "\n  "))
    orch.close()
    result.events = events
    result.ok = (report.spent <= report.limit and orch.session_guard.status == "exceeded"
                 and len(warnings) == 1 and warnings[0].remaining < warnings[0].limit / 5)
    return result


async def flow3_multi_agent(home: Path) -> FlowResult:
    """Researcher -> Architect -> Builder (tests first) -> QC (real pytest) -> fix -> approve."""
    orch = Orchestrator(store=home / "flow3.db", clock=_today(), budget=5.0,
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


def _federated_project(home: Path, name: str, federation: Any) -> tuple[Any, Any, Any]:
    """A project whose `search_api` always times out, with a cached fallback."""
    clock = _today()
    orch = Orchestrator(store=home / f"flow4-{name}.db", clock=clock,
                        retry=RetryPolicy(jitter=0.0), federation=federation)
    broken = FlakyTool(always=504)
    orch.tool(broken, name="search_api", fallback="cached_search")
    orch.tool(lambda query: f"cached results for {query}", name="cached_search")
    return orch, clock, broken


async def flow4_federation(home: Path, *, hub: bool | None = None) -> FlowResult:
    """A learns a pattern and pushes it; B and C sync; B recovers at its first failure.

    `hub=None` serves a real hub when the `[hub]` extra is installed; without it
    (or with `hub=False`) A's patterns go to B and C directly, in the wire format.
    """
    result = FlowResult(4, "Federation: learned once, shared, recovered at first failure",
                        ok=False)
    names = ["project-a", "project-b", "project-c"]
    if hub is None:
        hub = not missing(*HUB_MODULES)
    if hub:
        projects = await _through_a_hub(home, names, result)
    else:
        result.lines.append("  no hub: serving one needs the [hub] extra (pip install "
                            "'taskorch-nb[hub]'); A hands its patterns to B and C directly")
        projects = await _hand_over(home, names, result)
    b, b_clock, b_tool = projects["project-b"]
    await b.call_tool("search_api", query="z")
    result.lines.append(f"  B met the same failure: {len(b_tool.calls)} call, waits "
                        f"{b_clock.slept} s: recovered at once")
    a_tool = projects["project-a"][2]
    result.data["calls"] = {"A (learned)": len(a_tool.calls), "B (federated)": len(b_tool.calls)}
    result.data["patterns"] = b.immune.patterns_df()
    for orch, _, _ in projects.values():
        if orch.federation is not None:
            await orch.federation.aclose()
        orch.close()
    result.ok = (len(b_tool.calls) == 1 and b_clock.slept == []
                 and result.data.get("merged") == [1, 1])
    return result


async def _learn(projects: dict[str, Any], result: FlowResult) -> Any:
    a, a_clock, a_tool = projects["project-a"]
    await a.call_tool("search_api", query="q")
    result.lines.append(f"  A: {len(a_tool.calls)} calls to the failing tool, waits "
                        f"{a_clock.slept} s, learned {a.immune.patterns()[0].name}")
    return a


async def _through_a_hub(home: Path, names: list[str], result: FlowResult) -> dict[str, Any]:
    from taskorch_nb.federation import FederationClient

    with _hub(home, names) as (url, tokens):
        projects = {name: _federated_project(home, name, FederationClient(
            url, token=tokens[name], project=name)) for name in names}
        a = await _learn(projects, result)
        pushed = await a.federation.push()
        result.lines.append(f"  A pushed to the hub at {url}: {pushed['accepted']} accepted")
        synced = await asyncio.gather(*(projects[n][0].federation.sync() for n in names[1:]))
        result.data["merged"] = [s["merged"] for s in synced]
        result.lines.append(f"  B and C synced in parallel: merged {result.data['merged']}")
    return projects


async def _hand_over(home: Path, names: list[str], result: FlowResult) -> dict[str, Any]:
    """Federation without a hub: A's export, checked against the schema the hub enforces,
    merged by B and C under the same trust policy a pull applies."""
    from taskorch_nb.federation.client import TrustPolicy
    from taskorch_nb.federation.schema import PushBody

    projects = {name: _federated_project(home, name, None) for name in names}
    a = await _learn(projects, result)
    records = a.immune.export()
    PushBody.model_validate_json(json.dumps({"patterns": records}))  # the hub's door check
    result.lines.append(f"  A exported {len(records)} pattern(s) in the hub's wire format")
    policy = TrustPolicy()
    result.data["merged"] = [
        projects[n][0].immune.merge_federated(
            policy.mark([dict(r) for r in records], projects[n][0].tools.names()))
        for n in names[1:]
    ]
    result.lines.append(f"  B and C merged them: {result.data['merged']}")
    return projects


async def flow5_observability(home: Path) -> FlowResult:
    """One trace per run: agent, generation (tokens, cost, latency), tool and QC spans."""
    orch = Orchestrator(store=home / "flow5.db", clock=_today(), latency=(0.4, 1.2))
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
                f"{a.get('output_tokens')} out tokens, {format_usd(a.get('cost'))}, "
                f"{a.get('latency', 0):.2f} s"
            )
    result.lines.append("  scores: " + ", ".join(f"{s.name}={s.value:.4g}" for s in scores))
    result.runs.append(run)
    result.events = run.events
    result.ok = {s.name for s in scores} == {"quality", "cost"} and kinds.get("generation", 0) > 0
    return result


async def flow6_lifecycle(home: Path) -> FlowResult:
    """Request -> safety checks -> execution -> learning -> response with metrics."""
    orch = Orchestrator(store=home / "flow6.db", clock=_today(), budget=2.0,
                        latency=(0.5, 2.0))
    run = await orch.run("Add a rate limiter", workflow="single", archetype="builder",
                         workspace=home / "flow6-workspace")
    result = FlowResult(6, "Lifecycle: request, safety checks, execution, learning, result",
                        ok=False)
    result.lines = _lifecycle(run)
    result.runs.append(run)
    result.events = run.events
    orch.close()
    result.ok = run.status == "COMPLETED" and _in_lifecycle_order(run.events)
    return result


#: The seed diagram's five steps and the events that make each one.
LIFECYCLE = (
    ("1. request", ("run.started",)),
    ("2. safety checks", ("safety.checked",)),
    ("3. execution", ("agent.started", "llm.completed", "tool.succeeded", "tool.failed")),
    ("4. learning", ("learning.completed",)),
    ("5. result", ("run.completed", "run.failed", "run.paused")),
)


def _lifecycle(run: Any) -> list[str]:
    """One line per step of the diagram, however often the run went through it."""
    events = run.events
    of = {step: [e for e in events if e.type in types] for step, types in LIFECYCLE}
    started = of["1. request"][0]
    checks = of["2. safety checks"]
    budget = [e.detail for e in checks if e.detail["check"] == "budget"]
    states: dict[str, str] = {}
    relevant: set[str] = set()
    for e in checks:
        states.update(e.detail.get("states", {}))
        relevant.update(e.detail.get("relevant", []))
    not_closed = sorted(n for n, state in states.items() if state != "CLOSED")
    circuits = (f"{len(states)} circuits all CLOSED" if not not_closed else
                "circuits not closed: " + ", ".join(f"{n} {states[n]}" for n in not_closed))
    agents = [e for e in events if e.type == "agent.started"]
    metrics = run.metrics()
    learned = of["4. learning"][0].detail
    end = of["5. result"][-1]
    rows = {
        "1. request": f"{started.task!r}, workflow {run.workflow} ({run.archetype}), "
                      f"budget {format_usd(run.cost.limit)}",
        "2. safety checks": f"budget {budget[-1]['status']} "
                            f"({format_usd(budget[-1]['remaining'])} left), {circuits}, "
                            f"relevant patterns: {', '.join(sorted(relevant)) or 'none'}; "
                            f"checked {len(budget)} times: before the run and each agent step",
        "3. execution": f"{len(agents)} agent steps "
                        f"({', '.join(e.detail['step'] for e in agents)}), "
                        f"{metrics['llm_calls']} model calls, {metrics['tool_calls']} tool calls",
        "4. learning": f"learned {learned['learned'] or 'nothing new'}, applied "
                       f"{learned['applied'] or 'none'}, shared {learned['shared']} with a hub",
        "5. result": f"{end.status} in {metrics['duration_s']:.1f} s, "
                     f"{format_usd(run.cost.spent)}, {metrics['input_tokens']} in / "
                     f"{metrics['output_tokens']} out tokens",
    }
    return [f"  {step:<17} {rows[step]}" for step, _ in LIFECYCLE]


def _in_lifecycle_order(events: list[Event]) -> bool:
    """Each step first happens after the one before it; every agent step is checked first."""
    firsts = []
    for _, types in LIFECYCLE:
        at = [i for i, e in enumerate(events) if e.type in types]
        if not at:
            return False
        firsts.append(at[0])
    checked_before = all(
        events[i - 1].type == "safety.checked"
        for i, e in enumerate(events) if e.type == "agent.started"
    )
    return firsts == sorted(firsts) and checked_before


async def flow7_before_after(home: Path) -> FlowResult:
    """The same broken API under a naive retry loop and under the orchestrator."""
    from decimal import Decimal

    from taskorch_nb.agents.archetypes import Archetype, register_archetype
    from taskorch_nb.llm.simulated import SimReply, SimulatedProvider
    from taskorch_nb.testing import naive_retry_agent

    clock = _today()
    cost_per_search = Decimal("0.05")
    naive = await naive_retry_agent(
        SimulatedProvider(clock=clock), FlakyTool(always=504), task="Find auth docs",
        tool_cost=cost_per_search, max_iterations=500, query="q",
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
        f"must end), {format_usd(naive.cost)} and counting, task not done",
        f"  with:    2 backoffs, circuit opened, fallback used, task {run.status.value}, "
        f"{format_usd(run.cost.spent)}",
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
