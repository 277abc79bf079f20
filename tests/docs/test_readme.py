"""The README runs as pasted: its Python block as a notebook cell would run it (top-level
await), its notebook cells through a real IPython shell."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path
from typing import Any

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks(language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(README.read_text(encoding="utf-8"))
            if lang == language]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The store goes where TASKORCH_HOME says: a fresh folder, not the user's."""
    monkeypatch.setenv("TASKORCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "LANGFUSE_PUBLIC_KEY"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "home"


def test_the_readme_has_the_blocks_this_test_runs() -> None:
    assert len(blocks("python")) == 1
    assert len(blocks("ipython")) == 2


async def test_a_first_taste_runs_as_pasted(home: Path) -> None:
    [source] = blocks("python")
    code = compile(source, str(README), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    ns: dict[str, Any] = {}
    result = eval(code, ns)  # a notebook cell: top-level await gives a coroutine
    if inspect.iscoroutine(result):
        await result
    orch, run, small = ns["orch"], ns["run"], ns["small"]
    try:
        # What the comments in the block say.
        assert run.status == "COMPLETED", run.error
        assert f"${run.cost.spent:.2f} of ${run.cost.limit:.2f}" == "$0.60 of $5.00"
        assert small.status == "COMPLETED", small.error
        types = [e.type for e in small.events]
        assert types.index("run.paused") < types.index("run.resumed") < types.index(
            "run.completed")
        paused = next(e for e in small.events if e.type == "run.paused")
        assert "budget exceeded" in paused.detail["error"]
        assert orch.circuits["search_api"].state == "CLOSED"
        assert (home / "taskorch.db").exists()
    finally:
        orch.close()


def test_the_notebook_cells_run_as_pasted(home: Path) -> None:
    from IPython.core.interactiveshell import InteractiveShell

    from taskorch_nb import Run
    from taskorch_nb.notebook.magics import current_magics

    InteractiveShell.clear_instance()
    shell = InteractiveShell.instance()
    try:
        results = [shell.run_cell(cell) for cell in blocks("ipython")]
        for result in results:
            assert result.success, result.error_in_exec or result.error_before_exec
        run = results[-1].result
        assert isinstance(run, Run)
        assert run.task == "Add user authentication to billing-api"
        assert run.status == "COMPLETED", run.error
        assert run.cost.limit == 2
    finally:
        current_magics(shell).close()
        InteractiveShell.clear_instance()
