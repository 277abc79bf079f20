"""The fallback engine's supervisor: the process between the caller and the code, where
no jail is available.

Run as `python -I -S supervisor.py CONFIG ARGV...` (stdlib only, nothing imported from
the package). It forks the code into its own process group with the limits applied,
then waits for one of three things:

- the code exits: everything it left behind is killed, and the supervisor exits the
  same way (same code, or the same signal);
- the caller closes the watch pipe (its timeout) or dies, even by `kill -9` (the pipe
  closes with it): the whole tree is killed and the supervisor exits.

On Linux the supervisor is a child subreaper, so orphans (a `setsid` child whose
parent exited) are re-parented to it and killed too. Code that kills the supervisor
itself escapes this; that is what the jail is for.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import select
import signal
import sys

_PR_SET_CHILD_SUBREAPER = 36


def main(argv: list[str]) -> int:
    config, command = json.loads(argv[0]), argv[1:]
    watch: int = config["watch_fd"]
    os.set_inheritable(watch, False)  # the code must not hold the caller's pipe
    if config["cgroup_fd"] >= 0:  # the run's pids cgroup, for us and all we start
        os.write(config["cgroup_fd"], b"0")
        os.close(config["cgroup_fd"])
    if sys.platform == "linux":
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wakeup fd hears it
    stop: list[int] = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))  # the same as the pipe closing

    pid = os.fork()
    if pid == 0:
        _exec(command, config["limits"], (watch, wake_r, wake_w))
    status = None
    while status is None:
        ready, _, _ = select.select([watch, wake_r], [], [])
        if stop or (watch in ready and not os.read(watch, 1)):  # the caller is gone or gave up
            _kill_tree(pid)
            signal.set_wakeup_fd(-1)
            os.kill(os.getpid(), signal.SIGKILL)  # ended, as the jail's code would be
        if wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(wake_r, 512)
        done, status_now = os.waitpid(pid, os.WNOHANG)
        if done:
            status = status_now
    _kill_tree(pid)
    if os.WIFSIGNALED(status):  # die the same way, so the caller sees the signal
        sig = os.WTERMSIG(status)
        signal.set_wakeup_fd(-1)
        with contextlib.suppress(OSError):  # SIGKILL and SIGSTOP have no handler to reset
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1


def _exec(command: list[str], limits: list[list[int]], close: tuple[int, ...]) -> None:
    try:
        os.setpgid(0, 0)
        signal.set_wakeup_fd(-1)
        for fd in close:
            os.close(fd)
        for sig in (signal.SIGCHLD, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        # Python ignores SIGPIPE and SIGXFSZ for itself; the code gets the defaults back
        # except SIGXFSZ, so a too-large write is an error (EFBIG), not a silent kill.
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        for kind, soft, hard in limits:
            resource.setrlimit(kind, (soft, hard))
        os.execvp(command[0], command)
    except OSError as exc:
        os.write(2, f"sandbox: cannot run {command[0]!r}: {exc.strerror or exc}\n".encode())
    os._exit(127)


def _kill_tree(pid: int) -> None:
    """Kill the code's process group, then every process re-parented to us, until none."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    while True:
        for child in _children():
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def _children() -> list[int]:
    me, found = str(os.getpid()), []
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError):
                    with open(f"/proc/{entry}/stat", "rb") as file:
                        stat = file.read().decode()
                    if stat.rsplit(")", 1)[1].split()[1] == me:
                        found.append(int(entry))
    return found


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
