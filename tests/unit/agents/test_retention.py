"""Run workspaces live next to the store, and only the last N of finished runs are kept."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from taskorch_nb import FakeClock, Orchestrator, RunStatus
from taskorch_nb.agents.retention import (
    DEFAULT_KEEP,
    KEEP_ENV,
    ORPHAN_GRACE,
    candidates,
    default_keep,
    prune,
    workspaces_root,
)
from taskorch_nb.errors import ConfigurationError


def finished_run(orch: Orchestrator, task: str = "Add a cache") -> Path:
    run = orch.run_sync(task, workflow="single", archetype="builder")
    assert run.status is RunStatus.COMPLETED, run.error
    return run.workspace


def test_a_run_without_workspace_works_under_the_store_folder(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TASKORCH_HOME", str(tmp_path / "home"))
    with Orchestrator(clock=FakeClock()) as orch:  # the default store
        run = orch.run_sync("Add a cache", workflow="single", archetype="builder")
    assert run.workspace == tmp_path / "home" / "workspaces" / run.id
    assert sorted(p.name for p in run.workspace.glob("*.py")) == ["cache.py"]
    with Orchestrator(store=tmp_path / "other" / "t.db", clock=FakeClock()) as orch:
        assert finished_run(orch).parent == tmp_path / "other" / "workspaces"
    assert run.workspace.is_dir()  # kept after close: a file store's runs can be resumed


def test_an_in_memory_store_keeps_workspaces_in_a_temp_folder_removed_on_close() -> None:
    orch = Orchestrator(store=":memory:", clock=FakeClock())
    first, second = finished_run(orch), finished_run(orch)
    assert first.parent == second.parent == orch.workspace_home
    assert first.name.startswith("run-")
    assert list(first.glob("*.py"))
    orch.close()
    assert not first.parent.exists()
    orch.close()  # twice is fine


def test_start_prunes_finished_runs_beyond_keep_and_never_a_paused_one(tmp_path) -> None:
    db = tmp_path / "taskorch.db"
    with Orchestrator(store=db, clock=FakeClock()) as orch:
        paused = orch.run_sync("Add user authentication", budget=0.01)
        assert paused.status is RunStatus.PAUSED
        done = [finished_run(orch, f"Add a cache {i}") for i in range(4)]
    newest = done[-1]
    later = time.time() + 86_400  # beyond any FakeClock wall time the rows were stamped with
    os.utime(newest, (later, later))
    mine = tmp_path / "workspaces" / "notes"  # not a run id: a person's folder
    mine.mkdir()

    with Orchestrator(store=db, clock=FakeClock(), keep_workspaces=1) as orch:
        left = sorted(p.name for p in (tmp_path / "workspaces").iterdir())
        assert left == sorted([paused.id, newest.name, "notes"])
        # The paused run resumes in its own workspace; finished, it may go like the others.
        again = orch.get_run(paused.id).resume_sync(extra_budget=5)
        assert again.status is RunStatus.COMPLETED, again.error
        assert again.workspace == paused.workspace
        assert (again.workspace / "auth.py").is_file()
        pruned = orch.prune_workspaces(keep=0)
    assert sorted(p.name for p in pruned.removed) == sorted([paused.id, newest.name])
    assert [p.name for p in (tmp_path / "workspaces").iterdir()] == ["notes"]


def test_prune_orders_by_last_activity_and_spares_young_orphans(tmp_path) -> None:
    root = tmp_path / "workspaces"
    names = {k: f"run-{k * 12}" for k in "abcde"}
    for name in names.values():
        (root / name).mkdir(parents=True)
    now = 1_000_000.0
    for key, age in {"a": 10.0, "b": 20.0, "c": 30.0, "d": 2 * ORPHAN_GRACE, "e": 1.0}.items():
        os.utime(root / names[key], (now - age, now - age))
    runs = {
        names["a"]: ("COMPLETED", now - 500.0),   # last activity: its folder, 10 s ago
        names["b"]: ("FAILED", now - 5.0),        # its row, 5 s ago: the most recent
        names["c"]: ("INTERRUPTED", now - 900.0),  # resume needs it
        # d: no run in the store, older than the grace; e: no run, 1 s old
    }
    pruned = prune(root, runs, keep=1, now=now)
    assert pruned.kept == [root / names["b"]]
    assert sorted(p.name for p in pruned.removed) == [names["a"], names["d"]]
    assert sorted(p.name for p in pruned.protected) == [names["c"], names["e"]]
    assert pruned.failed == []
    assert sorted(p.name for p in root.iterdir()) == [names["b"], names["c"], names["e"]]
    assert prune(root, runs, keep=0, now=now).removed == [root / names["b"]]
    assert prune(tmp_path / "nowhere", {}, keep=0).removed == []


def test_keep_comes_from_the_environment_and_is_checked(monkeypatch) -> None:
    assert default_keep({}) == DEFAULT_KEEP == 50
    assert default_keep({KEEP_ENV: "7"}) == 7
    with pytest.raises(ConfigurationError, match=f"{KEEP_ENV} must be a whole number"):
        default_keep({KEEP_ENV: "lots"})
    with pytest.raises(ConfigurationError, match="keep_workspaces must be an integer >= 0"):
        Orchestrator(store=":memory:", keep_workspaces=-1)
    monkeypatch.setenv(KEEP_ENV, "3")
    with Orchestrator(store=":memory:") as orch:
        assert orch.keep_workspaces == 3
    assert workspaces_root(":memory:") is None


def test_a_database_servers_runs_work_apart_from_the_local_stores(tmp_path,
                                                                  monkeypatch) -> None:
    monkeypatch.setenv("TASKORCH_HOME", str(tmp_path))
    local = workspaces_root(tmp_path / "taskorch.db")
    shared = workspaces_root("postgresql://u:***@db:5432/team")
    assert local == tmp_path / "workspaces"
    assert shared.parent == local
    assert shared.name.startswith("db-")
    assert workspaces_root("postgresql://u:***@db:5432/other") != shared
    # Neither prunes the other: the local store never counts the server's folder as a run.
    (shared / "run-0123456789ab").mkdir(parents=True)
    assert candidates(local) == []
