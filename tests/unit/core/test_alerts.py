"""Alert sinks: the one-line texts, the logging sink, and a webhook against a loopback server."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from taskorch_nb.core.alerts import (
    ALERT_LEVELS,
    ALERT_TYPES,
    Alert,
    LoggingAlerts,
    WebhookAlerts,
    alert_for,
    alert_text,
)
from taskorch_nb.core.budget import BudgetGuard
from taskorch_nb.core.events import (
    BudgetEvent,
    CircuitEvent,
    Event,
    EventBus,
    LLMEvent,
    Notice,
    PatternEvent,
    RunEvent,
    ToolEvent,
)
from taskorch_nb.errors import BudgetExceededError, ConfigurationError

D = Decimal


def budget_event(type_: str, **kw) -> BudgetEvent:
    base = {"amount": D("0.12"), "spent": D("3.98"), "reserved": D("0.12"), "limit": D(5),
            "remaining": D("0.90")}
    return BudgetEvent(type=type_, **{**base, **kw})


# -- the vocabulary ----------------------------------------------------------------------


def pattern_event(type_: str, fallback: str | None = "cached_search") -> PatternEvent:
    return PatternEvent(type=type_, name="search_api_timeout", signature="s", tool="search_api",
                        category="timeout", fallback=fallback)


#: One event of every alert type, with the level and line everybody shows for it.
VOCABULARY: list[tuple[Event, str, str]] = [
    (budget_event("budget.warning"), "warning", "Budget low: $0.90 of $5.00 left (18%)"),
    (budget_event("budget.rejected", amount=D("1.5"), agent="qc", model="sim-small"), "danger",
     "Call refused (budget): a call (agent qc, model sim-small) needed up to $1.50, "
     "$0.90 of $5.00 left"),
    (budget_event("budget.overspent", amount=D("0.003"), spent=D("4.01")), "danger",
     "Budget overspent: a call cost $0.003 more than reserved, $4.01 of $5.00 spent"),
    (budget_event("budget.extended", amount=D(1), limit=D(6)), "info",
     "Budget extended by $1.00 to $6.00"),
    (CircuitEvent(type="circuit.opened", name="search_api", state="open", previous="closed",
                  failures=3, reset_at=40.0, ts=10.0), "danger",
     "Circuit search_api OPEN after 3 failures; half-open in 30 s"),
    (CircuitEvent(type="circuit.half_opened", name="search_api", state="half-open"), "warning",
     "Circuit search_api HALF_OPEN: probing"),
    (CircuitEvent(type="circuit.closed", name="search_api", state="closed"), "success",
     "Circuit search_api CLOSED again"),
    (pattern_event("pattern.learned"), "info", "Pattern search_api_timeout learned"),
    (pattern_event("pattern.applied"), "info",
     "Pattern search_api_timeout applied: fallback cached_search"),
    (pattern_event("pattern.recovered"), "success", "Pattern search_api_timeout recovered"),
    (pattern_event("pattern.demoted"), "warning", "Pattern search_api_timeout demoted"),
    (ToolEvent(type="tool.fallback", tool="cached_search", fallback_of="search_api"), "warning",
     "Fallback cached_search used for search_api"),
    (LLMEvent(type="llm.failed", call_id="c1", provider="simulated", model="sim-small",
              agent="builder", status=503,
              error="Service\nUnavailable"), "warning",
     "Model sim-small (builder) failed: 503 Service Unavailable"),
    (RunEvent(type="qc.failed", detail={"tests_total": 5, "tests_failed": 1, "tests_errors": 1,
                                        "findings": ["a", "b"]}), "danger",
     "QC failed: 3/5 tests passed, 2 findings"),
    (RunEvent(type="qc.passed", detail={"approved": True}), "success", "QC passed: approved"),
    (RunEvent(type="run.paused", run_id="r1", task="Add auth",
              detail={"reason": "budget exceeded"}), "warning",
     "Run r1 ('Add auth') paused: budget exceeded"),
    (RunEvent(type="run.failed", run_id="r2", detail={"error": "ValueError: x"}), "danger",
     "Run r2 failed: ValueError: x"),
    (RunEvent(type="run.cancelled", status="cancelled"), "warning", "Run cancelled: cancelled"),
    (RunEvent(type="run.completed", run_id="r3", task="x" * 80, status="completed"), "success",
     f"Run r3 ('{'x' * 39}…') completed"),
]


@pytest.mark.parametrize(("event", "level", "text"), VOCABULARY,
                         ids=[event.type for event, _, _ in VOCABULARY])
def test_alert_for_every_type(event: Event, level: str, text: str) -> None:
    assert alert_for(event) == Alert(level, text)  # type: ignore[arg-type]


def test_the_vocabulary_is_complete() -> None:
    assert {event.type for event, _, _ in VOCABULARY} == set(ALERT_LEVELS)
    assert set(ALERT_LEVELS) >= ALERT_TYPES


def test_sinks_send_the_same_line_for_their_subset() -> None:
    for event, _, text in VOCABULARY:
        assert alert_text(event) == (text if event.type in ALERT_TYPES else None)


@pytest.mark.parametrize(("level", "alert_level"), [("warning", "warning"), ("error", "danger")])
def test_warning_and_error_notices_are_alerts_in_the_notebook_only(
    level: str, alert_level: str
) -> None:
    notice = Notice(type="subscriber.failed", level=level, message="boom\n  twice")
    assert alert_for(notice) == Alert(alert_level, "boom twice")  # type: ignore[arg-type]
    assert alert_text(notice) is None
    assert alert_for(Notice(type="x", level="info", message="fyi")) is None


@pytest.mark.parametrize(
    "event",
    [
        budget_event("budget.approved"),
        budget_event("budget.settled"),
        ToolEvent(type="tool.failed", tool="search_api"),
        CircuitEvent(type="circuit.rejected", name="x", state="open"),
        RunEvent(type="run.started"),
    ],
)
def test_routine_events_are_not_alerts(event: Event) -> None:
    assert alert_for(event) is None
    assert alert_text(event) is None


# -- logging sink ------------------------------------------------------------------------


def test_logging_sink_levels(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="taskorch_nb.alerts")
    sink = LoggingAlerts()
    sink(budget_event("budget.approved"))
    sink(budget_event("budget.warning"))
    sink(RunEvent(type="run.failed", run_id="r9", detail={"reason": "boom"}))
    records = [r for r in caplog.records if r.name == "taskorch_nb.alerts"]
    assert [(r.levelname, r.getMessage()) for r in records] == [
        ("WARNING", "Budget low: $0.90 of $5.00 left (18%)"),
        ("ERROR", "Run r9 failed: boom"),
    ]
    assert records[1].event_type == "run.failed"  # type: ignore[attr-defined]


def test_logging_sink_on_a_bus_with_a_real_guard(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="taskorch_nb.alerts")
    bus = EventBus()
    bus.subscribe(LoggingAlerts())
    guard = BudgetGuard(1, on_event=bus.emit)
    guard.commit(guard.reserve(D("0.85")), D("0.85"))
    with pytest.raises(BudgetExceededError):
        guard.reserve(D("0.5"))
    assert [r.getMessage() for r in caplog.records] == [
        "Budget low: $0.15 of $1.00 left (15%)",
        "Call refused (budget): a call needed up to $0.50, $0.15 of $1.00 left",
    ]


# -- webhook sink ------------------------------------------------------------------------


class Hook:
    """A loopback webhook endpoint that records the JSON bodies it receives."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.bodies: list[dict] = []
        self.received = threading.Event()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                hook.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(hook.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
                hook.received.set()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/services/T0/B0/secret"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def hook() -> Iterator[Hook]:
    server = Hook()
    yield server
    server.stop()


@pytest.fixture
def failing_hook() -> Iterator[Hook]:
    server = Hook(status=500)
    yield server
    server.stop()


def test_webhook_posts_slack_json(hook: Hook) -> None:
    notices: list[Event] = []
    sink = WebhookAlerts(hook.url, on_error=notices.append)
    sink(budget_event("budget.settled"))  # not an alert: not posted
    sink(budget_event("budget.warning"))
    sink(CircuitEvent(type="circuit.opened", name="search_api", state="open", failures=3))
    sink.close()
    assert hook.bodies == [
        {"text": "Budget low: $0.90 of $5.00 left (18%)"},
        {"text": "Circuit search_api OPEN after 3 failures"},
    ]
    assert (sink.sent, sink.failed) == (2, 0)
    assert notices == []


def test_webhook_on_a_bus(hook: Hook) -> None:
    bus = EventBus()
    sink = WebhookAlerts(hook.url, on_error=bus.emit)
    bus.subscribe(sink)
    bus.emit(RunEvent(type="run.paused", run_id="r1", detail={"reason": "budget"}))
    assert hook.received.wait(5)
    sink.close()
    assert hook.bodies == [{"text": "Run r1 paused: budget"}]


def test_webhook_500_reports_alert_failed(failing_hook: Hook) -> None:
    notices: list[Event] = []
    sink = WebhookAlerts(failing_hook.url, on_error=notices.append)
    sink(budget_event("budget.warning", run_id="r7"))
    sink.close()
    assert len(failing_hook.bodies) == 1
    assert len(notices) == 1
    notice = notices[0]
    assert isinstance(notice, Notice)
    assert (notice.type, notice.level, notice.run_id) == ("alert.failed", "warning", "r7")
    assert "answered 500" in notice.message
    assert notice.detail["event"] == "budget.warning"
    assert notice.detail["status"] == 500
    assert "secret" not in notice.message  # the webhook's secret path is not leaked
    assert sink.failed == 1


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_webhook_closed_port_never_raises() -> None:
    notices: list[Event] = []
    sink = WebhookAlerts(f"http://127.0.0.1:{closed_port()}/hook", timeout=2.0,
                         on_error=notices.append)
    sink(budget_event("budget.rejected"))  # returns at once, no exception
    sink(RunEvent(type="run.failed"))
    sink.close()
    assert [n.type for n in notices] == ["alert.failed", "alert.failed"]
    assert all("unreachable" in n.message for n in notices)


def test_webhook_without_on_error_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="taskorch_nb.alerts")
    sink = WebhookAlerts(f"http://127.0.0.1:{closed_port()}/hook", timeout=2.0)
    sink(budget_event("budget.warning"))
    sink.close()
    assert any("alert for budget.warning not delivered" in r.getMessage()
               for r in caplog.records)


def test_broken_on_error_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    def broken(event: Event) -> None:
        raise RuntimeError("handler down")

    sink = WebhookAlerts(f"http://127.0.0.1:{closed_port()}/hook", timeout=2.0, on_error=broken)
    sink(budget_event("budget.warning"))
    sink.close()
    assert any("alert.failed handler raised" in r.getMessage() for r in caplog.records)


def test_after_close_alerts_are_reported_not_sent(hook: Hook) -> None:
    notices: list[Event] = []
    sink = WebhookAlerts(hook.url, on_error=notices.append)
    sink.close()  # never started: nothing to drain
    sink(budget_event("budget.warning"))
    assert hook.bodies == []
    assert [n.message for n in notices] == [
        "alert for budget.warning not delivered: webhook sink is closed"
    ]


@pytest.mark.parametrize("url", ["", "hooks.slack.com/x", "ftp://host/x"])
def test_bad_url_is_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError, match="http"):
        WebhookAlerts(url)


async def test_orchestrator_alerts_reach_the_log_and_the_webhook(
    hook: Hook, caplog: pytest.LogCaptureFixture, tmp_path
) -> None:
    from taskorch_nb import FakeClock, Orchestrator

    orch = Orchestrator(store=":memory:", clock=FakeClock(), alert_webhook=hook.url)
    with caplog.at_level(logging.WARNING, logger="taskorch_nb.alerts"):
        run = await orch.run("Add user authentication", budget=0.25, workspace=tmp_path)
    orch.close()  # drains the webhook queue
    assert run.status == "PAUSED"
    logged = [r.getMessage() for r in caplog.records if r.name == "taskorch_nb.alerts"]
    assert any("budget exceeded" in m.lower() for m in logged)
    texts = [b["text"] for b in hook.bodies]
    assert any("budget exceeded" in t.lower() for t in texts)
    assert any("paused" in t.lower() for t in texts)
