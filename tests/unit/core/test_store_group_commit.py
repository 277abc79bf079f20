"""Group commit: on a running loop, the durable writes of one tick share one transaction.

Money keeps its promise: a run's held settlement and its checkpoint row are in the
same transaction, and `durable(run_id)` returns only once that transaction committed.
"""

from __future__ import annotations

import asyncio
import sqlite3
from decimal import Decimal

import pytest

from taskorch_nb import FakeClock, Orchestrator, RunStatus
from taskorch_nb.core.events import BudgetEvent, Notice
from taskorch_nb.core.store import Store


class Counted(Store):
    """Test-only: notes each transaction's event types and run rows."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.commits: list[tuple[list[str], list[str]]] = []

    def _write_events(self, events, *args, **kwargs) -> None:
        events = list(events)
        super()._write_events(events, *args, **kwargs)
        runs = kwargs.get("runs", args[0] if args else ())
        self.commits.append(([e.type for e in events], [row[0] for row in runs]))


def _settled(run_id: str) -> BudgetEvent:
    money = Decimal("0.01")
    return BudgetEvent(type="budget.settled", amount=money, spent=money, reserved=Decimal(0),
                       limit=Decimal(1), remaining=1 - money, run_id=run_id)


async def _paid_call(store: Store, run_id: str, task: str | None = "t") -> None:
    """What a run's paid call does: settle inside a hold, save the checkpoint with it."""
    with store.holding() as held:
        store.record(_settled(run_id))
        store.save_run(run_id, task=task, workflow="single", status="RUNNING", wall=1.0,
                       data={"checkpoint": {"journal": {f"{run_id}:1:llm": {}}}}, held=held)
    await store.durable(run_id)


async def test_the_paid_calls_of_one_tick_commit_in_one_transaction(tmp_path) -> None:
    store = Counted(tmp_path / "t.db", clock=FakeClock())
    reader = Store(tmp_path / "t.db", clock=FakeClock())
    calls = [asyncio.create_task(_paid_call(store, f"r{i}")) for i in range(3)]
    await asyncio.sleep(0)  # the three calls ran up to their wait: nothing committed yet
    assert store.commits == []
    assert reader.load_run("r0") is None
    await asyncio.gather(*calls)
    assert store.commits == [(["budget.settled"] * 3, ["r0", "r1", "r2"])]
    for i in range(3):
        row = reader.load_run(f"r{i}")
        assert row["data"]["checkpoint"]["journal"] == {f"r{i}:1:llm": {}}
    assert [e.run_id for e in reader.events()] == ["r0", "r1", "r2"]
    reader.close()
    store.close()


async def test_durable_events_wait_for_the_end_of_the_tick_in_order(tmp_path) -> None:
    store = Counted(tmp_path / "t.db", clock=FakeClock())
    store.record(Notice(type="tool.note", message="routine", seq=1))
    store.record(Notice(type="run.started", message="durable", seq=2))
    store.record(Notice(type="circuit.opened", message="durable", seq=3))
    assert store.commits == []
    await asyncio.sleep(0)
    assert store.commits == [(["tool.note", "run.started", "circuit.opened"], [])]
    store.close()


async def test_a_bad_row_fails_its_own_run_only_and_its_money_is_still_written(
        tmp_path) -> None:
    store = Counted(tmp_path / "t.db", clock=FakeClock())
    good = asyncio.create_task(_paid_call(store, "good"))
    bad = asyncio.create_task(_paid_call(store, "bad", task=None))  # breaks NOT NULL
    results = await asyncio.gather(good, bad, return_exceptions=True)
    assert results[0] is None
    assert isinstance(results[1], sqlite3.IntegrityError)
    assert store.load_run("good") is not None
    assert store.load_run("bad") is None
    # Never dropped: the bad row's money waits alone and is written with the next flush.
    assert sorted(e.run_id for e in store.events() if e.type == "budget.settled") == [
        "bad", "good"]
    store.close()


async def test_without_a_running_loop_each_durable_write_commits_at_once(tmp_path) -> None:
    store = Counted(tmp_path / "t.db", clock=FakeClock())

    def in_a_thread() -> None:
        store.record(Notice(type="run.started", message="x"))
        assert store.commits == [(["run.started"], [])]

    await asyncio.to_thread(in_a_thread)
    store.close()


async def test_concurrent_runs_share_their_transactions(tmp_path) -> None:
    clock = FakeClock()
    store = Counted(tmp_path / "t.db", clock=clock)
    orch = Orchestrator(store=store, clock=clock)
    runs = await asyncio.gather(*(orch.run(f"Summarise topic {i}", workflow="single",
                                           archetype="researcher") for i in range(10)))
    assert all(r.status is RunStatus.COMPLETED for r in runs)
    rows = [len(run_ids) for _, run_ids in store.commits if run_ids]
    # Every run saves 4 times (start, 2 paid calls, end); together they share transactions.
    assert sum(rows) == 40
    assert max(rows) >= 10  # all ten runs in one transaction at least once
    assert len(store.commits) < 10
    ledger = [e for e in store.events() if e.type == "budget.settled"]
    assert sum(e.amount for e in ledger) == sum(r.cost.spent for r in runs) > 0
    orch.close()


@pytest.mark.parametrize("task", ["t", None])
def test_durable_outside_a_tick_returns_or_raises_what_kept_the_row_out(tmp_path,
                                                                        task) -> None:
    store = Store(tmp_path / "t.db", clock=FakeClock())
    if task is None:
        with pytest.raises(sqlite3.IntegrityError):
            store.save_run("r1", task=task, workflow="single", status="RUNNING", wall=1.0)
    else:
        store.save_run("r1", task=task, workflow="single", status="RUNNING", wall=1.0)
    asyncio.run(store.durable("r1"))  # nothing waits: sync saves commit at once
    assert (store.load_run("r1") is None) == (task is None)
    store.close()


async def test_money_written_at_the_end_of_a_hold_takes_the_waiting_rows_along(
        tmp_path) -> None:
    store = Counted(tmp_path / "t.db", clock=FakeClock())
    store.save_run("r1", task="t", workflow="single", status="RUNNING", wall=1.0)  # waits
    with store.holding():
        store.record(_settled("r2"))  # nobody saves it: written when the hold ends
    assert store.commits == [(["budget.settled"], ["r1"])]
    assert store.load_run("r1")["status"] == "RUNNING"
    await asyncio.sleep(0)  # the tick's commit finds nothing left
    assert len(store.commits) == 1
    store.close()
