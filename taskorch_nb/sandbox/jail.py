"""`Sandbox`: the one door code a model wrote goes through before it runs.

Two engines:

- `bubblewrap` (Linux): the jail of `taskorch_nb.sandbox.bubblewrap`; the code sees
  the system libraries, the interpreter and the workspace, nothing else, and no
  network unless asked.
- `rlimits` (the fallback: macOS, or a Linux without user namespaces): the same
  cleared environment, limits and supervised process tree, without the jail; what
  that leaves open is `Sandbox.uncontained`, and the first such sandbox warns once.

The mode picks: `"auto"` (the jail where there is one, else the fallback and the
warning), `"require"` (the jail or `SandboxUnavailableError`), `"off"` (the fallback,
on purpose, without a warning). `TASKORCH_SANDBOX` sets it for a whole process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from taskorch_nb.errors import ConfigurationError, SandboxError, SandboxUnavailableError
from taskorch_nb.sandbox.bubblewrap import (
    JailProbe,
    bwrap_candidates,
    interpreter_paths,
    jail_argv,
    probe_jail,
)
from taskorch_nb.sandbox.limits import Limits, PidsCgroup, pids_cgroup_base, user_process_count
from taskorch_nb.sandbox.policy import (
    ESCAPES,
    checked_env,
    inside,
    secrets_under,
    writable_dir,
)

__all__ = ["ESCAPES", "MODES", "Sandbox", "SandboxResult", "SandboxWarning", "jail_status",
           "sandbox_mode"]

Mode = Literal["auto", "require", "off"]
MODES: tuple[str, ...] = ("auto", "require", "off")

_SUPERVISOR = Path(__file__).with_name("supervisor.py")
#: Runs first inside the jail: joins the run's pids cgroup (through an fd opened
#: outside), says the jail stands (one byte on the `started` pipe), sets the limits,
#: runs the code. In the jail (after the user namespace exists) RLIMIT_NPROC counts
#: only the jail's processes, not all of the user's.
#: The byte also proves the caller alive. bwrap asks for SIGKILL at its parent's death
#: (PR_SET_PDEATHSIG) only once it runs, so a caller killed before that leaves bwrap
#: re-parented, with nothing to die with; but it asks before it lets the jail be built,
#: so such a caller is gone before this write. Only the caller reads `started`: the
#: write then fails (EPIPE), the launcher exits before the code runs, the jail with it.
_LAUNCH = (
    "import json,os,resource,signal,sys\n"
    "started,cgroup,limits,*argv=sys.argv[1:]\n"
    "if int(cgroup)>=0: os.write(int(cgroup),b'0'); os.close(int(cgroup))\n"
    "try: os.write(int(started),b'1')\n"
    "except BrokenPipeError: os._exit(1)\n"
    "os.close(int(started))\n"
    "for k,s,h in json.loads(limits): resource.setrlimit(k,(s,h))\n"
    "signal.signal(signal.SIGPIPE,signal.SIG_DFL)\n"
    "try: os.execvp(argv[0],argv)\n"
    "except OSError as e: sys.stderr.write(f'sandbox: cannot run {argv[0]!r}: {e}\\n')\n"
    "sys.exit(127)"
)
#: How long the ends of a run may take once the code is dead: pipes to drain, a
#: supervisor to finish its sweep. Real seconds: these are real processes.
_GRACE = 2.0
_warned = False
_logged = False
logger = logging.getLogger("taskorch_nb.sandbox")


class SandboxWarning(UserWarning):
    """Generated code runs without a jail; the message names what is not contained."""


@dataclass(frozen=True, slots=True)
class SandboxResult:
    """What the code did: its exit code (negative: killed by that signal), its output
    (the last `output_bytes` of each stream), and whether the timeout ended it."""

    returncode: int
    stdout: str
    stderr: str
    timed_out: bool
    seconds: float = 0.0
    engine: str = ""


def sandbox_mode(mode: str | None = None) -> Mode:
    """`mode`, else TASKORCH_SANDBOX, else "auto"; anything else is a ConfigurationError."""
    chosen = mode if mode is not None else (os.environ.get("TASKORCH_SANDBOX") or "auto")
    value = chosen.strip().lower()
    if value not in MODES:
        source = "sandbox" if mode is not None else "TASKORCH_SANDBOX"
        raise ConfigurationError(f"{source}={chosen!r}: use one of {', '.join(MODES)}")
    return value  # type: ignore[return-value]


def jail_status() -> JailProbe:
    """Whether the jail works here (started for real once per process and bwrap)."""
    return probe_jail(bwrap_candidates())


class Sandbox:
    """Runs commands on `workspace` (read-write, the only such place with `writable`)
    under a wall-clock `timeout` and per-process limits, with no network unless
    `network=True` and an environment of an allow-list plus `env`."""

    def __init__(
        self,
        workspace: str | os.PathLike[str],
        *,
        timeout: float,
        memory_mb: int,
        network: bool = False,
        env: Mapping[str, str] | None = None,
        mode: str | None = None,
        cpu_seconds: int | None = None,
        max_processes: int = 256,
        max_file_mb: int = 256,
        max_open_files: int = 1024,
        tmp_mb: int = 256,
        writable: Sequence[str | os.PathLike[str]] = (),
        python: str | None = None,
        output_bytes: int = 64 * 1024,
    ) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, not {timeout!r}")
        self.timeout = float(timeout)
        self.limits = Limits(
            cpu_seconds=cpu_seconds if cpu_seconds is not None else max(1, int(timeout + 0.999)),
            memory_mb=memory_mb, max_processes=max_processes, max_file_mb=max_file_mb,
            max_open_files=max_open_files, tmp_mb=tmp_mb,
        )
        self.network = network
        self.python = python or sys.executable
        self.output_bytes = output_bytes
        self.env = checked_env(env or {})
        self.workspace = writable_dir(workspace)
        self.writable = [self.workspace, *(writable_dir(p) for p in writable)]
        self.mode: Mode = sandbox_mode(mode)
        self._cgroup_base = pids_cgroup_base() if sys.platform == "linux" else None
        self.engine: str = "rlimits"
        """What contains the code: "bubblewrap" or "rlimits" (the fallback)."""
        self._bwrap: str | None = None
        if self.mode != "off":
            probe = jail_status()
            if probe.ok:
                self.engine, self._bwrap = "bubblewrap", probe.bwrap
                if self.uncontained:  # root without a pids cgroup: a log line, not an error
                    _log_once(self.uncontained)
            elif self.mode == "require":
                raise SandboxUnavailableError(probe.reason)
            else:
                _warn_once(probe.reason, self.uncontained)

    def __repr__(self) -> str:
        return f"Sandbox({str(self.workspace)!r}, engine={self.engine!r})"

    @property
    def process_limit(self) -> str | None:
        """What bounds the number of processes: "cgroup", "rlimit", or None (root, no
        writable pids cgroup: RLIMIT_NPROC does not hold for root)."""
        if self._cgroup_base is not None:
            return "cgroup"
        if os.geteuid() != 0 and (self.engine == "bubblewrap" or sys.platform == "linux"):
            return "rlimit"
        return None

    @property
    def uncontained(self) -> tuple[str, ...]:
        """The `ESCAPES` this sandbox leaves open, here and now."""
        open_: list[str] = []
        if self.engine != "bubblewrap":
            open_ += ["parent_environ", "taskorch_store", "write_outside", "network"]
            if os.geteuid() == 0:  # a user's own permissions keep shadow files closed
                open_.append("system_secrets")
            if sys.platform != "linux":  # no child subreaper: the supervisor sees its group
                open_.append("setsid_child")
        if self.process_limit is None:
            open_.append("fork_bomb")
        return tuple(name for name in ESCAPES if name in open_)

    async def run(self, argv: Sequence[str | os.PathLike[str]], *,
                  cwd: str | os.PathLike[str] | None = None) -> SandboxResult:
        """Run `argv` (in `cwd`, default the workspace) to its end or the timeout; the
        whole process tree is gone when this returns, or raises, or is cancelled."""
        command = [os.fspath(a) for a in argv]
        if not command:
            raise ValueError("argv is empty")
        where = self._cwd(cwd)
        started = time.perf_counter()
        with contextlib.ExitStack() as stack:
            cgroup = None
            if self._cgroup_base is not None:
                cgroup = PidsCgroup(self._cgroup_base, self.limits.max_processes)
                stack.callback(cgroup.close)
            cgroup_fd = cgroup.procs_fd if cgroup is not None else -1
            if self.engine == "bubblewrap":
                spawn = self._jailed(command, where, cgroup_fd)
            else:
                scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="taskorch-sb-"))
                spawn = self._supervised(command, scratch, cgroup_fd)
            stack.callback(spawn.close)
            result = await self._spawn(spawn, where, cgroup)
        return SandboxResult(result.returncode, result.stdout, result.stderr, result.timed_out,
                             round(time.perf_counter() - started, 4), self.engine)

    def _cwd(self, cwd: str | os.PathLike[str] | None) -> str:
        where = os.path.realpath(cwd) if cwd is not None else str(self.workspace)
        if not any(inside(where, str(w)) for w in self.writable):
            raise SandboxError(where, "the working directory must be in the workspace")
        return where

    # -- the two engines ---------------------------------------------------------------

    def _jailed(self, command: list[str], cwd: str, cgroup_fd: int) -> _Spawn:
        assert self._bwrap is not None
        readable = interpreter_paths(sys.executable, self.python)
        started_r, started_w = os.pipe()
        os.set_blocking(started_r, False)
        argv = [
            *jail_argv(self._bwrap, writable=[str(w) for w in self.writable], readable=readable,
                       masked=secrets_under(readable), cwd=cwd, network=self.network,
                       tmp_bytes=self.limits.tmp_mb * 1024 * 1024),
            "--", sys.executable, "-I", "-S", "-c", _LAUNCH, str(started_w), str(cgroup_fd),
            json.dumps(self.limits.rlimits()), *command,
        ]  # fmt: skip
        return _Spawn(argv, self._env("/tmp", "/tmp"), [started_w], started_r, None,
                      _passed(cgroup_fd))

    def _supervised(self, command: list[str], scratch: str, cgroup_fd: int) -> _Spawn:
        watch_r, watch_w = os.pipe()
        # Outside a user namespace RLIMIT_NPROC counts all the user's processes: count
        # them where /proc can (root needs no count: the limit does not hold for root).
        extra: int | None = None
        if sys.platform == "linux":
            extra = user_process_count() if os.geteuid() != 0 else 0
        config = {"watch_fd": watch_r, "cgroup_fd": cgroup_fd,
                  "limits": self.limits.rlimits(nproc_extra=extra)}
        argv = [sys.executable, "-I", "-S", str(_SUPERVISOR), json.dumps(config), *command]
        return _Spawn(argv, self._env(scratch, scratch), [watch_r], None, watch_w,
                      _passed(cgroup_fd))

    def _env(self, home: str, tmp: str) -> dict[str, str]:
        path = [os.path.dirname(self.python), "/usr/local/bin", "/usr/bin", "/bin"]
        return {
            "PATH": os.pathsep.join(dict.fromkeys(path)), "HOME": home, "TMPDIR": tmp,
            "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0",
            "PYTHONNOUSERSITE": "1", **self.env,
        }  # fmt: skip

    async def _spawn(self, spawn: _Spawn, cwd: str, cgroup: PidsCgroup | None) -> _Ran:
        starting = asyncio.ensure_future(asyncio.create_subprocess_exec(
            *spawn.argv, cwd=cwd, env=spawn.env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            start_new_session=True, pass_fds=[*spawn.child_fds, *spawn.shared_fds],
        ))  # no preexec_fn: the cgroup is joined from inside, so Python may vfork
        try:
            proc = await asyncio.shield(starting)
        except asyncio.CancelledError:
            # Cancelled while asyncio still wires the pipes: its own clean-up would kill
            # the direct child alone, then wait forever for the pipes the code (its child,
            # in a group of its own) still holds. Let the start finish; end the whole tree.
            proc = await _finished(starting)
            spawn.close_child_fds()
            await self._end(proc, spawn, cgroup)
            raise
        spawn.close_child_fds()  # our copies of the child's ends would keep the pipes open
        out, err = bytearray(), bytearray()
        drains = [asyncio.ensure_future(self._drain(proc.stdout, out)),
                  asyncio.ensure_future(self._drain(proc.stderr, err))]
        timed_out = False
        try:
            # wait_for on the real process: a real process runs in real time, so the
            # timeout is wall-clock time, not the orchestrator's (possibly fake) clock.
            await asyncio.wait_for(proc.wait(), self.timeout)
        except TimeoutError:
            timed_out = True
        finally:
            await self._end(proc, spawn, cgroup)
            # Escaped processes (none in the jail) could hold the pipes: do not wait on them.
            _, pending = await asyncio.wait(drains, timeout=_GRACE)
            for task in pending:
                task.cancel()
        code = proc.returncode if proc.returncode is not None else -signal.SIGKILL
        if self.engine == "bubblewrap" and spawn.started is not None:
            code = _jail_exit(code, _read_started(spawn.started), err, timed_out)
        return _Ran(code, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"),
                    timed_out)

    async def _end(self, proc: asyncio.subprocess.Process, spawn: _Spawn,
                   cgroup: PidsCgroup | None) -> None:
        """Kill the whole tree: bwrap takes its pid namespace along; the supervisor sweeps
        its tree when its watch pipe closes; the cgroup catches whatever is left."""
        if spawn.watch is not None:
            spawn.close_watch()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(proc.wait()), _GRACE)
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        if cgroup is not None:
            cgroup.kill()
        # proc.wait() also waits for the pipes to close: a process that escaped the kill
        # (the fallback without a cgroup) would hold them forever. Bounded, like the drains.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(proc.wait()), _GRACE)

    async def _drain(self, stream: asyncio.StreamReader | None, into: bytearray) -> None:
        """Read a pipe to its end, keeping the tail so chatty code cannot eat our memory."""
        assert stream is not None
        while chunk := await stream.read(65536):
            into += chunk
            if len(into) > self.output_bytes:
                del into[: len(into) - self.output_bytes]


@dataclass(slots=True)
class _Spawn:
    """A command line and the pipe ends that go with it (each closed exactly once)."""

    argv: list[str]
    env: dict[str, str]
    child_fds: list[int]
    started: int | None
    """The jail's `started` pipe (read end): empty when bwrap failed to build the jail."""
    watch: int | None
    """The supervisor's watch pipe (write end): closing it ends the supervised tree."""
    shared_fds: tuple[int, ...] = ()
    """Passed to the child and owned by someone else (the cgroup's cgroup.procs)."""

    def close_child_fds(self) -> None:
        while self.child_fds:
            os.close(self.child_fds.pop())

    def close_watch(self) -> None:
        if self.watch is not None:
            fd, self.watch = self.watch, None
            os.close(fd)

    def close(self) -> None:
        self.close_child_fds()
        self.close_watch()
        if self.started is not None:
            fd, self.started = self.started, None
            os.close(fd)


@dataclass(frozen=True, slots=True)
class _Ran:
    returncode: int
    stdout: str
    stderr: str
    timed_out: bool


def _jail_exit(code: int, started: bool, stderr: bytearray, timed_out: bool) -> int:
    """bwrap's exit code as the code's own: 128+N (bwrap's report of signal N) is -N."""
    if not started and not timed_out:
        said = stderr.decode("utf-8", "replace").strip().splitlines()
        raise SandboxUnavailableError(
            f"bubblewrap did not start the code: {said[-1] if said else f'exit {code}'}",
            required=False)
    if code > 128 and (code - 128) in signal.valid_signals():
        return -(code - 128)
    return code


async def _finished(starting: asyncio.Future[asyncio.subprocess.Process]
                    ) -> asyncio.subprocess.Process:
    """The started process, even through further cancels (the caller re-raises one)."""
    while True:
        try:
            return await asyncio.shield(starting)
        except asyncio.CancelledError:
            if starting.cancelled():
                raise


def _passed(fd: int) -> tuple[int, ...]:
    return (fd,) if fd >= 0 else ()


def _read_started(fd: int) -> bool:
    """Whether the launcher wrote its byte (it did before the code ran, or never)."""
    try:
        return os.read(fd, 1) == b"1"
    except BlockingIOError:  # nothing written, and some process still holds the pipe
        return False


def _log_once(uncontained: tuple[str, ...]) -> None:
    global _logged
    if not _logged:
        _logged = True
        logger.warning("the jail does not contain %s: running as root without a writable "
                       "pids cgroup (see docs/security.md)",
                       "; ".join(ESCAPES[name] for name in uncontained))


def _warn_once(reason: str, uncontained: tuple[str, ...]) -> None:
    global _warned
    if _warned:
        return
    _warned = True
    gaps = "; ".join(ESCAPES[name] for name in uncontained)
    warnings.warn(
        f"generated code runs without a jail ({reason}). Not contained: {gaps}. "
        "Set TASKORCH_SANDBOX=require to refuse instead (see docs/security.md).",
        SandboxWarning, stacklevel=3,
    )
