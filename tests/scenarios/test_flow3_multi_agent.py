"""Seed flow 3, as the diagram reads: Researcher -> Architect (spec + test plan) ->
Builder (tests first, then code) -> QC (real pytest, security audit, performance)
-> issues found -> Builder fixes -> QC re-validates -> approved."""

from __future__ import annotations

import subprocess
import sys

from taskorch_nb import FakeClock, Orchestrator, RunStatus


async def test_multi_agent_workflow_with_one_fix_round(tmp_path) -> None:
    orch = Orchestrator(store=":memory:", clock=FakeClock(), budget=5.0)
    run = await orch.run("Add user authentication", workspace=tmp_path / "ws")

    assert run.status is RunStatus.COMPLETED, run.error
    phases = [(e.phase, e.detail["round"]) for e in run.events if e.type == "phase.started"]
    assert phases == [("research", 1), ("design", 1), ("build", 1), ("qc", 1), ("build", 2),
                      ("qc", 2)]
    agents = [e.agent for e in run.events if e.type == "agent.started"]
    assert agents == ["researcher", "architect", "builder", "builder", "qc", "builder", "qc"]

    # The Architect's spec feeds the Builder: the files it named are the files written.
    spec = run.detail["spec"]
    assert (spec["module"], spec["test_file"]) == ("auth.py", "tests/test_auth.py")
    assert len(spec["test_plan"]) == 7
    writes = [e for e in run.events if e.type == "tool.succeeded" and e.tool == "write_file"]
    assert len(writes) == 3  # tests (RED), code (GREEN), fixed code
    builder_prompts = [e for e in run.events if e.type == "llm.requested"
                       and e.agent == "builder"]
    assert builder_prompts

    # QC ran pytest for real: its verdict events carry the evidence.
    verdicts = [e for e in run.events if e.type in ("qc.failed", "qc.passed")]
    assert [e.type for e in verdicts] == ["qc.failed", "qc.passed"]
    first, second = (v.detail for v in verdicts)
    assert (first["tests_passed"], first["tests_failed"]) == (6, 1)
    assert first["failures"] == ["tests/test_auth.py::test_login_is_case_insensitive_for_usernames"]
    assert (second["tests_passed"], second["tests_failed"], second["approved"]) == (7, 0, True)
    assert "performance" in second
    assert "audit_engine" in second
    # ... in the jail: the Builder's code never ran on the machine itself.
    assert {first["sandbox"], second["sandbox"]} == {
        "bubblewrap" if sys.platform == "linux" else "rlimits"}

    # Running pytest yourself in the workspace afterwards passes.
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                          cwd=run.workspace, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout
    assert "7 passed" in done.stdout
    assert run.cost.spent > 0
    assert set(run.cost.by_agent) == {"researcher", "architect", "builder"}
    orch.close()
