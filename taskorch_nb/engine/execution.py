"""How a run executes: the context its workflow and agents work through.

`RunContext` gives agents their guarded calls (budget, breakers, retries,
immune system), runs the safety checks before every agent step, emits the
phase/agent/QC events, and keeps the run's checkpoint: the typed output of
every finished agent and a journal of every model and tool call, so a resumed
run replays what it already paid for instead of repeating it. Every paid call
it makes names the run's guard, and the money it settles becomes durable in one
transaction with the checkpoint that journals the call (`Store.holding`): a
kill at any instant leaves a ledger equal to the run's cost. The corrective
prompts of the strategies taken for its tool calls come straight back to it.
"""

from __future__ import annotations

import functools
from contextvars import ContextVar
from dataclasses import replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel

from taskorch_nb.agents.archetypes import Archetype, get_archetype
from taskorch_nb.agents.audit import is_test_file
from taskorch_nb.agents.loop import run_agent
from taskorch_nb.agents.workspace import Workspace
from taskorch_nb.core.budget import BudgetGuard
from taskorch_nb.core.circuit import CircuitBreaker, CircuitState
from taskorch_nb.core.events import Event, EventBus, RunEvent, current_phase, scope
from taskorch_nb.core.immune import ImmuneSystem
from taskorch_nb.core.money import format_usd
from taskorch_nb.core.tools import Toolbox
from taskorch_nb.errors import BudgetExceededError, SandboxError, WorkflowError
from taskorch_nb.llm.base import Completion, ToolCall, Usage

if TYPE_CHECKING:
    from collections.abc import Callable

    from taskorch_nb.agents.qc import QCVerdict
    from taskorch_nb.core.clock import Clock
    from taskorch_nb.core.store import Held, Store
    from taskorch_nb.engine.run import Run


class Services(Protocol):
    """The guarded calls a run works through (the Orchestrator provides them)."""

    bus: EventBus
    store: Store
    tools: Toolbox
    immune: ImmuneSystem
    qc_timeout: float
    sandbox: str

    def breaker(self, name: str, template: CircuitBreaker | None = None) -> CircuitBreaker: ...

    def model_key(self, model: str | None = None) -> str: ...

    async def complete(self, messages: list[dict], *, model: str | None = None,
                       max_tokens: int = 1024, tools: list[dict] | None = None,
                       response_format: dict | None = None, temperature: float | None = None,
                       guard: BudgetGuard | None = None) -> Completion: ...



def _completion_record(c: Completion) -> dict[str, Any]:
    return {
        "text": c.text,
        "tool_calls": [{"id": t.id, "name": t.name, "arguments": t.arguments}
                       for t in c.tool_calls],
        "usage": [c.usage.input_tokens, c.usage.output_tokens, c.usage.cached_tokens],
        "model": c.model, "provider": c.provider, "latency": c.latency,
        "finish_reason": c.finish_reason,
    }


def _completion_from(record: dict[str, Any]) -> Completion:
    i, o, cached = record["usage"]
    return Completion(
        text=record["text"],
        tool_calls=[ToolCall(**t) for t in record["tool_calls"]],
        usage=Usage(input_tokens=i, output_tokens=o, cached_tokens=cached),
        model=record["model"], provider=record["provider"], latency=record["latency"],
        finish_reason=record.get("finish_reason"),
    )


#: The workspace of the run the current task works for (file tools read it).
current_workspace: ContextVar[Workspace | None] = ContextVar("taskorch_workspace", default=None)
#: The clock of that run: file tools do their I/O in a worker thread on it.
current_clock: ContextVar[Clock | None] = ContextVar("taskorch_run_clock", default=None)


class _CurrentWorkspace:
    """Stands in for the current run's workspace, so one set of file tools serves all runs."""

    def __getattr__(self, name: str) -> Any:
        workspace = current_workspace.get()
        if workspace is None:
            raise WorkflowError("file tools work inside a run: there is no workspace here")
        return getattr(workspace, name)


def workspace_tools() -> dict[str, Any]:
    """`list_files`, `read_file`, `write_file`, `search_files` on the current run's workspace.

    Async: a workspace nothing was written to yet has no folder, so reading it needs no
    disk and is answered on the loop; otherwise the I/O goes to a worker thread of the
    run's clock. (Most runs only look: a thread hop each cost more than the rest of
    the call.)"""
    return {name: _off_loop(name, fn) for name, fn in
            Workspace.tool_functions(_CurrentWorkspace()).items()}  # type: ignore[arg-type]


def _off_loop(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    async def tool(*args: Any, **kwargs: Any) -> Any:
        workspace, clock = current_workspace.get(), current_clock.get()
        if clock is None or (name != "write_file" and workspace is not None
                             and not workspace.made):
            return fn(*args, **kwargs)
        return await clock.to_thread(fn, *args, **kwargs)

    return functools.update_wrapper(tool, fn)  # its name, parameters and docstring


class RunContext:
    """The workflow's and the agents' only door to the world during one run."""

    def __init__(self, orch: Services, run: Run, *, workspace: Workspace,
                 save: Callable[..., None]) -> None:
        self.orch = orch
        self.run = run
        self.workspace = workspace
        self._save_run = save
        self.task = run.task
        self.max_rounds = run.max_rounds
        self.archetype = run.archetype
        self._key = ""
        self._calls = 0
        self._write_scope: str | None = None
        self._prompts: list[str] = []
        self._unsynced = False

    # -- checkpoint ------------------------------------------------------------------

    def _save(self, held: Held | None = None) -> None:
        """The checkpoint (with the guard's state), and in the same transaction the
        money `held` back while the call it paid for was journaled."""
        self.run.checkpoint["budget"] = self.run.guard.checkpoint()
        self._save_run(self.run, held=held)
        self._unsynced = True

    async def _synced(self) -> None:
        """Wait for the commit of the last save (one per loop tick for all runs): a paid
        call goes on only once its settlement and checkpoint are durable."""
        if self._unsynced:
            self._unsynced = False
            await self.orch.store.durable(self.run.id)

    def _journal(self) -> dict[str, Any]:
        return self.run.checkpoint["journal"]

    def _next_key(self, kind: str) -> str:
        self._calls += 1
        return f"{self._key}:{self._calls}:{kind}"

    # -- workflow side ---------------------------------------------------------------

    def _emit(self, type_: str, **fields: Any) -> Event:
        fields.setdefault("phase", current_phase.get())
        return self.orch.bus.emit(RunEvent(type=type_, **fields))

    def phase(self, name: str, round: int = 1) -> _Phase:
        """`async with ctx.phase("build", 2):` the phase's events around the block; a phase
        finished before a pause or crash is replayed silently."""
        return _Phase(self, name, round)

    async def agent(self, archetype: str, instruction: str, *, key: str,
                    write_scope: str | None = None) -> BaseModel:
        arch = get_archetype(archetype)
        saved = self.run.checkpoint["outputs"].get(key)
        if saved is not None:
            return arch.output.model_validate(saved)
        tools = (*arch.tools, *self.run.tools)
        self.safety_checks(arch.name, tools, model=arch.model)
        self._key, self._calls, self._write_scope = key, 0, write_scope
        self._emit("agent.started", agent=arch.name, detail={"step": key})
        with scope(agent=arch.name):
            output = await run_agent(self, _with_tools(arch, tools), instruction)
        # Saved with the next paid call or the run's end; until then the journal replays it.
        self.run.checkpoint["outputs"][key] = output.model_dump(mode="json")
        self._emit("agent.completed", agent=arch.name, detail={"step": key})
        return output

    async def check_qc_runner(self) -> None:
        """QC's test runner answers in its sandbox, or the run fails before it spends."""
        from taskorch_nb.agents.testrunner import check_runner

        await check_runner(sandbox=self.orch.sandbox)

    async def qc(self, *, key: str) -> QCVerdict:
        from taskorch_nb.agents.qc import QCVerdict, run_qc

        saved = self.run.checkpoint["outputs"].get(key)
        if saved is not None:
            return QCVerdict.model_validate(saved)
        self._emit("agent.started", agent="qc", detail={"step": key})
        self.workspace.ensure()
        with scope(agent="qc"):
            verdict = await run_qc(self.workspace, timeout=self.orch.qc_timeout,
                                   sandbox=self.orch.sandbox)
        self.run.checkpoint["outputs"][key] = verdict.model_dump(mode="json")
        self._save()
        self._emit("qc.passed" if verdict.approved else "qc.failed", phase="qc", agent="qc",
                   detail=verdict.model_dump(mode="json"))
        self._emit("agent.completed", agent="qc", detail={"step": key})
        return verdict

    def safety_checks(self, agent: str | None, tools: tuple[str, ...], *,
                      model: str | None = None) -> None:
        """Budget, circuits, relevant patterns: each an event, before the run and before
        every agent step. An exhausted budget pauses the run here."""
        guard = self.run.guard
        remaining = guard.remaining
        self._emit("safety.checked", agent=agent, detail={
            "check": "budget", "remaining": str(remaining), "limit": str(guard.limit),
            "status": guard.status, "ok": remaining > 0,
        })
        if remaining <= 0:
            raise BudgetExceededError(
                f"budget exceeded: {format_usd(remaining)} of {format_usd(guard.limit)} "
                "left", requested=Decimal("0"), remaining=remaining, limit=guard.limit,
                report=guard.report())
        names = [n for n in tools if n in self.orch.tools]
        names.append(self.orch.model_key(model))
        states = {n: self.orch.breaker(n).state.value for n in names}
        self._emit("safety.checked", agent=agent, detail={
            "check": "circuits", "states": states,
            "open": sorted(n for n, s in states.items() if s == CircuitState.OPEN),
        })
        relevant = self.orch.immune.relevant(names)
        self._emit("safety.checked", agent=agent, detail={
            "check": "patterns", "relevant": [p.name for p in relevant],
        })

    # -- agent side ------------------------------------------------------------------

    async def complete(self, messages: list[dict], *, archetype: Archetype,
                       tools: list[dict] | None, response_format: dict | None) -> Completion:
        key = self._next_key("llm")
        saved = self._journal().get(key)
        if saved is not None:
            return _completion_from(saved)
        # Its settlement waits (held) for the checkpoint that journals the call; a call
        # that fails after paying is saved too, so the guard never lags the ledger.
        with self.orch.store.holding() as held:
            try:
                completion = await self.orch.complete(
                    messages, model=archetype.model, max_tokens=archetype.max_tokens,
                    tools=tools, response_format=response_format,
                    temperature=archetype.temperature, guard=self.run.guard,
                )
            except BaseException:
                if held:
                    self._save(held)
                raise
            self._journal()[key] = _completion_record(completion)
            self._save(held)
        await self._synced()
        return completion

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> Any:
        key = self._next_key("tool")
        journal = self._journal()
        if key in journal:
            return journal[key]
        if self._write_scope == "tests" and name == "write_file":
            path = str(arguments.get("path", ""))
            if not is_test_file(path):
                raise SandboxError(path, "the RED step writes tests only; code comes next")
        # The model's arguments are the tool's, whatever their names: guard and prompts
        # travel beside them.
        # A metered tool's settlements are saved with its journal entry; a free one is
        # journaled with the next save (replaying it again costs nothing).
        with self.orch.store.holding() as held:
            try:
                result = await self.orch.tools.call(name, arguments, guard=self.run.guard,
                                                    prompts=self._prompts)
            except BaseException:
                if held:
                    self._save(held)
                raise
            journal[key] = result if isinstance(result, str | int | float | list | dict) else (
                str(result))
            if held:
                self._save(held)
        await self._synced()
        return result

    def tool_schemas(self, names: tuple[str, ...]) -> list[dict]:
        """The tools offered to the model now; a tool whose breaker is open is withheld."""
        schemas = []
        for name in names:
            if name not in self.orch.tools:
                continue
            if self.orch.breaker(name).state is CircuitState.OPEN:
                continue
            schemas.append(self.orch.tools[name].offer())
        return schemas

    def take_prompts(self) -> list[str]:
        """The corrective prompts of strategies applied since, for the next model call."""
        prompts = self._prompts[:]
        self._prompts.clear()
        return prompts


class _Phase:
    """One phase of a run (a class, not a generator: see `core.events.scope`)."""

    __slots__ = ("_ctx", "_marker", "_name", "_replay", "_round", "_scope")

    def __init__(self, ctx: RunContext, name: str, round: int) -> None:
        self._ctx, self._name, self._round = ctx, name, round
        self._marker = f"{name}:{round}"
        self._scope = scope(phase=name)

    async def __aenter__(self) -> None:
        self._replay = self._marker in self._ctx.run.checkpoint["phases_done"]
        if not self._replay:
            self._ctx._emit("phase.started", phase=self._name, detail={"round": self._round})
        self._scope.__enter__()

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self._scope.__exit__()
        if exc_type is None and not self._replay:
            # saved with the next checkpoint: replay makes it up if lost
            self._ctx.run.checkpoint["phases_done"].append(self._marker)
            self._ctx._emit("phase.completed", phase=self._name,
                            detail={"round": self._round})


def _with_tools(arch: Archetype, tools: tuple[str, ...]) -> Archetype:
    if tools == arch.tools:
        return arch
    return replace(arch, tools=tuple(dict.fromkeys(tools)))
