"""A real IPython shell with `%load_ext taskorch_nb`, an in-memory store and a fake clock."""

from __future__ import annotations

import pytest
from IPython.core.interactiveshell import InteractiveShell

from taskorch_nb.notebook.magics import current_magics


@pytest.fixture
def shell(tmp_path, monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TASKORCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    InteractiveShell.clear_instance()
    sh = InteractiveShell.instance()
    sh.run_line_magic("load_ext", "taskorch_nb")
    sh.run_line_magic("config", "Orchestrate.store = ':memory:'")
    sh.run_line_magic("config", "Orchestrate.clock = 'fake'")
    sh.run_line_magic("config", "Orchestrate.dashboard = 'text'")
    yield sh
    current_magics(sh).close()
    InteractiveShell.clear_instance()
