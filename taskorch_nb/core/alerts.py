"""Alerts: the one vocabulary of events that need a person, and the sinks that tell them.

`alert_for` turns an event worth an alert into an `Alert` (a level and one line);
the notebook's run monitor shows every one of them. `alert_text` is the subset a
person away from the notebook is told of: `LoggingAlerts` logs it,
`WebhookAlerts` posts it to a Slack-compatible webhook from a background
thread, so a slow or dead endpoint never slows a run.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from taskorch_nb.core.events import Event, Notice
from taskorch_nb.core.money import format_usd
from taskorch_nb.errors import ConfigurationError

if TYPE_CHECKING:
    import httpx

AlertLevel = Literal["danger", "warning", "info", "success"]

#: Every event type worth an alert, with its level (warning and error `Notice`s are too).
ALERT_LEVELS: dict[str, AlertLevel] = {
    "budget.warning": "warning",
    "budget.rejected": "danger",
    "budget.overspent": "danger",
    "budget.extended": "info",
    "circuit.opened": "danger",
    "circuit.half_opened": "warning",
    "circuit.closed": "success",
    "pattern.learned": "info",
    "pattern.applied": "info",
    "pattern.recovered": "success",
    "pattern.demoted": "warning",
    "tool.fallback": "warning",
    "llm.failed": "warning",
    "qc.failed": "danger",
    "qc.passed": "success",
    "run.paused": "warning",
    "run.failed": "danger",
    "run.cancelled": "warning",
    "run.completed": "success",
}

#: The alerts the sinks send (log, webhook); the others only show in the notebook.
ALERT_TYPES = frozenset(
    {
        "budget.warning",
        "budget.rejected",
        "budget.overspent",
        "circuit.opened",
        "run.paused",
        "run.failed",
    }
)

logger = logging.getLogger("taskorch_nb.alerts")
# A library logs and the application decides where it goes: without logging configured,
# alerts are not printed to stderr (the notebook shows them in the dashboard instead).
logging.getLogger("taskorch_nb").addHandler(logging.NullHandler())


@dataclass(frozen=True, slots=True)
class Alert:
    """One event worth a look: how bad (`level`) and what happened (`text`, one line)."""

    level: AlertLevel
    text: str


def one_line(text: Any, width: int = 60) -> str:
    """`text` on one line, at most `width` characters."""
    line = " ".join(str(text).split())
    return line if len(line) <= width else line[: width - 1] + "…"


def qc_summary(detail: Mapping[str, Any]) -> str:
    """`4/5 tests passed, 2 findings` from a `qc.*` event's detail."""
    outcome = detail.get("outcome")
    if outcome == "no_tests_collected":
        return "no tests collected (pytest exit 5)"
    if outcome == "runner_failed":
        return f"the test runner failed: {detail.get('error')}"
    if outcome in ("timed_out", "killed"):
        return str(detail.get("error"))
    total = detail.get("tests_total")
    failed = (detail.get("tests_failed") or 0) + (detail.get("tests_errors") or 0)
    if total is None:
        return "approved" if detail.get("approved") else "not approved"
    findings = len(detail.get("findings") or ())
    extra = f", {findings} finding{'s' * (findings != 1)}" if findings else ""
    return f"{total - failed}/{total} tests passed{extra}"


def _budget_text(event: Event) -> str:
    remaining, limit = getattr(event, "remaining", None), getattr(event, "limit", None)
    left = f"{format_usd(remaining)} of {format_usd(limit)} left"
    if event.type == "budget.warning":
        percent = f" ({remaining / limit:.0%})" if remaining is not None and limit else ""
        return f"Budget low: {left}{percent}"
    amount = format_usd(getattr(event, "amount", None))
    if event.type == "budget.rejected":
        # a refused call is not an exceeded budget: nothing was spent beyond the limit
        return f"Call refused (budget): a call{_tags(event)} needed up to {amount}, {left}"
    if event.type == "budget.overspent":
        return (f"Budget overspent: a call{_tags(event)} cost {amount} more than reserved, "
                f"{format_usd(getattr(event, 'spent', None))} of {format_usd(limit)} spent")
    return f"Budget extended by {amount} to {format_usd(limit)}"


def _tags(event: Event) -> str:
    parts = [
        f"{name} {value}"
        for name in ("agent", "model", "tool")
        if (value := getattr(event, name, None))
    ]
    return f" ({', '.join(parts)})" if parts else ""


def _circuit_text(event: Event) -> str:
    name = getattr(event, "name", "?")
    if event.type == "circuit.half_opened":
        return f"Circuit {name} HALF_OPEN: probing"
    if event.type == "circuit.closed":
        return f"Circuit {name} CLOSED again"
    reset_at = getattr(event, "reset_at", None)
    when = f"; half-open in {reset_at - event.ts:.0f} s" if reset_at is not None else ""
    return f"Circuit {name} OPEN after {getattr(event, 'failures', 0)} failures{when}"


def _run_text(event: Event) -> str:
    verb = event.type.split(".", 1)[1]
    detail = getattr(event, "detail", None) or {}
    why = detail.get("reason") or detail.get("error")
    if why is None and verb != "completed":
        why = getattr(event, "status", None)
    task = getattr(event, "task", None)
    run = f"Run {event.run_id}" if event.run_id else "Run"
    what = f" ({one_line(task, 40)!r})" if task else ""
    return f"{run}{what} {verb}" + (f": {one_line(why, 120)}" if why else "")


def _other_text(event: Event) -> str:
    etype = event.type
    if etype.startswith("pattern."):
        verb = etype.split(".", 1)[1]
        fallback = getattr(event, "fallback", None)
        how = f": fallback {fallback}" if fallback and verb == "applied" else ""
        return f"Pattern {getattr(event, 'name', '?')} {verb}{how}"
    if etype == "tool.fallback":
        tool, instead_of = getattr(event, "tool", "?"), getattr(event, "fallback_of", "?")
        return f"Fallback {tool} used for {instead_of}"
    if etype == "llm.failed":
        agent = getattr(event, "agent", None)
        why = " ".join(str(x) for x in (getattr(event, "status", None),
                                        getattr(event, "error", None)) if x)
        return (f"Model {getattr(event, 'model', '?')}{f' ({agent})' if agent else ''} failed"
                + (f": {one_line(why, 80)}" if why else ""))
    verdict = "QC passed" if etype == "qc.passed" else "QC failed"
    return f"{verdict}: {qc_summary(getattr(event, 'detail', None) or {})}"


def alert_for(event: Event) -> Alert | None:
    """The `Alert` for an event worth one (see `ALERT_LEVELS`), else None."""
    etype = event.type
    level = ALERT_LEVELS.get(etype)
    if level is None:
        if isinstance(event, Notice) and event.level in ("warning", "error"):
            return Alert("danger" if event.level == "error" else "warning",
                         one_line(event.message, 90))
        return None
    family = etype.partition(".")[0]
    if family == "budget":
        return Alert(level, _budget_text(event))
    if family == "circuit":
        return Alert(level, _circuit_text(event))
    if family == "run":
        return Alert(level, _run_text(event))
    return Alert(level, _other_text(event))


def alert_text(event: Event) -> str | None:
    """The line the sinks send for an event in `ALERT_TYPES`, else None."""
    if event.type not in ALERT_TYPES:
        return None
    alert = alert_for(event)
    return alert.text if alert is not None else None


class LoggingAlerts:
    """Logs alerts on the `taskorch_nb.alerts` logger ("danger" ones as errors)."""

    #: What the bus delivers to it (`EventBus.subscribe`): the alerts only.
    event_types = ALERT_TYPES

    def __init__(self, log: logging.Logger | None = None) -> None:
        self.log = log or logger

    def __call__(self, event: Event) -> None:
        text = alert_text(event)
        if text is None:
            return
        level = logging.ERROR if ALERT_LEVELS[event.type] == "danger" else logging.WARNING
        self.log.log(level, text, extra={"event_type": event.type, "run_id": event.run_id})


_STOP = object()


class WebhookAlerts:
    """Posts alerts as `{"text": ...}` (Slack-compatible) from a daemon thread.

    Calling it only enqueues, so it never blocks or raises in the emitter. A
    post that fails is reported as a `Notice(type="alert.failed")` to `on_error`
    (e.g. the bus's `emit`), or logged when there is none. One attempt per alert.
    """

    #: What the bus delivers to it (`EventBus.subscribe`): the alerts only.
    event_types = ALERT_TYPES

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        transport: httpx.BaseTransport | None = None,
        on_error: Callable[[Event], Any] | None = None,
        max_queue: int = 1000,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigurationError(
                f"webhook url must be an http(s) URL, got {url!r}: pass e.g. "
                "'https://hooks.slack.com/services/...'"
            )
        self.url = url
        # Webhook URLs carry their secret in the path: reports name the host only.
        self.host = parts.netloc
        self.timeout = timeout
        self.on_error = on_error
        self._transport = transport
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False
        self._count_lock = threading.Lock()
        self.sent = 0
        """Alerts the endpoint accepted."""
        self.failed = 0
        """Alerts that could not be delivered."""

    def __call__(self, event: Event) -> None:
        text = alert_text(event)
        if text is None:
            return
        if self._closed:
            self._failed(event, "webhook sink is closed")
            return
        self._ensure_thread()
        try:
            self._queue.put_nowait((event, text))
        except queue.Full:
            self._failed(event, f"alert queue full ({self._queue.maxsize} waiting)")

    def _ensure_thread(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._worker, name="taskorch-webhook-alerts", daemon=True
                )
                self._thread.start()

    def _worker(self) -> None:
        import httpx  # only once an alert is actually sent

        with httpx.Client(timeout=self.timeout, transport=self._transport) as client:
            while True:
                item = self._queue.get()
                if item is _STOP:
                    return
                event, text = item
                try:
                    response = client.post(self.url, json={"text": text})
                    response.raise_for_status()
                except httpx.HTTPStatusError as exc:
                    self._failed(event, f"webhook {self.host} answered {exc.response.status_code}",
                                 status=exc.response.status_code)
                except Exception as exc:  # any transport failure is reported, never raised
                    self._failed(event, f"webhook {self.host} unreachable: "
                                        f"{type(exc).__name__}: {exc}")
                else:
                    self.sent += 1

    def _failed(self, event: Event, reason: str, *, status: int | None = None) -> None:
        with self._count_lock:
            self.failed += 1
        notice = Notice(
            type="alert.failed",
            level="warning",
            run_id=event.run_id,
            message=f"alert for {event.type} not delivered: {reason}",
            detail={"event": event.type, "host": self.host, "status": status},
        )
        if self.on_error is None:
            logger.warning(notice.message)
            return
        try:
            self.on_error(notice)
        except Exception:
            logger.exception("alert.failed handler raised; the alert was: %s", notice.message)

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (waiting up to `timeout` s), then stop the thread."""
        self._closed = True
        thread = self._thread
        if thread is None:
            return
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            logger.warning("webhook alert queue still full after %.1f s", timeout)
        thread.join(timeout)
        if thread.is_alive():
            logger.warning("webhook alerts still sending after %.1f s; left to finish in the "
                           "background", timeout)
            return
        while True:  # alerts that raced with close(): say they were not sent
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not _STOP:
                self._failed(item[0], "webhook sink is closed")

    def __repr__(self) -> str:
        return f"WebhookAlerts(host={self.host!r}, sent={self.sent}, failed={self.failed})"


__all__ = [
    "ALERT_LEVELS",
    "ALERT_TYPES",
    "Alert",
    "AlertLevel",
    "LoggingAlerts",
    "WebhookAlerts",
    "alert_for",
    "alert_text",
    "one_line",
    "qc_summary",
]
