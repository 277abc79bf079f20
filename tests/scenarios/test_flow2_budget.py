"""Seed flow 2, as the diagram reads: a task with a $5.00 budget; each agent step asks
the guard before its LLM call (approved, response of 1,200 tokens, real cost reported,
remaining updated); under 20 % the user is warned and the call still approved; a call
that would pass the limit is rejected and the task pauses gracefully; a final cost
report never above the limit."""

from __future__ import annotations

from decimal import Decimal

import pytest

from taskorch_nb import BudgetExceededError, FakeClock, Orchestrator, RunStatus
from taskorch_nb.core.events import scope
from taskorch_nb.testing import SimReply, SimRequest, SimulatedProvider


def long_answer(request: SimRequest) -> SimReply:
    return SimReply(text="x" * 4800)  # 1,200 output tokens by the simulated token rule


async def test_budget_enforcement_flow() -> None:
    clock = FakeClock()
    orch = Orchestrator(SimulatedProvider(clock=clock, responder=long_answer), "sim-small",
                        budget=5.00, store=":memory:", clock=clock)
    events: list = []
    orch.subscribe(events.append)
    guard = orch.session_guard
    assert (guard.limit, guard.remaining) == (Decimal("5.00"), Decimal("5.00"))

    steps = 0
    rejection = None
    with scope(agent="builder"):
        while steps < 100:  # loop: each agent step
            try:
                await orch.complete([{"role": "user", "content": "next step"}],
                                    max_tokens=1500)
            except BudgetExceededError as exc:
                rejection = exc
                break
            steps += 1

    settled = [e for e in events if e.type == "budget.settled"]
    completed = [e for e in events if e.type == "llm.completed"]
    assert len(settled) == len(completed) == steps > 10
    assert {e.output_tokens for e in completed} == {1200}
    first = settled[0]
    assert first.amount == completed[0].cost  # the real cost reported ...
    assert first.remaining == Decimal("5.00") - first.amount  # ... and remaining updated

    # Every call was approved before it was made.
    order = [e.type for e in events if e.type in ("budget.approved", "llm.requested")]
    assert order[:2] == ["budget.approved", "llm.requested"]

    warnings = [e for e in events if e.type == "budget.warning"]
    assert len(warnings) == 1  # warned once, under 20 % ...
    assert warnings[0].remaining < Decimal("1.00")
    after_warning = events[events.index(warnings[0]) + 1:]
    assert after_warning[0].type == "llm.requested"  # ... and that call still approved

    assert rejection is not None  # REJECTED: the caller stops cleanly
    assert events[-1].type == "budget.rejected"
    assert guard.status == "exceeded"
    report = rejection.report
    assert report.spent <= report.limit == Decimal("5.00")
    assert report.by_agent == {"builder": report.spent}
    assert report.by_model == {"sim-small": report.spent}
    assert guard.reserved == 0
    assert "$5.00" in str(report)
    orch.close()


@pytest.mark.parametrize("budget", [0.25])
async def test_a_run_out_of_budget_pauses_gracefully(budget, tmp_path) -> None:
    orch = Orchestrator(store=":memory:", clock=FakeClock())
    run = await orch.run("Add user authentication", budget=budget, workspace=tmp_path)
    assert run.status is RunStatus.PAUSED
    types = [e.type for e in run.events]
    assert "budget.rejected" in types
    assert types[-1] == "run.paused"
    assert run.cost.spent <= Decimal(str(budget))
    assert run.events[-1].detail["cost"]["limit"] == budget
    orch.close()
