"""QC checks its test runner first: a missing or broken pytest is a configuration error
that names the fix, never a verdict of "no tests collected"."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from taskorch_nb.agents.qc import run_qc
from taskorch_nb.agents.testrunner import check_runner
from taskorch_nb.agents.workspace import Workspace
from taskorch_nb.errors import ConfigurationError, RunnerUnavailableError

TESTS = "def test_one():\n    assert 1 + 1 == 2\n"


def bare_venv(where: Path) -> str:
    """A real interpreter with no pytest: a venv without pip or site packages."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    return str(where / "bin" / "python")


def site_packages(python: str) -> Path:
    found = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                           capture_output=True, text=True, check=True).stdout.strip()
    return Path(found)


async def test_this_interpreters_runner_answers_and_is_remembered() -> None:
    runner = await check_runner()
    assert runner.python == sys.executable
    assert runner.version == f"pytest {pytest.__version__}"
    assert runner.asyncio  # the dev install has pytest-asyncio; QC loads it explicitly
    assert runner.plugin_args() == ["-p", "no:cacheprovider", "-p", "pytest_asyncio.plugin"]
    assert await check_runner(sys.executable) is runner


async def test_a_missing_pytest_names_the_install_command(tmp_path: Path) -> None:
    python = bare_venv(tmp_path / "venv")
    with pytest.raises(RunnerUnavailableError) as caught:
        await check_runner(python)
    error = caught.value
    assert isinstance(error, ConfigurationError)
    assert error.python == python
    assert error.reason == "pytest is not installed"
    assert error.fix == f"{python} -m pip install pytest"
    assert "pip install pytest" in str(error)
    assert "no tests collected" not in str(error)


async def test_qc_refuses_to_run_without_its_runner(tmp_path: Path) -> None:
    python = bare_venv(tmp_path / "venv")
    ws = Workspace(tmp_path / "ws")
    ws.write("tests/test_one.py", TESTS)
    with pytest.raises(RunnerUnavailableError, match="pip install pytest"):
        await run_qc(ws, timeout=30, python=python)


BROKEN = {
    "import fails": {"__init__.py": "raise ImportError('half-installed: _pytest is missing')\n"},
    "entry point fails": {"__init__.py": "", "__main__.py": "raise SystemExit(3)\n"},
    "says something else": {"__init__.py": "", "__main__.py": "print('hello')\n"},
}


@pytest.mark.parametrize("how", sorted(BROKEN))
async def test_a_broken_pytest_names_the_reinstall_command(tmp_path: Path, how: str) -> None:
    python = bare_venv(tmp_path / "venv")
    package = site_packages(python) / "pytest"
    package.mkdir()
    for name, text in BROKEN[how].items():
        (package / name).write_text(text, encoding="utf-8")
    with pytest.raises(RunnerUnavailableError) as caught:
        await check_runner(python)
    error = caught.value
    assert error.reason.startswith("`python -m pytest --version` exited ")
    assert error.fix == f"{python} -m pip install --force-reinstall pytest"
    if how == "import fails":
        assert "half-installed" in error.reason
    if how == "says something else":
        assert error.reason.endswith("exited 0: hello")


async def test_an_interpreter_that_does_not_exist(tmp_path: Path) -> None:
    python = str(tmp_path / "no" / "python")
    with pytest.raises(RunnerUnavailableError, match="cannot start the interpreter"):
        await check_runner(python)


class _RecordingContext:
    """A workflow context that records what the workflow asks for, in order."""

    task = "Add a cache"
    max_rounds = 1
    archetype = None

    def __init__(self, runner_error: Exception | None) -> None:
        self.calls: list[str] = []
        self._runner_error = runner_error

    async def check_qc_runner(self) -> None:
        self.calls.append("check_qc_runner")
        if self._runner_error is not None:
            raise self._runner_error

    def phase(self, name: str, round: int = 1):
        import contextlib

        calls = self.calls

        @contextlib.asynccontextmanager
        async def scope():
            calls.append(f"phase:{name}")
            yield

        return scope()

    async def agent(self, archetype: str, instruction: str, *, key: str,
                    write_scope: str | None = None):
        self.calls.append(f"agent:{archetype}")
        raise RuntimeError("stop here: the order up to the first agent is what counts")

    async def qc(self, *, key: str):
        self.calls.append("qc")


async def test_the_full_workflow_checks_qcs_runner_before_the_first_paid_step() -> None:
    from taskorch_nb.agents.workflow import get_workflow
    from taskorch_nb.errors import RunnerUnavailableError

    broken = _RecordingContext(RunnerUnavailableError("py", "pytest is not installed",
                                                      fix="py -m pip install pytest"))
    with pytest.raises(RunnerUnavailableError, match="pip install pytest"):
        await get_workflow("full")(broken)
    assert broken.calls == ["check_qc_runner"]  # no phase started, no model paid

    working = _RecordingContext(None)
    with pytest.raises(RuntimeError, match="stop here"):
        await get_workflow("full")(working)
    assert working.calls[:3] == ["check_qc_runner", "phase:research", "agent:researcher"]
