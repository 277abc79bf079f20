"""The budget guard: approve, settle, warn once, reject, overspend, release, extend, report."""

from __future__ import annotations

import asyncio
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskorch_nb.core.budget import BudgetGuard, CostReport, Reservation
from taskorch_nb.core.events import BudgetEvent, EventBus
from taskorch_nb.errors import BudgetExceededError, ConfigurationError

D = Decimal


@pytest.fixture
def events() -> list[BudgetEvent]:
    return []


@pytest.fixture
def guard(events: list[BudgetEvent]) -> BudgetGuard:
    return BudgetGuard(D("5.00"), on_event=events.append)


def types(events: list[BudgetEvent]) -> list[str]:
    return [e.type for e in events]


def test_reserve_then_commit_settles_real_cost(guard: BudgetGuard, events: list) -> None:
    r = guard.reserve(D("0.12"), agent="builder", model="sim-small")
    assert isinstance(r, Reservation)
    assert (guard.spent, guard.reserved, guard.remaining) == (0, D("0.12"), D("4.88"))
    guard.commit(r, D("0.10"))
    assert (guard.spent, guard.reserved, guard.remaining) == (D("0.10"), 0, D("4.90"))
    assert types(events) == ["budget.approved", "budget.settled"]
    approved, settled = events
    assert (approved.amount, approved.reservation, approved.agent) == (D("0.12"), r.id, "builder")
    assert (settled.amount, settled.spent, settled.remaining) == (D("0.10"), D("0.10"), D("4.90"))
    assert guard.status == "ok"


def test_limit_accepts_numbers_and_strings() -> None:
    assert BudgetGuard(5).limit == D(5)
    assert BudgetGuard(0.1).limit == D("0.1")  # not 0.1000000000000000055...
    assert BudgetGuard("2.50").limit == D("2.50")


@pytest.mark.parametrize("limit", [0, -1, D("-0.01"), float("nan"), float("inf"), "abc", True,
                                   None, [5], "1e999999"])
def test_bad_limits_are_configuration_errors(limit: object) -> None:
    with pytest.raises(ConfigurationError, match=r"^budget must be a USD amount above \$0"):
        BudgetGuard(limit)  # type: ignore[arg-type]


@pytest.mark.parametrize("warn_below", [-0.1, 1.0, 2, True])
def test_bad_warn_below(warn_below: float) -> None:
    with pytest.raises(ConfigurationError, match="warn_below"):
        BudgetGuard(5, warn_below=warn_below)


@pytest.mark.parametrize("amount", [-1, "x", float("nan"), True])
def test_bad_amounts(guard: BudgetGuard, amount: object) -> None:
    with pytest.raises(ValueError, match="reservation amount"):
        guard.reserve(amount)  # type: ignore[arg-type]
    assert guard.reserved == 0


def test_warning_once_when_remaining_falls_under_threshold(guard: BudgetGuard, events) -> None:
    r1 = guard.reserve(D("3.90"))  # remaining 1.10 > 1.00
    assert guard.status == "ok"
    r2 = guard.reserve(D("0.20"))  # remaining 0.90 < 1.00: approved, with a warning
    assert guard.status == "warning"
    guard.reserve(D("0.10"))
    assert types(events) == ["budget.approved", "budget.approved", "budget.warning",
                             "budget.approved"]
    warning = events[2]
    assert (warning.remaining, warning.limit, warning.reservation) == (D("0.90"), 5, r2.id)
    guard.commit(r1, D("1.00"))  # money comes back: still warned, no second warning
    guard.reserve(D("2.50"))
    assert types(events).count("budget.warning") == 1


def test_exactly_at_threshold_is_no_warning(guard: BudgetGuard, events) -> None:
    guard.reserve(D("4.00"))  # remaining exactly 20 %
    assert guard.status == "ok"
    assert "budget.warning" not in types(events)


def test_reject_when_it_would_pass_the_limit(guard: BudgetGuard, events) -> None:
    r = guard.reserve(D("4.50"))
    guard.commit(r, D("4.50"))
    with pytest.raises(BudgetExceededError) as info:
        guard.reserve(D("0.60"), agent="qc", model="sim-small")
    err = info.value
    assert (err.requested, err.remaining, err.limit) == (D("0.60"), D("0.50"), D(5))
    assert isinstance(err.report, CostReport)
    assert err.report.spent == D("4.50")
    assert guard.status == "exceeded"
    assert guard.reserved == 0
    assert events[-1].type == "budget.rejected"
    assert (events[-1].amount, events[-1].reservation, events[-1].agent) == (D("0.60"), None, "qc")


def test_exact_fit_is_approved(guard: BudgetGuard) -> None:
    guard.reserve(D(5))
    assert guard.remaining == 0
    with pytest.raises(BudgetExceededError):
        guard.reserve(D("0.0001"))


def test_overspent_is_settled_and_reported(guard: BudgetGuard, events) -> None:
    r = guard.reserve(D("0.10"))
    guard.commit(r, D("0.25"))
    assert guard.spent == D("0.25")
    assert guard.reserved == 0
    assert types(events)[-2:] == ["budget.settled", "budget.overspent"]
    assert events[-1].amount == D("0.15")
    assert guard.status == "ok"


def test_overspend_past_the_limit_is_exceeded(guard: BudgetGuard) -> None:
    r = guard.reserve(D("4.90"))
    guard.commit(r, D("5.20"))
    assert guard.remaining == D("-0.20")
    assert guard.status == "exceeded"
    guard.extend(D("0.10"))  # still under water
    assert guard.status == "exceeded"
    guard.extend(D("5"))
    assert guard.status == "ok"


def test_release_charges_nothing(guard: BudgetGuard, events) -> None:
    r = guard.reserve(D("1.00"), tool="search_api")
    guard.release(r)
    assert (guard.spent, guard.reserved, guard.remaining) == (0, 0, D(5))
    assert types(events) == ["budget.approved", "budget.released"]
    assert guard.report().calls == 0


def test_double_commit_and_commit_after_release_are_errors(guard: BudgetGuard) -> None:
    r = guard.reserve(D("1"))
    guard.commit(r, D("0.5"))
    with pytest.raises(ValueError, match="already committed or released"):
        guard.commit(r, D("0.5"))
    with pytest.raises(ValueError, match="already committed or released"):
        guard.release(r)
    r2 = guard.reserve(D("1"))
    guard.release(r2)
    with pytest.raises(ValueError, match="already"):
        guard.commit(r2, D("0.1"))
    assert guard.spent == D("0.5")
    assert guard.reserved == 0


def test_reservation_from_another_guard_is_refused(guard: BudgetGuard) -> None:
    other = BudgetGuard(100).reserve(1)
    with pytest.raises(ValueError, match="another budget"):
        guard.commit(Reservation(other.id + 99, D(1)), D(1))


def test_extend_resumes_after_rejection_and_rearms_warning(guard: BudgetGuard, events) -> None:
    r = guard.reserve(D("4.50"))
    guard.commit(r, D("4.50"))
    assert guard.status == "warning"
    with pytest.raises(BudgetExceededError):
        guard.reserve(D("1"))
    assert guard.status == "exceeded"
    guard.extend(D("0.60"))  # remaining 1.10 < 20 % of 5.60: back to warning, not ok
    assert guard.limit == D("5.60")
    assert guard.status == "warning"
    guard.extend(D("2"))  # remaining 3.10 >= 1.52: re-armed
    assert guard.status == "ok"
    assert events[-1].type == "budget.extended"
    assert events[-1].amount == D(2)
    guard.reserve(D("1"))
    guard.reserve(D("1"))  # remaining 1.10 < 1.52: warns again
    assert types(events).count("budget.warning") == 2


@pytest.mark.parametrize("extra", [0, -1, "nope"])
def test_bad_extension(guard: BudgetGuard, extra: object) -> None:
    with pytest.raises(ValueError, match=r"^extra_budget must be a USD amount above"):
        guard.extend(extra)  # type: ignore[arg-type]
    assert guard.limit == 5


def test_report_breakdowns(guard: BudgetGuard) -> None:
    calls = [
        ("researcher", "sim-small", None, "0.10"),
        ("builder", "sim-large", None, "0.40"),
        ("builder", "sim-small", "search_api", "0.05"),
        (None, None, "cached_search", "0.01"),
    ]
    for agent, model, tool, cost in calls:
        guard.commit(guard.reserve(D("0.50"), agent=agent, model=model, tool=tool), D(cost))
    guard.release(guard.reserve(D("0.50"), agent="qc"))
    report = guard.report()
    assert report.spent == D("0.56")
    assert report.calls == 4
    assert report.by_agent == {"researcher": D("0.10"), "builder": D("0.45"), "unknown": D("0.01")}
    assert report.by_model == {"sim-small": D("0.15"), "sim-large": D("0.40"), "unknown": D("0.01")}
    assert report.by_tool == {"search_api": D("0.05"), "cached_search": D("0.01")}
    assert sum(report.by_agent.values()) == report.spent == sum(report.by_model.values())
    assert report.remaining == D("4.44")
    data = report.to_dict()
    assert json.loads(json.dumps(data))["by_agent"]["builder"] == pytest.approx(0.45)
    assert data["limit"] == 5.0


def test_report_text_and_html() -> None:
    guard = BudgetGuard(5)
    guard.commit(guard.reserve(1, agent="<b>x</b>", model="sim-small"), D("0.9"))
    report = guard.report()
    text = str(report)
    assert text.splitlines()[0] == "Cost: $0.90 of $5.00 (18.0% used, $4.10 left, 1 calls)"
    assert "by model: sim-small $0.90" in text
    bundle = report._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "text/html"}
    assert bundle["text/plain"] == text
    assert "<table" in bundle["text/html"]
    assert "&lt;b&gt;x&lt;/b&gt;" in bundle["text/html"]  # escaped
    assert "<b>x</b>" not in bundle["text/html"]


def test_report_is_a_snapshot(guard: BudgetGuard) -> None:
    report = guard.report()
    guard.commit(guard.reserve(1, agent="a"), 1)
    assert report.spent == 0
    assert report.by_agent == {}


def test_events_reach_a_real_bus_in_order() -> None:
    bus = EventBus()
    seen: list[str] = []
    bus.subscribe(lambda e: seen.append(e.type))
    guard = BudgetGuard(1, on_event=bus.emit)
    guard.commit(guard.reserve(D("0.9")), D("0.95"))
    assert seen == ["budget.approved", "budget.warning", "budget.settled", "budget.overspent"]


def test_subscriber_runs_outside_the_lock() -> None:
    # A subscriber that uses the guard (here: reads remaining, which takes the lock) must not
    # deadlock; and another thread can reserve while a subscriber is still busy.
    release = threading.Event()
    entered = threading.Event()
    guard: BudgetGuard

    def slow(event: BudgetEvent) -> None:
        assert guard.remaining <= guard.limit
        if event.agent == "slow":
            entered.set()
            release.wait(5)

    guard = BudgetGuard(10, on_event=slow)
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(guard.reserve, 1, agent="slow")
        assert entered.wait(5)
        other = guard.reserve(1, agent="fast")  # not stalled behind the slow subscriber
        release.set()
        first = future.result(5)
    assert guard.reserved == 2
    assert {first.id, other.id} == {1, 2}


def test_no_events_without_subscriber() -> None:
    guard = BudgetGuard(1)
    guard.commit(guard.reserve(D("0.9")), D("0.95"))
    assert guard.status == "warning"


# -- concurrency properties --------------------------------------------------------------

op = st.tuples(
    st.decimals(min_value=0, max_value=2, places=2),  # reservation
    st.fractions(min_value=0, max_value=1),  # actual / reservation
    st.booleans(),  # commit (True) or release (False, the call failed)
)
workload = st.lists(op, min_size=1, max_size=40)
CONCURRENCY = settings(max_examples=40, deadline=None,
                       suppress_health_check=[HealthCheck.too_slow])


def _check(guard: BudgetGuard, events: list[BudgetEvent], committed: list[Decimal],
           limit: Decimal) -> None:
    assert guard.reserved == 0
    assert guard.spent == sum(committed, D(0))
    assert guard.spent <= limit
    assert guard.remaining == limit - guard.spent
    report = guard.report()
    assert report.calls == len(committed)
    assert sum(report.by_agent.values(), D(0)) == guard.spent
    kinds = [e.type for e in events]
    assert kinds.count("budget.approved") == (kinds.count("budget.settled")
                                              + kinds.count("budget.released"))
    assert kinds.count("budget.warning") <= 1
    assert "budget.overspent" not in kinds
    for e in events:  # every snapshot an event carries was consistent
        assert e.spent + e.reserved <= e.limit


def _actual(amount: Decimal, fraction) -> Decimal:
    return (amount * D(fraction.numerator) / D(fraction.denominator)).quantize(D("0.0001"),
                                                                                rounding="ROUND_DOWN")


@given(workload, st.decimals(min_value=1, max_value=10, places=2))
@CONCURRENCY
def test_threads_never_overspend(ops, limit: Decimal) -> None:
    events: list[BudgetEvent] = []
    guard = BudgetGuard(limit, on_event=events.append)
    committed: list[Decimal] = []
    start = threading.Barrier(4)

    def worker(part) -> None:
        start.wait(5)
        for amount, fraction, ok in part:
            try:
                r = guard.reserve(amount, agent=threading.current_thread().name)
            except BudgetExceededError:
                continue
            if ok:
                actual = _actual(amount, fraction)
                guard.commit(r, actual)
                committed.append(actual)
            else:
                guard.release(r)

    with ThreadPoolExecutor(4) as pool:
        for future in [pool.submit(worker, ops[i::4]) for i in range(4)]:
            future.result(10)
    _check(guard, events, committed, limit)


@given(workload, st.decimals(min_value=1, max_value=10, places=2))
@CONCURRENCY
def test_asyncio_tasks_never_overspend(ops, limit: Decimal) -> None:
    events: list[BudgetEvent] = []
    guard = BudgetGuard(limit, on_event=events.append)
    committed: list[Decimal] = []

    async def call(i: int, amount: Decimal, fraction, ok: bool) -> None:
        try:
            r = guard.reserve(amount, agent=f"agent-{i % 3}")
        except BudgetExceededError:
            return
        for _ in range(i % 3):  # the call is "in flight" while other tasks reserve
            await asyncio.sleep(0)
        if ok:
            actual = _actual(amount, fraction)
            guard.commit(r, actual)
            committed.append(actual)
        else:
            guard.release(r)

    async def main() -> None:
        async with asyncio.TaskGroup() as tg:
            for i, (amount, fraction, ok) in enumerate(ops):
                tg.create_task(call(i, amount, fraction, ok))

    asyncio.run(main())
    _check(guard, events, committed, limit)


@given(st.lists(st.decimals(min_value=0, max_value=1, places=3), min_size=1, max_size=30))
@settings(max_examples=50, deadline=None)
def test_spent_plus_reserved_never_passes_limit_while_in_flight(amounts) -> None:
    guard = BudgetGuard(3)
    held = []
    for amount in amounts:
        if guard.spent + guard.reserved + amount > guard.limit:
            with pytest.raises(BudgetExceededError):
                guard.reserve(amount)
        else:
            held.append(guard.reserve(amount))
        assert guard.spent + guard.reserved <= guard.limit
    assert guard.reserved == sum((r.amount for r in held), D(0))
