from __future__ import annotations

import json
import subprocess
import sys

import pytest

import taskorch_nb


def test_all_matches_the_namespace() -> None:
    public = {n for n in dir(taskorch_nb) if not n.startswith("_")} - {"annotations"}
    modules = {n for n in public if type(getattr(taskorch_nb, n)).__name__ == "module"}
    assert set(taskorch_nb.__all__) == public - modules
    for name in taskorch_nb.__all__:
        assert getattr(taskorch_nb, name) is not None


def test_import_stays_light() -> None:
    code = (
        "import sys, json, taskorch_nb; "
        "print(json.dumps(sorted(m for m in ('pandas', 'plotly', 'ipywidgets', 'IPython', "
        "'langfuse', 'fastapi', 'mcp', 'sqlalchemy', 'uvicorn', 'httpx') if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_lazy_names_are_the_objects_of_their_modules() -> None:
    from taskorch_nb.notebook.magics import current_orchestrator
    from taskorch_nb.notebook.widgets import Dashboard
    from taskorch_nb.testing import FlakyTool, naive_retry_agent

    assert taskorch_nb.Dashboard is Dashboard
    assert taskorch_nb.current_orchestrator is current_orchestrator
    assert taskorch_nb.FlakyTool is FlakyTool
    assert taskorch_nb.naive_retry_agent is naive_retry_agent
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = taskorch_nb.nope


def test_the_analysis_helpers_have_one_home() -> None:
    from taskorch_nb.notebook import analysis
    from taskorch_nb.tracing import frames

    assert taskorch_nb.events_df is frames.events_df
    assert taskorch_nb.failures is analysis.failures
    assert set(analysis.__all__) == {"compare", "failures", "phase_durations"}


@pytest.mark.parametrize("name", ["events_df", "spans_df", "cost_df", "patterns_df", "history"])
def test_the_analysis_modules_old_reexports_warn(name: str) -> None:
    from taskorch_nb.notebook import analysis

    with pytest.warns(DeprecationWarning, match=rf"use taskorch_nb\.{name}"):
        old = getattr(analysis, name)
    assert old is getattr(taskorch_nb, name)
    with pytest.raises(AttributeError):
        _ = analysis.nope
