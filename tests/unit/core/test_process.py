"""`core.process.alive`: the one liveness test for runs, ledger holders and Ray workers."""

from __future__ import annotations

import os
import subprocess
import sys

from taskorch_nb.core.process import alive


def test_a_running_process_is_alive_and_an_ended_one_is_not() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert alive(child.pid)
    finally:
        child.kill()
        child.wait()
    assert not alive(child.pid)  # reaped: the pid names no process


def test_no_pid_is_not_alive_and_this_process_is() -> None:
    assert not alive(None)
    assert not alive(0)  # kill(0, 0) would ask about our whole process group
    assert alive(os.getpid())


def test_another_users_process_counts_as_alive() -> None:
    assert alive(1)  # init: PermissionError for a non-root caller, a plain answer for root
