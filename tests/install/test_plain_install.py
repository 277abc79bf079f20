"""The first thing a new user does: `pip install taskorch-nb` (no extras), `taskorch-nb demo`.

A real, non-editable install of this checkout into a fresh venv, built the way pip
builds it for a user, then the demo from that venv: it must end "7 of 7" and exit 0
with nothing but the core dependencies.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAST_LINE = "7 of 7 flows did what the seed diagrams say."


def _source_copy(into: Path) -> Path:
    """What a source distribution holds, copied so the build leaves nothing in the checkout."""
    src = into / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "taskorch_nb", src / "taskorch_nb",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return src


def _clean_env(**extra: str) -> dict[str, str]:
    drop = ("PYTHON", "VIRTUAL_ENV", "TASKORCH_", "OPENAI_", "ANTHROPIC_", "LANGFUSE_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    return {**env, **extra}


@pytest.mark.slow
def test_the_demo_ends_7_of_7_on_a_plain_install(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    # This interpreter's pip installs into the new venv: no ensurepip, no byte-compiling.
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
         "--disable-pip-version-check", "--no-compile", str(_source_copy(tmp_path))],
        capture_output=True, text=True, env=_clean_env(), check=False)
    assert install.returncode == 0, install.stderr[-3000:]
    probe = "import importlib.util as u; print([m for m in ('fastapi', 'sqlalchemy', " \
            "'plotly', 'ipywidgets', 'mcp', 'langfuse') if u.find_spec(m)])"
    extras = subprocess.run([str(python), "-c", probe], capture_output=True, text=True,
                            check=True, env=_clean_env())
    assert extras.stdout.strip() == "[]"  # really the plainest install

    work = tmp_path / "work"
    work.mkdir()
    demo = subprocess.run(
        [str(venv / "bin" / "taskorch-nb"), "demo"], cwd=work, capture_output=True, text=True,
        env=_clean_env(TASKORCH_HOME=str(tmp_path / "home")), timeout=600, check=False)
    out = demo.stdout
    assert demo.returncode == 0, out[-3000:] + demo.stderr[-3000:]
    assert out.strip().splitlines()[-1] == LAST_LINE
    assert "Traceback" not in out + demo.stderr
    assert out.count("[ok ] Flow") == 7
    # What needs an extra says so in one line each.
    assert "pip install 'taskorch-nb[hub]'" in out
    assert "pip install 'taskorch-nb[notebook]'" in out
    assert (work / "taskorch-report.html").exists()
