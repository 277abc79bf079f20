from __future__ import annotations

import json
import subprocess
import sys

import taskorch_nb


def test_all_matches_the_namespace() -> None:
    public = {n for n in vars(taskorch_nb) if not n.startswith("_")} - {"annotations"}
    modules = {n for n in public if type(getattr(taskorch_nb, n)).__name__ == "module"}
    assert set(taskorch_nb.__all__) == public - modules
    for name in taskorch_nb.__all__:
        assert getattr(taskorch_nb, name) is not None


def test_import_stays_light() -> None:
    code = (
        "import sys, json, taskorch_nb; "
        "print(json.dumps(sorted(m for m in ('pandas', 'plotly', 'ipywidgets', 'IPython', "
        "'langfuse', 'fastapi', 'mcp', 'sqlalchemy', 'uvicorn') if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
