"""`taskorch-nb` as a user meets it: every bad input is one line and a non-zero exit; run,
resume, history and gc do what their help says."""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskorch_nb import FakeClock, Orchestrator, RunStatus
from taskorch_nb.cli import main, provider_notice
from tests.store_backends import POSTGRES, fresh_store

MODEL_VARIABLES = ("OPENAI_BASE_URL", "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "TASKORCH_PROVIDER",
                   "TASKORCH_KEEP_WORKSPACES")


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh TASKORCH_HOME and no model settings from the machine running the tests."""
    for name in MODEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TASKORCH_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def cli(*args: str, home: Path, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    """The real CLI in a subprocess."""
    full = {**os.environ, "TASKORCH_HOME": str(home), **(env or {})}
    return subprocess.run([sys.executable, "-m", "taskorch_nb.cli", *args], capture_output=True,
                          text=True, env=full, timeout=120, check=False)


def call(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The same CLI in-process: `main(argv)`, its exit code, stdout and stderr."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


# -- bad input: one table for every subcommand and option ------------------------------------


@pytest.fixture
def places(tmp_path: Path, home: Path) -> Iterator[dict[str, str]]:
    """What the table's `{name}`s stand for: a text file, a folder, a finished run, a hub
    database, a port someone else listens on."""
    notes = tmp_path / "notes.txt"
    notes.write_text("not a database " * 50, encoding="utf-8")
    with Orchestrator(clock=FakeClock()) as orch:  # the default store under TASKORCH_HOME
        done = orch.run_sync("Add a cache", workflow="single", archetype="builder")
    assert done.status is RunStatus.COMPLETED
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        yield {"notes": str(notes), "dir": str(tmp_path), "done": done.id,
               "db": str(home / "taskorch.db"), "hubdb": str(tmp_path / "hub.db"),
               "busy": str(busy.getsockname()[1])}
    finally:
        busy.close()


PG_DOWN = "postgresql://u:secret@127.0.0.1:1/db"  # nothing listens on port 1

BAD_INPUT = [
    # demo
    (["demo", "--flows", "x"], "argument --flows: takes 'all' or numbers like 1,7, not 'x'"),
    (["demo", "--flows", "9"], "--flows: no flow 9; the flows are 1, 2, 3, 4, 5, 6, 7"),
    (["demo", "--report", "{dir}"], "argument --report: {dir} is a directory"),
    (["demo", "--report", "{notes}/r.html"], "{notes} is a file, not a directory"),
    (["demo", "now"], "unrecognized arguments: now"),
    # run
    (["run"], "the following arguments are required: task"),
    (["run", "  "], "the task is empty"),
    (["run", "x", "--budget", "-1"],
     "argument --budget: a USD amount above $0 and at most $1,000,000,000 (e.g. 2.50), got '-1'"),
    (["run", "x", "--budget", "lots"], "argument --budget: a USD amount above $0"),
    (["run", "x", "--budget", "inf"], "got 'inf'"),
    (["run", "x", "--budget", "1e999999"], "at most $1,000,000,000"),
    (["run", "x", "--workflow", "nope"], "unknown workflow 'nope'; known: full, single"),
    (["run", "x", "--workflow", "single", "--archetype", "wizard"], "unknown archetype 'wizard'"),
    (["run", "x", "--provider", "gpt"], "unknown provider 'gpt'"),
    (["run", "x", "--provider", "openai"], "OpenAIProvider needs an API key"),
    (["run", "x", "--provider", "anthropic"], "AnthropicProvider needs an API key"),
    (["run", "x", "--model", "nope"], "the simulated provider has no model 'nope'"),
    (["run", "x", "--max-rounds", "0"], "argument --max-rounds: must be >= 1, not 0"),
    (["run", "x", "--max-rounds", "two"], "argument --max-rounds: must be a whole number"),
    (["run", "x", "--workspace", "{notes}"], "workspace {notes} exists and is not a directory"),
    (["run", "x", "--workspace", "{notes}/ws"], "a folder above it is a file, not a directory"),
    (["run", "x", "--store", "{dir}"], "store {dir} is a directory, not a SQLite file"),
    (["run", "x", "--store", "{notes}"], "store {notes} is not a SQLite database"),
    (["run", "x", "--store", "{notes}/t.db"], "cannot create its folder {notes}"),
    (["run", "x", "--frobnicate"], "unrecognized arguments: --frobnicate"),
    # resume
    (["resume"], "the following arguments are required: RUN_ID"),
    (["resume", "run-nope"], "no run 'run-nope' in {db}"),
    (["resume", "{done}"], "is COMPLETED: only PAUSED or INTERRUPTED runs resume"),
    (["resume", "{done}", "--extra-budget", "0"], "argument --extra-budget: a USD amount above $0"),
    (["resume", "{done}", "--store", "{notes}"], "is not a SQLite database"),
    (["resume", "{done}", "--store", "{dir}/other.db"], "no store at {dir}/other.db"),
    (["resume", "{done}", "--provider", "gpt"], "unknown provider 'gpt'"),
    # history
    (["history", "--limit", "-1"], "argument --limit: must be >= 0, not -1"),
    (["history", "--limit", "all"], "argument --limit: must be a whole number"),
    (["history", "--store", "{dir}"], "is a directory, not a SQLite file"),
    (["history", "--store", "{dir}/other.db"], "no store at {dir}/other.db"),
    # gc
    (["gc", "--keep", "-2"], "argument --keep: must be >= 0, not -2"),
    (["gc", "--keep", "many"], "argument --keep: must be a whole number"),
    (["gc", "--store", "{notes}"], "is not a SQLite database"),
    (["gc", "--store", ":memory:"], "an in-memory store keeps no workspaces to collect"),
    # mcp
    (["mcp", "--stdio"], "unrecognized arguments: --stdio"),
    # hub
    (["hub"], "--db PATH_OR_URL is required"),
    (["hub", "token", "a;b", "--db", "{hubdb}"],
     "argument project: 'a;b' is not a project name: use 1-100 of A-Z a-z 0-9 _ . -"),
    (["hub", "token", "--db", "{hubdb}"], "the following arguments are required: project"),
    (["hub", "revoke", "", "--db", "{hubdb}"], "'' is not a project name"),
    (["hub", "approve", "x", "--db", "{hubdb}"], "argument id: must be a whole number"),
    (["hub", "approve", "0", "--db", "{hubdb}"], "argument id: must be >= 1, not 0"),
    (["hub", "sync", "--db", "{hubdb}"], "argument COMMAND: invalid choice: 'sync'"),
    (["hub", "--port", "99999", "--db", "{hubdb}"],
     "argument --port: must be from 0 to 65535, not 99999"),
    (["hub", "--port", "-1", "--db", "{hubdb}"], "must be from 0 to 65535, not -1"),
    (["hub", "--port", "{busy}", "--db", "{hubdb}"],
     "cannot listen on 127.0.0.1:{busy}: Address already in use"),
    (["hub", "--host", "nowhere.invalid", "--port", "0", "--db", "{hubdb}"],
     "cannot listen on nowhere.invalid:0:"),
    (["hub", "--rate", "0", "--db", "{hubdb}"], "argument --rate: must be more than 0, not 0"),
    (["hub", "--burst", "0", "--db", "{hubdb}"], "argument --burst: must be >= 1, not 0"),
    (["hub", "--max-body", "0", "--db", "{hubdb}"], "argument --max-body: must be >= 1, not 0"),
    (["hub", "--confirm-threshold", "0", "--db", "{hubdb}"],
     "argument --confirm-threshold: must be >= 1, not 0"),
    (["hub", "--db", "{dir}", "token", "alpha"], "hub database {dir} is a directory"),
    (["hub", "--db", "{notes}", "quarantine"],
     "cannot open the hub database {notes}: file is not a database"),
    (["hub", "--db", PG_DOWN, "token", "alpha"],
     "cannot open the hub database postgresql://u:***@127.0.0.1:1/db: connection failed"),
    (["hub", "--db", PG_DOWN, "--port", "0"], "Connection refused"),
    (["history", "--store", PG_DOWN],
     "store postgresql://u:***@127.0.0.1:1/db: cannot connect (connection failed"),
    (["run", "Add a cache", "--store", PG_DOWN],
     "store postgresql://u:***@127.0.0.1:1/db: cannot connect (connection failed"),
    (["frobnicate"], "argument COMMAND: invalid choice: 'frobnicate'"),
    ([], "the following arguments are required: COMMAND"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_INPUT,
                         ids=[" ".join(argv) or "(nothing)" for argv, _ in BAD_INPUT])
def test_bad_input_is_one_line_and_a_nonzero_exit(argv, message, places, capsys) -> None:
    code, out, err = call(capsys, *(a.format(**places) for a in argv))
    assert code == 2, (out, err)
    assert err.startswith("taskorch-nb"), err
    assert message.format(**places) in err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    assert out == ""
    assert "secret" not in err


def test_looking_up_what_is_not_there_exits_1(places, capsys) -> None:
    assert call(capsys, "hub", "approve", "42", "--db", places["hubdb"]) == (
        1, "", "taskorch-nb hub: no quarantined prompt with id 42\n")
    assert call(capsys, "hub", "revoke", "nobody", "--db", places["hubdb"]) == (
        1, "revoked 0 token(s) of nobody\n", "")


@pytest.mark.parametrize(
    ("argv", "blocked", "message"),
    [
        (["hub", "token", "alpha", "--db", "{hubdb}"], "sqlalchemy",
         "needs sqlalchemy, which the 'hub' extra installs: pip install 'taskorch_nb[hub]'"),
        (["hub", "--port", "0", "--db", "{hubdb}"], "uvicorn", "needs uvicorn"),
        (["mcp"], "mcp", "needs mcp, which the 'mcp' extra installs"),
    ],
)
def test_a_missing_extra_is_named(argv, blocked, message, places, capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, blocked, None)  # as if it were not installed
    code, out, err = call(capsys, *(a.format(**places) for a in argv))
    assert (code, out) == (2, "")
    assert message in err
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TASKORCH_KEEP_WORKSPACES": "lots"}, "TASKORCH_KEEP_WORKSPACES must be a whole number"),
        ({"TASKORCH_PROVIDER": "gpt"}, "unknown provider 'gpt'"),
    ],
)
def test_bad_settings_from_the_environment_are_one_line(env, message, capsys,
                                                        monkeypatch) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    command = "gc" if "TASKORCH_KEEP_WORKSPACES" in env else "mcp"
    code, _, err = call(capsys, command)
    assert code == 2
    assert message in err
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "x", "--workspace", "{notes}"], "exists and is not a directory"),
        (["run", "x", "--store", "{dir}"], "is a directory, not a SQLite file"),
        (["run", "x", "--store", "{notes}"], "is not a SQLite database"),
        (["hub", "token", "a;b", "--db", "{hubdb}"], "is not a project name"),
        (["hub", "--port", "99999", "--db", "{hubdb}"], "must be from 0 to 65535"),
        (["hub", "--port", "{busy}", "--db", "{hubdb}"], "Address already in use"),
        (["hub", "--db", PG_DOWN, "--port", "0"], "cannot open the hub database"),
    ],
)
def test_the_installed_entry_point_says_the_same_in_one_line(argv, message, places,
                                                            home) -> None:
    done = cli(*(a.format(**places) for a in argv), home=home)
    assert done.returncode == 2
    assert message in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr


# -- run, -q, pause and resume ----------------------------------------------------------------


def test_run_prints_events_and_cost_and_lands_in_history(home) -> None:
    done = cli("run", "Add a cache", "--workflow", "single", "--archetype", "builder",
               "--budget", "2", home=home)
    assert done.returncode == 0, done.stderr
    assert "run.started" in done.stdout
    assert "status=COMPLETED" in done.stdout
    assert "of $2.00" in done.stdout
    assert done.stderr == ""
    from taskorch_nb import history

    past = history(store=home / "taskorch.db")
    assert list(past["status"]) == ["COMPLETED"]
    workspace = done.stdout.rsplit("workspace: ", 1)[1].strip()
    assert workspace == str(home / "workspaces" / past["run_id"][0])


def test_quiet_prints_only_the_result(capsys) -> None:
    code, out, err = call(capsys, "run", "Add a cache", "--workflow", "single",
                          "--archetype", "builder", "-q")
    assert (code, err) == (0, "")
    assert out == '{"files_written":["cache.py"],"notes":"code (GREEN)"}\n'


def test_a_paused_run_exits_3_and_the_advice_it_prints_finishes_it(capsys, home) -> None:
    code, out, err = call(capsys, "run", "Add user authentication", "--budget", "0.05", "-q")
    assert (code, out) == (3, "")
    assert err.startswith("PAUSED: budget exceeded: call needs up to $0.17")
    assert err.count("\n") == 1
    assert "error" not in err
    advice = err.split("Resume with: ", 1)[1].strip()
    run_id = advice.split()[2]
    assert shlex.split(advice) == ["taskorch-nb", "resume", run_id, "--extra-budget", "1"]
    budgets = []
    for _ in range(4):  # follow the printed advice, as a person would
        argv = shlex.split(advice)[1:]
        budgets.append(argv[-1])
        code, out, err = call(capsys, *argv, "-q")
        if code != 3:
            break
        advice = err.split("Resume with: ", 1)[1].strip()
    assert code == 0, err
    assert budgets == ["1", "2"]  # the advice grows with what the run turned out to need
    assert out.startswith("A user store with salted PBKDF2 password hashes")
    code, out, _ = call(capsys, "history")
    assert code == 0
    [row] = [line for line in out.splitlines() if line.startswith(run_id)]
    assert row.split()[1:5] == ["COMPLETED", "$0.60", "/", "$3.05"]
    assert (home / "workspaces" / run_id / "auth.py").is_file()


def test_resume_uses_the_runs_own_store_and_says_so_in_the_advice(tmp_path, capsys) -> None:
    db = tmp_path / "elsewhere" / "runs.db"
    code, _, err = call(capsys, "run", "Add user authentication", "--budget", "0.05", "-q",
                        "--store", str(db))
    assert code == 3
    advice = shlex.split(err.split("Resume with: ", 1)[1])
    assert advice[-2:] == ["--store", str(db)]
    code, out, err = call(capsys, *advice[1:3], "--extra-budget", "5", "--store", str(db))
    assert code == 0, err
    assert "run.resumed (RUNNING)" in out
    assert "status=COMPLETED" in out
    assert f"workspace: {tmp_path / 'elsewhere' / 'workspaces' / advice[2]}" in out


# -- the simulated provider while a real one is configured -----------------------------------


@pytest.mark.parametrize(
    ("provider", "env", "notice"),
    [
        ("simulated", {}, None),
        ("simulated", {"OPENAI_API_KEY": "sk-x"},
         "note: OPENAI_API_KEY is set, but the provider is simulated: no model is called "
         "(--provider openai uses it)"),
        ("simulated", {"OPENAI_BASE_URL": "http://127.0.0.1:11434/v1", "OPENAI_API_KEY": "k"},
         "note: OPENAI_BASE_URL and OPENAI_API_KEY are set"),
        ("simulated", {"ANTHROPIC_API_KEY": "k"}, "(--provider anthropic uses it)"),
        ("openai", {"OPENAI_API_KEY": "sk-x"}, None),
    ],
)
def test_provider_notice(provider, env, notice) -> None:
    said = provider_notice(provider, env)
    if notice is None:
        assert said is None
    else:
        assert notice in said


def test_run_says_in_one_line_that_a_configured_model_is_not_used(capsys, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    code, out, err = call(capsys, "run", "Add a cache", "--workflow", "single", "-q")
    assert code == 0
    assert err == ("note: OPENAI_API_KEY is set, but the provider is simulated: no model is "
                   "called (--provider openai uses it)\n")
    assert out.startswith("{")


def test_auto_with_a_base_url_uses_that_server_and_says_so(capsys, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # nothing listens
    code, _, err = call(capsys, "run", "Add a cache", "--workflow", "single", "-q",
                        "--provider", "auto", "--model", "smollm2", "--deadline", "1")
    assert code == 3
    lines = err.splitlines()
    assert lines[0] == ("provider 'auto' chose 'openai' (OPENAI_BASE_URL is set "
                        "(http://127.0.0.1:9/v1))")
    assert lines[1].startswith("model 'smollm2' is served from http://127.0.0.1:9/v1, a local")
    assert lines[-1].startswith("PAUSED: provider openai:smollm2 unavailable")


def test_mcp_says_it_too_on_stderr_leaving_stdout_to_the_protocol(home) -> None:
    done = subprocess.run([sys.executable, "-m", "taskorch_nb.cli", "mcp"],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "TASKORCH_HOME": str(home),
                               "OPENAI_API_KEY": "sk-x"}, check=False)
    assert (done.returncode, done.stdout) == (0, "")  # end of input: the client hung up
    assert done.stderr == ("note: OPENAI_API_KEY is set, but the provider is simulated: no model "
                           "is called (TASKORCH_PROVIDER=openai uses it)\n")


# -- history and gc ---------------------------------------------------------------------------


def test_history_without_any_run_yet(capsys, home) -> None:
    code, out, err = call(capsys, "history")
    assert (code, err) == (0, "")
    assert out == f"no runs yet: {home / 'taskorch.db'} does not exist\n"
    assert not home.exists()  # reading never creates a store


def test_history_lists_runs_newest_first(capsys) -> None:
    for task in ("Add a cache", "Add a queue"):
        assert call(capsys, "run", task, "--workflow", "single", "-q")[0] == 0
    code, out, _ = call(capsys, "history")
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == ["RUN", "STATUS", "SPENT", "/", "LIMIT", "STARTED", "TASK"]
    assert [r.split()[1] for r in rows] == ["COMPLETED", "COMPLETED"]
    assert [" ".join(r.split()[-3:]) for r in rows] == ["Add a queue", "Add a cache"]
    code, out, _ = call(capsys, "history", "--limit", "1")
    assert code == 0
    assert len(out.splitlines()) == 2


def test_gc_keeps_the_last_n_finished_and_every_paused_workspace(capsys, home) -> None:
    for task in ("one", "two", "three"):
        assert call(capsys, "run", f"Add {task}", "--workflow", "single", "-q")[0] == 0
    assert call(capsys, "run", "Add user authentication", "--budget", "0.05", "-q")[0] == 3
    assert len(list((home / "workspaces").iterdir())) == 4
    paused = call(capsys, "history", "--limit", "1")[1].splitlines()[1].split()[0]
    code, out, err = call(capsys, "gc", "--keep", "1")
    assert (code, err) == (0, "")
    *removed, summary = out.splitlines()
    assert len(removed) == 2
    assert all(line.startswith(f"removed {home / 'workspaces'}/run-") for line in removed)
    assert summary.startswith("2 removed, 1 kept (the last 1 finished), 1 kept for runs that")
    left = {p.name for p in (home / "workspaces").iterdir()}
    assert paused in left
    assert len(left) == 2
    code, out, _ = call(capsys, "gc", "--keep", "0")
    assert out.splitlines()[-1].startswith("1 removed, 0 kept")
    assert {p.name for p in (home / "workspaces").iterdir()} == {paused}


def test_demo_runs_the_chosen_flows(tmp_path, home) -> None:
    done = cli("demo", "--flows", "1,7", "--report", str(tmp_path / "r.html"), home=home)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 of 2 flows did what the seed diagrams say" in done.stdout


@pytest.mark.parametrize("backend", [POSTGRES])
def test_run_and_history_on_a_postgresql_store(backend, capsys, tmp_path, home) -> None:
    with fresh_store(backend, tmp_path) as url:
        assert call(capsys, "run", "Add a cache", "--workflow", "single", "-q",
                    "--store", url)[0] == 0
        code, out, _ = call(capsys, "history", "--store", url)
    assert code == 0
    assert [line.split()[1] for line in out.splitlines()[1:]] == ["COMPLETED"]
