"""Alert sinks: event-bus subscribers that tell a human when something needs attention.

`alert_text` turns the few events worth an alert into one line; `LoggingAlerts`
logs them, `WebhookAlerts` posts them to a Slack-compatible webhook from a
background thread, so a slow or dead endpoint never slows a run.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from taskorch_nb.core.events import Event, Notice
from taskorch_nb.errors import ConfigurationError

if TYPE_CHECKING:
    import httpx

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

#: Alerts logged at ERROR; the others at WARNING.
ERROR_TYPES = frozenset({"budget.rejected", "run.failed"})

logger = logging.getLogger("taskorch_nb.alerts")
# A library logs and the application decides where it goes: without logging configured,
# alerts are not printed to stderr (the notebook shows them in the dashboard instead).
logging.getLogger("taskorch_nb").addHandler(logging.NullHandler())


def _usd(value: Any, places: int = 2) -> str:
    return f"${Decimal(value):,.{places}f}" if value is not None else "$?"


def _budget_text(event: Event) -> str:
    remaining = getattr(event, "remaining", None)
    limit = getattr(event, "limit", None)
    amount = getattr(event, "amount", None)
    spent = getattr(event, "spent", None)
    left = f"{_usd(remaining)} of {_usd(limit)} left"
    if event.type == "budget.warning":
        percent = f"{remaining / limit:.0%}" if remaining is not None and limit else "?"
        return f"Budget at {percent} ({left})"
    if event.type == "budget.rejected":
        who = _tags(event)
        return f"Budget exceeded: call{who} needs up to {_usd(amount, 4)}, {left}"
    return (
        f"Call{_tags(event)} cost {_usd(amount, 4)} more than reserved "
        f"(spent {_usd(spent)} of {_usd(limit)})"
    )


def _tags(event: Event) -> str:
    parts = [
        f"{name} {value}"
        for name in ("agent", "model", "tool")
        if (value := getattr(event, name, None))
    ]
    return f" ({', '.join(parts)})" if parts else ""


def _circuit_text(event: Event) -> str:
    name = getattr(event, "name", "?")
    failures = getattr(event, "failures", 0)
    reset_at = getattr(event, "reset_at", None)
    when = f"; half-open in {reset_at - event.ts:.0f} s" if reset_at is not None else ""
    return f"Circuit {name!r} opened after {failures} failures{when}"


def _run_text(event: Event) -> str:
    verb = "paused" if event.type == "run.paused" else "failed"
    detail = getattr(event, "detail", None) or {}
    why = detail.get("reason") or detail.get("error") or getattr(event, "status", None)
    task = getattr(event, "task", None)
    run = f"Run {event.run_id}" if event.run_id else "Run"
    what = f" ({task!r})" if task else ""
    return f"{run}{what} {verb}" + (f": {why}" if why else "")


def alert_text(event: Event) -> str | None:
    """One human line for an alert-worthy event, else None."""
    if event.type not in ALERT_TYPES:
        return None
    if event.type.startswith("budget."):
        return _budget_text(event)
    if event.type == "circuit.opened":
        return _circuit_text(event)
    return _run_text(event)


class LoggingAlerts:
    """Logs alert events on the `taskorch_nb.alerts` logger (rejections and failures as errors)."""

    def __init__(self, log: logging.Logger | None = None) -> None:
        self.log = log or logger

    def __call__(self, event: Event) -> None:
        text = alert_text(event)
        if text is None:
            return
        level = logging.ERROR if event.type in ERROR_TYPES else logging.WARNING
        self.log.log(level, text, extra={"event_type": event.type, "run_id": event.run_id})


_STOP = object()


class WebhookAlerts:
    """Posts alerts as `{"text": ...}` (Slack-compatible) from a daemon thread.

    Calling it only enqueues, so it never blocks or raises in the emitter. A
    post that fails is reported as a `Notice(type="alert.failed")` to `on_error`
    (e.g. the bus's `emit`), or logged when there is none. One attempt per alert.
    """

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


__all__ = ["ALERT_TYPES", "LoggingAlerts", "WebhookAlerts", "alert_text"]
