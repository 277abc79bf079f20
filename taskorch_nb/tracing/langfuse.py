"""Export each run's trace to Langfuse, off the calling thread, never blocking a notebook.

`LangfuseExporter` is an event-bus subscriber whose call only appends the event
to a queue. A daemon thread rebuilds the spans from the events (the same
`SpanBuilder` as the local trace) and, when a run ends, sends them through the
official SDK (langfuse >= 4.7): agent, generation, tool and evaluator
observations with their real start and end times, the run id as the session,
and the trace scores `quality` and `cost`.

Langfuse being down must not hurt a run: a run's end only asks for a flush in
the background (`flush_soon`), so no run waits on the network; the one bounded
wait is `close()`. Export failures, flushes that outlast their timeout and the
SDK's own log warnings ("Failed to send 2 scores") become `tracing.warning`
notices (via `on_warning`), never exceptions or stderr; `flush(timeout)` returns
within `timeout`.
"""

from __future__ import annotations

import base64
import collections
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from taskorch_nb.core.events import Event, Notice
from taskorch_nb.errors import ConfigurationError
from taskorch_nb.tracing.spans import ADHOC_TRACE, TERMINAL_RUN_EVENTS, Score, Span, SpanBuilder

WarningHandler = Callable[[Notice], Any]

#: Langfuse observation type for each span kind (the trace root is a plain span).
OBSERVATION_TYPES = {"trace": "span", "phase": "span", "agent": "agent",
                     "generation": "generation", "tool": "tool", "evaluator": "evaluator"}

#: Flush the SDK after this many spans: its export queue holds 2,048.
_SPANS_PER_FLUSH = 1_000
_POLL_SECONDS = 0.1


class _Marker:
    """A point in the queue: set once everything before it has been processed."""

    __slots__ = ("done", "export_adhoc", "then")

    def __init__(self, *, export_adhoc: bool, then: Callable[[], None] | None = None) -> None:
        self.done = threading.Event()
        self.export_adhoc = export_adhoc
        self.then = then
        """Called on the export thread once the marker is reached."""


def _ns(wall: float) -> int:
    return round(wall * 1_000_000_000)


class LangfuseExporter:
    """Sends finished runs to Langfuse from a background thread.

    Subscribe it to the bus (`orch.subscribe(exporter)`); call `flush()` where a
    script must know the spans have left, and `close()` at the end.
    `client_factory()` may return a ready `Langfuse` client (tests, custom setup).
    """

    def __init__(
        self,
        *,
        public_key: str | None = None,
        secret_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 5.0,
        flush_timeout: float = 5.0,
        on_warning: WarningHandler | None = None,
        client_factory: Callable[[], Any] | None = None,
    ) -> None:
        self.public_key = public_key or os.environ.get("LANGFUSE_PUBLIC_KEY")
        self.secret_key = secret_key or os.environ.get("LANGFUSE_SECRET_KEY")
        self.base_url = (base_url or os.environ.get("LANGFUSE_BASE_URL")
                         or os.environ.get("LANGFUSE_HOST") or "https://cloud.langfuse.com"
                         ).rstrip("/")
        if client_factory is None and not (self.public_key and self.secret_key):
            raise ConfigurationError("LangfuseExporter needs public_key and secret_key "
                             "(or LANGFUSE_PUBLIC_KEY / LANGFUSE_SECRET_KEY)")
        self.timeout = float(timeout)
        self.flush_timeout = float(flush_timeout)
        self.on_warning = on_warning
        self._client_factory = client_factory
        self._client: Any = None
        self._client_failed = False
        self._span_exporter: _WatchedExporter | None = None
        self._tracer_provider: Any = None
        self._httpx: Any = None
        self._queue: collections.deque[Event | _Marker] = collections.deque()
        self._wake = threading.Event()
        self._stop = False
        self._closed = False
        self._builder = SpanBuilder()
        # per trace: span id -> the OTel span it became (children and resumed runs need them)
        self._sent: dict[str, dict[str, Any]] = {}
        self._since_flush = 0
        self.exported_spans = 0
        """Spans handed to the SDK so far."""
        self.exported_scores = 0
        self._flusher: threading.Thread | None = None
        self._flush_again = False
        self._flush_lock = threading.Lock()
        self.background_flushes = 0
        """SDK flushes started by `flush_soon` (each on a thread of its own)."""
        self._sdk_seen: set[tuple[str, object]] = set()
        self._own_threads: set[int | None] = set()
        """Threads whose SDK log records are this exporter's (its own and its client's)."""
        _SDK_LOGS.attach(self)
        self._thread = threading.Thread(target=self._work, name="taskorch-langfuse",
                                        daemon=True)
        self._thread.start()

    @classmethod
    def from_env(cls, **kwargs: Any) -> LangfuseExporter | None:
        """An exporter configured from `LANGFUSE_*` variables, or None when the keys are unset."""
        if not (os.environ.get("LANGFUSE_PUBLIC_KEY") and os.environ.get("LANGFUSE_SECRET_KEY")):
            return None
        if "LANGFUSE_TIMEOUT" in os.environ and "timeout" not in kwargs:
            kwargs["timeout"] = float(os.environ["LANGFUSE_TIMEOUT"])
        return cls(**kwargs)

    # -- calling thread ---------------------------------------------------------------

    def __call__(self, event: Event) -> None:
        self._queue.append(event)
        if event.type in TERMINAL_RUN_EVENTS:
            self._wake.set()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait at most `timeout` s for queued runs to reach Langfuse; False (and a warning) if not.

        Closed adhoc spans (tool calls outside a run) are sent as well.
        """
        timeout = self.flush_timeout if timeout is None else float(timeout)
        deadline = time.monotonic() + timeout
        marker = _Marker(export_adhoc=True)
        self._queue.append(marker)
        self._wake.set()
        if not marker.done.wait(timeout):
            self._warn(f"Langfuse export at {self.base_url} still busy after {timeout:g} s "
                       "(server slow or hanging); spans stay queued", reason="timeout")
            return False
        client = self._client
        if client is None:
            return not self._client_failed
        return self._bounded(client.flush, deadline - time.monotonic(), "flush")

    def flush_soon(self) -> None:
        """Send what is queued without waiting for it: what a run does when it ends.

        The export thread hands the spans to the SDK, then one helper thread flushes
        the SDK; a request made while a flush is under way is folded into one more.
        """
        if self._closed:
            return
        self._queue.append(_Marker(export_adhoc=True, then=self._start_flush))
        self._wake.set()

    def _start_flush(self) -> None:
        with self._flush_lock:
            if self._flusher is not None:
                self._flush_again = True
                return
            if self._client is None or self._closed:
                return
            self.background_flushes += 1
            self._flusher = threading.Thread(target=self._flush_sdk,
                                             name="taskorch-langfuse-flush", daemon=True)
            self._flusher.start()

    def _flush_sdk(self) -> None:
        self._own_threads.add(threading.get_ident())
        while True:
            try:
                self._client.flush()
            except Exception as exc:  # reported, and the next flush may do better
                self._warn(f"Langfuse flush failed: {type(exc).__name__}: {exc}",
                           reason="error")
            with self._flush_lock:
                if not self._flush_again or self._closed:
                    self._flusher = None
                    return
                self._flush_again = False

    def close(self, timeout: float | None = None) -> bool:
        """Flush (bounded), stop the thread and shut the SDK client down (bounded)."""
        if self._closed:
            return True
        try:
            return self._close(timeout)
        finally:
            _SDK_LOGS.detach(self)

    def _close(self, timeout: float | None) -> bool:
        timeout = self.flush_timeout if timeout is None else float(timeout)
        deadline = time.monotonic() + timeout
        ok = self.flush(timeout)
        self._closed = self._stop = True
        self._wake.set()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        client = self._client
        if client is not None:
            # on a dead server this goes on in the background and closes the sockets later
            done = self._bounded(self._shutdown_sdk, deadline - time.monotonic(), "shutdown",
                                 warn=ok)
            ok = ok and done
            self._forget_sdk_singleton(client)
        return ok

    def _shutdown_sdk(self) -> None:
        self._client.shutdown()
        if self._tracer_provider is not None:
            self._tracer_provider.shutdown()
        if self._httpx is not None:
            self._httpx.close()

    # -- background thread --------------------------------------------------------------

    def _work(self) -> None:
        self._own_threads.add(threading.get_ident())
        while not self._stop:
            self._wake.wait(_POLL_SECONDS)
            self._wake.clear()
            self._drain()
        self._drain()

    def _drain(self) -> None:
        queue = self._queue
        builder = self._builder
        while queue:
            item = queue.popleft()
            try:
                if isinstance(item, _Marker):
                    if item.export_adhoc:
                        self._export(ADHOC_TRACE, final=False)
                    item.done.set()
                    if item.then is not None:
                        item.then()
                    continue
                builder(item)
                if item.type in TERMINAL_RUN_EVENTS:
                    run_id = item.run_id or ADHOC_TRACE
                    self._export(run_id, final=item.type != "run.paused")
            except Exception as exc:  # the exporter thread must survive anything
                self._warn(f"tracing export failed: {type(exc).__name__}: {exc}",
                           reason="error")
                if isinstance(item, _Marker):
                    item.done.set()

    def _get_client(self) -> Any:
        if self._client is not None or self._client_failed:
            return self._client
        before = {t.ident for t in threading.enumerate()}
        try:
            if self._client_factory is not None:
                self._client = self._client_factory()
            else:
                self._client = self._make_client()
            # the SDK's consumer and span-processor threads start with the client
            self._own_threads.update({t.ident for t in threading.enumerate()} - before)
        except Exception as exc:
            self._client_failed = True
            self._warn(f"Langfuse client could not start: {type(exc).__name__}: {exc}",
                       reason="client")
        return self._client

    def _make_client(self) -> Any:
        import httpx
        from langfuse import Langfuse
        from opentelemetry.exporter.otlp.proto.http import Compression
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace import TracerProvider

        token = base64.b64encode(f"{self.public_key}:{self.secret_key}".encode()).decode()
        otlp = OTLPSpanExporter(
            endpoint=f"{self.base_url}/api/public/otel/v1/traces",
            headers={"Authorization": f"Basic {token}",
                     "x-langfuse-sdk-name": "python",
                     "x-langfuse-public-key": str(self.public_key),
                     "x-langfuse-ingestion-version": "4"},
            timeout=self.timeout,
            compression=Compression.Gzip,
        )
        self._span_exporter = _WatchedExporter(otlp, self._export_failed)
        # our own TracerProvider (the global one would mix in, and flush, other clients) and
        # httpx client (the SDK never closes the one it makes)
        self._tracer_provider = TracerProvider()
        self._httpx = httpx.Client(timeout=self.timeout)
        return Langfuse(public_key=self.public_key, secret_key=self.secret_key,
                        base_url=self.base_url, timeout=max(1, round(self.timeout)),
                        tracer_provider=self._tracer_provider, httpx_client=self._httpx,
                        span_exporter=self._span_exporter)

    def _export(self, run_id: str, *, final: bool) -> None:
        spans = self._builder.spans(run_id)
        scores = self._builder.scores(run_id)
        sent = self._sent.setdefault(run_id, {})
        todo = [s for s in spans if s.span_id not in sent and s.end is not None]
        if run_id == ADHOC_TRACE:
            todo = [s for s in todo if s.kind != "trace"]
        if not todo and not scores:
            return
        client = self._get_client()
        if client is None:
            return
        from langfuse import Langfuse, propagate_attributes

        root = spans[0]
        if run_id == ADHOC_TRACE:
            # each flush sends the adhoc tool calls under a fresh root that spans them
            root = Span(ADHOC_TRACE, f"adhoc:{random.getrandbits(48):012x}", None, "adhoc",
                        "trace", 0.0, 0.0, min(s.start_wall for s in todo),
                        max(s.end_wall or s.start_wall for s in todo), "ok", {})
            todo.insert(0, root)
            sent = {}
        trace_id = Langfuse.create_trace_id(seed=root.span_id if run_id == ADHOC_TRACE
                                            else run_id)
        with propagate_attributes(session_id=None if run_id == ADHOC_TRACE else run_id,
                                  trace_name=root.name[:200]):
            for span in todo:
                parent = None
                if span.kind != "trace":
                    parent = sent.get(span.parent_id or "") or sent.get(root.span_id)
                    if parent is None and run_id == ADHOC_TRACE:
                        parent = sent[root.span_id]
                sent[span.span_id] = self._send(client, span, parent, trace_id)
        for score in scores:
            self._send_score(client, score, trace_id, run_id)
        if run_id == ADHOC_TRACE:
            self._builder.prune(ADHOC_TRACE)
        elif final:
            self._sent.pop(run_id, None)
            self._builder.forget(run_id)

    def _send(self, client: Any, span: Span, parent: Any, trace_id: str) -> Any:
        """Create one observation with the span's real times; returns its OTel span."""
        from langfuse import LangfuseOtelSpanAttributes
        from opentelemetry import trace as otel

        attrs = span.attributes
        as_type = OBSERVATION_TYPES.get(span.kind, "span")
        kwargs: dict[str, Any] = {"metadata": _metadata(span)}
        if span.status == "error":
            kwargs["level"] = "ERROR"
            kwargs["status_message"] = str(attrs.get("error") or attrs.get("interrupted")
                                           or "error")
        if span.kind == "generation":
            kwargs["model"] = attrs.get("model")
            kwargs["usage_details"] = _usage(attrs)
            if attrs.get("cost") is not None:
                kwargs["cost_details"] = {"total": float(attrs["cost"])}
        elif span.kind == "evaluator":
            kwargs["output"] = {k: attrs.get(k) for k in
                                ("approved", "tests_passed", "tests_failed", "tests_errors",
                                 "tests_total") if k in attrs}
        elif span.kind == "tool":
            kwargs["input"] = {"tool": attrs.get("tool"), "attempt": attrs.get("attempt")}

        if parent is None:
            context = otel.set_span_in_context(otel.NonRecordingSpan(otel.SpanContext(
                trace_id=int(trace_id, 16), span_id=random.getrandbits(63) + 1,
                is_remote=False, trace_flags=otel.TraceFlags(0x01))))
        else:
            context = otel.set_span_in_context(parent)
        start_ns, end_ns = _ns(span.start_wall), _ns(span.end_wall or span.start_wall)
        tracer = getattr(client, "_otel_tracer", None)
        make = getattr(client, "_create_observation_from_otel_span", None)
        if tracer is not None and make is not None:
            # The SDK's public calls stamp "now" as the start; spans built after the run
            # need their real start, which only the tracer underneath accepts.
            otel_span = tracer.start_span(name=span.name, context=context, start_time=start_ns)
            if parent is None:
                otel_span.set_attribute(LangfuseOtelSpanAttributes.AS_ROOT, True)
            observation = make(otel_span=otel_span, as_type=as_type, **kwargs)
        else:  # an SDK without those internals: right tree, export-time start
            trace_context = {"trace_id": trace_id}
            if parent is not None:
                trace_context["parent_span_id"] = format(parent.get_span_context().span_id,
                                                         "016x")
            observation = client.start_observation(trace_context=trace_context,
                                                   name=span.name, as_type=as_type, **kwargs)
            otel_span = observation._otel_span
        observation.end(end_time=end_ns)
        self.exported_spans += 1
        self._since_flush += 1
        if self._since_flush >= _SPANS_PER_FLUSH:
            self._since_flush = 0
            client.flush()  # on this thread: keeps the SDK's 2,048-span queue from overflowing
        return otel_span

    def _send_score(self, client: Any, score: Score, trace_id: str, run_id: str) -> None:
        from langfuse import Langfuse

        client.create_score(name=score.name, value=float(score.value), trace_id=trace_id,
                            score_id=Langfuse.create_trace_id(seed=f"{run_id}:{score.name}"),
                            data_type="NUMERIC", comment=score.comment)
        self.exported_scores += 1

    # -- failures -------------------------------------------------------------------------

    def _bounded(self, fn: Callable[[], Any], timeout: float, what: str, *,
                 warn: bool = True) -> bool:
        """Run an SDK call that may hang on a dead server in a helper thread, bounded.

        `warn=False` (closing after a flush already warned) logs instead of warning twice.
        """
        errors: list[BaseException] = []

        def call() -> None:
            self._own_threads.add(threading.get_ident())
            try:
                fn()
            except Exception as exc:
                errors.append(exc)

        helper = threading.Thread(target=call, name=f"taskorch-langfuse-{what}", daemon=True)
        helper.start()
        helper.join(max(0.0, timeout))
        report = self._warn if warn else _log
        if helper.is_alive():
            report(f"Langfuse {what} at {self.base_url} did not finish within "
                   f"{max(0.0, timeout):.1f} s (server not answering); it goes on in the "
                   "background", reason="timeout")
            return False
        if errors:
            report(f"Langfuse {what} failed: {type(errors[0]).__name__}: {errors[0]}",
                   reason="error")
            return False
        watched = self._span_exporter
        return watched is None or watched.failures == 0 or watched.last_ok

    def _export_failed(self, why: str) -> None:
        self._warn(f"Langfuse at {self.base_url} did not take the spans: {why}",
                   reason="unreachable")

    def _warn(self, message: str, *, reason: str) -> None:
        if self.on_warning is None:
            return
        notice = Notice(type="tracing.warning", level="warning", message=message,
                        detail={"reason": reason, "base_url": self.base_url})
        try:
            self.on_warning(notice)
        except Exception as exc:  # report it where it cannot loop back into us
            _log(f"on_warning raised {exc!r} for: {message}", reason="callback")

    def _forget_sdk_singleton(self, client: Any) -> None:
        # The SDK keeps one resource manager per public key for the process; drop ours
        # so a later exporter with the same key gets its own settings, not a closed one.
        resources = getattr(client, "_resources", None)
        instances = getattr(type(resources), "_instances", None)
        if isinstance(instances, dict) and instances.get(self.public_key) is resources:
            instances.pop(self.public_key, None)


class _SdkLogBridge(logging.Handler):
    """The SDK's log warnings ("Failed to send 2 scores") as `tracing.warning` notices.

    While an exporter is open, the SDK's and its OTLP exporter's loggers hand their
    warnings to the exporter whose thread logged them, instead of stderr; each distinct
    message once per exporter, so an outage is one notice, not one per batch.
    """

    LOGGERS = ("langfuse", "opentelemetry.exporter.otlp.proto.http.trace_exporter",
               "opentelemetry.sdk.trace.export")

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self._exporters: list[LangfuseExporter] = []
        self._saved: dict[str, bool] = {}
        self._guard = threading.Lock()

    def attach(self, exporter: LangfuseExporter) -> None:
        with self._guard:
            if not self._exporters:
                for name in self.LOGGERS:
                    logger = logging.getLogger(name)
                    self._saved[name] = logger.propagate
                    logger.propagate = False
                    logger.addHandler(self)
            self._exporters.append(exporter)

    def detach(self, exporter: LangfuseExporter) -> None:
        with self._guard:
            if exporter not in self._exporters:
                return
            self._exporters.remove(exporter)
            if not self._exporters:
                for name in self.LOGGERS:
                    logger = logging.getLogger(name)
                    logger.removeHandler(self)
                    logger.propagate = self._saved.pop(name, True)

    def emit(self, record: logging.LogRecord) -> None:
        with self._guard:
            owner = next((e for e in self._exporters if record.thread in e._own_threads), None)
        if owner is None:
            # a closed exporter's client finishing in the background: its close already
            # warned, and another exporter's events must not carry it
            logging.getLogger(__name__).debug("Langfuse SDK: %s", record.getMessage())
            return
        key = (record.name, record.msg)
        if key not in owner._sdk_seen:
            owner._sdk_seen.add(key)
            owner._warn(f"Langfuse SDK: {record.getMessage()}", reason="sdk")


_SDK_LOGS = _SdkLogBridge()


class _WatchedExporter:
    """Wraps the OTLP exporter to notice failed exports (the SDK only logs them)."""

    def __init__(self, inner: Any, on_failure: Callable[[str], None]) -> None:
        self._inner = inner
        self._on_failure = on_failure
        self.failures = 0
        self.last_ok = True

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        try:
            result = self._inner.export(spans)
        except Exception as exc:
            result, why = SpanExportResult.FAILURE, f"{type(exc).__name__}: {exc}"
        else:
            why = f"export of {len(spans)} spans failed (see the opentelemetry log)"
        if result == SpanExportResult.SUCCESS:
            self.last_ok = True
        else:
            self.failures += 1
            if self.last_ok:  # once per outage, not once per batch
                self._on_failure(why)
            self.last_ok = False
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return bool(self._inner.force_flush(timeout_millis))


def _log(message: str, *, reason: str) -> None:
    logging.getLogger(__name__).warning("%s (%s)", message, reason)


def _usage(attrs: dict[str, Any]) -> dict[str, int]:
    usage = {"input": int(attrs.get("input_tokens") or 0),
             "output": int(attrs.get("output_tokens") or 0)}
    cached = int(attrs.get("cached_tokens") or 0)
    if cached:
        usage["input_cached_tokens"] = cached
    usage["total"] = usage["input"] + usage["output"]
    return usage


_NOT_METADATA = frozenset({"cost", "input_tokens", "output_tokens", "cached_tokens", "model"})


def _metadata(span: Span) -> dict[str, Any]:
    meta: dict[str, Any] = {"taskorch_span_id": span.span_id, "kind": span.kind}
    for key, value in span.attributes.items():
        if key in _NOT_METADATA or value is None:
            continue
        meta[key] = value if isinstance(value, str | int | float | bool) else str(value)
    meta["start"] = datetime.fromtimestamp(span.start_wall, UTC).isoformat()
    return meta
