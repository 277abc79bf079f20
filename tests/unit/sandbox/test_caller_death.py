"""The caller of a sandbox killed with -9 (a notebook kernel, a QC worker): nothing of
the run may go on without it, whatever the code did to hide (a new session, a new
command line) and whenever the kill lands (while the code runs, or before the jail
stands).

Each run carries a marker in its environment: the outer bwrap, the jail's init, the
code and its children, or the supervisor and its tree, all inherit it, so /proc finds
every one of them even after the code changed its command line.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskorch_nb.sandbox import bwrap_candidates, jail_status

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")]

MODE = {"bubblewrap": "require", "rlimits": "off"}
MARK = "TASKORCH_TEST_RUN"

#: The caller: builds its sandbox, says so, waits for a line, runs the code to its end.
CALLER = """\
import asyncio, sys
from taskorch_nb.sandbox import Sandbox
ws, mode, mark, *argv = sys.argv[1:]
box = Sandbox(ws, timeout=600, memory_mb=512, mode=mode, env={"TASKORCH_TEST_RUN": mark})
print("ready", flush=True)
sys.stdin.readline()
asyncio.run(box.run(argv))
"""

#: The code: a child in a session of its own, under a command line without the
#: marker; says it stands; spins (a busy process must go as surely as a sleeping one).
SPINNER = """\
import pathlib, subprocess
subprocess.Popen(["sleep", "600"], start_new_session=True)
pathlib.Path("spinning").touch()
while True:
    pass
"""


def marked(mark: str) -> list[int]:
    """Live processes whose environment holds MARK=mark."""
    needle = f"{MARK}={mark}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:  # ended while we looked, or not ours to read
            continue
        if needle in environ.split(b"\0") and state not in ("Z", "X"):
            found.append(int(entry))
    return found


def until(check, within: float = 30.0) -> bool:
    """Poll `check` until it holds or `within` seconds pass (a bound, not a timing)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(params=list(MODE))
def engine(request: pytest.FixtureRequest) -> str:
    if request.param == "bubblewrap" and not jail_status().ok:
        pytest.skip(f"no jail here: {jail_status().reason}")
    return request.param


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    path = tmp_path / "ws"
    path.mkdir()
    return path


@contextlib.contextmanager
def caller(ws: Path, mode: str, mark: str, argv: list[str], tmp_path: Path,
           env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[str]]:
    """The caller process, its sandbox built; whatever the run leaves is killed after."""
    said = tmp_path / "caller.err"
    with said.open("wb") as err:
        # TMPDIR: what the killed caller cannot clean up stays in this test's directory.
        proc = subprocess.Popen(
            [sys.executable, "-c", CALLER, str(ws), mode, mark, *argv], text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
            env={**os.environ, "TMPDIR": str(tmp_path), **(env or {})})
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n", said.read_text()
        yield proc
    finally:
        proc.kill()
        proc.communicate()  # reaps it and closes our ends of its pipes
        for pid in marked(mark):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def go(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.write("\n")
    proc.stdin.flush()


def test_kill_9_of_the_caller_while_the_code_spins_leaves_no_process(
        ws: Path, engine: str, tmp_path: Path) -> None:
    mark = uuid.uuid4().hex
    (ws / "spin.py").write_text(SPINNER)
    with caller(ws, MODE[engine], mark, [sys.executable, "spin.py"], tmp_path) as proc:
        go(proc)
        assert until((ws / "spinning").exists)
        # bwrap, the jail's init, the code, its child; or the supervisor, the code, its child
        assert len(marked(mark)) >= 3, marked(mark)
        proc.kill()  # SIGKILL: no finally, no atexit, no chance to clean up
        proc.wait()
        assert until(lambda: not marked(mark)), [
            Path(f"/proc/{pid}/cmdline").read_bytes() for pid in marked(mark)]


def test_a_caller_killed_before_the_jail_stands_never_runs_the_code(
        ws: Path, tmp_path: Path) -> None:
    # bwrap asks for SIGKILL on its parent's death (PR_SET_PDEATHSIG) only after it
    # started: a caller killed before that leaves bwrap running, re-parented. Held
    # here: the wrapper execs the real bwrap only once its parent, the caller, is dead.
    if not jail_status().ok:
        pytest.skip(f"no jail here: {jail_status().reason}")
    real = bwrap_candidates()[0]
    hold, held = tmp_path / "hold", tmp_path / "held"
    wrapper = tmp_path / "bwrap"
    wrapper.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        if [ -e '{hold}' ]; then
            touch '{held}'
            while kill -0 "$PPID" 2>/dev/null; do sleep 0.01; done
        fi
        exec '{real}' "$@"
    """))
    wrapper.chmod(0o755)
    mark = uuid.uuid4().hex
    code = [sys.executable, "-c", "import pathlib, time; pathlib.Path('ran').touch(); "
            "time.sleep(600)"]
    with caller(ws, "require", mark, code, tmp_path, {"TASKORCH_BWRAP": str(wrapper)}) as proc:
        hold.touch()  # after the probe: the caller's Sandbox() ran the wrapper already
        go(proc)
        assert until(held.exists)
        proc.kill()
        proc.wait()
        # bwrap now starts with no parent to die with: the code must not run, and
        # nothing of the jail may stay (bounded waits: the jail takes a while to stand).
        assert until(lambda: not marked(mark)), marked(mark)
        assert not (ws / "ran").exists()
