"""A `%%orchestrate` cell against the real server, in a real kernel through nbclient."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.llm_server import LlamaServer

pytestmark = [pytest.mark.llm_server, pytest.mark.slow]


def test_orchestrate_cell_runs_a_researcher_on_the_server(llama_server: LlamaServer,
                                                          tmp_path: Path) -> None:
    store = tmp_path / "taskorch.db"
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in (
        "%load_ext taskorch_nb",
        f"%config Orchestrate.base_url = '{llama_server.base_url}'\n"
        f"%config Orchestrate.model = '{llama_server.model}'\n"
        "%config Orchestrate.timeout = 300\n"
        "%config Orchestrate.deadline = 900\n"
        f"%config Orchestrate.store = '{store}'\n"
        "%config Orchestrate.dashboard = 'text'",
        "%%orchestrate --workflow single --archetype researcher -o run\n"
        "Summarise in two sentences what a CSV file is.",
        "import json\n"
        "print(json.dumps({'status': run.status.value, 'error': run.error,\n"
        "                  'spent': str(run.guard.spent), 'tokens': run.guard.tokens}))",
    )])
    NotebookClient(notebook, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    printed = "".join(o.get("text", "") for o in notebook.cells[-1].outputs
                      if o.output_type == "stream")
    result = json.loads(printed)
    assert result["status"] == "COMPLETED", result["error"]
    assert result["spent"] == "0"  # a model on this machine is free
    assert result["tokens"] > 0  # as the server reported them
    dashboard = "".join(o.get("text", "") for o in notebook.cells[2].outputs
                        if o.output_type == "stream")
    assert "run.completed" in dashboard
