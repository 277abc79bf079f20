"""Quality control for code a model wrote: real tests, a security audit, a performance check.

The code is untrusted, so pytest runs in `taskorch_nb.sandbox.Sandbox` (bubblewrap
on Linux: read-only system, the workspace the only writable place, no network, no
secrets, the whole process tree killed at the timeout) with its own HOME and pytest
config outside the workspace, and CPU, memory, process and file limits. The code
under test can still cheat its own tests; the jail keeps it from the machine.

The runner is checked before QC's first round (`check_runner`): a missing or
broken pytest is a `RunnerUnavailableError` naming the fix, never a verdict of
"no tests collected". The verdict's `outcome` tells pytest's own exits apart:
tests failed (1, or 2 with collection errors), no tests collected (5), and the
runner failing (2 interrupted, 3 internal error, 4 usage error).

The security audit (ruff's `S` rules or an AST fallback, with severities) lives
in `taskorch_nb.agents.audit`; a high-severity finding blocks approval by default.
"""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import tempfile
import time
from pathlib import Path
from typing import Literal
from xml.etree import ElementTree

from pydantic import BaseModel, Field

from taskorch_nb.agents.audit import (
    Finding,
    is_test_file,
    minimal_env,
    security_audit,
    timed_audit,
)
from taskorch_nb.agents.testrunner import QCRunner, check_runner, runner_env
from taskorch_nb.agents.workspace import Workspace
from taskorch_nb.sandbox import Sandbox

__all__ = [
    "Finding",
    "QCRunner",
    "QCVerdict",
    "check_runner",
    "is_test_file",
    "minimal_env",
    "run_qc",
    "security_audit",
]

OUTPUT_TAIL_CHARS = 2000
_KEEP_OUTPUT_BYTES = 64 * 1024

Outcome = Literal[
    "passed", "failed", "no_tests_collected", "runner_failed", "timed_out", "killed"
]
#: pytest's names for its exit codes (`pytest.ExitCode`), as the verdict words them.
EXIT_MEANINGS = {
    0: "all tests passed",
    1: "tests failed",
    2: "interrupted",
    3: "internal error",
    4: "usage error",
    5: "no tests collected",
}


class QCVerdict(BaseModel):
    """QC's evidence and decision; `model_dump()` is what the verdict event carries."""

    approved: bool
    tests_passed: int
    tests_failed: int
    tests_errors: int
    tests_total: int
    tests_skipped: int = 0
    failures: list[str] = Field(default_factory=list)
    """Node ids of the tests that failed or errored."""
    findings: list[Finding] = Field(default_factory=list)
    audit_engine: str = ""
    """`ruff` or `ast` (the fallback), with the reason when ruff was not used."""
    performance: dict[str, float] = Field(default_factory=dict)
    slow_tests: list[str] = Field(default_factory=list)
    """Node ids of the tests slower than the limit."""
    perf_ok: bool = True
    durations: dict[str, float] = Field(default_factory=dict)
    """Wall seconds per check (`pytest`, `audit`, `total`)."""
    exit_code: int | None = None
    sandbox: str = ""
    """What contained the test run: `bubblewrap`, or `rlimits` (no jail available)."""
    exit_meaning: str = ""
    """pytest's name for `exit_code` (`no tests collected`, `internal error`, ...)."""
    outcome: Outcome = "passed"
    """What the test run came to: `passed`, `failed` (tests failed or did not import),
    `no_tests_collected` (exit 5), `runner_failed` (exit 2 without collection errors, 3,
    4, or no report), `timed_out`, `killed` (a signal, e.g. the CPU limit)."""
    timed_out: bool = False
    error: str | None = None
    """Why the test run itself did not complete (timeout, killed, the runner failed)."""
    runner: str = ""
    """The runner QC used: `pytest 9.2.0` and the interpreter."""
    output_tail: str = ""
    summary: str = ""


async def run_qc(
    workspace: Workspace,
    *,
    timeout: float = 60.0,  # noqa: ASYNC109 - a limit for the subprocess, not for this call
    cpu_seconds: int = 60,
    memory_mb: int = 1024,
    slow_test_seconds: float = 2.0,
    block_severities: frozenset[str] = frozenset({"high"}),
    python: str | None = None,
    sandbox: str | None = None,
) -> QCVerdict:
    """Run the workspace's tests, audit its code and check test speed; never raises for
    a failing, hanging or crashing test suite (the verdict says so).

    `python` is the interpreter whose pytest runs the tests (default: this one). A
    missing or broken pytest raises `RunnerUnavailableError` before anything runs.
    `sandbox` is the sandbox mode ("auto", "require", "off"; default TASKORCH_SANDBOX
    or "auto"); "require" raises `SandboxUnavailableError` where there is no jail.
    """
    if timeout <= 0 or cpu_seconds <= 0 or memory_mb <= 0:
        raise ValueError("timeout, cpu_seconds and memory_mb must be positive")
    started = time.perf_counter()
    runner = await check_runner(python, sandbox=sandbox)
    with tempfile.TemporaryDirectory(prefix="taskorch-qc-") as private:
        try:
            async with asyncio.TaskGroup() as tg:
                tests = tg.create_task(
                    _run_pytest(runner, workspace.root, Path(private), timeout, cpu_seconds,
                                memory_mb, sandbox)
                )
                audit = tg.create_task(timed_audit(workspace.root, timeout))
        except ExceptionGroup as group:  # one check failed to start: raise its own error
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from group
            raise
        run, (findings, engine, audit_seconds) = tests.result(), audit.result()

    slowest = max(run.times.values(), default=0.0)
    slow = sorted(node for node, secs in run.times.items() if secs > slow_test_seconds)
    perf_ok = slowest <= slow_test_seconds
    blocking = [f for f in findings if f.severity in block_severities]
    approved = run.outcome == "passed" and run.total > 0 and not blocking and perf_ok
    verdict = QCVerdict(
        approved=approved,
        tests_passed=run.passed,
        tests_failed=run.failed,
        tests_errors=run.errors,
        tests_total=run.total,
        tests_skipped=run.skipped,
        failures=run.failures,
        findings=findings,
        audit_engine=engine,
        performance={
            "pytest_seconds": round(run.seconds, 4),
            "tests_seconds": round(sum(run.times.values()), 4),
            "slowest_test_seconds": round(slowest, 4),
        },
        slow_tests=slow,
        perf_ok=perf_ok,
        durations={
            "pytest": round(run.seconds, 4),
            "audit": round(audit_seconds, 4),
            "total": round(time.perf_counter() - started, 4),
        },
        exit_code=run.exit_code,
        sandbox=run.engine,
        exit_meaning=_exit_meaning(run.exit_code),
        outcome=run.outcome,
        timed_out=run.timed_out,
        error=run.error,
        runner=f"{runner.version} ({runner.python})",
        output_tail=run.output[-OUTPUT_TAIL_CHARS:],
    )
    verdict.summary = _summary(verdict, blocking, slow_test_seconds)
    return verdict


def _summary(v: QCVerdict, blocking: list[Finding], slow_limit: float) -> str:
    head = "approved" if v.approved else "rejected"
    if v.outcome == "no_tests_collected":
        parts = ["no tests collected (pytest exit 5): the workspace has no tests pytest found"]
    elif v.outcome == "runner_failed":
        parts = [f"the test runner failed: {v.error}"]
    else:
        parts = [f"{v.tests_passed}/{v.tests_total} tests passed"]
        if v.error:
            parts.insert(0, v.error)
    if v.tests_failed or v.tests_errors:
        shown = ", ".join(v.failures[:3]) + (" ..." if len(v.failures) > 3 else "")
        parts.append(f"{v.tests_failed} failed, {v.tests_errors} errors ({shown})")
    if blocking:
        first = blocking[0]
        parts.append(
            f"{len(blocking)} blocking finding(s) ({first.rule} {first.path}:{first.line})"
        )
    parts.append(f"{len(v.findings)} finding(s) in all")
    if not v.perf_ok:
        parts.append(f"slowest test {v.performance['slowest_test_seconds']:.2f} s > {slow_limit} s")
    return f"{head}: " + "; ".join(parts)


# -- pytest in a locked-down subprocess ---------------------------------------------------


class _PytestRun:
    """What one pytest subprocess produced."""

    def __init__(self) -> None:
        self.passed = self.failed = self.errors = self.skipped = self.total = 0
        self.failures: list[str] = []
        self.times: dict[str, float] = {}
        self.exit_code: int | None = None
        self.timed_out = False
        self.error: str | None = None
        self.outcome: Outcome = "passed"
        self.output = ""
        self.seconds = 0.0
        self.engine = ""


def _pytest_command(runner: QCRunner, root: Path, private: Path, ini: Path,
                    junit: Path) -> list[str]:
    return [
        runner.python, "-m", "pytest", *runner.plugin_args(),
        "-c", str(ini),
        "--rootdir", str(root),
        "--confcutdir", str(root),  # no conftest.py from the directories above the workspace
        "--basetemp", str(private / "basetemp"),
        "--junitxml", str(junit),
        "-o", "junit_family=xunit1",  # xunit1 keeps the file attribute we build node ids from
        "-q", "-rfE", "--tb=short", "--color=no",
    ]  # fmt: skip


async def _run_pytest(
    runner: QCRunner, root: Path, private: Path, time_limit: float, cpu_seconds: int,
    memory_mb: int, mode: str | None,
) -> _PytestRun:
    run = _PytestRun()
    home = private / "home"
    home.mkdir()
    ini = private / "pytest.ini"
    asyncio_opts = (
        "asyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
        if runner.asyncio
        else ""
    )
    # Our own config (filterwarnings=error, addopts, ...) must not reach the workspace run.
    ini.write_text(f"[pytest]\n{asyncio_opts}", encoding="utf-8")
    junit = private / "junit.xml"
    # Built in a thread: the first sandbox of a process starts the jail once to probe it.
    box = await asyncio.to_thread(
        Sandbox, root, timeout=time_limit, memory_mb=memory_mb, cpu_seconds=cpu_seconds,
        mode=mode, writable=[private], env=runner_env(home), python=runner.python,
        output_bytes=_KEEP_OUTPUT_BYTES,
    )
    result = await box.run(_pytest_command(runner, root, private, ini, junit))
    run.engine = result.engine
    run.seconds = result.seconds
    run.exit_code = result.returncode
    run.output = result.stdout + result.stderr
    if result.timed_out:
        run.timed_out = True
        run.error = f"pytest timed out after {time_limit:g} s"

    have_report = junit.exists() or junit.is_symlink()
    if have_report:
        _read_junit(junit, run)
    _classify(run, have_report, cpu_seconds)
    return run


def _exit_meaning(code: int | None) -> str:
    if code is None:
        return ""
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return EXIT_MEANINGS.get(code, "crashed")


def _classify(run: _PytestRun, have_report: bool, cpu_seconds: int) -> None:
    """Set `outcome` (and `error` when the run itself broke) from pytest's exit code."""
    code = run.exit_code
    if run.timed_out:
        run.outcome = "timed_out"
    elif code is not None and code < 0:
        name = signal.Signals(-code).name
        extra = f" (CPU limit of {cpu_seconds} s)" if -code == signal.SIGXCPU else ""
        run.outcome, run.error = "killed", f"pytest was killed by {name}{extra}"
    elif run.error is not None:  # the report was unreadable
        run.outcome = "runner_failed"
    elif code == 5:
        run.outcome = "no_tests_collected"
    elif code == 0 and have_report:
        run.outcome = "passed"
    # Exit 2 with errors in the report: test modules that did not import (the tests' fault).
    elif (code == 1 or (code == 2 and run.errors)) and have_report:
        run.outcome = "failed"
    else:
        run.outcome = "runner_failed"
        report = "" if have_report else ", no report"
        run.error = f"pytest exited with code {code} ({_exit_meaning(code)}{report})"
        reason = _runner_reason(run.output)
        if reason:
            run.error += f": {reason}"


def _runner_reason(output: str) -> str:
    """The line of pytest's output that says why it stopped (INTERNALERROR, ERROR, ...)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for prefix in ("INTERNALERROR> ", "ERROR: ", "E   "):
        found = [line for line in lines if line.startswith(prefix)]
        if found:
            return found[-1].removeprefix(prefix).strip()[:300]
    banners = [line.strip("! ") for line in lines if line.startswith("!!!")]  # !!! KeyboardInt...
    if banners:
        return banners[-1][:300]
    return lines[-1][:300] if lines else ""


def _read_junit(path: Path, run: _PytestRun) -> None:
    """Count outcomes and per-test seconds from pytest's junit (xunit1) report.

    The jailed code could write the report's directory, so it is opened without
    following a link and read only if it is a regular file of sane size."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        run.error = f"unreadable junit report: {exc.strerror}"
        return
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            run.error = "junit report is not a regular file"
            return
        if info.st_size > 50_000_000:
            run.error = "junit report too large to read"
            return
        try:
            tree = ElementTree.parse(file)  # expat refuses entity-expansion bombs
        except ElementTree.ParseError as exc:
            run.error = f"unreadable junit report: {exc}"
            return
    for case in tree.iter("testcase"):
        node = _node_id(case)
        run.total += 1
        run.times[node] = float(case.get("time") or 0.0)
        if case.find("failure") is not None:
            run.failed += 1
            run.failures.append(node)
        elif case.find("error") is not None:
            run.errors += 1
            run.failures.append(node)
        elif case.find("skipped") is not None:
            run.skipped += 1
        else:
            run.passed += 1


def _node_id(case: ElementTree.Element) -> str:
    """Rebuild pytest's node id (`tests/test_a.py::TestX::test_y`) from a testcase."""
    classname, name, file = case.get("classname", ""), case.get("name", ""), case.get("file")
    if not file:
        return f"{classname}::{name}" if classname else name
    module = file.removesuffix(".py").replace("/", ".").replace("\\", ".")
    if not classname and name == module:  # a collection error names the module itself
        return file.replace("\\", "/")
    inner = classname[len(module) + 1 :] if classname.startswith(module + ".") else ""
    parts = [file.replace("\\", "/"), *(p for p in inner.split(".") if p), name]
    return "::".join(parts)
