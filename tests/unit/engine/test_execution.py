"""A run's money survives a kill at any settlement: paid once, replayed on resume.

A child process runs the standard task and SIGKILLs itself right after (or right
before) the store write that makes its Nth settlement durable; the parent resumes
the run from the store. The ledger of `budget.settled` events must then equal
`run.cost.spent`, and both a clean run's cost: no call paid twice, none lost.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
from decimal import Decimal

import pytest

from taskorch_nb import FakeClock, Orchestrator, RunStatus, register_workflow
from taskorch_nb.agents.workflow import WorkflowResult
from taskorch_nb.core.eventcodec import decode
from taskorch_nb.core.retry import RetryPolicy
from taskorch_nb.core.store import Store

TASK = "Add user authentication"

#: Settlements of the standard run (all model calls of the full workflow).
SETTLEMENTS = 9

# Test-only: the store hook lives here, in the child's script, not in the product.
DIES_AT_SETTLEMENT = textwrap.dedent("""
    import asyncio, os, signal, sys
    from taskorch_nb import FakeClock, Orchestrator
    from taskorch_nb.core.store import Store

    db, workspace, nth, when = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]

    class DiesAtSettlement(Store):
        '''SIGKILLs its own process around the write that makes settlement `nth` durable.'''

        settled = 0

        def _write_events(self, events, *args, **kwargs):
            events = list(events)
            count = self.settled + sum(e.type == "budget.settled" for e in events)
            if when == "before" and count >= nth > self.settled:
                os.kill(os.getpid(), signal.SIGKILL)
            super()._write_events(events, *args, **kwargs)
            self.settled = count
            if when == "after" and count >= nth:
                os.kill(os.getpid(), signal.SIGKILL)

    clock = FakeClock()
    orch = Orchestrator(store=DiesAtSettlement(db, clock=clock), clock=clock)
    asyncio.run(orch.run("Add user authentication", workspace=workspace))
""")


def ledger(store: Store, run_id: str) -> list[Decimal]:
    """The settlements the store holds for a run, in order."""
    return [e.amount for e in store.events(run_id) if e.type == "budget.settled"]


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> tuple[Decimal, list[Decimal], int]:
    """Cost, ledger and model calls of an uninterrupted standard run."""
    folder = tmp_path_factory.mktemp("clean")

    async def run() -> tuple[Decimal, list[Decimal], int]:
        orch = Orchestrator(store=folder / "t.db", clock=FakeClock())
        try:
            run = await orch.run(TASK, workspace=folder / "ws")
            assert run.status is RunStatus.COMPLETED, run.error
            return run.cost.spent, ledger(orch.store, run.id), orch.provider.call_count
        finally:
            orch.close()

    return asyncio.run(run())


def test_a_clean_run_settles_every_model_call_once(clean) -> None:
    cost, settled, calls = clean
    assert len(settled) == calls == SETTLEMENTS
    assert sum(settled) == cost > 0


@pytest.mark.slow
@pytest.mark.parametrize("when", ["after", "before"])
@pytest.mark.parametrize("nth", range(1, SETTLEMENTS + 1))
async def test_kill_at_each_settlement_pays_each_call_once(tmp_path, clean, nth, when) -> None:
    cost, settled, calls = clean
    db = tmp_path / "taskorch.db"
    child = subprocess.run(
        [sys.executable, "-c", DIES_AT_SETTLEMENT, str(db), str(tmp_path / "ws"), str(nth),
         when], capture_output=True, text=True, timeout=600, check=False)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]

    orch = Orchestrator(store=db, clock=FakeClock())
    try:
        (run_id,) = list(orch.history()["run_id"])
        durable = len(ledger(orch.store, run_id))
        # Killed after the write: settlement nth is durable; before it: only those before.
        assert durable == (nth if when == "after" else nth - 1)
        run = orch.get_run(run_id)
        assert run.status is RunStatus.INTERRUPTED
        assert run.cost.spent == sum(ledger(orch.store, run_id))
        await run.resume()
        assert run.status is RunStatus.COMPLETED, run.error
        # A durable settlement's call is replayed from the journal, never made again.
        assert orch.provider.call_count == calls - durable
        assert ledger(orch.store, run_id) == settled
        assert sum(ledger(orch.store, run_id)) == run.cost.spent == cost
    finally:
        orch.close()


class LedgerChecked(Store):
    """Test-only: after every write that makes a settlement durable, notes what a kill
    there would leave: the stored checkpoint's spend, the ledger, the journal."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[tuple[Decimal, Decimal, list[str]]] = []

    def _write_events(self, events, *args, **kwargs) -> None:
        events = list(events)
        super()._write_events(events, *args, **kwargs)
        for run_id in {e.run_id for e in events if e.type == "budget.settled"}:
            row = self.load_run(run_id)
            checkpoint = (row or {"data": {}})["data"].get("checkpoint") or {}
            spent = Decimal(checkpoint.get("budget", {}).get("spent", "0"))
            with self._lock:
                records = self._db.execute(
                    "SELECT run_id, seq, type, ts, wall, record FROM events "
                    "WHERE run_id = ? AND type = 'budget.settled'", (run_id,)).fetchall()
            paid = sum((decode(r, self._layout).amount for r in records), Decimal(0))
            self.seen.append((spent, paid, sorted(checkpoint.get("journal", {}))))


async def test_every_durable_settlement_is_in_the_checkpoint_that_journals_its_call(
        tmp_path) -> None:
    clock = FakeClock()
    store = LedgerChecked(tmp_path / "t.db", clock=clock)
    orch = Orchestrator(store=store, clock=clock)
    run = await orch.run(TASK, workspace=tmp_path / "ws")
    assert run.status is RunStatus.COMPLETED, run.error
    assert len(store.seen) == SETTLEMENTS
    for n, (spent, paid, journal) in enumerate(store.seen, 1):
        assert spent == paid  # what a resumed run believes it spent is what the ledger says
        assert len([k for k in journal if k.endswith(":llm")]) == n  # each paid call replays
    assert store.seen[-1][1] == run.cost.spent
    orch.close()


async def test_metered_tool_settlements_are_saved_with_their_journal_entry(tmp_path) -> None:
    clock = FakeClock()
    store = LedgerChecked(tmp_path / "t.db", clock=clock)
    orch = Orchestrator(store=store, clock=clock)
    failures = iter([ConnectionError("reset by peer")])

    @orch.tool(name="paid_search", cost="0.01")
    def paid_search(query: str) -> str:
        return f"found {query}"

    @orch.tool(name="flaky_lookup", cost="0.02", retry=RetryPolicy(initial_wait=1, jitter=0))
    def flaky_lookup(key: str) -> str:
        failure = next(failures, None)
        if failure is not None:
            raise failure  # billed all the same: a metered API charges failed requests
        return key.upper()

    async def paid_tools(ctx) -> WorkflowResult:
        async with ctx.phase("research"):
            found = await ctx.call_tool("paid_search", {"query": "auth"})
            looked_up = await ctx.call_tool("flaky_lookup", {"key": "otp"})
        return WorkflowResult(output=f"{found}; {looked_up}")

    register_workflow("test-paid-tools", paid_tools)
    run = await orch.run(TASK, workflow="test-paid-tools", workspace=tmp_path / "ws")
    assert run.status is RunStatus.COMPLETED, run.error
    assert run.output == "found auth; OTP"
    # paid_search once, flaky_lookup twice (failed + retried); each durable write keeps
    # the checkpoint's spend equal to the ledger, and carries the call's journal entry.
    assert [(s, p) for s, p, _ in store.seen] == [
        (Decimal("0.01"), Decimal("0.01")), (Decimal("0.05"), Decimal("0.05"))]
    assert [j for _, _, j in store.seen] == [[":1:tool"], [":1:tool", ":2:tool"]]
    assert run.cost.spent == Decimal("0.05") == sum(ledger(store, run.id))
    orch.close()
