"""The jail's command line and its bwrap: which binaries are tried, what the jail binds,
masks and unshares, and which interpreter directories it must show."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from taskorch_nb.sandbox import jail_status
from taskorch_nb.sandbox.bubblewrap import (
    ETC_NETWORK,
    bwrap_candidates,
    interpreter_paths,
    jail_argv,
    probe_jail,
)
from taskorch_nb.sandbox.policy import inside

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="bubblewrap is Linux only")


def argv(**options: object) -> list[str]:
    kwargs: dict = {"writable": ["/ws"], "readable": ["/opt/py"], "masked": [],
                    "cwd": "/ws", "network": False, "tmp_bytes": 1024}
    return jail_argv("bwrap", **{**kwargs, **options})


def pairs(args: list[str], option: str) -> list[tuple[str, str]]:
    """The (source, destination) of every `option SRC DEST` in `args`."""
    return [(args[i + 1], args[i + 2]) for i, a in enumerate(args) if a == option]


def test_the_jail_unshares_everything_and_dies_with_its_parent() -> None:
    args = argv()
    assert args[0] == "bwrap"
    for option in ("--unshare-user", "--unshare-pid", "--unshare-net", "--disable-userns",
                   "--die-with-parent", "--new-session"):
        assert option in args
    assert args[args.index("--cap-drop") + 1] == "ALL"
    assert args[-2:] == ["--chdir", "/ws"]
    assert ("/ws", "/ws") in pairs(args, "--bind")
    assert ("/opt/py", "/opt/py") in pairs(args, "--ro-bind")
    assert [args[i - 1] for i, a in enumerate(args) if a == "--tmpfs"] == ["1024", "1024"]


def test_network_keeps_the_net_namespace_and_adds_name_resolution() -> None:
    closed, opened = argv(), argv(network=True)
    assert "--unshare-net" not in opened
    resolv = ("/etc/resolv.conf", "/etc/resolv.conf")
    assert resolv in pairs(opened, "--ro-bind-try")
    assert not {p for p, _ in pairs(closed, "--ro-bind-try")} & set(ETC_NETWORK)


def test_masked_paths_are_hidden_under_an_empty_tmpfs() -> None:
    args = argv(masked=["/opt/py/secrets"])
    tmpfs = [args[i + 1] for i, a in enumerate(args) if a == "--tmpfs"]
    assert tmpfs == ["/tmp", "/dev/shm", "/opt/py/secrets"]
    # after the bind it hides: bwrap applies the options in order
    assert args.index("/opt/py/secrets") > args.index("/opt/py")


def test_candidates_follow_taskorch_bwrap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKORCH_BWRAP", "")
    assert bwrap_candidates() == ()
    plain = tmp_path / "bwrap"
    plain.write_text("#!/bin/sh\n")
    monkeypatch.setenv("TASKORCH_BWRAP", str(plain))
    assert bwrap_candidates() == ()  # not executable
    plain.chmod(0o755)
    assert bwrap_candidates() == (str(plain),)
    monkeypatch.delenv("TASKORCH_BWRAP")
    found = bwrap_candidates()
    assert len(found) == len(set(found))
    assert all(os.access(path, os.X_OK) for path in found)


def test_this_interpreter_brings_its_prefixes() -> None:
    paths = interpreter_paths(sys.executable)
    for prefix in {sys.prefix, sys.base_prefix}:
        real = os.path.realpath(prefix)
        assert real.startswith("/usr/") or any(inside(real, p) for p in paths), prefix
    assert not [p for p in paths if p == "/usr" or p.startswith("/usr/")]  # bound anyway


def test_another_venv_brings_itself_and_its_home(tmp_path: Path) -> None:
    base = tmp_path / "base"
    (base / "bin").mkdir(parents=True)
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("")
    (venv / "pyvenv.cfg").write_text(f"home = {base / 'bin'}\nversion = 3.11\n")
    assert sorted(interpreter_paths(str(venv / "bin" / "python"))) == sorted(
        [str(base.resolve()), str(venv.resolve())])
    (venv / "inner" / "bin").mkdir(parents=True)
    inner = venv / "inner" / "bin" / "python"
    assert interpreter_paths(str(inner)) == [str((venv / "inner").resolve())]
    both = interpreter_paths(str(venv / "bin" / "python"), str(inner))
    assert sorted(both) == sorted([str(base.resolve()), str(venv.resolve())])  # inner: inside


@linux_only
def test_a_bwrap_that_fails_gives_way_to_the_next() -> None:
    working = jail_status().bwrap
    assert working is not None
    probe = probe_jail(("/bin/false", working))
    assert (probe.ok, probe.bwrap) == (True, working)
    refused = probe_jail(("/bin/false",))
    assert not refused.ok
    assert refused.reason == "/bin/false failed: exit 1"
    assert probe_jail(()).reason.startswith("no bwrap binary")
