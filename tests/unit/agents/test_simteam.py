"""The simulated team: each archetype's answers, and the code it writes really runs.

The demo task's first build fails exactly one test (usernames are not normalised) and
the fix round's build passes them all; any other task gets a small module whose tests pass.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from taskorch_nb.agents.archetypes import DesignSpec
from taskorch_nb.agents.simteam import (
    AUTH_CODE_FIRST,
    AUTH_CODE_FIXED,
    AUTH_TESTS,
    DEMO_TASK,
    generic_code,
    generic_tests,
    team_responder,
)
from taskorch_nb.llm.simulated import SimReply, SimRequest, default_reply

FILE_TOOLS = [{"name": n, "description": "", "parameters": {}}
              for n in ("list_files", "read_file", "write_file")]


def ask(agent: str | None, instruction: str, *, acted: bool = False,
        tools: list[dict] | None = None, call_index: int = 1) -> Any:
    messages: list[dict] = [{"role": "system", "content": "You are ..."},
                            {"role": "user", "content": instruction}]
    if acted:
        messages += [{"role": "assistant", "content": None},
                     {"role": "tool", "content": '["README.md"]'}]
    return team_responder(SimRequest(messages=messages, model="sim-small", tools=tools,
                                     response_format=None, agent=agent, phase=None,
                                     call_index=call_index))


def pytest_outcome(tmp_path: Path, module: str, code: str, tests: str) -> str:
    (tmp_path / "tests").mkdir(parents=True)
    (tmp_path / f"{module}.py").write_text(code)
    (tmp_path / "tests" / f"test_{module}.py").write_text(tests)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
         "--rootdir", str(tmp_path), "tests"],
        cwd=tmp_path, capture_output=True, text=True, env={"PYTHONPATH": str(tmp_path)},
        check=False,
    )
    return done.stdout.strip().splitlines()[-1]


def test_the_demos_first_build_fails_one_test_and_the_fix_passes_all(tmp_path: Path) -> None:
    first = pytest_outcome(tmp_path / "first", "auth", AUTH_CODE_FIRST, AUTH_TESTS)
    fixed = pytest_outcome(tmp_path / "fixed", "auth", AUTH_CODE_FIXED, AUTH_TESTS)
    assert first.startswith("1 failed, 6 passed")
    assert fixed.startswith("7 passed")


def test_a_generic_tasks_module_passes_its_tests(tmp_path: Path) -> None:
    task = "Add a CSV export for reports"
    assert pytest_outcome(tmp_path, "csv_export_reports", generic_code(task),
                          generic_tests("csv_export_reports", task)).startswith("2 passed")


def test_the_researcher_looks_first_then_reports_what_it_saw() -> None:
    first = ask("researcher", f"Task: {DEMO_TASK}\nGather the context.", tools=FILE_TOOLS,
                call_index=4)
    assert isinstance(first, SimReply)
    assert [(c.id, c.name, c.arguments) for c in first.tool_calls] == [
        ("call_4", "list_files", {"path": "."})]
    report = ask("researcher", f"Task: {DEMO_TASK}", acted=True, tools=FILE_TOOLS)
    assert report["summary"] == f"Context for '{DEMO_TASK}': the workspace was surveyed."
    assert "README.md" in report["findings"][0]
    without_tools = ask("researcher", "Task: x")
    assert isinstance(without_tools, dict)  # nothing to look with: it reports at once


@pytest.mark.parametrize(("task", "module", "test_file", "planned"), [
    (DEMO_TASK, "auth.py", "tests/test_auth.py", 7),
    ("Add a CSV export for the reports", "csv_export_reports.py",
     "tests/test_csv_export_reports.py", 2),
    ("2 factor login", "m_2_factor_login.py", "tests/test_m_2_factor_login.py", 2),
    ("the", "feature.py", "tests/test_feature.py", 2),
])
def test_the_architects_spec_is_a_valid_design(task: str, module: str, test_file: str,
                                                planned: int) -> None:
    spec = DesignSpec.model_validate(ask("architect", f"Task: {task}\nResearch report: {{}}"))
    assert (spec.module, spec.test_file, len(spec.test_plan)) == (module, test_file, planned)


def test_the_builder_writes_tests_on_red_code_on_green_and_the_fix_on_feedback() -> None:
    red = ask("builder", f"Task: {DEMO_TASK}\nRED step: write the failing tests first")
    assert red.tool_calls[0].name == "write_file"
    assert red.tool_calls[0].arguments == {"path": "tests/test_auth.py", "content": AUTH_TESTS}
    green = ask("builder", f"Task: {DEMO_TASK}\nGREEN step: implement auth.py")
    assert green.tool_calls[0].arguments == {"path": "auth.py", "content": AUTH_CODE_FIRST}
    fix = ask("builder", f"Task: {DEMO_TASK}\nGREEN step: implement auth.py\n"
                         "QC found issues; fix them:\nfailing test: ...")
    assert fix.tool_calls[0].arguments["content"] == AUTH_CODE_FIXED
    assert ask("builder", f"Task: {DEMO_TASK}\nRED step", acted=True) == {
        "files_written": ["tests/test_auth.py"], "notes": "tests first (RED)"}
    assert ask("builder", f"Task: {DEMO_TASK}\nGREEN step", acted=True) == {
        "files_written": ["auth.py"], "notes": "code (GREEN)"}


def test_other_agents_get_the_default_reply() -> None:
    request = SimRequest(messages=[{"role": "user", "content": "Task: x"}], model="sim-small",
                         tools=None, response_format=None, agent="qc", phase="qc",
                         call_index=1)
    assert team_responder(request) == default_reply(request)
