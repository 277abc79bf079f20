"""Creating, executing, pausing, resuming and listing runs."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import weakref
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from taskorch_nb.agents.archetypes import get_archetype
from taskorch_nb.agents.workflow import get_workflow
from taskorch_nb.agents.workspace import Workspace
from taskorch_nb.core.budget import BudgetGuard
from taskorch_nb.core.events import Event, Notice, PatternEvent, RunEvent, scope
from taskorch_nb.core.process import alive, worker_id
from taskorch_nb.engine.execution import (
    RunContext,
    Services,
    current_clock,
    current_workspace,
)
from taskorch_nb.engine.run import Run, RunStatus
from taskorch_nb.errors import (
    BudgetExceededError,
    ConfigurationError,
    ProviderUnavailableError,
    WorkflowError,
)

if TYPE_CHECKING:
    from taskorch_nb.core.clock import Clock
    from taskorch_nb.core.store import Held, Store
    from taskorch_nb.tracing.langfuse import LangfuseExporter


class Engine(Services, Protocol):
    """What the runner needs beyond a run's calls: settings, the store, the exporters."""

    clock: Clock
    max_rounds: int
    default_budget: Decimal
    warn_below: float
    store: Store
    langfuse: LangfuseExporter | None
    federation: Any

    def subscribe(self, callback: Any) -> Any: ...

_NAME = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def interpolate(task: str, names: dict[str, Any] | None) -> str:
    """Fill `{name}` from `names`; an unknown name is an error that lists it."""
    if not names:
        return task
    missing = sorted({m for m in _NAME.findall(task) if m not in names})
    if missing:
        raise ConfigurationError(f"task mentions {{{missing[0]}}} but no such name is defined")
    return _NAME.sub(lambda m: str(names[m.group(1)]), task)


def stored_worker(data: Mapping[str, Any]) -> str | None:
    """Where a stored run ran ("host:pid"); batches of earlier releases kept it in the
    checkpoint."""
    return data.get("worker") or (data.get("checkpoint") or {}).get("worker")


def stored_status(row: Mapping[str, Any]) -> RunStatus:
    """A stored run's status; RUNNING or PENDING in a process that died is INTERRUPTED.
    (Only this host's processes can be asked: another host's run keeps its status.)"""
    status = RunStatus(row["status"])
    if status in (RunStatus.RUNNING, RunStatus.PENDING) and not alive(row["pid"]):
        worker = stored_worker(row.get("data") or {})
        if worker and worker.rpartition(":")[0] != socket.gethostname():
            return status
        return RunStatus.INTERRUPTED
    return status


class Runner:
    """The orchestrator's runs: in memory while it lives, in the store for ever."""

    def __init__(self, orch: Engine) -> None:
        self.orch = orch
        self._runs: dict[str, Run] = {}
        """Runs not yet ended: their events are routed to them."""
        self._ended: weakref.WeakValueDictionary[str, Run] = weakref.WeakValueDictionary()
        """Ended runs, while someone holds them: a long session (a batch of 20,000) keeps in
        memory only the runs its user keeps; `get` reads the others back from the store."""
        self._workspaces: dict[str, Workspace] = {}
        self._home_resolved: Path | None = None
        # Per run, the part of its stored row that never changes (see `save`).
        self._fixed: dict[str, dict[str, Any]] = {}
        orch.subscribe(self._route)

    def _route(self, event: Event) -> None:
        """One subscriber for all runs: each event to its run."""
        run_id = event.run_id
        if run_id is None:
            return
        run = self._runs.get(run_id) or self._ended.get(run_id)  # (a button on an ended one)
        if run is not None:
            run.events.append(event)

    # -- creating ------------------------------------------------------------------

    def create(self, task: str, *, workflow: str = "full", archetype: str | None = None,
               budget: Any = None, workspace: Any = None, max_rounds: int | None = None,
               tools: Any = (), names: dict[str, Any] | None = None,
               max_tokens: int | None = None, max_requests: int | None = None) -> Run:
        if not isinstance(task, str) or not task.strip():
            raise ConfigurationError("the task is empty: say what the agents should do")
        text = interpolate(task.strip(), names)
        get_workflow(workflow)
        if archetype is not None:
            get_archetype(archetype)
        rounds = self.orch.max_rounds if max_rounds is None else max_rounds
        if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 1:
            raise ConfigurationError(f"max_rounds must be an integer >= 1, got {rounds!r}")
        tools = tuple(tools)
        for name in tools:
            self.orch.tools[name]  # UnknownToolError lists the registered ones
        guard = BudgetGuard(self.orch.default_budget if budget is None else budget,
                            warn_below=self.orch.warn_below, on_event=self.orch.bus.emit,
                            max_tokens=max_tokens, max_requests=max_requests)
        run_id = f"run-{os.urandom(6).hex()}"  # uuid4 builds an object: 7 us a run
        ws = (Workspace.later(self._home() / run_id) if workspace is None
              else Workspace(workspace))
        run = Run(self, run_id=run_id, task=text, workflow=workflow, archetype=archetype,
                  max_rounds=rounds, guard=guard, workspace=ws.root, tools=tools)
        self._runs[run.id] = run
        self._workspaces[run.id] = ws
        return run

    def _retire(self, run: Run) -> None:
        """An ended run (or a paused one: `resume` makes it live again) is kept only as
        long as its user keeps it; its workspace keeps its state on the run's disk."""
        if self._runs.pop(run.id, None) is not None:
            self._ended[run.id] = run
        self._workspaces.pop(run.id, None)
        self._fixed.pop(run.id, None)

    def _home(self) -> Path:
        """Where runs without a workspace work, resolved once (the store does not move)."""
        if self._home_resolved is None:
            self._home_resolved = self.orch.workspace_home.resolve()
        return self._home_resolved

    def workspace(self, run: Run) -> Workspace:
        ws = self._workspaces.get(run.id)
        if ws is None:  # a run read back, or resumed: a folder never written stays unmade
            path = run.workspace
            ws = Workspace(path) if path.exists() else Workspace.later(path.absolute())
            self._workspaces[run.id] = ws
        return ws

    # -- executing -----------------------------------------------------------------

    def schedule(self, run: Run) -> Run:
        """Execute `run` as a task of the running loop; `await run` waits for it."""
        run._task = asyncio.get_running_loop().create_task(self.execute(run))
        return run

    async def execute(self, run: Run, *, resumed: bool = False) -> Run:
        """Run the workflow; a budget rejection pauses, an error fails, a cancel cancels."""
        try:
            await self._execute(run, resumed=resumed)
            await self.orch.store.durable(run.id)  # the run's end is committed before it returns
        finally:
            self._retire(run)
        exporter = self.orch.langfuse
        if exporter is not None:
            # Only asked, never awaited: a dead Langfuse costs a run nothing; the one
            # bounded wait is the orchestrator's close, and trouble is a tracing.warning.
            exporter.flush_soon()
        return run

    async def _execute(self, run: Run, *, resumed: bool) -> None:
        orch = self.orch
        emit = orch.bus.emit
        self._runs[run.id] = run  # a resumed run is live again
        run.status = RunStatus.RUNNING
        run.worker = worker_id()
        self.save(run)
        token = current_workspace.set(self.workspace(run))
        clock_token = current_clock.set(orch.clock)
        ctx = RunContext(orch, run, workspace=self.workspace(run), save=self.save)
        try:
            with scope(run_id=run.id):
                emit(RunEvent(
                    type="run.resumed" if resumed else "run.started", task=run.task,
                    workflow=run.workflow, status=run.status.value,
                    detail={"budget": str(run.guard.limit), "archetype": run.archetype,
                            "workspace": str(run.workspace), "max_rounds": run.max_rounds},
                ))
                try:
                    ctx.safety_checks(None, run.tools)
                    result = await get_workflow(run.workflow)(ctx)
                except (BudgetExceededError, ProviderUnavailableError) as exc:
                    # Money, or a provider that is down: nothing is wrong with the run, which
                    # keeps its finished phases and paid calls for `resume()`.
                    self._finish(run, RunStatus.PAUSED, "run.paused", error=str(exc))
                    self.workspace(run).ensure()  # a resumable run keeps its folder
                    return
                except asyncio.CancelledError:
                    self._finish(run, RunStatus.CANCELLED, "run.cancelled", error="cancelled")
                    raise
                except Exception as exc:
                    self._finish(run, RunStatus.FAILED, "run.failed",
                                 error=f"{type(exc).__name__}: {exc}")
                    return
                await self._learn(run)
                run.output = result.output
                run.detail = result.detail
                if result.approved:
                    self._finish(run, RunStatus.COMPLETED, "run.completed")
                else:
                    self._finish(run, RunStatus.FAILED, "run.failed", error=result.output)
        finally:
            current_clock.reset(clock_token)
            current_workspace.reset(token)

    async def _learn(self, run: Run) -> None:
        """Outcomes to the immune system (already recorded per call), a summary event,
        and new patterns to the federation hub when one is configured."""
        patterns = [e for e in run.events if isinstance(e, PatternEvent)]
        learned = sorted({e.name for e in patterns if e.type == "pattern.learned"})
        detail: dict[str, Any] = {
            "learned": learned,
            "applied": sorted({e.name for e in patterns if e.type == "pattern.applied"}),
            "recovered": sorted({e.name for e in patterns if e.type == "pattern.recovered"}),
            "shared": 0,
        }
        federation = self.orch.federation
        if federation is not None and learned and federation.auto_push:
            try:
                result = await federation.push()
                detail["shared"] = int(result.get("accepted", len(learned)))
            except Exception as exc:  # the hub being down must not fail a finished run
                detail["share_error"] = f"{type(exc).__name__}: {exc}"
                self.orch.bus.emit(Notice(type="federation.warning", level="warning",
                                          message=f"could not share {learned} with the hub: "
                                          f"{detail['share_error']}"))
        self.orch.bus.emit(RunEvent(type="learning.completed", detail=detail))

    def _finish(self, run: Run, status: RunStatus, event_type: str, *,
                error: str | None = None) -> None:
        run.status = status
        run.error = error
        run.checkpoint["budget"] = run.guard.checkpoint()
        self.save(run)
        self.orch.bus.emit(RunEvent(
            type=event_type, task=run.task, workflow=run.workflow, status=status.value,
            detail={"output": run.output, "error": error, "cost": run.cost.to_dict(),
                    "metrics": run.metrics()},
        ))

    # -- resuming ------------------------------------------------------------------

    async def resume(self, run: Run | str, *, extra_budget: Any = None,
                     extra_tokens: int | None = None, extra_requests: int | None = None) -> Run:
        if isinstance(run, str):
            run = self.get(run)
        if run.status not in (RunStatus.PAUSED, RunStatus.INTERRUPTED):
            raise WorkflowError(
                f"run {run.id} is {run.status.value}: only PAUSED or INTERRUPTED runs resume"
            )
        self._runs[run.id] = run  # live again: the extension's events are its own
        if extra_budget is not None:
            run.guard.extend(extra_budget)
        if extra_tokens is not None or extra_requests is not None:
            run.guard.extend_usage(tokens=extra_tokens, requests=extra_requests)
        return await self.execute(run, resumed=True)

    def get(self, run_id: str) -> Run:
        run = self._runs.get(run_id) or self._ended.get(run_id)
        if run is not None:
            return run
        row = self.orch.store.load_run(run_id)
        if row is None:
            raise KeyError(f"no run {run_id!r} in {self.orch.store.path}")
        data = row["data"]
        checkpoint = data.get("checkpoint") or {"outputs": {}, "journal": {}, "phases_done": []}
        budget_state = checkpoint.get("budget")
        emit = self.orch.bus.emit
        shared = budget_state.get("ledger") if budget_state else None
        guard = (BudgetGuard.restored(budget_state, warn_below=self.orch.warn_below, on_event=emit,
                                      ledger=shared and self.orch.store.ledger(shared))
                 if budget_state else
                 BudgetGuard(data.get("limit", self.orch.default_budget), on_event=emit))
        status = stored_status(row)
        run = Run(self, run_id=run_id, task=row["task"], workflow=row["workflow"],
                  archetype=data.get("archetype"), max_rounds=int(data.get("max_rounds", 3)),
                  guard=guard, workspace=Path(data["workspace"]),
                  tools=tuple(data.get("tools", ())), checkpoint=checkpoint, status=status)
        run.output = data.get("output")
        run.error = data.get("error")
        run.worker = stored_worker(data)
        run.events = self.orch.store.events(run_id)
        self._ended[run_id] = run
        return run

    def forget(self, run_id: str) -> None:
        """Drop this process's copy of a run that another process changes (a batch's
        worker): the next `get` reads the store."""
        self._runs.pop(run_id, None)
        self._ended.pop(run_id, None)
        self._workspaces.pop(run_id, None)
        self._fixed.pop(run_id, None)

    # -- persistence ---------------------------------------------------------------

    def save(self, run: Run, *, held: Held | None = None) -> None:
        """The run's row and checkpoint; `held` settlements join its transaction."""
        fixed = self._fixed.get(run.id)
        if fixed is None:
            fixed = self._fixed[run.id] = {
                "archetype": run.archetype, "max_rounds": run.max_rounds,
                "provider": self.orch.provider.name, "model": self.orch.model,
                "tools": list(run.tools), "workspace": str(run.workspace)}
        guard = run.guard
        self.orch.store.save_run(
            run.id, task=run.task, workflow=run.workflow, status=run.status.value,
            wall=self.orch.clock.wall(),
            data={**fixed, "limit": str(guard.limit), "spent": str(guard.spent),
                  "output": run.output, "error": run.error, "worker": run.worker,
                  "checkpoint": run.checkpoint},
            held=held,
        )

    def history(self, limit: int | None = None) -> Any:
        """Past runs as a DataFrame: id, task, workflow, status, times, money, output, worker."""
        import pandas as pd

        rows = []
        for row in self.orch.store.runs(limit):
            data = row["data"]
            rows.append({
                "run_id": row["id"], "task": row["task"], "workflow": row["workflow"],
                "status": stored_status(row).value, "created": row["created"],
                "updated": row["updated"],
                "spent": float(Decimal(data.get("spent", "0"))),
                "limit": float(Decimal(data.get("limit", "0"))),
                "output": data.get("output"),
                "worker": stored_worker(data),
            })
        columns = ["run_id", "task", "workflow", "status", "created", "updated", "spent",
                   "limit", "output", "worker"]
        frame = pd.DataFrame(rows, columns=columns)
        for column in ("created", "updated"):
            frame[column] = pd.to_datetime(frame[column], unit="s", utc=True)
        return frame

