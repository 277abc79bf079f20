from __future__ import annotations

import asyncio
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

from taskorch_nb import CircuitState, FakeClock, Orchestrator, RetryPolicy
from taskorch_nb.core.backends import open_store
from taskorch_nb.core.events import BudgetEvent, Notice, ToolEvent
from taskorch_nb.core.store import Store
from taskorch_nb.errors import ConfigurationError
from taskorch_nb.testing import FlakyTool
from tests.store_backends import BACKENDS, fresh_store


@pytest.fixture(params=BACKENDS)
def db(request, tmp_path):
    """An empty store to open: a SQLite file, or a PostgreSQL schema (same tests)."""
    with fresh_store(request.param, tmp_path) as target:
        yield target


def _integrity_error(target: str) -> type[Exception]:
    if target.startswith("postgresql://"):
        import psycopg

        return psycopg.IntegrityError
    return sqlite3.IntegrityError


async def test_patterns_events_and_circuits_survive_a_new_orchestrator(db) -> None:
    clock = FakeClock()
    first = Orchestrator(store=db, clock=clock, retry=RetryPolicy(jitter=0.0))
    broken = FlakyTool(always=504)
    first.tool(broken, name="search_api", fallback="cached_search")
    first.tool(lambda **kw: "cached", name="cached_search")
    assert await first.call_tool("search_api") == "cached"
    first.close()

    second = Orchestrator(store=db, clock=FakeClock(start=clock.now()))
    second.tool(broken, name="search_api", fallback="cached_search")
    second.tool(lambda **kw: "cached", name="cached_search")
    [pattern] = [p for p in second.immune.patterns() if p.tool == "search_api"]
    assert (pattern.name, pattern.recovered, pattern.known) == ("search_api_timeout", 1, True)
    assert second.circuits["search_api"].state is CircuitState.OPEN
    types = [e.type for e in second.store.events()]
    assert types[:2] == ["tool.failed", "retry.scheduled"]
    assert "pattern.recovered" in types
    # The open breaker still answers from the fallback without touching the tool.
    calls = len(broken.calls)
    assert await second.call_tool("search_api") == "cached"
    assert len(broken.calls) == calls
    second.close()


def test_routine_events_wait_one_flush_interval_and_durable_ones_not_at_all(db) -> None:
    clock = FakeClock()
    store = open_store(db, clock=clock)
    reader = open_store(db, clock=clock)

    def written() -> list[str]:
        return [getattr(e, "tool", None) or e.type for e in reader.events()]

    store.record(ToolEvent(type="tool.succeeded", tool="x", seq=1))
    # A second connection sees nothing yet: routine events wait for the batch ...
    assert written() == []
    store.record(Notice(type="run.completed", message="done", seq=2))
    # ... but a durable event is committed at once, with what came before it.
    assert written() == ["x", "run.completed"]
    store.record(ToolEvent(type="tool.succeeded", tool="y", seq=3))
    clock.advance(0.05)
    assert written() == ["x", "run.completed"]
    clock.advance(0.05)  # 100 ms after x armed the timer: the batch is written
    assert written() == ["x", "run.completed", "y"]
    store.record(ToolEvent(type="tool.succeeded", tool="z", seq=4))  # arms the next timer
    clock.advance(0.05)
    store.record(ToolEvent(type="tool.succeeded", tool="w", seq=5))  # joins z's batch
    assert written() == ["x", "run.completed", "y"]
    clock.advance(0.05)
    assert written() == ["x", "run.completed", "y", "z", "w"]
    store.record(ToolEvent(type="tool.succeeded", tool="v", seq=6))
    store.close()  # writes what waits; the timer it leaves behind does nothing
    clock.advance(1.0)
    assert written() == ["x", "run.completed", "y", "z", "w", "v"]
    reader.close()


def _settled(seq: int, amount: str = "0.01") -> BudgetEvent:
    money = Decimal(amount)
    return BudgetEvent(type="budget.settled", amount=money, spent=money, reserved=Decimal(0),
                       limit=Decimal(1), remaining=1 - money, seq=seq, run_id="r1")


def test_held_money_is_written_with_the_run_row_in_one_transaction(db) -> None:
    clock = FakeClock()
    store = open_store(db, clock=clock)
    reader = open_store(db, clock=clock)

    def written() -> list[str]:
        return [getattr(e, "tool", None) or e.type for e in reader.events()]

    store.record(ToolEvent(type="tool.succeeded", tool="before", seq=1))
    with store.holding() as held:
        store.record(_settled(2))
        store.record(ToolEvent(type="tool.succeeded", tool="after", seq=3))
        store.record(Notice(type="circuit.opened", message="x", seq=4))  # after money: waits
        clock.advance(1.0)  # the batch timer writes what came before, not held money
        assert written() == ["before"]
        assert reader.load_run("r1") is None
        store.save_run("r1", task="t", workflow="full", status="RUNNING", wall=1.0,
                       data={"checkpoint": {"journal": {"k:1:llm": {}}}}, held=held)
        assert not held
        assert written() == ["before", "budget.settled", "after", "circuit.opened"]
        assert reader.load_run("r1")["data"]["checkpoint"]["journal"] == {"k:1:llm": {}}
    assert written() == ["before", "budget.settled", "after", "circuit.opened"]
    reader.close()
    store.close()


def test_a_failed_checkpoint_write_keeps_the_money_and_writes_it_at_the_end(db) -> None:
    store = open_store(db, clock=FakeClock())
    with store.holding() as held:
        store.record(_settled(1))
        # A run row without a task breaks its NOT NULL rule: the money is rolled back
        # with it, stays held, and is written alone when the hold ends.
        with pytest.raises(_integrity_error(db), match=r"(?i)not[ -]null"):
            store.save_run("r1", task=None, workflow="full", status="RUNNING", wall=1.0,
                           held=held)
        assert [e.type for e in held.events] == ["budget.settled"]
        assert store.events() == []
    assert [e.type for e in store.events()] == ["budget.settled"]
    assert store.load_run("r1") is None
    store.close()


async def test_a_hold_holds_only_the_money_of_its_own_context(db) -> None:
    store = open_store(db, clock=FakeClock())
    reader = open_store(db, clock=FakeClock())
    go = asyncio.Event()

    async def another_call() -> None:  # started outside the hold: its money is its own
        await go.wait()
        store.record(_settled(2, "0.02"))

    other = asyncio.create_task(another_call())
    with store.holding() as held:
        store.record(_settled(1))
        go.set()
        await other
        assert [e.amount for e in reader.events()] == [Decimal("0.02")]
        assert [e.amount for e in held.events] == [Decimal("0.01")]
    # Nobody saved the held money: the end of the hold writes it, never drops it.
    assert [e.amount for e in reader.events()] == [Decimal("0.02"), Decimal("0.01")]
    reader.close()
    store.close()


def test_the_flush_interval_is_checked(tmp_path) -> None:
    with pytest.raises(ConfigurationError, match="flush_interval"):
        Store(tmp_path / "t.db", flush_interval=0)


def test_an_orchestrator_store_flushes_on_the_orchestrators_clock(tmp_path) -> None:
    clock = FakeClock()
    orch = Orchestrator(store=tmp_path / "t.db", clock=clock)
    assert orch.store.clock is clock
    orch.close()


def test_runs_table_roundtrip(db) -> None:
    store = open_store(db)
    store.save_run("r1", task="t", workflow="full", status="RUNNING", wall=1.0, data={"a": 1})
    store.save_run("r1", task="t", workflow="full", status="COMPLETED", wall=2.0)
    row = store.load_run("r1")
    assert row is not None
    assert (row["status"], row["created"], row["updated"]) == ("COMPLETED", 1.0, 2.0)
    assert [r["id"] for r in store.runs()] == ["r1"]
    store.close()


def test_taskorch_home_sets_the_default_path(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TASKORCH_HOME", str(tmp_path / "home"))
    store = Store()
    assert store.path == str(tmp_path / "home" / "taskorch.db")
    store.close()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: tmp, "is a directory, not a SQLite file"),
        (lambda tmp: _write(tmp / "notes.txt", "not a database " * 100),
         "is not a SQLite database"),
        (lambda tmp: _write(tmp / "file", "x") / "taskorch.db", "cannot create"),
    ],
    ids=["directory", "text-file", "parent-is-a-file"],
)
def test_a_path_that_is_not_a_sqlite_database_is_a_configuration_error(
        tmp_path, make, message) -> None:
    path = make(tmp_path)
    with pytest.raises(ConfigurationError, match=message) as caught:
        Store(path)
    assert str(path) in str(caught.value)
    assert "\n" not in str(caught.value)
    if path.is_file():  # a file that is not ours is left as it was
        assert path.read_text(encoding="utf-8").startswith("not a database")


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_a_transaction_of_many_events_keeps_them_all_in_order(db) -> None:
    """More events than one INSERT statement takes (64 rows; COPY on PostgreSQL), with a
    run row in the same transaction: every event once, in the order recorded."""
    store = open_store(db, clock=FakeClock())
    for seq in range(1, 151):
        store.record(ToolEvent(type="tool.succeeded", tool=f"t{seq}", seq=seq))
    with store.holding() as held:
        store.record(_settled(151))
        store.save_run("r1", task="t", workflow="full", status="RUNNING", wall=1.0,
                       held=held)
    reader = open_store(db)
    assert [e.seq for e in reader.events()] == list(range(1, 152))
    assert [e.tool for e in reader.events()[:150]] == [f"t{n}" for n in range(1, 151)]
    assert reader.load_run("r1")["status"] == "RUNNING"
    reader.close()
    store.close()
