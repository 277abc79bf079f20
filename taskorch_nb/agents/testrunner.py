"""QC's test runner (pytest), checked before QC trusts what it says.

Without this check a missing pytest looked like an empty test suite: `python -m
pytest` exits 1 with "No module named pytest", no report is written, and the
verdict read "no tests collected". So QC first asks the interpreter it will use,
in the environment it will use, for `python -m pytest --version`; anything but
a version is a `RunnerUnavailableError` that names the fix. A success is
remembered per interpreter for the life of the process.

The check runs in the same jail as the test run itself (`taskorch_nb.sandbox`):
the interpreter QC is pointed at is as untrusted as the code it will test.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from taskorch_nb.agents.audit import minimal_env
from taskorch_nb.errors import RunnerUnavailableError
from taskorch_nb.sandbox import Sandbox

__all__ = ["QCRunner", "check_runner", "runner_env"]

_ASYNCIO_PROBE = (
    "import importlib.util, sys; sys.exit(importlib.util.find_spec('pytest_asyncio') is None)"
)
_checked: dict[str, QCRunner] = {}


@dataclass(frozen=True, slots=True)
class QCRunner:
    """The pytest QC runs: its interpreter, version line and the plugins it loads."""

    python: str
    version: str
    """What `pytest --version` printed, e.g. `pytest 9.2.0`."""
    asyncio: bool
    """pytest-asyncio is installed there (loaded explicitly: plugin autoload is off)."""

    def plugin_args(self) -> list[str]:
        args = ["-p", "no:cacheprovider"]
        return [*args, "-p", "pytest_asyncio.plugin"] if self.asyncio else args


def runner_env(home: Path) -> dict[str, str]:
    """The environment of every pytest QC starts: nothing of ours, its own HOME."""
    env = minimal_env(home)
    # Third-party plugins cost ~2 s of startup each run; load only the ones tests need.
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    return env


async def check_runner(
    python: str | None = None,
    *,
    timeout: float = 60.0,  # noqa: ASYNC109 - a limit for the subprocess, not for this call
    sandbox: str | None = None,
) -> QCRunner:
    """The runner QC will use with `python` (default: this interpreter), once it answered
    `pytest --version` in the sandbox (`sandbox`: its mode); raises
    `RunnerUnavailableError` naming the fix otherwise."""
    python = python or sys.executable
    known = _checked.get(python)
    if known is not None:
        return known
    asyncio_plugin = await _has_asyncio_plugin(python, timeout, sandbox)
    runner = QCRunner(python=python, version="", asyncio=asyncio_plugin)
    with tempfile.TemporaryDirectory(prefix="taskorch-qc-check-") as private:
        home = Path(private)
        code, output = await _call(_version_command(runner), home, timeout, sandbox)
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    version = next((line for line in lines if line.startswith("pytest ")), None)
    if code == 0 and version is not None:
        runner = QCRunner(python=python, version=version, asyncio=asyncio_plugin)
        _checked[python] = runner
        return runner
    if "No module named pytest" in output:
        raise RunnerUnavailableError(
            python, "pytest is not installed", fix=f"{python} -m pip install pytest")
    shown = lines[-1] if lines else "no output"
    raise RunnerUnavailableError(
        python, f"`python -m pytest --version` exited {code}: {shown}",
        fix=f"{python} -m pip install --force-reinstall pytest")


def _version_command(runner: QCRunner) -> list[str]:
    return [runner.python, "-m", "pytest", *runner.plugin_args(), "--version"]


async def _has_asyncio_plugin(python: str, timeout: float,  # noqa: ASYNC109
                              sandbox: str | None) -> bool:
    if python == sys.executable:
        return importlib.util.find_spec("pytest_asyncio") is not None
    with tempfile.TemporaryDirectory(prefix="taskorch-qc-check-") as private:
        code, _ = await _call([python, "-c", _ASYNCIO_PROBE], Path(private), timeout, sandbox)
    return code == 0


async def _call(cmd: list[str], home: Path, timeout: float,  # noqa: ASYNC109
                sandbox: str | None) -> tuple[int | None, str]:
    """Exit code and output of `cmd` in QC's sandbox and environment; a missing
    interpreter or a timeout is the runner being unavailable."""
    python = cmd[0]
    why = _not_startable(python)
    if why:
        raise RunnerUnavailableError(
            python, f"cannot start the interpreter: {why}",
            fix="point QC at an existing Python (run_qc(python=...))")
    box = await asyncio.to_thread(Sandbox, home, timeout=timeout, memory_mb=1024, mode=sandbox,
                                  env=runner_env(home), python=python)
    result = await box.run(cmd)
    if result.timed_out:
        raise RunnerUnavailableError(
            python, f"`{' '.join(os.path.basename(c) for c in cmd[:3])}` did not answer "
            f"within {timeout:g} s", fix=f"{python} -m pip install --force-reinstall pytest",
        )
    return result.returncode, result.stdout + result.stderr


def _not_startable(python: str) -> str:
    """Why `python` cannot be started (checked here: in the jail it would not be bound)."""
    if os.path.isfile(python) and os.access(python, os.X_OK):
        return ""
    return "Permission denied" if os.path.exists(python) else "No such file or directory"
