"""The MCP server: runs, budget, breakers and failure patterns as MCP tools.

One Orchestrator per client session, on the same SQLite store as the notebook
and the CLI (`$TASKORCH_HOME/taskorch.db`), so a run started here shows up in
`taskorch_nb.history()` and can be taken apart in a notebook afterwards.

Bad input never takes the server down: unknown archetypes, empty tasks,
non-positive budgets and unknown run ids come back as tool errors (`isError`)
with the reason. A run that does not complete (PAUSED on a budget rejection,
FAILED, CANCELLED) is also an `isError` result; its text says why and names the
run id, and its structured content is still the full run summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, WithJsonSchema

from taskorch_nb.agents.archetypes import archetype_names
from taskorch_nb.core.money import MAX_USD, format_usd, parse_usd
from taskorch_nb.engine.run import Run, RunStatus
from taskorch_nb.engine.runner import stored_status
from taskorch_nb.errors import ConfigurationError, HubError, TaskorchError

if TYPE_CHECKING:
    from taskorch_nb.core.events import Event
    from taskorch_nb.engine.orchestrator import Orchestrator
    from taskorch_nb.federation.client import FederationClient

#: The events of a run that become MCP progress notifications.
PROGRESS_EVENTS = frozenset({"phase.started", "agent.started", "llm.completed"})

#: How many recent runs `budget_status` lists.
RECENT_RUNS = 20

FEDERATION_HELP = (
    "federation is not configured: set TASKORCH_HUB_URL, TASKORCH_HUB_TOKEN and "
    "TASKORCH_PROJECT in the server's environment (a token comes from "
    "`taskorch-nb hub token PROJECT --db PATH`) and restart the server"
)

# -- parameter types (module level: the SDK resolves annotations in module globals) --------

ArchetypeName = Annotated[str, Field(
    description="The agent to spawn; built in: " + ", ".join(archetype_names()) + ".")]
TaskText = Annotated[str, Field(description="What the agent(s) should do; must not be empty.")]
PatternName = Annotated[str, Field(
    description="The pattern's name (e.g. search_api_timeout) or its signature.")]


def _usd_argument(value: Any, info: ValidationInfo) -> float:
    return float(parse_usd(value, info.field_name or "budget"))


#: A USD amount, read by the same `parse_usd` as the CLI, the magic and the constructors.
USD = Annotated[float, BeforeValidator(_usd_argument), WithJsonSchema(
    {"type": "number", "exclusiveMinimum": 0, "maximum": float(MAX_USD)})]
Budget = Annotated[USD, Field(description="USD limit of the run (more than 0).")]
ExtraBudget = Annotated[USD, Field(description="USD added to the run's limit (more than 0).")]
Renamed = Annotated[USD | None, Field(
    description="Deprecated: the old name of the argument above it (same meaning).",
    json_schema_extra={"deprecated": True})]
RunId = Annotated[str, Field(description="A run id as returned by a run tool (run-...).")]
CircuitName = Annotated[str, Field(
    description="A breaker name: a tool (write_file) or provider:model (simulated:sim-small).")]


# -- structured results -----------------------------------------------------------------

class CostInfo(BaseModel):
    """What a run (or the orchestrator) spent, in USD."""

    model_config = ConfigDict(extra="allow")
    spent: float
    limit: float
    remaining: float
    reserved: float = 0.0
    calls: int = 0
    by_agent: dict[str, float] = Field(default_factory=dict)
    by_model: dict[str, float] = Field(default_factory=dict)
    by_tool: dict[str, float] = Field(default_factory=dict)


class RunMetrics(BaseModel):
    """Counts at a glance."""

    model_config = ConfigDict(extra="allow")
    llm_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    tool_calls: int = 0
    retries: int = 0
    patterns_applied: int = 0
    qc_rounds: int = 0
    duration_s: float = 0.0


class RunResult(BaseModel):
    """One run: its id, status, output, cost report and metrics."""

    run_id: str
    task: str
    workflow: str | None
    archetype: str | None
    status: str
    output: str | None
    error: str | None
    workspace: str
    cost: CostInfo
    metrics: RunMetrics
    events: int = Field(description="How many events the run recorded.")


class RunBudget(BaseModel):
    run_id: str
    task: str
    status: str
    spent: float
    limit: float


class BudgetStatus(BaseModel):
    """Budgets now: the orchestrator's own guard and the recent runs' spend."""

    provider: str
    model: str
    default_run_budget: float
    status: str = Field(description="ok | warning | exceeded (model calls made outside runs)")
    orchestrator: CostInfo
    recent_runs: list[RunBudget] = Field(description="Newest first, from the shared store.")
    recent_spent: float


class CircuitInfo(BaseModel):
    name: str
    state: str
    failures: int
    retry_in: float | None = Field(None, description="Seconds until an OPEN breaker probes.")
    loaded: bool = Field(description="False: known only from the store, not used yet here.")


class CircuitStatus(BaseModel):
    circuits: list[CircuitInfo]


class ResetResult(BaseModel):
    name: str
    previous: str
    state: str


class PatternInfo(BaseModel):
    """A learned or federated failure pattern and its strategy's record."""

    model_config = ConfigDict(extra="allow")
    name: str
    signature: str
    tool: str
    category: str
    occurrences: int
    fallback: str | None
    corrective_prompt: str | None
    """The text a model may see: this project's own, or a federated one approved here.
    A federated text awaiting approval is not shown over MCP (a model reads this)."""
    applied: int
    recovered: int
    source: str
    known: bool
    approval: str | None = Field(default=None, description=(
        "For a federated text: pending (read it in `%orchestrate patterns` before approving), "
        "approved or rejected; null for this project's own patterns."))
    approved_by: str | None = None


class PatternList(BaseModel):
    count: int
    patterns: list[PatternInfo]


class SyncResult(BaseModel):
    """What a push-then-pull with the federation hub did."""

    model_config = ConfigDict(extra="allow")
    accepted: int
    changed: int
    quarantined: list[Any]
    merged: int
    patterns: int = Field(description="Patterns known locally after the sync.")


# -- the server ---------------------------------------------------------------------------

class _Session:
    """The Orchestrator of one client session: made on first use, closed at the end."""

    def __init__(self, factory: Callable[[], Orchestrator]) -> None:
        self._factory = factory
        self._orch: Orchestrator | None = None

    def orchestrator(self) -> Orchestrator:
        if self._orch is None:
            try:
                self._orch = self._factory()
            except TaskorchError as exc:
                raise ToolError(f"cannot start the orchestrator: {exc}") from exc
        return self._orch

    async def aclose(self) -> None:
        orch, self._orch = self._orch, None
        if orch is not None:
            await orch.aclose()


def build_server(orch_factory: Callable[[], Orchestrator] | None = None) -> MCPServer:
    """The `taskorch` MCP server; `orch_factory()` makes each session's Orchestrator.

    Default: `orchestrator_from_env()` (simulated provider unless
    TASKORCH_PROVIDER says otherwise, the store under TASKORCH_HOME). The server
    closes the Orchestrator when the session ends.
    """
    session = _Session(orch_factory or orchestrator_from_env)

    @contextlib.asynccontextmanager
    async def lifespan(_server: MCPServer) -> AsyncIterator[dict[str, Any]]:
        try:
            yield {}
        finally:
            await session.aclose()

    app = MCPServer(
        "taskorch", version=_version(), lifespan=lifespan,
        instructions=(
            "Run LLM agents behind circuit breakers, retries, a USD budget guard and a "
            "memory of failure patterns. spawn_archetype_agent runs one agent, run_workflow "
            "the whole Researcher -> Architect -> Builder -> QC loop; both return the run id, "
            "status, output, cost report and metrics."
        ),
    )
    read_only = ToolAnnotations(read_only_hint=True, open_world_hint=False)

    @app.tool()
    async def spawn_archetype_agent(ctx: Context, archetype: ArchetypeName, task: TaskText,
                                    budget: Budget = 1.0, budget_usd: Renamed = None
                                    ) -> Annotated[CallToolResult, RunResult]:
        """Run one agent (researcher, architect, builder or qc) on a task within a USD budget.

        Safety checks (budget, circuits, known failure patterns) run before every
        step. Returns the run id, status, output, cost report and metrics; a run
        that runs out of budget is paused and reported as an error naming its id.
        """
        with _reasons():
            budget = _renamed("budget_usd", budget_usd, "budget", budget, 1.0)
            return await _execute(ctx, session.orchestrator(), task, workflow="single",
                                  archetype=archetype, budget=budget)

    @app.tool()
    async def run_workflow(ctx: Context, task: TaskText, budget: Budget = 5.0,
                           budget_usd: Renamed = None
                           ) -> Annotated[CallToolResult, RunResult]:
        """Run the full workflow on a task: research -> design -> build -> QC (tests run for real),
        back to build on a failed QC verdict. Returns the run id, status, output, cost
        report and metrics; progress is reported per phase, agent and model call.
        """
        with _reasons():
            budget = _renamed("budget_usd", budget_usd, "budget", budget, 5.0)
            return await _execute(ctx, session.orchestrator(), task, workflow="full",
                                  archetype=None, budget=budget)

    @app.tool()
    async def resume_run(ctx: Context, run_id: RunId, extra_budget: ExtraBudget = 1.0,
                         extra_budget_usd: Renamed = None
                         ) -> Annotated[CallToolResult, RunResult]:
        """Continue a PAUSED (out of budget) or INTERRUPTED (crashed) run with more budget.

        Model calls made before the pause are replayed from the run's checkpoint,
        never repeated or charged twice. Returns the run as run_workflow does.
        """
        with _reasons():
            extra = _renamed("extra_budget_usd", extra_budget_usd, "extra_budget",
                             extra_budget, 1.0)
            orch = session.orchestrator()
            try:
                run = orch.get_run(run_id)
            except KeyError as exc:
                raise ToolError(str(exc.args[0])) from exc
            return await _follow(ctx, orch, run, run.resume(extra_budget=extra))

    @app.tool(annotations=read_only)
    async def get_run(run_id: RunId) -> RunResult:
        """A run by id (from this session or any earlier one in the shared store)."""
        with _reasons():
            orch = session.orchestrator()
        try:
            run = orch.get_run(run_id)
        except KeyError as exc:
            raise ToolError(str(exc.args[0])) from exc
        return RunResult.model_validate(_summary(run))

    @app.tool(annotations=read_only)
    async def budget_status() -> BudgetStatus:
        """Budgets now: the default run budget, the orchestrator's guard, recent runs' spend."""
        with _reasons():
            return _budget_status(session.orchestrator())

    @app.tool(annotations=read_only)
    async def circuit_status() -> CircuitStatus:
        """Every circuit breaker: state (CLOSED/OPEN/HALF_OPEN), failures, time to half-open."""
        with _reasons():
            return CircuitStatus(circuits=_circuits(session.orchestrator()))

    @app.tool(annotations=ToolAnnotations(idempotent_hint=True, open_world_hint=False))
    async def reset_circuit(name: CircuitName) -> ResetResult:
        """Close a circuit breaker by hand (after fixing what made it open)."""
        with _reasons():
            return _reset(session.orchestrator(), name)

    @app.tool(annotations=read_only)
    async def list_patterns() -> PatternList:
        """The failure patterns the immune system knows (learned here or pulled from the hub)."""
        with _reasons():
            patterns = [PatternInfo.model_validate(
                            {**p.to_record(), "corrective_prompt": p.usable_prompt})
                        for p in session.orchestrator().immune.patterns()]
            return PatternList(count=len(patterns), patterns=patterns)

    @app.tool(annotations=ToolAnnotations(idempotent_hint=True, open_world_hint=False))
    async def approve_pattern(name: PatternName) -> PatternInfo:
        """Let a federated pattern's corrective prompt reach the model from now on.

        Its fallback applies without approval; its text, another project's words, is
        only put in front of a model once a person here approved it. Approve only a
        text a person has read (`%orchestrate patterns` shows it).
        """
        with _reasons():
            pattern = session.orchestrator().immune.approve(name, by="mcp")
            return PatternInfo.model_validate(
                {**pattern.to_record(), "corrective_prompt": pattern.usable_prompt})

    @app.tool()
    async def federation_sync() -> SyncResult:
        """Push this project's failure patterns to the federation hub, then pull everyone's."""
        with _reasons():
            orch = session.orchestrator()
            if orch.federation is None:
                raise ToolError(FEDERATION_HELP)
            answer = await orch.federation.sync()
            return SyncResult.model_validate({**answer, "patterns": len(orch.immune)})

    return app


@contextlib.contextmanager
def _reasons() -> Iterator[None]:
    """Our anticipated errors become tool errors carrying their reason."""
    try:
        yield
    except ToolError:
        raise
    except HubError as exc:
        raise ToolError(f"federation hub: {exc}") from exc
    except TaskorchError as exc:
        raise ToolError(str(exc)) from exc


# -- runs -----------------------------------------------------------------------------------

def _renamed(old: str, old_value: float | None, new: str, value: float,
             default: float) -> float:
    """The amount given under the argument's new name or, deprecated, its old one."""
    if old_value is None:
        return value
    if value != default and value != old_value:
        raise ToolError(f"{old} is the old name of {new}: give {new} only")
    warnings.warn(f"the MCP argument {old} is deprecated: call it {new} (as in Python)",
                  DeprecationWarning, stacklevel=2)
    return old_value


async def _execute(ctx: Context, orch: Orchestrator, task: str, *, workflow: str,
                   archetype: str | None, budget: float) -> CallToolResult:
    """Start the run, forward its progress events to the client, answer with its summary."""
    run = await orch.start(task, workflow=workflow, archetype=archetype, budget=budget)
    return await _follow(ctx, orch, run, run)


async def _follow(ctx: Context, orch: Orchestrator, run: Run,
                  work: Awaitable[Run]) -> CallToolResult:
    """Await the run's work while its progress events go to the client as notifications."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Event | None] = asyncio.Queue()

    def forward(event: Event) -> None:  # may be called from a worker thread
        if event.run_id == run.id and event.type in PROGRESS_EVENTS:
            loop.call_soon_threadsafe(queue.put_nowait, event)

    unsubscribe = orch.subscribe(forward)
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(_report_progress(ctx, queue))
            try:
                await work
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)
    except ExceptionGroup as group:  # the work's own error (say, not resumable), unwrapped
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
    finally:
        unsubscribe()
    return run_result(run)


async def _report_progress(ctx: Context, queue: asyncio.Queue[Event | None]) -> None:
    """One notification per event (a no-op unless the client sent a progress token)."""
    done = 0
    while (event := await queue.get()) is not None:
        done += 1
        await ctx.report_progress(done, None, progress_message(event))


def progress_message(event: Event) -> str:
    """One line a person reads in the client for a progress event."""
    if event.type == "phase.started":
        return f"phase {getattr(event, 'phase', None)} started"
    if event.type == "agent.started":
        return f"agent {getattr(event, 'agent', None)} started"
    tokens = getattr(event, "input_tokens", 0) + getattr(event, "output_tokens", 0)
    cost = getattr(event, "cost", None)
    return (f"model call by {getattr(event, 'agent', None) or 'agent'} done: {tokens} tokens, "
            f"{format_usd(cost if cost is not None else 0)}")


def _summary(run: Run) -> dict[str, Any]:
    return {**run.summary(), "events": len(run.events)}


def run_result(run: Run) -> CallToolResult:
    """The MCP answer for a finished run: its summary; `isError` unless it COMPLETED."""
    summary = _summary(run)
    if run.status is RunStatus.COMPLETED:
        text = json.dumps(summary, indent=1, default=str)
        return CallToolResult(content=[TextContent(type="text", text=text)],
                              structured_content=summary)
    if run.status is RunStatus.PAUSED:
        cost = run.cost
        text = (f"paused: budget exhausted, run id {run.id}: {run.error}. Spent "
                f"{format_usd(cost.spent)} of {format_usd(cost.limit)}; nothing is lost: "
                f"resume it with resume_run(run_id={run.id!r}, extra_budget=...)")
    else:
        reason = f": {run.error}" if run.error else ""
        text = f"{run.status.value.lower()}, run id {run.id}{reason}"
    return CallToolResult(content=[TextContent(type="text", text=text)],
                          structured_content=summary, is_error=True)


# -- status tools -----------------------------------------------------------------------------

def _budget_status(orch: Orchestrator) -> BudgetStatus:
    status = orch.status()
    runs = [
        RunBudget(run_id=row["id"], task=row["task"], status=stored_status(row).value,
                  spent=float(row["data"].get("spent", 0)),
                  limit=float(row["data"].get("limit", 0)))
        for row in orch.store.runs(RECENT_RUNS)
    ]
    return BudgetStatus(
        provider=status["provider"], model=status["model"],
        default_run_budget=float(orch.default_budget), status=status["budget"]["status"],
        orchestrator=CostInfo.model_validate(status["budget"]), recent_runs=runs,
        recent_spent=round(sum(r.spent for r in runs), 10),
    )


def _circuits(orch: Orchestrator) -> list[CircuitInfo]:
    out = {}
    for name, breaker in orch.circuits.items():
        snap = breaker.snapshot()
        out[name] = CircuitInfo(name=name, state=snap["state"], failures=snap["failures"],
                                retry_in=breaker.retry_in(), loaded=True)
    for name, saved in orch.store.load_circuits().items():
        if name not in out:
            out[name] = CircuitInfo(name=name, state=saved["state"], failures=saved["failures"],
                                    loaded=False)
    return [out[name] for name in sorted(out)]


def _reset(orch: Orchestrator, name: str) -> ResetResult:
    if name not in orch.circuits and name not in orch.store.load_circuits():
        known = ", ".join(sorted({*orch.circuits, *orch.store.load_circuits()})) or "none yet"
        raise ToolError(f"unknown circuit {name!r}; known circuits: {known}")
    breaker = orch.breaker(name)  # a breaker known only from the store is restored first
    previous = breaker.state.value
    breaker.reset()
    return ResetResult(name=name, previous=previous, state=breaker.state.value)


# -- running it -------------------------------------------------------------------------------

def federation_from_env(environ: Mapping[str, str] | None = None) -> FederationClient | None:
    """A `FederationClient` from TASKORCH_HUB_URL / _HUB_TOKEN / _PROJECT, or None without a URL."""
    env = os.environ if environ is None else environ
    url = env.get("TASKORCH_HUB_URL")
    if not url:
        return None
    token, project = env.get("TASKORCH_HUB_TOKEN"), env.get("TASKORCH_PROJECT")
    if not token or not project:
        raise ConfigurationError(
            "TASKORCH_HUB_URL is set, so TASKORCH_HUB_TOKEN and TASKORCH_PROJECT must be too")
    from taskorch_nb.federation.client import FederationClient

    return FederationClient(url, token=token, project=project)


def orchestrator_from_env(environ: Mapping[str, str] | None = None) -> Orchestrator:
    """The server's Orchestrator: TASKORCH_PROVIDER (default simulated), TASKORCH_MODEL,
    the store under TASKORCH_HOME, federation from the TASKORCH_HUB_* variables."""
    from taskorch_nb.engine.orchestrator import Orchestrator

    env = os.environ if environ is None else environ
    return Orchestrator(env.get("TASKORCH_PROVIDER") or "simulated",
                        env.get("TASKORCH_MODEL") or None,
                        federation=federation_from_env(env))


def main() -> int:
    """`taskorch-nb mcp`: serve on stdio until the client hangs up (exit 2: bad configuration)."""
    try:
        first: list[Orchestrator] = [orchestrator_from_env()]  # fail fast on bad settings
    except ConfigurationError as exc:
        print(f"taskorch-nb mcp: {exc}", file=sys.stderr)
        return 2
    build_server(lambda: first.pop() if first else orchestrator_from_env()).run("stdio")
    return 0


def _version() -> str:
    from taskorch_nb import __version__

    return __version__


if __name__ == "__main__":
    raise SystemExit(main())
