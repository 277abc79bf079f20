"""Dashboard widgets, checked on their state and their ipywidgets' traits (no browser)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from decimal import Decimal

import pytest

from taskorch_nb import Orchestrator
from taskorch_nb.core.alerts import alert_text
from taskorch_nb.core.events import (
    BudgetEvent,
    CircuitEvent,
    EventBus,
    LLMEvent,
    Notice,
    PatternEvent,
    RunEvent,
    ToolEvent,
)
from taskorch_nb.notebook.text import render_text
from taskorch_nb.notebook.throttle import ManualScheduler
from taskorch_nb.notebook.widgets import BudgetGauge, CircuitPanel, Dashboard, RunMonitor
from taskorch_nb.testing import FakeClock
from tests.unit.notebook.following import TASK, dashboard_for

D = Decimal


def budget(
    etype: str,
    spent: str,
    *,
    limit: str = "5",
    reserved: str = "0",
    amount: str = "0.1",
    ts: float = 0.0,
) -> BudgetEvent:
    remaining = D(limit) - D(spent) - D(reserved)
    return BudgetEvent(
        type=etype,
        amount=D(amount),
        spent=D(spent),
        reserved=D(reserved),
        limit=D(limit),
        remaining=remaining,
        ts=ts,
    )


def circuit(
    etype: str,
    name: str,
    state: str,
    previous: str,
    *,
    failures: int = 3,
    reset_at: float | None = None,
    ts: float = 0.0,
) -> CircuitEvent:
    return CircuitEvent(
        type=etype,
        name=name,
        state=state,
        previous=previous,
        failures=failures,
        reset_at=reset_at,
        ts=ts,
    )


def phase(etype: str, name: str) -> RunEvent:
    return RunEvent(type=etype, phase=name)


def qc(passed: bool) -> RunEvent:
    detail = {
        "approved": passed,
        "tests_total": 5,
        "tests_failed": 0 if passed else 1,
        "tests_errors": 0,
        "findings": [],
    }
    return RunEvent(
        type="qc.passed" if passed else "qc.failed", phase="qc", agent="qc", detail=detail
    )


# --- budget gauge ---------------------------------------------------------------------------


def test_gauge_colour_at_each_threshold() -> None:
    gauge = BudgetGauge(limit=D("5"))
    assert (gauge.value, gauge.colour) == (0.0, "green")
    gauge.apply(budget("budget.settled", "1"))
    assert gauge.value == pytest.approx(0.2)
    assert gauge.colour == "green"
    gauge.apply(budget("budget.settled", "4"))  # 1.00 left: exactly 20 %, not under it
    assert gauge.colour == "green"
    gauge.apply(budget("budget.warning", "4.1"))
    assert gauge.colour == "yellow"
    assert gauge.remaining == D("0.9")
    gauge.apply(budget("budget.rejected", "4.1", amount="1.5"))
    assert gauge.colour == "red"
    assert gauge.value == pytest.approx(0.82)
    gauge.apply(budget("budget.extended", "4.1", limit="10"))  # more budget: green again
    assert (gauge.colour, gauge.limit) == ("green", D("10"))


def test_gauge_counts_reservations_in_what_is_left() -> None:
    gauge = BudgetGauge(limit="5", spent="3.5", reserved="0.6")
    assert gauge.remaining == D("0.9")
    assert gauge.colour == "yellow"
    assert gauge.value == pytest.approx(0.7)


def test_gauge_red_when_spent_reaches_the_limit_and_value_stays_in_range() -> None:
    gauge = BudgetGauge(limit=5)
    gauge.apply(budget("budget.overspent", "5.2"))
    assert (gauge.colour, gauge.value) == ("red", 1.0)


def test_gauge_without_limit() -> None:
    gauge = BudgetGauge()
    gauge.apply(
        BudgetEvent(
            type="budget.settled",
            amount=D(1),
            spent=D("1.5"),
            reserved=D(0),
            limit=None,
            remaining=None,
        )
    )
    assert (gauge.value, gauge.colour, gauge.remaining) == (0.0, "green", None)
    assert "no limit" in gauge.text()


def test_gauge_widget_traits_follow_the_colour() -> None:
    gauge = BudgetGauge(limit=D("5"), warn_below=0.2)
    bar, label, resume, _note = gauge.widget.children
    assert resume.layout.display == "none"  # no run bound: nothing to resume
    assert (bar.value, bar.bar_style) == (0.0, "success")
    gauge.apply(budget("budget.warning", "4.1"))
    assert (bar.value, bar.bar_style) == (pytest.approx(0.82), "warning")
    assert "$4.10 / $5.00" in label.value
    gauge.apply(budget("budget.rejected", "4.1"))
    assert bar.bar_style == "danger"
    assert "taskorch-gauge" in gauge.widget._dom_classes


def test_gauge_ignores_other_events() -> None:
    gauge = BudgetGauge(limit=5)
    gauge.apply(ToolEvent(type="tool.called", tool="x"))
    assert gauge.spent == 0


# --- circuit panel --------------------------------------------------------------------------


def test_circuit_rows_change_state_as_events_arrive() -> None:
    clock = FakeClock()
    panel = CircuitPanel(clock=clock, snapshot={"llm": {"state": "closed", "failures": 0}})
    assert list(panel.rows) == ["llm"]
    clock.advance(10.0)
    panel.apply(circuit("circuit.opened", "search_api", "open", "closed", reset_at=40.0, ts=10.0))
    assert list(panel.rows) == ["llm", "search_api"]
    row = panel.rows["search_api"]
    assert (row["state"], row["failures"]) == ("OPEN", 3)
    assert panel.seconds_to_half_open("search_api") == pytest.approx(30.0)
    clock.advance(12.5)
    assert panel.seconds_to_half_open("search_api") == pytest.approx(17.5)
    assert "half-open in 18 s" in panel.text()
    panel.apply(circuit("circuit.rejected", "search_api", "open", "open", reset_at=40.0, ts=23))
    assert panel.rows["search_api"]["rejected"] == 1
    clock.advance(17.5)
    assert panel.seconds_to_half_open("search_api") == 0.0
    panel.apply(circuit("circuit.half_opened", "search_api", "half_open", "open", ts=40.0))
    assert panel.rows["search_api"]["state"] == "HALF_OPEN"
    assert panel.seconds_to_half_open("search_api") is None
    panel.apply(circuit("circuit.closed", "search_api", "closed", "half_open", failures=0))
    assert panel.rows["search_api"]["state"] == "CLOSED"
    assert panel.rows["llm"]["state"] == "CLOSED"


def test_circuit_countdown_without_clock_uses_the_latest_event_time() -> None:
    panel = CircuitPanel()
    panel.apply(circuit("circuit.opened", "api", "OPEN", "CLOSED", reset_at=35.0, ts=5.0))
    assert panel.seconds_to_half_open("api") == pytest.approx(30.0)
    panel.apply(ToolEvent(type="tool.called", tool="other", ts=20.0))
    assert panel.seconds_to_half_open("api") == pytest.approx(15.0)


def test_circuit_widget_gets_a_row_per_breaker() -> None:
    panel = CircuitPanel(snapshot={"a": {"state": "CLOSED"}})
    box = panel.widget
    assert len(box.children) == 2  # heading + a
    panel.apply(circuit("circuit.opened", "b<x>", "open", "closed", reset_at=30.0))
    assert len(box.children) == 3
    html = box.children[2].children[0].value
    assert 'data-state="OPEN"' in html
    assert "b&lt;x&gt;" in html  # names are escaped
    assert "half-open in 30 s" in html
    panel.apply(circuit("circuit.half_opened", "b<x>", "half_open", "open"))
    assert 'data-state="HALF_OPEN"' in box.children[2].children[0].value
    assert len(box.children) == 3


def test_circuit_snapshot_accepts_objects() -> None:
    class Breaker:
        state = "half-open"
        failures = 2

    panel = CircuitPanel(snapshot={"api": Breaker()})
    assert panel.rows["api"]["state"] == "HALF_OPEN"
    assert panel.rows["api"]["failures"] == 2


# --- run monitor ----------------------------------------------------------------------------


def test_stepper_goes_through_the_phases_with_a_qc_build_reentry() -> None:
    monitor = RunMonitor()
    monitor.apply(RunEvent(type="run.started", task="Add user authentication", run_id="r1"))
    assert monitor.status == "running"
    for name in ("research", "design", "build", "qc"):
        monitor.apply(phase("phase.started", name))
        assert monitor.phase == name
        monitor.apply(phase("phase.completed", name))
    monitor.apply(qc(passed=False))
    monitor.apply(phase("phase.started", "build"))  # back to the builder
    assert monitor.phase == "build"
    assert monitor.done == {"research", "design"}
    assert monitor.rounds == {"research": 1, "design": 1, "build": 2, "qc": 1}
    assert "[>] build (round 2) > [ ] qc" in monitor.text()
    monitor.apply(phase("phase.completed", "build"))
    monitor.apply(phase("phase.started", "qc"))
    monitor.apply(qc(passed=True))
    monitor.apply(phase("phase.completed", "qc"))
    monitor.apply(RunEvent(type="run.completed", status="completed"))
    assert monitor.status == "completed"
    assert monitor.done == {"research", "design", "build", "qc"}
    assert monitor.rounds["qc"] == 2
    assert monitor.alerts[0] == "QC failed: 4/5 tests passed"
    assert monitor.alerts[-2:] == ["QC passed: 5/5 tests passed", "Run completed"]
    assert monitor.alert_levels[-2:] == ["success", "success"]


def test_monitor_alerts_and_repeats() -> None:
    monitor = RunMonitor()
    monitor.apply(budget("budget.warning", "4.1"))
    monitor.apply(budget("budget.warning", "4.3"))  # a repeat: counted, newest text
    monitor.apply(circuit("circuit.opened", "search_api", "open", "closed"))
    monitor.apply(
        PatternEvent(
            type="pattern.applied",
            name="search_api_timeout",
            signature="s",
            tool="search_api",
            category="timeout",
            fallback="cached_search",
        )
    )
    monitor.apply(ToolEvent(type="tool.succeeded", tool="cached_search"))  # not an alert
    monitor.apply(Notice(type="subscriber.failed", level="error", message="boom"))
    rejected = budget("budget.rejected", "4.3", amount="2")
    monitor.apply(rejected)
    monitor.apply(RunEvent(type="run.paused", status="paused", detail={"reason": "budget"}))
    assert monitor.alerts == [
        "Budget low: $0.70 of $5.00 left (14%) (x2)",
        "Circuit search_api OPEN after 3 failures",
        "Pattern search_api_timeout applied: fallback cached_search",
        "boom",
        "Call refused (budget): a call needed up to $2.00, $0.70 of $5.00 left",
        "Run paused: budget",
    ]
    # one vocabulary: the dashboard shows the line the log and webhook sinks send
    assert monitor.alerts[4] == alert_text(rejected)
    assert monitor.alert_levels == ["warning", "danger", "info", "danger", "danger", "warning"]


def test_monitor_log_keeps_the_last_lines() -> None:
    monitor = RunMonitor(log_size=3)
    for i in range(10):
        monitor.apply(ToolEvent(type="tool.called", tool=f"t{i}", ts=float(i)))
    assert monitor.events == 10
    assert len(monitor.log) == 3
    assert monitor.log[-1].split() == ["+9.00s", "tool.called", "t9", "(attempt", "1)"]


def test_monitor_widget_marks_the_steps() -> None:
    monitor = RunMonitor()
    box = monitor.widget
    monitor.apply(phase("phase.started", "research"))
    monitor.apply(phase("phase.completed", "research"))
    monitor.apply(phase("phase.started", "design"))
    stepper, alerts, log = box.children
    assert 'data-phase="research" data-state="done"' in stepper.value
    assert 'data-phase="design" data-state="current"' in stepper.value
    assert 'data-phase="qc" data-state="todo"' in stepper.value
    assert "phase.started design" in log.value
    assert alerts.value == ""


def test_unknown_phases_are_added_to_the_stepper() -> None:
    monitor = RunMonitor()
    monitor.apply(phase("phase.started", "deploy"))
    assert monitor.phases[-1] == "deploy"


# --- dashboard ------------------------------------------------------------------------------


def fake_dashboard(**kwargs) -> tuple[Dashboard, ManualScheduler]:
    scheduler = ManualScheduler(FakeClock())
    dash = Dashboard(rate_clock=scheduler.clock, scheduler=scheduler, **kwargs)
    return dash, scheduler


def test_calling_the_dashboard_only_queues() -> None:
    dash, scheduler = fake_dashboard(limit=5)
    dash(budget("budget.settled", "1"))
    assert (dash.pending, dash.renders, dash.gauge.spent) == (1, 0, 0)
    scheduler.run_due()
    assert (dash.pending, dash.renders, dash.gauge.spent) == (0, 1, D("1"))


def test_ten_thousand_events_give_a_handful_of_renders_per_second_of_fake_time() -> None:
    dash, scheduler = fake_dashboard(limit=100)
    dash.widget  # noqa: B018  (built, so renders write traits)
    events = [
        budget("budget.settled", str(D(i) / 100), limit="100", ts=i / 10_000) for i in range(10_000)
    ]
    for event in events:  # over one second of fake time
        dash(event)
        scheduler.advance(0.0001)
    assert dash.renders <= 11
    dash.flush()
    last = events[-1]
    assert dash.gauge.spent == last.spent
    assert dash.gauge.widget.children[0].value == pytest.approx(float(last.spent / 100))
    assert dash.monitor.events == 10_000
    assert dash.pending == 0


def test_on_the_real_timer_thread_close_applies_every_event() -> None:
    # The rate limit itself is checked in fake time above; here the default timer thread
    # and the last render of close() must still leave nothing behind.
    dash = Dashboard(limit=100)
    dash.widget  # noqa: B018
    for i in range(10_000):
        dash(budget("budget.settled", str(D(i) / 100), limit="100"))
    dash.close()
    assert dash.renders >= 1
    assert dash.pending == 0
    assert dash.gauge.spent == D("99.99")
    assert dash.monitor.events == 10_000


def test_a_flush_writes_each_trait_once() -> None:
    dash, _ = fake_dashboard(limit=100)
    bar = dash.widget.children[1].children[0]
    changes: list[float] = []
    bar.observe(lambda change: changes.append(change["new"]), names="value")
    for i in range(1, 1001):
        dash(budget("budget.settled", str(D(i) / 100), limit="100"))
    dash.flush()
    assert changes == [pytest.approx(0.1)]


def test_events_from_two_threads() -> None:
    dash = Dashboard(limit=1000, max_rate=50.0)
    dash.widget  # noqa: B018

    def feed(name: str) -> None:
        for i in range(5000):
            dash(
                circuit(
                    "circuit.opened" if i % 2 else "circuit.closed",
                    name,
                    "open" if i % 2 else "closed",
                    "closed",
                    failures=i,
                )
            )

    threads = [threading.Thread(target=feed, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    dash.close()
    assert dash.monitor.events == 10_000
    assert dash.pending == 0
    for name in ("a", "b"):  # each breaker ends as its thread's last event left it
        assert dash.panel.rows[name]["state"] == "OPEN"
        assert dash.panel.rows[name]["failures"] == 4999


def test_countdown_ticks_while_a_breaker_is_open() -> None:
    clock = FakeClock()
    dash, scheduler = fake_dashboard(clock=clock)
    dash(circuit("circuit.opened", "api", "open", "closed", reset_at=30.0))
    scheduler.run_due()
    assert dash.renders == 1
    assert scheduler.pending == 1  # a tick armed for the countdown
    clock.advance(1.0)
    scheduler.advance(1.0)
    assert dash.renders == 2
    assert "half-open in 29 s" in dash.text()
    scheduler.advance(1.0)  # the orchestrator's clock did not move: nothing to redraw
    assert dash.renders == 2
    assert scheduler.pending == 0
    dash(ToolEvent(type="tool.called", tool="cached_search"))
    scheduler.advance(0.1)
    assert dash.renders == 3
    assert scheduler.pending == 1  # ticking again after the redraw
    dash(ToolEvent(type="tool.succeeded", tool="cached_search"))
    scheduler.advance(0.1)  # an event is not held back by the pending tick
    assert dash.renders == 4


def test_close_flushes_and_later_events_apply_at_once() -> None:
    dash, scheduler = fake_dashboard(limit=5)
    dash(budget("budget.settled", "1"))
    dash.close()
    assert dash.gauge.spent == D("1")
    dash(budget("budget.settled", "2"))
    assert dash.gauge.spent == D("2")
    assert dash.closed
    assert scheduler.pending == 0


def test_dashboard_from_a_bus_and_text() -> None:
    clock = FakeClock()
    bus = EventBus(clock)
    dash = Dashboard(limit=D("5"), clock=clock, circuits={"search_api": {"state": "closed"}})
    bus.subscribe(dash.subscriber)  # the cheap twin of bus.subscribe(dash)
    bus.emit(RunEvent(type="run.started", task="Add user authentication", run_id="r1"))
    bus.emit(phase("phase.started", "research"))
    bus.emit(
        ToolEvent(type="tool.failed", tool="search_api", attempt=3, category="timeout", status=504)
    )
    bus.emit(circuit("circuit.opened", "search_api", "open", "closed", reset_at=30.0))
    bus.emit(
        LLMEvent(
            type="llm.completed",
            call_id="c1",
            provider="simulated",
            model="sim-small",
            agent="researcher",
            input_tokens=120,
            output_tokens=40,
            cost=D("0.0012"),
            latency=0.5,
        )
    )
    bus.emit(budget("budget.settled", "0.0012"))
    clock.advance(4.0)
    text = dash.text()
    dash.close()
    assert text.splitlines()[0] == "Run r1 [running]: Add user authentication"
    assert "[>] research > [ ] design" in text
    assert "search_api  OPEN       failures 3  half-open in 26 s" in text
    assert "Budget  [--------------------] $0.0012 of $5.00 spent (0%)" in text
    assert "llm.completed sim-small (researcher) 120+40 tok $0.0012 0.50s" in text
    assert "tool.failed search_api attempt 3: timeout 504" in text
    assert text == render_text(dash.gauge, dash.panel, dash.monitor)


def test_mimebundle_has_text_and_the_widget_view() -> None:
    dash, _ = fake_dashboard(limit=5)
    dash(budget("budget.warning", "4.5"))
    bundle = dash._repr_mimebundle_()
    assert "Budget low" in bundle["text/plain"]
    assert "LOW" in bundle["text/plain"]
    view = bundle["application/vnd.jupyter.widget-view+json"]
    assert view["model_id"] == dash.widget.model_id
    assert "taskorch-dashboard" in dash.widget._dom_classes


def test_mimebundle_honours_include_and_exclude() -> None:
    dash, _ = fake_dashboard(limit=5)
    text_only = dash._repr_mimebundle_(include={"text/plain"})
    assert set(text_only) == {"text/plain"}
    assert dash._widget is None  # a view nobody asked for is not built
    bundle = dash._repr_mimebundle_(exclude={"text/html"})
    assert set(bundle) == {"text/plain", "application/vnd.jupyter.widget-view+json"}


def test_text_dashboard_works_without_importing_ipywidgets() -> None:
    """Outside a notebook (CLI, scripts) nothing loads ipywidgets until a widget is asked for."""
    code = (
        "import sys\n"
        "from decimal import Decimal\n"
        "from taskorch_nb.core.events import BudgetEvent\n"
        "from taskorch_nb.notebook.widgets import Dashboard\n"
        "d = Dashboard(limit=5)\n"
        "d(BudgetEvent(type='budget.warning', amount=Decimal('1'), spent=Decimal('4.5'),\n"
        "              reserved=Decimal(0), limit=Decimal(5), remaining=Decimal('0.5')))\n"
        "d.close()\n"
        "print(d.text().splitlines()[-2])\n"
        "print('ipywidgets' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.splitlines()
    assert out[0].startswith("Budget  [##################--] $4.50 of $5.00 spent (90%)")
    assert out[1] == "False"


def test_the_stepper_follows_the_workflow_phases() -> None:
    from taskorch_nb.agents import workflow

    assert RunMonitor().phases == list(workflow.PHASES)
    assert Dashboard(limit=1).monitor.phases == list(workflow.PHASES)


# --- following a run ------------------------------------------------------------------


async def test_a_newer_dashboard_supersedes_the_first(tmp_path) -> None:
    orch = Orchestrator(store=":memory:", clock=FakeClock())
    run = orch.runner.create(TASK, workflow="single", budget="0.0005", workspace=tmp_path)
    first, release = dashboard_for(orch, run)
    await orch.runner.execute(run)
    release()
    second, release2 = dashboard_for(orch, run)
    assert first.superseded
    assert first.monitor.status == "superseded by a newer dashboard"
    assert "superseded" in first.text().splitlines()[0]
    assert first.gauge.widget.children[2].layout.display == "none"  # no buttons any more
    await run.resume(extra_budget=1)
    release2()
    assert second.monitor.status == "completed"
    assert first.monitor.status == "superseded by a newer dashboard"


async def test_a_single_runs_stepper_lists_only_its_steps(tmp_path) -> None:
    orch = Orchestrator(store=":memory:", clock=FakeClock())
    run = orch.runner.create(TASK, workflow="single", workspace=tmp_path)
    dash, release = dashboard_for(orch, run)
    await orch.runner.execute(run)
    release()
    assert dash.monitor.phases == ["build"]
    assert dash.monitor.done == {"build"}
    assert 'data-phase="research"' not in dash.monitor.widget.children[0].value


def test_the_shown_dashboard_renews_its_static_view_when_it_closes(shell, tmp_path) -> None:
    """Views without a kernel show the output's text/html: after the run, not before it."""
    from IPython.utils.capture import capture_output

    orch = Orchestrator(store=":memory:", clock=FakeClock())
    run = orch.runner.create(TASK, workflow="single", budget="0.0005", workspace=tmp_path)
    dash, release = dashboard_for(orch, run)
    with capture_output() as shown:
        dash.display()
        asyncio.run(orch.runner.execute(run))
        release()
        dash.close()
    first, last = shown.outputs
    assert "[waiting]" in first.data["text/plain"]
    assert "paused" in last.data["text/plain"]
    assert last.update  # the same output, renewed
    assert "<button disabled" in last.data["text/html"]
    assert last.data["application/vnd.jupyter.widget-view+json"]["model_id"] == \
        dash.widget.model_id


async def test_replay_rebuilds_a_finished_runs_dashboard_from_its_events(tmp_path) -> None:
    from taskorch_nb import Orchestrator
    from taskorch_nb.testing import FakeClock

    orch = Orchestrator(store=":memory:", clock=FakeClock())
    run = orch.runner.create("Add user authentication", workflow="single", budget="0.0005",
                             workspace=tmp_path)
    await orch.runner.execute(run)
    dash = Dashboard.replay(run)
    assert dash.closed
    assert dash.pending == 0
    assert dash.monitor.events == len(run.events)
    assert dash.monitor.phases == ["build"]
    assert dash.gauge.refused is not None  # the call the budget refused
    assert dash.controls.can_resume
    assert "Add $ and resume" in dash.static_controls()
