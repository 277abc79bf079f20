"""Workflows on a scripted context: the order of phases and agents, the fix loop, the registry."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import BaseModel

from taskorch_nb.agents import workflow as workflows
from taskorch_nb.agents.archetypes import (
    AgentAnswer,
    BuildReport,
    ContextReport,
    DesignSpec,
    PlannedTest,
)
from taskorch_nb.agents.audit import Finding
from taskorch_nb.agents.qc import QCVerdict
from taskorch_nb.agents.workflow import (
    WorkflowResult,
    full_workflow,
    get_workflow,
    register_workflow,
    single_workflow,
)
from taskorch_nb.errors import ConfigurationError, RunnerUnavailableError

SPEC = DesignSpec(summary="A calculator.", module="calc.py", test_file="tests/test_calc.py",
                  test_plan=[PlannedTest(name="adds", description="1 + 1 == 2")])
OUTPUTS: dict[str, BaseModel] = {
    "researcher": ContextReport(summary="empty repo"),
    "architect": SPEC,
    "builder": BuildReport(files_written=["calc.py"]),
}


def verdict(approved: bool, summary: str) -> QCVerdict:
    return QCVerdict(
        approved=approved, tests_passed=1, tests_failed=0 if approved else 1, tests_errors=0,
        tests_total=2, summary=summary, output_tail="x" * 2000 + "E assert 3 == 2",
        failures=[] if approved else ["tests/test_calc.py::test_adds"],
        findings=[] if approved else [Finding(rule="S307", severity="high", path="calc.py",
                                               line=3, message="eval")],
    )


class ScriptedContext:
    """A `WorkflowContext` that records what the workflow asked for, in order."""

    def __init__(self, *verdicts: QCVerdict, max_rounds: int = 3,
                 archetype: str | None = None, runner_ok: bool = True) -> None:
        self.task = "write calc"
        self.max_rounds = max_rounds
        self.archetype = archetype
        self.verdicts = list(verdicts)
        self.runner_ok = runner_ok
        self.log: list[tuple[Any, ...]] = []
        self.instructions: dict[str, str] = {}

    @contextlib.asynccontextmanager
    async def phase(self, name: str, round: int = 1) -> AsyncIterator[None]:
        self.log.append(("phase", name, round))
        yield
        self.log.append(("end", name, round))

    async def agent(self, archetype: str, instruction: str, *, key: str,
                    write_scope: str | None = None) -> BaseModel:
        self.log.append(("agent", archetype, key, write_scope))
        self.instructions[key] = instruction
        return OUTPUTS.get(archetype, AgentAnswer(answer=f"{archetype} answered"))

    async def qc(self, *, key: str) -> QCVerdict:
        self.log.append(("qc", key))
        return self.verdicts.pop(0)

    async def check_qc_runner(self) -> None:
        self.log.append(("check_qc_runner",))
        if not self.runner_ok:
            raise RunnerUnavailableError("python3", "no pytest", fix="pip install pytest")


async def test_full_runs_the_phases_in_order_and_writes_tests_first() -> None:
    ctx = ScriptedContext(verdict(True, "2 passed"))
    result = await full_workflow(ctx)
    assert ctx.log == [
        ("check_qc_runner",),
        ("phase", "research", 1), ("agent", "researcher", "research", None), ("end", "research", 1),
        ("phase", "design", 1), ("agent", "architect", "design", None), ("end", "design", 1),
        ("phase", "build", 1), ("agent", "builder", "build1:tests", "tests"),
        ("agent", "builder", "build1:code", None), ("end", "build", 1),
        ("phase", "qc", 1), ("qc", "qc1"), ("end", "qc", 1),
    ]
    assert result.approved
    assert result.rounds == 1
    assert result.output.startswith("A calculator. Implemented calc.py with tests in "
                                    "tests/test_calc.py; QC approved in round 1: 2 passed")
    assert result.detail["spec"]["module"] == "calc.py"
    assert result.detail["verdict"]["approved"] is True
    red = ctx.instructions["build1:tests"]
    assert "only in tests/test_calc.py" in red
    assert "- adds: 1 + 1 == 2" in red
    assert "empty repo" in ctx.instructions["design"]


async def test_a_failed_verdict_goes_back_to_build_with_qc_feedback() -> None:
    ctx = ScriptedContext(verdict(False, "1 failed"), verdict(True, "2 passed"))
    result = await full_workflow(ctx)
    keys = [entry[2] if entry[0] == "agent" else entry[1] for entry in ctx.log
            if entry[0] in ("agent", "qc")]
    assert keys == ["research", "design", "build1:tests", "build1:code", "qc1",
                    "build2:code", "qc2"]  # tests are written once, in round 1 only
    assert ("phase", "build", 2) in ctx.log
    assert (result.approved, result.rounds) == (True, 2)
    assert "QC found issues" not in ctx.instructions["build1:code"]
    fix = ctx.instructions["build2:code"]
    assert "QC verdict: 1 failed" in fix
    assert "failing test: tests/test_calc.py::test_adds" in fix
    assert "finding S307 (high) calc.py:3: eval" in fix
    tail = fix.split("pytest output:\n", 1)[1].split("\nDesign spec:", 1)[0]
    assert len(tail) == 1500  # only the tail is sent
    assert tail.endswith("E assert 3 == 2")


async def test_it_stops_unapproved_after_max_rounds() -> None:
    ctx = ScriptedContext(verdict(False, "1 failed"), verdict(False, "still 1 failed"),
                          max_rounds=2)
    result = await full_workflow(ctx)
    assert result == WorkflowResult(
        output="QC did not approve after 2 round(s): still 1 failed", approved=False, rounds=2,
        detail=result.detail,
    )
    assert result.detail["verdict"]["summary"] == "still 1 failed"
    assert ctx.verdicts == []


async def test_an_unusable_qc_runner_stops_before_any_agent() -> None:
    ctx = ScriptedContext(runner_ok=False)
    with pytest.raises(RunnerUnavailableError):
        await full_workflow(ctx)
    assert ctx.log == [("check_qc_runner",)]


async def test_single_builder_writes_tests_then_code_in_the_build_phase() -> None:
    ctx = ScriptedContext()
    result = await single_workflow(ctx)
    assert ctx.log == [("phase", "build", 1), ("agent", "builder", "single:tests", "tests"),
                       ("agent", "builder", "single:code", None), ("end", "build", 1)]
    assert result.detail == {"output": {"files_written": ["calc.py"], "notes": ""}}
    assert result.output == BuildReport(files_written=["calc.py"]).model_dump_json()


async def test_single_qc_hands_back_the_verdict() -> None:
    ctx = ScriptedContext(verdict(False, "1 failed"), archetype="qc")
    result = await single_workflow(ctx)
    assert ctx.log == [("phase", "qc", 1), ("qc", "qc1"), ("end", "qc", 1)]
    assert (result.output, result.approved) == ("1 failed", False)


async def test_single_with_a_user_archetype_works_in_a_work_phase() -> None:
    ctx = ScriptedContext(archetype="reviewer")
    result = await single_workflow(ctx)
    assert ctx.log == [("phase", "work", 1), ("agent", "reviewer", "single", None),
                       ("end", "work", 1)]
    assert result.detail == {"output": {"answer": "reviewer answered"}}


def test_registry_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workflows, "_WORKFLOWS",  # the built-ins alone: others register theirs
                        {"full": full_workflow, "single": single_workflow})
    assert get_workflow("full") is full_workflow
    assert get_workflow("single") is single_workflow

    async def review(ctx: Any) -> WorkflowResult:
        return WorkflowResult(output="ok")

    assert register_workflow("review", review) is review
    assert get_workflow("review") is review
    with pytest.raises(ConfigurationError,
                       match=r"^unknown workflow 'tdd'; known: full, review, single$"):
        get_workflow("tdd")
