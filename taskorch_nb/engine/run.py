"""`Run`: one task through a workflow, its status, output, cost and events."""

from __future__ import annotations

import enum
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from taskorch_nb.core.budget import BudgetGuard, CostReport
from taskorch_nb.core.display import mimebundle
from taskorch_nb.core.events import Event
from taskorch_nb.core.money import format_usd
from taskorch_nb.engine.sync import wait_for

if TYPE_CHECKING:
    import asyncio


class RunStatus(enum.StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    INTERRUPTED = "INTERRUPTED"
    """The process running it died; `resume()` continues from its checkpoint."""


class RunHost(Protocol):
    """What a run needs from whoever executes it: a way to continue it."""

    async def resume(self, run: Run, *, extra_budget: Any = None,
                     extra_tokens: int | None = None,
                     extra_requests: int | None = None) -> Run: ...


TERMINAL = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})


class Run:
    """A task as run: `status`, `output`, `cost` and every event it caused.

    A PAUSED (budget) or INTERRUPTED (crash) run continues with `await
    run.resume(extra_budget=...)`; earlier model calls are replayed from its
    checkpoint, never repeated or charged twice.
    """

    def __init__(
        self,
        host: RunHost,
        *,
        run_id: str,
        task: str,
        workflow: str,
        archetype: str | None,
        max_rounds: int,
        guard: BudgetGuard,
        workspace: Path,
        tools: tuple[str, ...] = (),
        checkpoint: dict[str, Any] | None = None,
        status: RunStatus = RunStatus.PENDING,
    ) -> None:
        self._host = host
        self.id = run_id
        self.task = task
        self.workflow = workflow
        self.archetype = archetype
        self.max_rounds = max_rounds
        self.guard = guard
        self.workspace = workspace
        self.tools = tools
        self.status = status
        self.output: str | None = None
        self.error: str | None = None
        self.detail: dict[str, Any] = {}
        self.events: list[Event] = []
        self.worker: str | None = None
        """Where the run last executed: "host:pid" (None until it starts)."""
        self.checkpoint: dict[str, Any] = checkpoint or {
            "outputs": {}, "journal": {}, "phases_done": []
        }
        self._task: asyncio.Task[Run] | None = None

    # -- results -----------------------------------------------------------------

    @property
    def cost(self) -> CostReport:
        """Spent / limit, by agent, by model and by tool."""
        return self.guard.report()

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    def events_df(self) -> Any:
        """Every event of the run as a DataFrame (one row per event, ordered)."""
        from taskorch_nb.tracing.frames import events_df

        return events_df(self.events)

    def spans(self) -> tuple[list[Any], list[Any]]:
        """The run's trace rebuilt from its events: (spans, scores)."""
        from taskorch_nb.tracing.spans import build_spans

        return build_spans(self.events)

    def spans_df(self) -> Any:
        """The run's spans (trace, phases, agents, generations, tools, QC) as a DataFrame."""
        from taskorch_nb.tracing.frames import spans_df

        return spans_df(self.spans()[0])

    def cost_df(self) -> Any:
        """One row per model call with its cost and the cumulative spend."""
        from taskorch_nb.tracing.frames import cost_df

        return cost_df(self.events)

    def metrics(self) -> dict[str, Any]:
        """Counts a person or an MCP client wants at a glance."""
        counts: dict[str, int] = {}
        input_tokens = output_tokens = 0
        for e in self.events:  # one pass: this runs at every run's end
            counts[e.type] = counts.get(e.type, 0) + 1
            if e.type == "llm.completed":
                input_tokens += getattr(e, "input_tokens", 0)
                output_tokens += getattr(e, "output_tokens", 0)
        count = counts.get
        return {
            "llm_calls": count("llm.completed", 0),
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "tool_calls": count("tool.succeeded", 0) + count("tool.failed", 0),
            "retries": count("retry.scheduled", 0),
            "patterns_applied": count("pattern.applied", 0),
            "qc_rounds": count("qc.passed", 0) + count("qc.failed", 0),
            "duration_s": (self.events[-1].ts - self.events[0].ts) if self.events else 0.0,
        }

    def summary(self) -> dict[str, Any]:
        """JSON-ready: id, task, status, output, cost, metrics."""
        return {
            "run_id": self.id,
            "task": self.task,
            "workflow": self.workflow,
            "archetype": self.archetype,
            "status": self.status.value,
            "output": self.output,
            "error": self.error,
            "workspace": str(self.workspace),
            "cost": self.cost.to_dict(),
            "metrics": self.metrics(),
        }

    # -- continuing ----------------------------------------------------------------

    async def resume(self, extra_budget: float | str | None = None, *,
                     extra_tokens: int | None = None, extra_requests: int | None = None) -> Run:
        """Continue a paused or interrupted run, with `extra_budget` USD more (and
        `extra_tokens` / `extra_requests` more when a token or request cap paused it)."""
        return await self._host.resume(self, extra_budget=extra_budget,
                                       extra_tokens=extra_tokens, extra_requests=extra_requests)

    def resume_sync(self, extra_budget: float | str | None = None, *,
                    extra_tokens: int | None = None, extra_requests: int | None = None) -> Run:
        """`resume` for scripts and blocking notebook cells."""
        return wait_for(self.resume(extra_budget, extra_tokens=extra_tokens,
                                    extra_requests=extra_requests))

    def __await__(self) -> Generator[Any, None, Run]:
        """`await run` waits for a run started with `--background` / `start()`."""
        if self._task is None:
            async def done() -> Run:
                return self
            return done().__await__()
        return self._task.__await__()

    # -- display -------------------------------------------------------------------

    def __repr__(self) -> str:
        cost = self.cost
        return (f"Run({self.id!r}, status={self.status.value}, "
                f"cost={format_usd(cost.spent)} of {format_usd(cost.limit)})")

    def text(self) -> str:
        """The run as plain text: its repr, task, output and error."""
        lines = [repr(self), f"task: {self.task}"]
        if self.output:
            lines.append(f"output: {self.output}")
        if self.error:
            lines.append(f"error: {self.error}")
        return "\n".join(lines)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return mimebundle(self, self.text(), include, exclude)
