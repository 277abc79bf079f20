from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskorch_nb.core import ledger as ledger_module
from taskorch_nb.core.backends import open_store
from taskorch_nb.core.budget import BudgetGuard
from taskorch_nb.core.schema import to_nano
from taskorch_nb.errors import BudgetExceededError, ConfigurationError
from tests.store_backends import BACKENDS, POSTGRES, fresh_store


@pytest.fixture(params=BACKENDS)
def db(request, tmp_path):
    with fresh_store(request.param, tmp_path) as target:
        yield target


@pytest.fixture
def store(db):
    s = open_store(db)
    yield s
    s.close()


def test_reserve_fits_under_the_cap_or_not_at_all(store) -> None:
    ledger = store.ledger("team", "1.00")
    first = ledger.reserve(Decimal("0.60"))
    assert first == to_nano(Decimal("0.60"))
    assert ledger.reserve(Decimal("0.41")) is None  # 0.60 + 0.41 > 1.00
    second = ledger.reserve(Decimal("0.40"))
    assert second is not None
    ledger.settle(first, Decimal("0.25"))
    ledger.release(second)
    state = ledger.state()
    assert (state.spent, state.reserved, state.calls, state.remaining) == (
        Decimal("0.25"), 0, 1, Decimal("0.75"))
    ledger.extend("0.50")
    assert ledger.limit == Decimal("1.50")


def test_a_ledger_is_found_by_name_and_keeps_its_first_limit(db, store) -> None:
    store.ledger("team", 2)
    other = open_store(db)  # another process would do the same
    assert other.ledger("team").limit == 2
    assert other.ledger("team", 99).limit == 2  # made once: extend() raises it
    other.close()


def test_an_unknown_ledger_without_a_limit_is_a_clear_error(store) -> None:
    with pytest.raises(ConfigurationError, match=r"no shared budget 'nope'.*with a limit"):
        store.ledger("nope")
    with pytest.raises(ConfigurationError, match="needs a name"):
        store.ledger(" ", 1)
    with pytest.raises(ConfigurationError, match="shared budget 'bad'"):
        store.ledger("bad", -1)


def test_guards_sharing_a_ledger_stop_at_the_shared_limit(store) -> None:
    ledger = store.ledger("batch", "1.00")
    events: list[str] = []
    a = BudgetGuard(5, ledger=ledger, on_event=lambda e: events.append(e.type))
    b = BudgetGuard(5, ledger=ledger)
    a.commit(a.reserve("0.70"), "0.70")
    with pytest.raises(BudgetExceededError, match=r"shared budget 'batch' exceeded.*\$0.30 of"):
        b.reserve("0.50")  # b's own $5 has room; the batch's $1 has not
    held = b.reserve("0.30")
    with pytest.raises(BudgetExceededError):
        a.reserve("0.01")
    assert events[-1] == "budget.rejected"
    assert a.status == "exceeded"
    b.release(held)
    assert (a.spent, b.spent, ledger.state().spent, ledger.state().reserved) == (
        Decimal("0.70"), 0, Decimal("0.70"), 0)


def test_a_guard_refusing_on_its_own_limit_gives_the_shared_reservation_back(store) -> None:
    ledger = store.ledger("team", 10)
    guard = BudgetGuard("0.50", ledger=ledger)
    with pytest.raises(BudgetExceededError, match=r"budget exceeded: call needs up to \$0.60"):
        guard.reserve("0.60")
    assert ledger.state().reserved == 0


def test_a_settlement_commits_with_the_checkpoint_that_journals_its_call(db, store) -> None:
    ledger = store.ledger("team", 1)
    reader = open_store(db).ledger("team")
    guard = BudgetGuard(1, ledger=ledger, on_event=store.record)
    reservation = guard.reserve("0.40")
    with store.holding() as held:
        guard.commit(reservation, "0.30")
        # The call is paid but not yet journaled: nobody sees the settlement yet, and
        # the reservation still holds the shared money.
        assert (reader.state().spent, reader.state().reserved) == (0, Decimal("0.40"))
        store.save_run("r1", task="t", workflow="full", status="RUNNING", wall=1.0,
                       data={"checkpoint": {"budget": guard.checkpoint()}}, held=held)
        assert (reader.state().spent, reader.state().reserved) == (Decimal("0.30"), 0)
    assert [e.type for e in store.events()][-1] == "budget.settled"
    assert store.load_run("r1")["data"]["checkpoint"]["budget"]["ledger"] == "team"
    restored = BudgetGuard.restored(guard.checkpoint(), ledger=store.ledger("team"))
    assert (restored.spent, restored.ledger.name) == (Decimal("0.30"), "team")
    reader.store.close()


def test_a_settlement_nobody_saved_is_written_when_the_hold_ends(store) -> None:
    ledger = store.ledger("team", 1)
    guard = BudgetGuard(1, ledger=ledger)
    reservation = guard.reserve("0.40")
    with store.holding():
        guard.commit(reservation, "0.10")
    assert (ledger.state().spent, ledger.state().reserved) == (Decimal("0.10"), 0)


def _reserve_and_die(url: str, amount: str) -> None:
    """In a child process: reserve, then end without settling (a killed worker)."""
    import os

    store = open_store(url)
    store.ledger("team").reserve(Decimal(amount))
    os._exit(1)


def test_what_a_killed_process_reserved_is_given_back(db, store) -> None:
    ledger = store.ledger("team", "1.00")
    mine = ledger.reserve(Decimal("0.10"))  # this process is alive: never reclaimed
    child = multiprocessing.get_context("spawn").Process(target=_reserve_and_die,
                                                          args=(db, "0.40"))
    child.start()
    child.join()
    assert child.exitcode == 1
    assert ledger.state().reserved == Decimal("0.50")
    assert sorted(ledger.holders().values()) == [Decimal("0.10"), Decimal("0.40")]
    assert ledger.reserve(Decimal("0.60")) is None  # the dead share still counts ...
    assert ledger.reclaim_dead() == Decimal("0.40")  # ... until it is given back
    assert ledger.state().reserved == Decimal("0.10")
    assert list(ledger.holders().values()) == [Decimal("0.10")]
    assert ledger.reserve(Decimal("0.60")) is not None
    ledger.settle(mine, Decimal("0.10"))


# -- the property: many processes x threads on one ledger --------------------------------

PROCESSES = 3
THREADS = 3
CAP = Decimal("1.00")

_stores: dict[str, object] = {}


def _worker(url: str, name: str, plans: list[list[tuple[str, int, int]]]) -> dict[str, int]:
    """One process: a guard per thread over the shared ledger, each thread doing its plan.
    Returns what it settled (nano-USD), its settles and refusals, and the worst
    `spent + reserved - cap` it ever read (never positive if nothing overspends)."""
    store = _stores.get(url)
    if store is None:
        store = _stores[url] = open_store(url)
    ledger = store.ledger(name)
    cap = to_nano(CAP)
    totals = {"settled": 0, "settles": 0, "refused": 0, "worst": -cap}
    lock = threading.Lock()

    def check() -> None:
        state = ledger.state()
        over = to_nano(state.spent + state.reserved) - cap
        with lock:
            totals["worst"] = max(totals["worst"], over)

    async def cancelled_call(guard: BudgetGuard, amount: Decimal) -> None:
        started = asyncio.Event()

        async def call() -> None:  # the shape of Orchestrator.complete around a call
            try:
                reservation = guard.reserve(amount)  # a refusal ends the task at once
            finally:
                started.set()
            try:
                await asyncio.Event().wait()  # the model call, cancelled mid-flight
            except BaseException:
                guard.release(reservation)
                raise

        task = asyncio.create_task(call())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task  # or the refusal, which the caller counts

    def thread(plan: list[tuple[str, int, int]]) -> None:
        guard = BudgetGuard(1000, ledger=ledger)
        for op, cents, percent in plan:
            amount = Decimal(cents) / 100
            try:
                if op == "cancel":
                    asyncio.run(cancelled_call(guard, amount))
                    continue
                reservation = guard.reserve(amount)
            except BudgetExceededError:
                with lock:
                    totals["refused"] += 1
                continue
            check()
            if op == "release":
                guard.release(reservation)
            else:
                actual = amount * percent / 100
                if op == "settle_held":  # as a run settles: with its checkpoint
                    with store.holding() as held:
                        guard.commit(reservation, actual)
                        store.save_run(f"run-{uuid.uuid4().hex[:12]}", task="t", workflow=None,
                                       status="RUNNING", wall=0.0, held=held)
                else:
                    guard.commit(reservation, actual)
                with lock:
                    totals["settled"] += to_nano(actual)
                    totals["settles"] += 1
            check()

    threads = [threading.Thread(target=thread, args=(plan,)) for plan in plans]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return totals


_op = st.tuples(st.sampled_from(["settle", "settle_held", "release", "cancel"]),
                st.integers(1, 40), st.integers(0, 100))
_plans = st.lists(st.lists(st.lists(_op, max_size=6), min_size=THREADS, max_size=THREADS),
                  min_size=PROCESSES, max_size=PROCESSES)


@pytest.fixture(scope="module")
def pool():
    with ProcessPoolExecutor(PROCESSES, mp_context=multiprocessing.get_context("spawn")) as p:
        yield p


@pytest.mark.parametrize("backend", BACKENDS)
def test_processes_and_threads_sharing_a_ledger_never_overspend(backend, tmp_path, pool) -> None:
    with fresh_store(backend, tmp_path) as url:
        open_store(url).close()  # migrate once, before the workers race to

        def ledger_holds(url: str, name: str) -> dict:
            store = open_store(url)
            try:
                return store.ledger(name).holders()
            finally:
                store.close()

        @settings(max_examples=6, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture,
                                         HealthCheck.too_slow])
        @given(plans=_plans)
        def run(plans: list[list[list[tuple[str, int, int]]]]) -> None:
            name = f"p-{uuid.uuid4().hex[:8]}"
            store = open_store(url)
            try:
                ledger = store.ledger(name, CAP)
                results = list(pool.map(_worker, [url] * PROCESSES, [name] * PROCESSES,
                                        plans))
                state = ledger.state()
            finally:
                store.close()
            assert all(r["worst"] <= 0 for r in results)  # never over, at any read
            assert state.reserved == 0  # every reservation settled, released or cancelled
            assert to_nano(state.spent) == sum(r["settled"] for r in results) <= to_nano(CAP)
            assert state.calls == sum(r["settles"] for r in results)
            assert ledger_holds(url, name) == {}  # and no process holds any part of it

        run()


# -- a run on a shared budget: paused by it, resumed after it grows, paid once -----------

def _same_money(ledger: Decimal, cost: Decimal, calls: int) -> bool:
    """The ledger rounds each settlement up to a nano-dollar: at most one per call more."""
    return 0 <= to_nano(ledger) - to_nano(cost) <= calls

async def test_a_run_paused_by_the_shared_budget_resumes_on_it_and_pays_once(db) -> None:
    from taskorch_nb import Orchestrator

    first = Orchestrator(store=db)
    team = first.store.ledger("team", "0.10")
    run = first.runner.create("Add user authentication", workflow="full", budget=5)
    run.guard.ledger = team  # how a batch gives its runs one budget
    await first.runner.execute(run)
    assert run.status.value == "PAUSED"
    assert "shared budget 'team' exceeded" in run.error
    assert "store.ledger('team').extend(...) before resuming" in run.error
    paid = team.state()
    assert (paid.reserved, paid.spent <= Decimal("0.10")) == (0, True)
    assert _same_money(paid.spent, run.cost.spent, run.cost.calls)  # the ledger: the cost
    first.close()

    second = Orchestrator(store=db)  # another kernel picks the run up
    again = second.get_run(run.id)
    assert again.guard.ledger.name == "team"
    again.guard.ledger.extend(5)
    await again.resume()
    assert again.status.value == "COMPLETED"
    done = again.guard.ledger.state()
    assert done.reserved == 0
    # Every call the first process paid for was replayed, not paid again.
    assert done.calls == again.cost.calls
    assert _same_money(done.spent, again.cost.spent, done.calls)
    second.close()


async def test_on_a_loop_the_settlement_and_its_checkpoint_are_never_seen_apart(db, store):
    ledger = store.ledger("team", 1)
    reader = open_store(db)
    guard = BudgetGuard(1, ledger=ledger)
    reservation = guard.reserve("0.40")

    def seen() -> tuple[bool, bool]:
        paid = reader.ledger("team").state().spent > 0
        return reader.load_run("r1") is not None, paid

    with store.holding() as held:
        guard.commit(reservation, "0.30")
        store.save_run("r1", task="t", workflow="full", status="RUNNING", wall=1.0,
                       held=held)
        first = seen()
    after_block = seen()
    await asyncio.sleep(0)  # the end of this loop tick, where writes may be grouped
    assert first in {(False, False), (True, True)}
    assert after_block in {(False, False), (True, True)}
    assert seen() == (True, True)
    assert ledger.state().reserved == 0
    reader.close()


# -- holders of other hosts: a lease kept fresh by a heartbeat ------------------------------

def _hold_elsewhere(store, ledger, who: str, amount: str, seen: float) -> None:
    """What a process of another host leaves in the ledger when it reserves `amount`."""
    units = to_nano(Decimal(amount))
    with store.transaction() as run:
        run("UPDATE budgets SET reserved = reserved + ? WHERE name = ?", (units, ledger.name))
        run("INSERT INTO budget_holds (budget, holder, units, seen) VALUES (?, ?, ?, ?)",
            (ledger.name, who, units, seen))


def test_a_holder_of_another_host_is_reclaimed_once_its_lease_is_stale(store) -> None:
    ledger = store.ledger("team", "1.00")
    mine = ledger.reserve(Decimal("0.10"))
    now = time.time()
    _hold_elsewhere(store, ledger, "elsewhere:4242:dead0001", "0.40", now - 3600)
    _hold_elsewhere(store, ledger, "elsewhere:4343:live0001", "0.20", now)
    assert ledger.reclaim_dead() == 0  # another host's pids mean nothing here
    assert ledger.reclaim_dead(stale_after=120) == Decimal("0.40")
    assert sorted(ledger.holders().values()) == [Decimal("0.10"), Decimal("0.20")]
    assert ledger.state().reserved == Decimal("0.30")
    with pytest.raises(ConfigurationError, match="stale_after must be at least"):
        ledger.reclaim_dead(stale_after=1)
    ledger.settle(mine, Decimal("0.10"))


def test_a_holder_refreshed_since_it_was_read_is_not_reclaimed(store) -> None:
    ledger = store.ledger("team", "1.00")
    _hold_elsewhere(store, ledger, "elsewhere:4242:late0001", "0.40", time.time() - 3600)
    # Its heartbeat lands between the read and the reclaim: the reclaim's own condition
    # (seen older than the cutoff) finds nothing, and nothing is given back.
    cutoff = time.time() - 120
    store.execute("UPDATE budget_holds SET seen = ? WHERE holder = ?",
                  (time.time(), "elsewhere:4242:late0001"))
    assert ledger.reclaim_stale("elsewhere:4242:late0001", cutoff) == 0
    assert ledger.state().reserved == Decimal("0.40")


@pytest.mark.parametrize("backend", [POSTGRES])
def test_a_live_holders_heartbeat_keeps_its_lease_fresh(backend, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(ledger_module, "HEARTBEAT", 0.05)
    with fresh_store(backend, tmp_path) as url:
        store = open_store(url)
        ledger = store.ledger("team", "1.00")
        units = ledger.reserve(Decimal("0.10"))  # a call in flight for a long while
        store.execute("UPDATE budget_holds SET seen = 0")  # as if last seen long ago
        deadline = time.monotonic() + 30
        while store.query("SELECT seen FROM budget_holds")[0][0] == 0:
            assert time.monotonic() < deadline, "no heartbeat refreshed the hold"
            time.sleep(0.02)
        assert store.query("SELECT seen FROM budget_holds")[0][0] > time.time() - 120
        ledger.settle(units, Decimal("0.05"))
        store.close()


def test_a_holder_reclaimed_while_alive_settles_without_giving_back_twice(
        store, monkeypatch) -> None:
    """A live holder taken for a dead one (a laptop asleep past `stale_after`): the reclaim
    gave its reservation back already, so its late settlement charges the cost and frees
    nothing more; another process's reservation stays reserved."""
    ledger = store.ledger("team", "2.00")
    mine = ledger.reserve(Decimal("1.00"))
    assert mine is not None
    me = ledger_module.holder()
    assert ledger.reclaim(me) == Decimal("1.00")  # taken for dead
    with monkeypatch.context() as other:  # another process reserves meanwhile
        other.setattr(ledger_module, "_holder", (os.getpid(), "elsewhere:1:0a1b2c3d"))
        theirs = ledger.reserve(Decimal("0.75"))
    assert theirs is not None
    ledger.settle(mine, Decimal("0.40"))  # the live holder's call ends after all
    state = ledger.state()
    assert (state.spent, state.reserved) == (Decimal("0.40"), Decimal("0.75"))
    assert ledger.holders() == {"elsewhere:1:0a1b2c3d": Decimal("0.75")}
    second = ledger.reserve(Decimal("0.50"))  # the woken process goes on normally
    assert second is not None
    ledger.release(second)
    assert ledger.state().reserved == Decimal("0.75")
