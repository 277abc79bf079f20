"""Shared fixtures of the agents' tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from taskorch_nb.agents.workspace import Workspace


@pytest.fixture
def make_ws(tmp_path: Path) -> Callable[[dict[str, str]], Workspace]:
    """A workspace in the test's tmp_path holding `files` (relative path -> text)."""

    def make(files: dict[str, str]) -> Workspace:
        ws = Workspace(tmp_path / "ws")
        for path, text in files.items():
            ws.write(path, text)
        return ws

    return make
