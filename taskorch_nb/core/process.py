"""Whether a process still runs: one answer for runs left RUNNING, ledger holders and Ray
workers, so a crashed owner's run is INTERRUPTED and its reserved money comes back."""

from __future__ import annotations

import os
import socket


def alive(pid: int | None) -> bool:
    """True while `pid` runs on this host (None or 0: no process, so not alive).

    `kill(pid, 0)` sends nothing and only asks; a process of another user answers
    PermissionError, which still means it is there.
    """
    if not pid:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def worker_id() -> str:
    """Where this process runs, as a run records it (`run.worker`): "host:pid"."""
    return f"{socket.gethostname()}:{os.getpid()}"
