"""The fallback engine's supervisor, run on its own as the Sandbox runs it: it passes the
code's exit on (code or signal), applies the limits, keeps its watch pipe from the code,
and kills the whole tree, setsid orphans included, when the watch pipe closes."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from taskorch_nb.sandbox import jail
from tests.unit.procs import processes_with, wait_until_gone, wait_until_running

SUPERVISOR = Path(jail.__file__).with_name("supervisor.py")
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes")


@contextmanager
def supervised(command: Sequence[str], limits: Sequence[tuple[int, int, int]] = ()
               ) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """The supervisor running `command`, and the write end of its watch pipe (ours)."""
    watch_r, watch_w = os.pipe()
    config = {"watch_fd": watch_r, "cgroup_fd": -1, "limits": [list(lim) for lim in limits]}
    proc = subprocess.Popen(
        [sys.executable, "-I", "-S", str(SUPERVISOR), json.dumps(config), *command],
        pass_fds=[watch_r], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True, env={**os.environ, "WATCH_FD": str(watch_r)})
    os.close(watch_r)
    try:
        yield proc, watch_w
    finally:
        with contextlib.suppress(OSError):  # unless the test closed it already
            os.close(watch_w)
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=60)


def python(source: str, *args: str) -> list[str]:
    return [sys.executable, "-c", source, *args]


def test_the_codes_exit_code_is_the_supervisors() -> None:
    with supervised(python("print('hi'); raise SystemExit(3)")) as (proc, _):
        out, err = proc.communicate(timeout=60)
    assert (proc.returncode, out, err) == (3, "hi\n", "")


def test_the_code_killed_by_a_signal_kills_the_supervisor_the_same_way() -> None:
    with supervised(python("import os, signal; os.kill(os.getpid(), signal.SIGTERM)")) \
            as (proc, _):
        proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGTERM


def test_a_program_that_cannot_run_is_127_with_a_reason() -> None:
    with supervised(["no-such-program-here"]) as (proc, _):
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 127
    assert err.startswith("sandbox: cannot run 'no-such-program-here'")


def test_the_limits_hold_in_the_code_and_the_watch_pipe_does_not_reach_it() -> None:
    probe = ("import os, resource\n"
             "print(resource.getrlimit(resource.RLIMIT_NOFILE))\n"
             "try:\n    os.fstat(int(os.environ['WATCH_FD']))\n    print('watch open')\n"
             "except OSError:\n    print('watch closed')\n")
    with supervised(python(probe), [(resource.RLIMIT_NOFILE, 64, 64)]) as (proc, _):
        out, _ = proc.communicate(timeout=60)
    assert out.splitlines() == ["(64, 64)", "watch closed"]


def test_closing_the_watch_pipe_kills_the_tree_setsid_orphans_included() -> None:
    marker = f"taskorch-supervised-{uuid.uuid4().hex}"
    code = ("import os, subprocess, sys, time\n"
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)', "
            "sys.argv[1]], start_new_session=True)\n"
            "time.sleep(600)\n")
    try:
        with supervised(python(code, marker)) as (proc, watch):
            # the supervisor, the code and its setsid child all carry the marker
            assert len(wait_until_running(marker, count=3)) >= 3
            os.close(watch)
            proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL  # ended as the jail's code would be
        assert wait_until_gone(marker)
    finally:
        for pid in processes_with(marker):
            os.kill(pid, signal.SIGKILL)
