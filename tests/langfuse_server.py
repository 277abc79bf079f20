"""A loopback stand-in for Langfuse: decodes what the official SDK sends and keeps it.

`FakeLangfuse` is a real HTTP server on 127.0.0.1 (port 0) that accepts the
OTLP span export (`POST /api/public/otel/v1/traces`, gzip + protobuf, decoded
with opentelemetry-proto), the v5 scores endpoint (`POST /api/public/scores`),
the legacy ingestion batch and the project lookup. `HangingServer` accepts
connections and never answers; `closed_port()` gives a port nobody listens on.
"""

from __future__ import annotations

import gzip
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class ReceivedSpan:
    """One span as the server decoded it (ids as lowercase hex)."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    scope: str

    @property
    def type(self) -> str | None:
        return self.attributes.get("langfuse.observation.type")

    def json_attr(self, key: str) -> Any:
        value = self.attributes.get(key)
        return json.loads(value) if isinstance(value, str) else value


def _any_value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _any_value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind) if kind else None


@dataclass
class Received:
    spans: list[ReceivedSpan] = field(default_factory=list)
    scores: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)
    auth: set[str] = field(default_factory=set)


class FakeLangfuse:
    """Run with `with FakeLangfuse() as server:`; `server.url`, `server.received`."""

    def __init__(self) -> None:
        self.received = Received()
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def _body(self) -> bytes:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    raw = gzip.decompress(raw)
                return raw

            def _reply(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                owner._note("GET", self.path, self.headers.get("Authorization"))
                if self.path.startswith("/api/public/projects"):
                    body = json.dumps({"data": [{"id": "project-1", "name": "test"}]})
                    self._reply(200, body.encode(), "application/json")
                else:
                    self._reply(404, b"{}", "application/json")

            def do_POST(self) -> None:
                body = self._body()
                owner._note("POST", self.path, self.headers.get("Authorization"))
                if self.path.startswith("/api/public/otel/v1/traces"):
                    owner._record_spans(body)
                    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
                        ExportTraceServiceResponse,
                    )

                    self._reply(200, ExportTraceServiceResponse().SerializeToString(),
                                "application/x-protobuf")
                elif self.path.startswith("/api/public/scores"):
                    items = json.loads(body)
                    with owner._lock:
                        owner.received.scores.extend(items if isinstance(items, list)
                                                     else [items])
                    self._reply(202, b'{"message": "Accepted"}', "application/json")
                elif self.path.startswith("/api/public/ingestion"):
                    batch = json.loads(body).get("batch", [])
                    with owner._lock:
                        owner.received.scores.extend(
                            e["body"] for e in batch if e.get("type") == "score-create")
                    self._reply(207, b'{"successes": [], "errors": []}', "application/json")
                else:
                    self._reply(404, b"{}", "application/json")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _note(self, method: str, path: str, auth: str | None) -> None:
        with self._lock:
            self.received.requests.append((method, path))
            if auth:
                self.received.auth.add(auth)

    def _record_spans(self, body: bytes) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        spans = []
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans.append(ReceivedSpan(
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex() or None,
                        name=span.name,
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        attributes={kv.key: _any_value(kv.value) for kv in span.attributes},
                        scope=scope_spans.scope.name,
                    ))
        with self._lock:
            self.received.spans.extend(spans)

    def __enter__(self) -> FakeLangfuse:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


class HangingServer:
    """Accepts TCP connections and never answers (until closed)."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._conns: list[socket.socket] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        self._listener.settimeout(0.05)
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            self._conns.append(conn)

    def __enter__(self) -> HangingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closed.set()
        self._thread.join(5)
        self._listener.close()
        for conn in self._conns:
            conn.close()


@contextmanager
def closed_port() -> Iterator[str]:
    """A URL on 127.0.0.1 where nothing listens."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    yield f"http://127.0.0.1:{port}"
