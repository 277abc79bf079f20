"""The example notebooks, executed and checked against their stored outputs with nbval.

`pytest` collects only `tests/`, so this runs nbval on each notebook in a real
subprocess (`pytest --nbval notebooks/NAME.ipynb ...`): the notebooks are then
part of the one test command, and a failure names the notebook and cell.
Outputs are compared where deterministic (FakeClock, seeded simulated
provider); cells tagged `nbval-ignore-output` only have to run; ids, temp paths
and addresses are masked by `notebooks/sanitize.cfg`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def nbval_command(notebook: Path) -> list[str]:
    return [
        sys.executable, "-m", "pytest", "--nbval", str(notebook.relative_to(ROOT)),
        "--nbval-sanitize-with", "notebooks/sanitize.cfg", "--nbval-current-env",
        "-q", "-p", "no:cacheprovider",
    ]


def test_every_notebook_is_here() -> None:
    names = {p.stem for p in NOTEBOOKS}
    assert {"01_quickstart", "02_self_healing", "03_budget", "04_multi_agent",
            "06_postmortem"} <= names


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_and_matches_its_outputs(notebook: Path, tmp_path) -> None:
    env_home = {"TASKORCH_HOME": str(tmp_path)}
    result = subprocess.run(
        nbval_command(notebook), cwd=ROOT, capture_output=True, text=True, timeout=300,
        env=os.environ | env_home,
    )
    assert result.returncode == 0, f"nbval failed for {notebook.name}:\n{result.stdout[-6000:]}"
