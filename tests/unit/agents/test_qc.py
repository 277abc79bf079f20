"""QC runs a workspace's tests for real, in a locked-down subprocess, and audits its code."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from taskorch_nb.agents.qc import QCVerdict, run_qc
from taskorch_nb.agents.workspace import Workspace
from taskorch_nb.core.alerts import Alert, alert_for
from taskorch_nb.core.events import RunEvent
from taskorch_nb.notebook.text import describe_event
from tests.unit.procs import wait_until_gone

MakeWs = Callable[[dict[str, str]], Workspace]

CALC = "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n"
CALC_TESTS = (
    "from calc import add, sub\n\n\n"
    "def test_add():\n    assert add(2, 3) == 5\n\n\n"
    "def test_sub():\n    assert sub(5, 3) == 2\n"
)


async def test_passing_module_and_tests_are_approved(make_ws: MakeWs) -> None:
    ws = make_ws({"calc.py": CALC, "tests/test_calc.py": CALC_TESTS})
    verdict = await run_qc(ws, timeout=30)
    assert verdict.approved, verdict.summary
    assert (verdict.tests_passed, verdict.tests_failed, verdict.tests_errors) == (2, 0, 0)
    assert verdict.tests_total == 2
    assert verdict.failures == []
    assert verdict.findings == []
    assert verdict.audit_engine == "ruff"
    assert verdict.sandbox == ("bubblewrap" if sys.platform == "linux" else "rlimits")
    assert verdict.perf_ok
    assert verdict.error is None
    assert verdict.exit_code == 0
    assert (verdict.outcome, verdict.exit_meaning) == ("passed", "all tests passed")
    assert verdict.runner.startswith("pytest ")
    assert set(verdict.performance) == {"pytest_seconds", "tests_seconds", "slowest_test_seconds"}
    assert set(verdict.durations) == {"pytest", "audit", "total"}
    assert "2 passed" in verdict.output_tail
    assert verdict.summary.startswith("approved: 2/2 tests passed")
    evidence = json.loads(json.dumps(verdict.model_dump()))  # the event evidence is plain data
    assert QCVerdict.model_validate(evidence) == verdict
    # QC leaves no caches behind in the workspace.
    assert ws.list() == ["calc.py", "tests/test_calc.py"]
    assert not (ws.root / "__pycache__").exists()


async def test_failing_tests_are_named_by_node_id(make_ws: MakeWs) -> None:
    broken = CALC.replace("return a - b", "return b - a")
    tests = CALC_TESTS + (
        "\n\nclass TestMore:\n    def test_sub_again(self):\n        assert sub(9, 1) == 8\n"
    )
    ws = make_ws({"calc.py": broken, "tests/test_calc.py": tests})
    verdict = await run_qc(ws, timeout=30)
    assert not verdict.approved
    assert (verdict.tests_passed, verdict.tests_failed, verdict.tests_total) == (1, 2, 3)
    assert verdict.failures == [
        "tests/test_calc.py::test_sub",
        "tests/test_calc.py::TestMore::test_sub_again",
    ]
    assert "FAILED tests/test_calc.py::test_sub" in verdict.output_tail
    assert "2 failed" in verdict.summary
    assert (verdict.exit_code, verdict.outcome) == (1, "failed")


async def test_collection_errors_count_as_errors(make_ws: MakeWs) -> None:
    ws = make_ws({"tests/test_x.py": "from missing_module import thing\n"})
    verdict = await run_qc(ws, timeout=30)
    assert not verdict.approved
    assert verdict.tests_errors == 1
    assert verdict.failures == ["tests/test_x.py"]
    assert verdict.error is None
    assert (verdict.exit_code, verdict.outcome) == (2, "failed")


async def test_no_tests_is_not_approved(make_ws: MakeWs) -> None:
    verdict = await run_qc(make_ws({"calc.py": CALC}), timeout=30)
    assert not verdict.approved
    assert verdict.tests_total == 0
    assert verdict.exit_code == 5
    assert (verdict.outcome, verdict.exit_meaning) == ("no_tests_collected", "no tests collected")
    assert verdict.error is None
    assert verdict.summary.startswith("rejected: no tests collected (pytest exit 5)")
    assert "runner failed" not in verdict.summary


RUNNER_FAILURES = {
    # A workspace conftest.py that makes pytest itself stop, one way per exit code.
    "interrupted": (
        "def pytest_collection_modifyitems(items):\n    raise KeyboardInterrupt\n", 2,
        "KeyboardInterrupt"),
    "internal error": (
        "def pytest_collection_modifyitems(items):\n    raise RuntimeError('hook blew up')\n",
        3, "RuntimeError: hook blew up"),
    "usage error": (
        "import pytest\n\n\ndef pytest_configure(config):\n"
        "    raise pytest.UsageError('no such option here')\n", 4, "no such option here"),
}


@pytest.mark.parametrize("meaning", sorted(RUNNER_FAILURES))
async def test_a_runner_failure_is_not_no_tests_collected(make_ws: MakeWs, meaning: str) -> None:
    conftest, code, reason = RUNNER_FAILURES[meaning]
    ws = make_ws({"calc.py": CALC, "tests/test_calc.py": CALC_TESTS,
                            "conftest.py": conftest})
    verdict = await run_qc(ws, timeout=30)
    assert not verdict.approved
    assert (verdict.exit_code, verdict.exit_meaning) == (code, meaning)
    assert verdict.outcome == "runner_failed"
    assert verdict.error is not None
    assert verdict.error.startswith(f"pytest exited with code {code} ({meaning}")
    assert reason in verdict.error
    assert verdict.summary.startswith(f"rejected: the test runner failed: {verdict.error}")
    assert "no tests collected" not in verdict.summary
    evidence = verdict.model_dump()
    assert (evidence["outcome"], evidence["exit_code"]) == ("runner_failed", code)
    # The line the CLI and the notebook print for the verdict event says the same.
    event = RunEvent(type="qc.failed", detail=evidence)
    assert describe_event(event) == f"qc.failed: the test runner failed: {verdict.error}"
    expected = f"QC failed: the test runner failed: {verdict.error}"
    assert alert_for(event) == Alert("danger", expected)


async def test_the_printed_line_says_no_tests_collected(make_ws: MakeWs) -> None:
    verdict = await run_qc(make_ws({"calc.py": CALC}), timeout=30)
    event = RunEvent(type="qc.failed", detail=verdict.model_dump())
    assert describe_event(event) == "qc.failed: no tests collected (pytest exit 5)"


async def test_security_findings_block_approval(make_ws: MakeWs) -> None:
    risky = (
        "import subprocess\n\n\n"
        "def calc(expr):\n    return eval(expr)\n\n\n"
        "def run(cmd):\n    return subprocess.run(cmd, shell=True, check=False)\n"
    )
    tests = "from risky import calc\n\n\ndef test_calc():\n    assert calc('1 + 1') == 2\n"
    ws = make_ws({"risky.py": risky, "tests/test_risky.py": tests})
    verdict = await run_qc(ws, timeout=30)
    assert verdict.tests_passed == 1
    assert not verdict.approved
    rules = {(f.rule, f.severity, f.path, f.line) for f in verdict.findings}
    assert ("S307", "high", "risky.py", 5) in rules
    assert ("S602", "high", "risky.py", 9) in rules
    assert all(f.path == "risky.py" for f in verdict.findings)  # tests' asserts not audited
    assert "blocking finding" in verdict.summary
    # The same code passes when only critical findings would block.
    lenient = await run_qc(ws, timeout=30, block_severities=frozenset({"critical"}))
    assert lenient.approved, lenient.summary


async def test_workspace_tests_cannot_read_the_parents_secrets(
    make_ws: MakeWs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKORCH_SECRET_PROBE", "s3cr3t")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-should-not-leak")
    monkeypatch.setenv("PYTHONWARNINGS", "error")
    probe = (
        "import os\n\n\n"
        "def test_no_secrets():\n"
        "    assert os.environ.get('TASKORCH_SECRET_PROBE') is None\n"
        "    assert os.environ.get('OPENAI_API_KEY') is None\n"
        "    assert 'PYTHONWARNINGS' not in os.environ\n"
        f"    assert os.environ['HOME'] != {os.environ.get('HOME', '')!r}\n"
        "    leaked = [v for v in os.environ.values() if 's3cr3t' in v or 'sk-' in v]\n"
        "    assert leaked == []\n"
    )
    verdict = await run_qc(make_ws({"tests/test_env.py": probe}), timeout=30)
    assert verdict.approved, verdict.output_tail
    assert verdict.tests_passed == 1


async def test_our_pytest_config_does_not_leak_into_the_workspace(tmp_path: Path) -> None:
    # A workspace inside a project whose config turns warnings into errors and whose
    # conftest would fail: neither may touch the workspace's own run.
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[tool.pytest.ini_options]\nfilterwarnings = ["error"]\naddopts = "-x --strict-markers"\n',
        encoding="utf-8",
    )
    (project / "conftest.py").write_text("raise RuntimeError('parent conftest loaded')\n")
    ws = Workspace(project / "ws")
    ws.write(
        "tests/test_warn.py",
        "import warnings\n\nimport pytest\n\n\n"
        "@pytest.mark.custom\n"
        "def test_warns():\n    warnings.warn('harmless', UserWarning)\n",
    )
    ws.write(
        "tests/conftest.py", "import pytest\n\n\n@pytest.fixture\ndef answer():\n    return 42\n"
    )
    ws.write("tests/test_fixture.py", "def test_fixture(answer):\n    assert answer == 42\n")
    verdict = await run_qc(ws, timeout=30)
    assert verdict.approved, verdict.output_tail
    assert verdict.tests_passed == 2


async def test_async_tests_in_the_workspace_run(make_ws: MakeWs) -> None:
    test = "import asyncio\n\n\nasync def test_sleep():\n    await asyncio.sleep(0)\n"
    verdict = await run_qc(make_ws({"tests/test_async.py": test}), timeout=30)
    assert verdict.approved, verdict.output_tail


async def test_a_hanging_test_times_out_and_its_process_group_dies(make_ws: MakeWs) -> None:
    # Pids inside the jail are its own namespace's: the grandchild is found by a marker.
    marker = f"taskorch-qc-hang-{uuid.uuid4().hex}"
    hang = (
        "import pathlib, subprocess, sys, time\n\n\n"
        "def test_hang():\n"
        "    child = subprocess.Popen(\n"
        f"        [sys.executable, '-c', 'import time; time.sleep(600)', {marker!r}])\n"
        "    pathlib.Path('child.pid').write_text(str(child.pid))\n"
        "    while True:\n        time.sleep(0.05)\n"
    )
    ws = make_ws({"tests/test_hang.py": hang})
    qc = asyncio.create_task(run_qc(ws, timeout=3))
    # A round trip through a thread needs the loop: it comes back while QC still waits.
    await asyncio.to_thread(lambda: None)
    assert not qc.done()  # QC did not block the event loop while pytest hangs
    verdict = await qc
    assert verdict.timed_out
    assert not verdict.approved
    assert verdict.error == "pytest timed out after 3 s"
    assert verdict.outcome == "timed_out"
    assert verdict.summary.startswith("rejected: pytest timed out after 3 s")
    assert ws.read("child.pid")  # the grandchild was started
    assert wait_until_gone(marker), "the grandchild survived the timeout"


async def test_a_report_swapped_for_a_link_is_not_followed(make_ws: MakeWs) -> None:
    # The jailed run can write the report's directory; a link to /dev/zero would make
    # the host read forever, a link to a host file would show its contents.
    swap = (
        "import atexit, os, sys\n\n\n"
        "def swap():\n"
        "    junit = next(a.split('=', 1)[1] if '=' in a else sys.argv[i + 1]\n"
        "                 for i, a in enumerate(sys.argv) if a.startswith('--junitxml'))\n"
        "    os.remove(junit)\n"
        "    os.symlink('/dev/zero', junit)\n\n\n"
        "def test_swap():\n    atexit.register(swap)\n"
    )
    verdict = await run_qc(make_ws({"tests/test_swap.py": swap}), timeout=30)
    assert not verdict.approved
    assert verdict.error is not None
    assert verdict.error == "unreadable junit report: Too many levels of symbolic links"


async def test_a_memory_hog_fails_its_test_not_the_parent(make_ws: MakeWs) -> None:
    hog = "def test_hog():\n    data = bytearray(1024 ** 3)\n    assert len(data) > 0\n"
    verdict = await run_qc(make_ws({"tests/test_hog.py": hog}), memory_mb=256)
    assert not verdict.approved
    assert verdict.failures == ["tests/test_hog.py::test_hog"]
    assert "MemoryError" in verdict.output_tail


async def test_cpu_limit_kills_a_busy_loop(make_ws: MakeWs) -> None:
    busy = "def test_spin():\n    while True:\n        pass\n"
    verdict = await run_qc(make_ws({"tests/test_spin.py": busy}), cpu_seconds=1)
    assert not verdict.approved
    assert not verdict.timed_out
    assert verdict.error is not None
    assert verdict.error.startswith("pytest was killed by SIG")
    assert verdict.outcome == "killed"


async def test_slow_tests_fail_the_performance_check(make_ws: MakeWs) -> None:
    slow = (
        "import time\n\n\ndef test_slow():\n    time.sleep(0.3)\n\n\ndef test_fast():\n    pass\n"
    )
    ws = make_ws({"tests/test_perf.py": slow})
    verdict = await run_qc(ws, timeout=30, slow_test_seconds=0.1)
    assert verdict.tests_passed == 2
    assert not verdict.perf_ok
    assert not verdict.approved
    assert verdict.slow_tests == ["tests/test_perf.py::test_slow"]
    assert verdict.performance["slowest_test_seconds"] >= 0.3
    assert "slowest test" in verdict.summary


async def test_bad_limits_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        await run_qc(Workspace(tmp_path), timeout=0)


async def test_qc_refuses_code_hidden_in_tests(make_ws: MakeWs) -> None:
    sneaky = ("import base64\n\n\ndef test_looks_harmless():\n"
              "    exec(base64.b64decode('cHJpbnQoJ2hpJyk='))\n    assert True\n")
    verdict = await run_qc(make_ws({"tests/test_sneaky.py": sneaky}), timeout=60)
    assert verdict.tests_passed == 1
    assert not verdict.approved
    assert "1 blocking finding(s) (S102 tests/test_sneaky.py:5)" in verdict.summary
