"""The sandbox against hostile code: one program per escape of issue 14, under each engine.

Every escape test runs twice: in the jail (`bubblewrap`), where each must be
contained, and under the fallback (`rlimits`), where the table `left_open` says
which are not, on this machine (root or not, pids cgroup or not). A result that
differs from the table fails either way: the fallback is measured, never skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
import warnings
from pathlib import Path

import pytest

from taskorch_nb import FakeClock, Orchestrator
from taskorch_nb.agents.qc import run_qc
from taskorch_nb.agents.testrunner import check_runner
from taskorch_nb.agents.workspace import Workspace
from taskorch_nb.core.store import Store
from taskorch_nb.errors import ConfigurationError, SandboxError, SandboxUnavailableError
from taskorch_nb.sandbox import ESCAPES, Sandbox, SandboxWarning, jail
from taskorch_nb.sandbox.limits import pids_cgroup_base
from tests.unit.procs import processes_with, wait_until_gone, wait_until_running

ENGINES = ["bubblewrap", "rlimits"]
MODE = {"bubblewrap": "require", "rlimits": "off"}
ROOT = os.geteuid() == 0


def left_open(engine: str) -> set[str]:
    """The escapes `engine` does not contain here: the table of docs/security.md."""
    opened: set[str] = set()
    if engine == "rlimits":
        opened |= {"parent_environ", "taskorch_store", "write_outside", "network"}
        if ROOT:  # a user's own permissions keep /etc/shadow closed
            opened.add("system_secrets")
        if sys.platform != "linux":  # no child subreaper to collect setsid orphans
            opened.add("setsid_child")
    if ROOT and pids_cgroup_base() is None:  # RLIMIT_NPROC does not hold for root
        opened.add("fork_bomb")
    return opened


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    if request.param == "bubblewrap" and sys.platform != "linux":
        pytest.skip("bubblewrap is Linux only; the fallback runs the same programs")
    return request.param


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    path = tmp_path / "ws"
    path.mkdir()
    return path


def box(ws: Path, engine: str, **options) -> Sandbox:
    options.setdefault("timeout", 30)
    options.setdefault("memory_mb", 512)
    sandbox = Sandbox(ws, mode=MODE[engine], **options)
    assert sandbox.engine == engine
    return sandbox


async def hostile(ws: Path, engine: str, source: str, *args: str, **options):
    (ws / "hostile.py").write_text(textwrap.dedent(source))
    return await box(ws, engine, **options).run([sys.executable, "hostile.py", *args])


def test_the_table_is_what_the_sandbox_reports(ws: Path, engine: str) -> None:
    assert set(box(ws, engine).uncontained) == left_open(engine)
    assert set(ESCAPES) >= left_open(engine)


# -- one hostile program per escape ----------------------------------------------------

DRIVER = """\
import asyncio, json, sys
from taskorch_nb.sandbox import Sandbox
ws, mode, *argv = sys.argv[1:]
result = asyncio.run(Sandbox(ws, timeout=600, memory_mb=512, mode=mode).run(argv))
print(json.dumps({"returncode": result.returncode, "stdout": result.stdout,
                  "stderr": result.stderr}))
"""

READ_ENVIRONS = """\
import os, sys
found = set()
for entry in os.listdir("/proc"):
    if entry.isdigit():
        try:
            data = open(f"/proc/{entry}/environ", "rb").read()
        except OSError:
            continue
        for item in data.split(b"\\0"):
            if b"sk-sandbox-probe-" in item:
                found.add(item.decode())
print(sorted(found))
"""


def test_the_api_key_in_the_parents_environ(ws: Path, engine: str) -> None:
    # /proc/<pid>/environ shows a process's environment as it started: the key must be
    # in the orchestrator's own start-up environment, so the orchestrator is a process.
    secret = f"sk-sandbox-probe-{uuid.uuid4().hex}"
    (ws / "hostile.py").write_text(READ_ENVIRONS)
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, str(ws), MODE[engine], sys.executable, "hostile.py"],
        env={**os.environ, "OPENAI_API_KEY": secret}, capture_output=True, text=True,
        timeout=120, check=True,
    )
    result = json.loads(done.stdout)
    assert result["returncode"] == 0, result["stderr"]
    assert (secret in result["stdout"]) == ("parent_environ" in left_open(engine))


async def test_etc_shadow(ws: Path, engine: str) -> None:
    result = await hostile(ws, engine, """\
        try:
            print("READ", len(open("/etc/shadow").read()))
        except OSError as exc:
            print("refused", type(exc).__name__)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("READ") == ("system_secrets" in left_open(engine))
    if engine == "bubblewrap":
        assert result.stdout.strip() == "refused FileNotFoundError"  # not even there


async def test_the_taskorch_store(ws: Path, engine: str, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home" / ".taskorch"
    home.mkdir(parents=True)
    monkeypatch.setenv("TASKORCH_HOME", str(home))
    db = home / "taskorch.db"
    Store(db).close()
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    result = await hostile(ws, engine, """\
        import sys
        got = []
        try:
            got.append(f"read {len(open(sys.argv[1], 'rb').read())} bytes")
            with open(sys.argv[1], "ab") as db:
                db.write(b"tampered")
            got.append("wrote")
        except OSError as exc:
            got.append(type(exc).__name__)
        print(got)
    """, str(db))
    assert result.returncode == 0, result.stderr
    reached = "read" in result.stdout
    assert reached == ("taskorch_store" in left_open(engine))
    assert (hashlib.sha256(db.read_bytes()).hexdigest() != before) == reached


async def test_writing_outside_the_workspace(ws: Path, engine: str, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / "pwned.txt"
    result = await hostile(ws, engine, """\
        import sys
        for path in sys.argv[1:]:
            try:
                open(path, "w").write("pwned")
                print("wrote", path)
            except OSError as exc:
                print("refused", path, type(exc).__name__)
    """, str(target), str(ws / "inside.txt"))
    assert result.returncode == 0, result.stderr
    assert target.exists() == ("write_outside" in left_open(engine))
    assert (ws / "inside.txt").read_text() == "pwned"  # the workspace is the place to write


async def tcp_probe(ws: Path, engine: str, **options) -> tuple[list[bytes], str]:
    heard: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heard.append(await reader.read(100))
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        result = await hostile(ws, engine, """\
            import socket, sys
            try:
                with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5) as s:
                    s.sendall(b"escaped")
                print("connected")
            except OSError as exc:
                print("refused", type(exc).__name__)
        """, str(port), **options)
        for _ in range(100):  # the handler runs on this loop: let it read what came
            if heard or "connected" not in result.stdout:
                break
            await asyncio.sleep(0.01)
    assert result.returncode == 0, result.stderr
    return heard, result.stdout


async def test_tcp_to_127_0_0_1(ws: Path, engine: str) -> None:
    heard, said = await tcp_probe(ws, engine)
    assert (heard == [b"escaped"]) == ("network" in left_open(engine)), said


async def test_network_true_lets_the_code_connect(ws: Path, engine: str) -> None:
    heard, said = await tcp_probe(ws, engine, network=True)
    assert heard == [b"escaped"], said


async def test_a_setsid_child_does_not_survive_the_run(ws: Path, engine: str) -> None:
    marker = f"taskorch-setsid-{uuid.uuid4().hex}"
    try:
        result = await hostile(ws, engine, """\
            import subprocess, sys
            subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", sys.argv[1]],
                             start_new_session=True)
            print("started")
        """, marker)
        assert result.stdout.strip() == "started", result.stderr
        assert wait_until_gone(marker) != ("setsid_child" in left_open(engine))
    finally:
        _kill(marker)


# A caller killed with -9: tests/unit/sandbox/test_caller_death.py.


async def test_a_fork_bomb_is_bounded(ws: Path, engine: str) -> None:
    # Bounded by construction: at most 200 sleeping children, whatever contains it.
    result = await hostile(ws, engine, """\
        import os, time
        born = 0
        for _ in range(200):
            try:
                pid = os.fork()
            except OSError:
                break
            if pid == 0:
                time.sleep(30)
                os._exit(0)
            born += 1
        print(born)
    """, max_processes=16, timeout=20)
    assert result.returncode == 0, result.stderr
    born = int(result.stdout)
    assert (born == 200) == ("fork_bomb" in left_open(engine))
    if engine == "bubblewrap" and "fork_bomb" not in left_open(engine):
        assert born < 16


async def test_the_runner_check_runs_its_interpreter_in_the_sandbox(tmp_path: Path,
                                                                     engine: str) -> None:
    # QC may be pointed at any interpreter (run_qc(python=...)): asking it for its
    # pytest version runs it, so that goes through the same sandbox as the tests.
    outside = tmp_path / "outside.txt"
    python = tmp_path / "fake" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f"#!/bin/sh\necho pwned > {outside}\necho 'pytest 9.9.9'\n")
    python.chmod(0o755)
    runner = await check_runner(str(python), sandbox=MODE[engine])
    assert runner.version == "pytest 9.9.9"
    assert outside.exists() == ("write_outside" in left_open(engine))


# -- the run itself: timeout, exits, limits, output ------------------------------------


async def test_the_timeout_kills_the_whole_tree(ws: Path, engine: str) -> None:
    marker = f"taskorch-timeout-{uuid.uuid4().hex}"
    try:
        result = await hostile(ws, engine, """\
            import subprocess, sys, time
            subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", sys.argv[1]])
            print("started", flush=True)
            time.sleep(600)
        """, marker, timeout=3)
        assert result.timed_out
        assert result.returncode < 0
        assert result.stdout == "started\n"
        assert wait_until_gone(marker)
    finally:
        _kill(marker)


async def test_a_cancelled_run_leaves_nothing(ws: Path, engine: str) -> None:
    marker = f"taskorch-cancel-{uuid.uuid4().hex}"
    (ws / "hostile.py").write_text(f"import time\ntime.sleep(600)  # {marker}\n")
    task = asyncio.ensure_future(box(ws, engine).run([sys.executable, "hostile.py", marker]))
    try:
        assert await asyncio.to_thread(wait_until_running, marker)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert wait_until_gone(marker)
    finally:
        _kill(marker)


async def test_a_run_cancelled_while_it_starts_leaves_nothing(
    ws: Path, engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The code already runs while asyncio still wires the pipes (held here until the
    # cancel): asyncio's own clean-up of a cancel there kills the first process alone
    # and waits for the pipes the code still holds, forever.
    marker = f"taskorch-starting-{uuid.uuid4().hex}"
    code = [sys.executable, "-c",
            "import pathlib, time; pathlib.Path('started').touch(); time.sleep(600)", marker]
    loop, release = asyncio.get_running_loop(), asyncio.Event()
    connect = loop.connect_read_pipe

    async def held(*args: object, **kwargs: object) -> object:
        await release.wait()
        return await connect(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(loop, "connect_read_pipe", held)
    task = asyncio.ensure_future(box(ws, engine).run(code))
    try:
        for _ in range(1500):  # the code has started (30 s at most)
            if (ws / "started").exists():
                break
            await asyncio.sleep(0.02)
        assert (ws / "started").exists()
        task.cancel()
        release.set()
        done, _ = await asyncio.wait([task], timeout=60)  # a hang fails, it does not block
        assert done, "the cancelled run never ended"
        assert task.cancelled()
        assert wait_until_gone(marker)
    finally:
        release.set()
        _kill(marker)


async def test_exit_codes_and_signals_are_the_codes(ws: Path, engine: str) -> None:
    sandbox = box(ws, engine)
    exited = await sandbox.run([sys.executable, "-c", "import sys; sys.exit(3)"])
    killed = await sandbox.run([sys.executable, "-c", "import os; os.kill(os.getpid(), 15)"])
    missing = await sandbox.run(["no-such-program-here"])
    assert (exited.returncode, exited.timed_out) == (3, False)
    assert killed.returncode == -signal.SIGTERM
    assert missing.returncode == 127
    assert "cannot run 'no-such-program-here'" in missing.stderr
    assert exited.engine == engine
    assert exited.seconds > 0


async def test_limits_hold(ws: Path, engine: str) -> None:
    sandbox = box(ws, engine, memory_mb=128, max_file_mb=1, max_open_files=32, cpu_seconds=1)
    memory = await sandbox.run([sys.executable, "-c", "bytearray(512 * 1024 * 1024)"])
    big = await sandbox.run([sys.executable, "-c", "open('big', 'wb').write(bytes(2 << 20))"])
    files = await sandbox.run([sys.executable, "-c", "[open('f', 'w') for _ in range(100)]"])
    spin = await sandbox.run([sys.executable, "-c", "while True: pass"])
    assert "MemoryError" in memory.stderr
    assert "File too large" in big.stderr
    assert "Too many open files" in files.stderr
    assert spin.returncode in (-signal.SIGXCPU, -signal.SIGKILL)
    assert not spin.timed_out


async def test_the_environment_is_an_allow_list(ws: Path, engine: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-never")
    sandbox = box(ws, engine, env={"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"})
    result = await sandbox.run([sys.executable, "-c",
                                "import json, os; print(json.dumps(dict(os.environ)))"])
    seen = json.loads(result.stdout)
    assert set(seen) - {"PWD"} == {"PATH", "HOME", "TMPDIR", "LANG", "PYTHONDONTWRITEBYTECODE",
                                   "PYTHONHASHSEED", "PYTHONNOUSERSITE",
                                   "PYTEST_DISABLE_PLUGIN_AUTOLOAD"}
    assert seen["HOME"] != os.path.expanduser("~")
    with pytest.raises(ConfigurationError, match="looks like a secret"):
        Sandbox(ws, timeout=5, memory_mb=64, env={"OPENAI_API_KEY": "x"})


async def test_the_jail_has_a_private_tmp(ws: Path, tmp_path: Path) -> None:
    if sys.platform != "linux":
        pytest.skip("bubblewrap is Linux only")
    name = f"taskorch-private-{uuid.uuid4().hex}"
    result = await box(ws, "bubblewrap").run(
        [sys.executable, "-c", f"open('/tmp/{name}', 'w').write('x'); print('ok')"])
    assert result.stdout == "ok\n"
    assert not (Path("/tmp") / name).exists()


async def test_output_keeps_the_tail(ws: Path, engine: str) -> None:
    result = await box(ws, engine, output_bytes=1000).run(
        [sys.executable, "-c", "print('x' * 100_000 + 'END')"])
    assert len(result.stdout) <= 1000
    assert result.stdout.endswith("END\n")


# -- settings and bad input -------------------------------------------------------------


@pytest.fixture
def no_jail(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine without bubblewrap: TASKORCH_BWRAP names no binary."""
    monkeypatch.setenv("TASKORCH_BWRAP", "")
    monkeypatch.setattr(jail, "_warned", False)


def test_without_a_jail_auto_warns_once_naming_the_gaps(ws: Path, no_jail: None) -> None:
    with pytest.warns(SandboxWarning) as caught:
        sandbox = Sandbox(ws, timeout=5, memory_mb=64)
    assert sandbox.engine == "rlimits"
    message = str(caught[0].message)
    assert "no bwrap binary" in message
    for name in sandbox.uncontained:
        assert ESCAPES[name] in message
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Sandbox(ws, timeout=5, memory_mb=64)  # once per process: no second warning
        Sandbox(ws, timeout=5, memory_mb=64, mode="off")


def test_require_refuses_without_a_jail(ws: Path, no_jail: None,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SandboxUnavailableError, match="no bwrap binary"):
        Sandbox(ws, timeout=5, memory_mb=64, mode="require")
    with pytest.raises(SandboxUnavailableError, match="TASKORCH_SANDBOX=require"):
        Orchestrator(store=":memory:", sandbox="require")
    monkeypatch.setenv("TASKORCH_SANDBOX", "require")
    with pytest.raises(SandboxUnavailableError):
        Sandbox(ws, timeout=5, memory_mb=64)
    with pytest.raises(SandboxUnavailableError):
        Orchestrator(store=":memory:")


async def test_qc_under_require_refuses_to_run_without_a_jail(ws: Path, no_jail: None) -> None:
    (ws / "test_x.py").write_text("def test_x():\n    pass\n")
    with pytest.raises(SandboxUnavailableError):
        await run_qc(Workspace(ws), timeout=30, sandbox="require")
    verdict = await run_qc(Workspace(ws), timeout=30, sandbox="off")
    assert (verdict.sandbox, verdict.tests_passed) == ("rlimits", 1)


async def test_the_orchestrators_mode_reaches_qc(tmp_path: Path) -> None:
    orch = Orchestrator(store=":memory:", clock=FakeClock(), sandbox="off")
    try:
        run = await orch.run("Add user authentication", workspace=tmp_path / "ws")
    finally:
        orch.close()
    verdicts = [e.detail for e in run.events if e.type in ("qc.failed", "qc.passed")]
    assert [v["sandbox"] for v in verdicts] == ["rlimits", "rlimits"]
    assert verdicts[-1]["approved"]


def test_bad_modes_are_refused(ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="sandbox='jail'"):
        Sandbox(ws, timeout=5, memory_mb=64, mode="jail")
    monkeypatch.setenv("TASKORCH_SANDBOX", "strict")
    with pytest.raises(ConfigurationError, match="TASKORCH_SANDBOX='strict'"):
        Orchestrator(store=":memory:")


def test_directories_that_hold_our_things_are_refused(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKORCH_HOME", str(tmp_path / "state" / ".taskorch"))
    (tmp_path / "state" / ".taskorch").mkdir(parents=True)
    for path in ["/", tmp_path / "state", sys.prefix]:
        with pytest.raises(SandboxError):
            Sandbox(path, timeout=5, memory_mb=64, mode="off")
    with pytest.raises(SandboxError, match="not a directory"):
        Sandbox(tmp_path / "missing", timeout=5, memory_mb=64, mode="off")
    with pytest.raises(ValueError, match="memory_mb must be a positive integer"):
        Sandbox(tmp_path, timeout=5, memory_mb=0, mode="off")


async def test_a_cwd_outside_the_workspace_is_refused(ws: Path, tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="must be in the workspace"):
        await box(ws, "rlimits").run(["true"], cwd=tmp_path)


async def test_a_jail_that_cannot_start_says_why(ws: Path, tmp_path: Path) -> None:
    if sys.platform != "linux":
        pytest.skip("bubblewrap is Linux only")
    extra = tmp_path / "extra"
    extra.mkdir()
    sandbox = box(ws, "bubblewrap", writable=[extra])
    extra.rmdir()  # gone between the check and the run: bwrap cannot bind it
    with pytest.raises(SandboxUnavailableError, match="bubblewrap did not start the code"):
        await sandbox.run([sys.executable, "-c", "pass"])


def _kill(marker: str) -> None:
    """Clean up after an escape the table allows, so no test leaves a process behind."""
    for pid in processes_with(marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
