"""What sandboxed code may use: rlimits, and a pids cgroup where RLIMIT_NPROC does not hold.

RLIMIT_NPROC is not enforced for root (the kernel exempts uid 0 even inside a user
namespace, measured: 60 of 60 forks under a limit of 20), so a fork bomb started
by root is bounded only by a pids cgroup. Where one is writable (a root container
with cgroup v1, or a delegated cgroup v2 subtree) every run gets its own, with
`pids.max`; elsewhere the count of processes rests on RLIMIT_NPROC alone, which
holds for every user but root.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import resource
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Limits", "PidsCgroup", "pids_cgroup_base"]

_MB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-process limits of the sandboxed code (a fork bomb's total is `max_processes`)."""

    cpu_seconds: int
    memory_mb: int
    max_processes: int = 64
    """Processes and threads the run may have at once (RLIMIT_NPROC, and pids.max)."""
    max_file_mb: int = 256
    """Largest file the code may write (RLIMIT_FSIZE)."""
    max_open_files: int = 256
    tmp_mb: int = 256
    """Size of the jail's private /tmp (a tmpfs, so it is memory)."""

    def __post_init__(self) -> None:
        for name in ("cpu_seconds", "memory_mb", "max_processes", "max_file_mb",
                     "max_open_files", "tmp_mb"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")

    def rlimits(self, *, nproc_extra: int | None = 0) -> list[tuple[int, int, int]]:
        """(resource, soft, hard) triples, never above the hard limits we have ourselves.

        `nproc_extra` is added to the process limit where RLIMIT_NPROC counts the user's
        other processes too (outside a user namespace); None leaves RLIMIT_NPROC alone
        (where we cannot count them: a low limit would stop the code's first fork).
        """

        def clamp(kind: int, want: int) -> int:
            hard = resource.getrlimit(kind)[1]
            return want if hard == resource.RLIM_INFINITY else min(want, hard)

        cpu = resource.RLIMIT_CPU  # soft sends SIGXCPU, the hard one a second later SIGKILL
        memory = clamp(resource.RLIMIT_AS, self.memory_mb * _MB)
        procs = clamp(resource.RLIMIT_NPROC, self.max_processes + (nproc_extra or 0))
        size = clamp(resource.RLIMIT_FSIZE, self.max_file_mb * _MB)
        files = clamp(resource.RLIMIT_NOFILE, self.max_open_files)
        plan = [
            (cpu, clamp(cpu, self.cpu_seconds), clamp(cpu, self.cpu_seconds + 1)),
            (resource.RLIMIT_AS, memory, memory),
            (resource.RLIMIT_NPROC, procs, procs),
            (resource.RLIMIT_FSIZE, size, size),
            (resource.RLIMIT_NOFILE, files, files),
            (resource.RLIMIT_CORE, 0, 0),
        ]
        return [p for p in plan if nproc_extra is not None or p[0] != resource.RLIMIT_NPROC]


def user_process_count() -> int:
    """Processes (threads included, as RLIMIT_NPROC counts them) of our uid, from /proc."""
    uid, count = os.getuid(), 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):  # a process that ended while we looked
            if entry.stat().st_uid == uid:
                count += len(os.listdir(f"/proc/{entry.name}/task"))
    return count


# -- pids cgroup --------------------------------------------------------------------------

_names = itertools.count(1)
_PREFIX = "taskorch-sandbox-"


class PidsCgroup:
    """One run's pids cgroup: a process that writes "0" to `procs_fd` (passed to it open)
    moves itself and all it starts under `pids.max`; `close` kills what is left in it
    and removes it. The fd was opened here, so the kernel checks our permission."""

    def __init__(self, base: Path, max_pids: int) -> None:
        self.path = base / f"{_PREFIX}{os.getpid()}-{next(_names)}"
        self.path.mkdir()
        try:
            (self.path / "pids.max").write_text(str(max_pids))
            self.procs_fd = os.open(self.path / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)
        except OSError:
            self.path.rmdir()
            raise

    def pids(self) -> list[int]:
        try:
            text = (self.path / "cgroup.procs").read_text()
        except OSError:
            return []
        return [int(p) for p in text.split()]

    def kill(self) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def close(self) -> None:
        self.kill()
        os.close(self.procs_fd)
        # Busy while the kernel still tears the last processes down: the next sweep takes it.
        with contextlib.suppress(OSError):
            self.path.rmdir()


@functools.cache
def pids_cgroup_base() -> Path | None:
    """The cgroup directory we may create pids-limited children in, or None."""
    for candidate in _candidates():
        if _usable(candidate):
            _sweep(candidate)
            return candidate
    return None


def _candidates() -> list[Path]:
    try:
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
        groups = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return []
    v1: tuple[str, str] | None = None
    v2: tuple[str, str] | None = None
    for line in mounts:
        fields, _, tail = line.partition(" - ")
        parts, extra = fields.split(), tail.split()
        if len(parts) < 5 or len(extra) < 3:
            continue
        if extra[0] == "cgroup" and "pids" in extra[2].split(","):
            v1 = (parts[3], parts[4])  # (root of the mount, mount point)
        elif extra[0] == "cgroup2":
            v2 = (parts[3], parts[4])
    found = []
    for line in groups:
        hierarchy, controllers, path = [*line.split(":", 2), "", ""][:3]
        if v1 and "pids" in controllers.split(","):
            found.append(_join(v1, path))
        elif v2 and hierarchy == "0" and controllers == "":
            where = _join(v2, path)
            with contextlib.suppress(OSError):
                if "pids" in (where / "cgroup.subtree_control").read_text().split():
                    found.append(where)
    return found


def _join(mount: tuple[str, str], path: str) -> Path:
    root, point = mount
    inner = path[len(root):] if root != "/" and path.startswith(root) else path
    return Path(point) / inner.lstrip("/")


def _usable(base: Path) -> bool:
    """Create a child, move a throwaway process into it: all cgroup rules in one try."""
    if not os.access(base, os.W_OK):
        return False
    try:
        group = PidsCgroup(base, 8)
    except OSError:
        return False
    try:
        move = f"import os; os.write({group.procs_fd}, b'0')"
        done = subprocess.run([sys.executable, "-I", "-S", "-c", move], capture_output=True,
                              pass_fds=[group.procs_fd], timeout=30, check=False)
        return done.returncode == 0  # non-zero: the move was refused, not ours to use
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        group.close()


def _sweep(base: Path) -> None:
    """Remove the empty cgroups of sandboxes whose process is gone (killed with -9)."""
    with contextlib.suppress(OSError):
        for entry in base.iterdir():
            if not entry.name.startswith(_PREFIX):
                continue
            owner = entry.name.removeprefix(_PREFIX).split("-")[0]
            if owner.isdigit() and not Path(f"/proc/{owner}").exists():
                with contextlib.suppress(OSError):
                    entry.rmdir()
