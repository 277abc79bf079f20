"""Finding processes by a marker in their command line, across pid namespaces.

Code in the jail sees its own pid namespace, so a pid it reports means nothing
outside; a unique marker in the command line finds the process from here.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def processes_with(marker: str) -> list[int]:
    """Live (not zombie) processes whose command line contains `marker`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:  # ended while we looked
            continue
        if marker.encode() in cmdline and state not in ("Z", "X"):
            found.append(int(entry))
    return found


def wait_until_gone(marker: str, within: float = 10.0) -> bool:
    """True once no live process carries `marker` (a zombie a container's init never
    reaps counts as gone)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not processes_with(marker):
            return True
        time.sleep(0.05)
    return False


def wait_until_running(marker: str, count: int = 1, within: float = 30.0) -> list[int]:
    """The processes carrying `marker` once `count` of them run; [] after `within` s."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = processes_with(marker)
        if len(found) >= count:
            return found
        time.sleep(0.05)
    return []
