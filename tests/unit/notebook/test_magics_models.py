"""`%config Orchestrate.base_url / api_key / timeout / deadline`: the magic on a real server."""

from __future__ import annotations

import pytest
from traitlets import TraitError

from taskorch_nb import RunStatus
from taskorch_nb.notebook.magics import current_magics, current_orchestrator
from tests.unit.llm_servers import closed_port


@pytest.fixture
def shell(shell):
    shell.run_line_magic("config", "Orchestrate.dashboard = 'none'")
    return shell


def test_base_url_settings_build_an_openai_orchestrator(shell) -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1"
    shell.run_line_magic("config", f"Orchestrate.base_url = '{url}'")
    shell.run_line_magic("config", "Orchestrate.api_key = 'local'")
    shell.run_line_magic("config", "Orchestrate.model = 'smollm2'")
    shell.run_line_magic("config", "Orchestrate.timeout = 7.5")
    shell.run_line_magic("config", "Orchestrate.deadline = 30")
    orch = current_orchestrator(shell)
    assert (orch.provider.name, orch.base_url, orch.provider.timeout, orch.deadline) == (
        "openai", url, 7.5, 30.0)
    assert orch.local
    # Nothing listens there: the cell's run pauses, it does not fail.
    run = shell.run_cell_magic("orchestrate", "--workflow single", "Write a haiku")
    assert run.status is RunStatus.PAUSED
    assert run.error.startswith("provider openai:smollm2 unavailable: ")
    assert run.guard.spent == 0


def test_bad_seconds_are_refused(shell) -> None:
    settings = current_magics(shell).settings
    with pytest.raises(TraitError, match=r"Orchestrate.timeout must be a number of seconds > 0"):
        settings.timeout = 0.0
    with pytest.raises(TraitError, match=r"Orchestrate.deadline must be a number of seconds > 0"):
        settings.deadline = -1.0
