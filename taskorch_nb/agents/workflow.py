"""Workflows: the order in which archetypes work on a task.

`full`: research -> design -> build (tests first, then code) -> qc, and back to
build (then qc again) on a failed verdict, at most `max_rounds` builds.
`single`: one archetype on its own. Register your own with `register_workflow`:
a workflow is an async function of a `WorkflowContext`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel

from taskorch_nb.agents.archetypes import DesignSpec
from taskorch_nb.errors import ConfigurationError

PHASES = ("research", "design", "build", "qc")
PHASE_OF = {"researcher": "research", "architect": "design", "builder": "build", "qc": "qc"}


@dataclass
class WorkflowResult:
    """What a workflow hands back to the run."""

    output: str
    approved: bool = True
    rounds: int = 1
    detail: dict[str, Any] = field(default_factory=dict)


class WorkflowContext(Protocol):
    """What a workflow may do; the run provides it (checkpoints, events, guards)."""

    task: str
    max_rounds: int
    archetype: str | None

    def phase(self, name: str, round: int = 1) -> contextlib.AbstractAsyncContextManager[None]: ...

    async def agent(self, archetype: str, instruction: str, *, key: str,
                    write_scope: str | None = None) -> BaseModel: ...

    async def qc(self, *, key: str) -> Any: ...

    async def check_qc_runner(self) -> None:
        """Raise `RunnerUnavailableError` now if QC could not run the tests later."""
        ...


Workflow = Callable[[WorkflowContext], Awaitable[WorkflowResult]]


def _red(task: str, spec: DesignSpec) -> str:
    plan = "\n".join(f"- {t.name}: {t.description}" for t in spec.test_plan)
    return (
        f"Task: {task}\nRED step: write the failing tests first, only in {spec.test_file}.\n"
        f"Module under test: {spec.module}\nTest plan:\n{plan}\n"
        f"Design spec: {spec.model_dump_json()}"
    )


def _green(task: str, spec: DesignSpec, feedback: str) -> str:
    fix = f"\nQC found issues; fix them:\n{feedback}" if feedback else ""
    return (
        f"Task: {task}\nGREEN step: implement {spec.module} so that {spec.test_file} passes."
        f"{fix}\nDesign spec: {spec.model_dump_json()}"
    )


def _feedback(verdict: Any) -> str:
    lines = [f"QC verdict: {verdict.summary}"]
    lines += [f"failing test: {node}" for node in verdict.failures]
    lines += [f"finding {f.rule} ({f.severity}) {f.path}:{f.line}: {f.message}"
              for f in verdict.findings]
    lines.append(f"pytest output:\n{verdict.output_tail[-1500:]}")
    return "\n".join(lines)


async def full_workflow(ctx: WorkflowContext) -> WorkflowResult:
    """Researcher -> Architect -> Builder (RED, GREEN) -> QC, with a fix loop."""
    await ctx.check_qc_runner()  # before anything is paid for, not at the first QC round
    async with ctx.phase("research"):
        research = await ctx.agent("researcher", f"Task: {ctx.task}\nGather the context.",
                                   key="research")
    async with ctx.phase("design"):
        spec = await ctx.agent(
            "architect",
            f"Task: {ctx.task}\nResearch report: {research.model_dump_json()}",
            key="design",
        )
    assert isinstance(spec, DesignSpec)
    feedback = ""
    verdict = None
    for round_ in range(1, ctx.max_rounds + 1):
        async with ctx.phase("build", round_):
            if round_ == 1:
                await ctx.agent("builder", _red(ctx.task, spec), key="build1:tests",
                                write_scope="tests")
            await ctx.agent("builder", _green(ctx.task, spec, feedback), key=f"build{round_}:code")
        async with ctx.phase("qc", round_):
            verdict = await ctx.qc(key=f"qc{round_}")
        if verdict.approved:
            return WorkflowResult(
                output=f"{spec.summary} Implemented {spec.module} with tests in "
                f"{spec.test_file}; QC approved in round {round_}: {verdict.summary}",
                rounds=round_,
                detail={"spec": spec.model_dump(), "verdict": verdict.model_dump()},
            )
        feedback = _feedback(verdict)
    assert verdict is not None
    return WorkflowResult(
        output=f"QC did not approve after {ctx.max_rounds} round(s): {verdict.summary}",
        approved=False,
        rounds=ctx.max_rounds,
        detail={"spec": spec.model_dump(), "verdict": verdict.model_dump()},
    )


async def single_workflow(ctx: WorkflowContext) -> WorkflowResult:
    """One archetype on the task (a Builder still writes its tests first)."""
    name = ctx.archetype or "builder"
    async with ctx.phase(PHASE_OF.get(name, "work")):
        if name == "qc":
            verdict = await ctx.qc(key="qc1")
            return WorkflowResult(output=verdict.summary, approved=verdict.approved,
                                  detail={"verdict": verdict.model_dump()})
        if name == "builder":
            await ctx.agent("builder", f"Task: {ctx.task}\nRED step: write the tests first, "
                            "only under tests/.", key="single:tests", write_scope="tests")
            out = await ctx.agent("builder", f"Task: {ctx.task}\nGREEN step: write the code "
                                  "so the tests pass.", key="single:code")
        else:
            out = await ctx.agent(name, f"Task: {ctx.task}", key="single")
    text = out.model_dump_json()
    return WorkflowResult(output=text, detail={"output": out.model_dump()})


_WORKFLOWS: dict[str, Workflow] = {"full": full_workflow, "single": single_workflow}


def register_workflow(name: str, workflow: Workflow) -> Workflow:
    """Make a workflow available to `orch.run(..., workflow=name)`."""
    _WORKFLOWS[name] = workflow
    return workflow


def get_workflow(name: str) -> Workflow:
    try:
        return _WORKFLOWS[name]
    except KeyError:
        raise ConfigurationError(
            f"unknown workflow {name!r}; known: {', '.join(sorted(_WORKFLOWS))}"
        ) from None


