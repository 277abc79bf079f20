"""The workspace sandbox: file tools work inside, and no path can leave it."""

from __future__ import annotations

import inspect
import os
import re
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskorch_nb.agents.workspace import Workspace
from taskorch_nb.errors import (
    ConfigurationError,
    SandboxError,
    ToolArgumentsError,
    WorkflowError,
)


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path / "ws")


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory next to the workspace, with a secret the sandbox must not reach."""
    out = tmp_path / "outside"
    out.mkdir()
    (out / "secret.txt").write_text("top secret", encoding="utf-8")
    return out


def test_default_root_is_a_fresh_temp_dir() -> None:
    first, second = Workspace(), Workspace()
    try:
        assert first.root.is_dir()
        assert first.root.name.startswith("taskorch-")
        assert first.root != second.root
    finally:
        shutil.rmtree(first.root)
        shutil.rmtree(second.root)


def test_given_root_is_created(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "a" / "b")
    assert ws.root == (tmp_path / "a" / "b").resolve()
    assert ws.root.is_dir()


def test_a_later_workspace_makes_its_folder_on_the_first_write_only(tmp_path: Path) -> None:
    ws = Workspace.later(tmp_path / "run-1")
    assert ws.list() == []
    assert ws.search("x") == []
    with pytest.raises(FileNotFoundError):
        ws.read("a.txt")
    assert not ws.root.exists()  # reading and listing make nothing
    ws.write("src/a.txt", "x")
    assert ws.root.is_dir()
    assert ws.list() == ["src/a.txt"]


def test_a_later_workspace_refuses_a_symlink_put_where_its_folder_goes(
        tmp_path: Path, outside: Path) -> None:
    ws = Workspace.later(tmp_path / "run-1")
    (tmp_path / "run-1").symlink_to(outside, target_is_directory=True)
    with pytest.raises(SandboxError, match="symlink"):
        ws.write("a.txt", "x")
    assert not (outside / "a.txt").exists()


def test_write_then_read_creates_parents_and_counts_bytes(ws: Workspace) -> None:
    assert ws.write("pkg/sub/mod.py", "x = 'héllo'\n") == len("x = 'héllo'\n".encode())
    assert (ws.root / "pkg" / "sub" / "mod.py").is_file()
    assert ws.read("pkg/sub/mod.py") == "x = 'héllo'\n"
    assert ws.read("./pkg/../pkg/sub/mod.py") == "x = 'héllo'\n"
    ws.write("pkg/sub/mod.py", "y = 1\n")
    assert ws.read("pkg/sub/mod.py") == "y = 1\n"


def test_read_cuts_large_files_with_a_marker(ws: Workspace) -> None:
    ws.write("big.txt", "a" * 100)
    text = ws.read("big.txt", max_bytes=10)
    assert text.startswith("a" * 10 + "\n[... truncated: big.txt has 100 bytes")


def test_read_missing_file_raises(ws: Workspace) -> None:
    with pytest.raises(FileNotFoundError):
        ws.read("nope.txt")


def test_list_is_recursive_sorted_relative_and_skips_caches(ws: Workspace) -> None:
    for name in ["b.py", "a/z.py", "a/b/c.txt", "__pycache__/x.pyc", ".git/HEAD"]:
        ws.write(name, "")
    assert ws.list() == ["a/b/c.txt", "a/z.py", "b.py"]
    assert ws.list("a/b") == ["a/b/c.txt"]
    assert ws.list("b.py") == ["b.py"]
    with pytest.raises(FileNotFoundError):
        ws.list("missing")


def test_search_finds_lines_by_regex(ws: Workspace) -> None:
    ws.write("app.py", "import os\n\ndef login(user):\n    return user\n")
    ws.write("tests/test_app.py", "from app import login\n\ndef test_login():\n    pass\n")
    ws.write("blob.bin", "login\x00binary")
    assert ws.search(r"def \w+\(") == [
        {"path": "app.py", "line": 3, "text": "def login(user):"},
        {"path": "tests/test_app.py", "line": 3, "text": "def test_login():"},
    ]
    assert [h["path"] for h in ws.search("login", "tests")] == ["tests/test_app.py"] * 2
    assert len(ws.search("login", max_results=1)) == 1


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("../x", "'..' would leave the workspace"),
        ("a/../../x", "'..' would leave the workspace"),
        ("a/b/../../../etc/passwd", "'..' would leave the workspace"),
        ("/etc/passwd", "absolute paths are not allowed"),
        ("//etc/passwd", "absolute paths are not allowed"),
        ("x\x00y", "NUL byte"),
        ("", "empty path"),
        ("   ", "empty path"),
    ],
)
def test_paths_that_leave_are_refused(ws: Workspace, path: str, reason: str) -> None:
    with pytest.raises(SandboxError, match=re.escape(reason)) as info:
        ws.resolve(path)
    assert info.value.path == path
    assert isinstance(info.value, PermissionError)
    assert isinstance(info.value, WorkflowError)
    with pytest.raises(SandboxError):
        ws.write(path, "pwned")
    assert not (ws.root.parent / "x").exists()


def test_dotdot_that_stays_inside_is_fine(ws: Workspace) -> None:
    assert ws.resolve("a/../b") == ws.root / "b"
    assert ws.resolve(".") == ws.root


def test_directory_symlink_pointing_outside_is_refused(ws: Workspace, outside: Path) -> None:
    os.symlink(outside, ws.root / "link")
    for op in (
        lambda: ws.read("link/secret.txt"),
        lambda: ws.write("link/new.txt", "pwned"),
        lambda: ws.list("link"),
    ):
        with pytest.raises(SandboxError, match="symlink 'link' points outside the workspace"):
            op()
    assert not (outside / "new.txt").exists()


def test_file_symlink_pointing_outside_is_refused(ws: Workspace, outside: Path) -> None:
    os.symlink(outside / "secret.txt", ws.root / "notes.txt")
    with pytest.raises(SandboxError, match="points outside"):
        ws.read("notes.txt")
    with pytest.raises(SandboxError, match="points outside"):
        ws.write("notes.txt", "pwned")
    assert (outside / "secret.txt").read_text(encoding="utf-8") == "top secret"
    assert ws.list() == []  # the escaping link is not even listed


def test_relative_and_dangling_symlinks_outside_are_refused(ws: Workspace, outside: Path) -> None:
    os.symlink("../outside", ws.root / "rel")
    os.symlink(outside / "not-yet.txt", ws.root / "dangling")
    with pytest.raises(SandboxError, match="points outside"):
        ws.read("rel/secret.txt")
    with pytest.raises(SandboxError, match="points outside"):
        ws.write("dangling", "pwned")
    assert not (outside / "not-yet.txt").exists()


def test_symlink_chains_and_loops(ws: Workspace, outside: Path) -> None:
    os.symlink(outside, ws.root / "hop2")
    os.symlink("hop2", ws.root / "hop1")  # inside -> inside -> outside
    with pytest.raises(SandboxError, match="points outside"):
        ws.read("hop1/secret.txt")
    os.symlink("loop_b", ws.root / "loop_a")
    os.symlink("loop_a", ws.root / "loop_b")
    with pytest.raises(SandboxError, match="loop"):
        ws.read("loop_a")


def test_symlinks_that_stay_inside_work(ws: Workspace) -> None:
    ws.write("real/data.txt", "inside")
    os.symlink(ws.root / "real", ws.root / "alias")
    assert ws.read("alias/data.txt") == "inside"
    assert ws.resolve("alias/../real/data.txt") == ws.root / "real" / "data.txt"


@pytest.fixture(scope="module")
def property_ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    ws = Workspace(tmp_path_factory.mktemp("property") / "ws")
    ws.write("a/b/c.txt", "")
    return ws


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "..", ".", "c.txt"]), min_size=1, max_size=8))
def test_any_relative_path_resolves_inside_or_is_refused(
    property_ws: Workspace, parts: list[str]
) -> None:
    """Without symlinks, resolve is the lexical normal form, or a refusal when '..' climbs out."""
    stack: list[str] = []
    escapes = False
    for part in parts:
        if part == "..":
            if not stack:
                escapes = True
                break
            stack.pop()
        elif part != ".":
            stack.append(part)
    path = "/".join(parts)
    if escapes:
        with pytest.raises(SandboxError, match=r"'\.\.' would leave"):
            property_ws.resolve(path)
    else:
        assert property_ws.resolve(path) == property_ws.root.joinpath(*stack)


def test_tool_functions_are_typed_documented_and_bound(ws: Workspace) -> None:
    tools = ws.tool_functions()
    assert set(tools) == {"list_files", "read_file", "write_file", "search_files"}
    for fn in tools.values():
        sig = inspect.signature(fn, eval_str=True)
        assert fn.__doc__
        assert all(p.annotation is str for p in sig.parameters.values())
    assert tools["write_file"](path="src/m.py", content="VALUE = 1\n") == (
        "wrote 10 bytes to src/m.py"
    )
    assert tools["list_files"]() == ["src/m.py"]
    assert tools["read_file"]("src/m.py") == "VALUE = 1\n"
    assert tools["search_files"]("VALUE") == [{"path": "src/m.py", "line": 1, "text": "VALUE = 1"}]
    with pytest.raises(ToolArgumentsError, match="invalid regex"):
        tools["search_files"]("(")
    with pytest.raises(SandboxError):
        tools["read_file"]("../../etc/passwd")


@pytest.mark.parametrize("inside", ["", "sub"], ids=["is-a-file", "under-a-file"])
def test_a_root_that_cannot_be_a_directory_is_a_configuration_error(
        tmp_path: Path, inside: str) -> None:
    file = tmp_path / "hostname"
    file.write_text("box\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match=r"workspace .*hostname.* not a directory"):
        Workspace(file / inside if inside else file)
    assert file.read_text(encoding="utf-8") == "box\n"
