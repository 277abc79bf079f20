from __future__ import annotations

import os
import subprocess
import sys

import pytest


def cli(*args: str, home) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TASKORCH_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "taskorch_nb.cli", *args], capture_output=True,
                          text=True, env=env, timeout=120, check=False)


def test_run_prints_events_and_cost_and_lands_in_history(tmp_path) -> None:
    done = cli("run", "Add a cache", "--workflow", "single", "--archetype", "builder",
               "--budget", "2", home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "run.started" in done.stdout
    assert "status=COMPLETED" in done.stdout
    assert "of $2.00" in done.stdout
    from taskorch_nb import history

    past = history(store=tmp_path / "taskorch.db")
    assert list(past["status"]) == ["COMPLETED"]


def test_paused_run_exits_3(tmp_path) -> None:
    done = cli("run", "Add user authentication", "--budget", "0.05", "-q", home=tmp_path)
    assert done.returncode == 3
    assert "status=PAUSED" in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "x", "--budget", "-1"], "--budget must be a USD amount above $0"),
        (["run", "x", "--budget", "lots"], "got 'lots'"),
        (["run", "x", "--budget", "1e999999"], "at most $1,000,000,000"),
        (["run", "  "], "the task is empty"),
        (["run", "x", "--workflow", "nope"], "unknown workflow 'nope'"),
        (["run", "x", "--provider", "gpt"], "unknown provider 'gpt'"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_input_is_a_message_and_a_nonzero_exit(args, message, tmp_path) -> None:
    done = cli(*args, home=tmp_path)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_demo_runs_the_chosen_flows(tmp_path) -> None:
    done = cli("demo", "--flows", "1,7", "--report", str(tmp_path / "r.html"), home=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 of 2 flows did what the seed diagrams say" in done.stdout
