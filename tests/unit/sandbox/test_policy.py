"""What may reach sandboxed code: no secret variables, no writable directory that holds ours."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from taskorch_nb.errors import ConfigurationError, SandboxError
from taskorch_nb.sandbox.policy import (
    checked_env,
    inside,
    secret_dirs,
    secrets_under,
    writable_dir,
)


@pytest.fixture
def homes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A home and a TASKORCH_HOME of the test's own, outside each other."""
    home, store = tmp_path / "home", tmp_path / "store"
    home.mkdir()
    store.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("TASKORCH_HOME", str(store))
    return home, store


def test_plain_variables_pass_as_given() -> None:
    env = {"LANG": "C.UTF-8", "AUTHOR_NAME": "ada", "PYTHONHASHSEED": "0", "EMPTY": ""}
    assert checked_env(env) == env


@pytest.mark.parametrize("name", ["OPENAI_API_KEY", "ANTHROPIC_APIKEY", "GITHUB_TOKEN",
                                  "aws_secret_access_key", "DB_PASSWORD", "GCP_CREDENTIALS",
                                  "SSH_PRIVATE_KEY", "HTTP_AUTHORIZATION", "PROXY_AUTH"])
def test_a_secrets_name_is_refused_even_when_asked_for(name: str) -> None:
    with pytest.raises(ConfigurationError, match=rf"^sandbox env: '{name}' looks like a secret"):
        checked_env({"LANG": "C", name: "x"})


@pytest.mark.parametrize("env", [{"": "x"}, {"A=B": "x"}, {"A": 1}, {2: "x"}])
def test_what_is_not_a_variable_is_refused(env: dict) -> None:
    with pytest.raises(ConfigurationError, match="is not a variable"):
        checked_env(env)


@pytest.mark.parametrize(("path", "parent", "answer"), [
    ("/a/b", "/a/b", True), ("/a/b/c", "/a/b", True), ("/a/b/c", "/a/b/", True),
    ("/a/bc", "/a/b", False), ("/a", "/a/b", False), ("/anything", "/", True),
])
def test_inside_compares_whole_path_parts(path: str, parent: str, answer: bool) -> None:
    assert inside(path, parent) is answer


def test_secret_dirs_are_the_home_and_the_store(homes: tuple[Path, Path]) -> None:
    home, store = homes
    assert secret_dirs() == [os.path.realpath(home), os.path.realpath(store)]


def test_a_workspace_of_its_own_is_writable(homes: tuple[Path, Path], tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    link = tmp_path / "link"
    link.symlink_to(work)
    assert writable_dir(link) == Path(os.path.realpath(work))  # the real path is what binds


def test_a_directory_holding_ours_is_refused(homes: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match=r"which the code may not write"):
        writable_dir(tmp_path)  # holds the home and the store
    with pytest.raises(SandboxError, match=r"it contains /,"):
        writable_dir("/")
    with pytest.raises(SandboxError, match=r"it contains"):
        writable_dir(sys.prefix)  # the interpreter the jail runs


def test_what_is_not_a_directory_is_refused(homes: tuple[Path, Path], tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    for path in (tmp_path / "file", tmp_path / "missing"):
        with pytest.raises(SandboxError, match="not a directory"):
            writable_dir(path)


def test_secrets_under_finds_ours_below_a_read_only_bind(homes: tuple[Path, Path],
                                                         tmp_path: Path) -> None:
    home, store = homes
    real = [os.path.realpath(home), os.path.realpath(store)]
    assert secrets_under([os.path.realpath(tmp_path)]) == real
    assert secrets_under([real[0]]) == []  # the bind is the home itself, not above it
    assert secrets_under(["/usr"]) == []

