"""Scripted servers that speak the OpenAI and Anthropic APIs, for provider tests.

A test scripts the wire (a 429 with Retry-After, a broken body, a refused
connection) with a `handler` that turns each request into an `Answer`, then
reads back exactly what the provider sent (`server.requests`). Two servers run
the same script:

- `MockServer`: in-process, through `httpx.MockTransport` (no socket, no
  thread); give the provider `base_url=server.url, transport=server.transport`.
  What the provider tests use.
- `LoopbackServer`: a real `http.server.ThreadingHTTPServer` on 127.0.0.1
  (port 0) in a thread, for what only a socket shows (a client timeout, the
  real transport); `transport` is None.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    import httpx


@dataclass
class Recorded:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Answer:
    """What the server sends back; `delay` seconds pass first (cut short at shutdown)."""

    status: int = 200
    body: bytes | str | dict | list = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0

    def payload(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


Handler = Callable[[Recorded], Answer]


class Scripted:
    """What both servers share: the handlers, and every request they received."""

    url: str
    transport: httpx.AsyncBaseTransport | None

    def __init__(self, handler: Handler, get: Handler | None = None) -> None:
        self.handler = handler
        self.get = get
        self.requests: list[Recorded] = []
        self.gets: list[Recorded] = []

    def answer(self, recorded: Recorded) -> Answer:
        """A POST to `handler`; a GET (a model list) to `get`, else 404; kept apart."""
        if recorded.method == "GET":
            self.gets.append(recorded)
            return self.get(recorded) if self.get else Answer(404, {"error": "none"})
        self.requests.append(recorded)
        return self.handler(recorded)

    @property
    def last(self) -> Recorded:
        return self.requests[-1]

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Nothing to stop (the loopback server stops its thread)."""


class MockServer(Scripted):
    """The script answered in-process by `httpx.MockTransport`. A handler may raise an
    httpx error (`httpx.ConnectError`, `httpx.ReadTimeout`) to fail the exchange."""

    url = "http://llm.test"

    def __init__(self, handler: Handler, get: Handler | None = None) -> None:
        import httpx

        super().__init__(handler, get)
        self.transport = httpx.MockTransport(self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        import httpx

        recorded = Recorded(method=request.method, path=request.url.raw_path.decode("ascii"),
                            headers=dict(request.headers), body=request.read())
        answer = self.answer(recorded)
        if answer.delay:
            raise ValueError("a delayed answer needs a real socket: use LoopbackServer")
        headers = {"content-type": "application/json", **answer.headers}
        return httpx.Response(answer.status, headers=headers, content=answer.payload())


class LoopbackServer(Scripted):
    """The script served over HTTP on 127.0.0.1; use as a context manager."""

    transport = None

    def __init__(self, handler: Handler, get: Handler | None = None) -> None:
        super().__init__(handler, get)
        self.stopping = threading.Event()
        server = self

        class _Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                self._reply(server.answer(self._recorded("POST", self.rfile.read(length))))

            def do_GET(self) -> None:
                self._reply(server.answer(self._recorded("GET", b"")))

            def _recorded(self, method: str, body: bytes) -> Recorded:
                return Recorded(method=method, path=self.path,
                                headers={k.lower(): v for k, v in self.headers.items()},
                                body=body)

            def _reply(self, answer: Answer) -> None:
                if answer.delay and server.stopping.wait(answer.delay):
                    return  # shutting down: the client gave up long ago
                payload = answer.payload()
                try:
                    self.send_response(answer.status)
                    headers = {"content-type": "application/json", **answer.headers}
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    # A client that timed out has closed its end; that is the test's point.
                    return

            def log_message(self, format: str, *args: Any) -> None:
                """Keep test output clean."""

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def serve(handler: Handler | Answer) -> Iterator[LoopbackServer]:
    """Fixture body: a running server for the test, shut down after it."""
    fn = handler if callable(handler) else (lambda _request: handler)
    with LoopbackServer(fn) as server:
        yield server


def closed_port() -> int:
    """A loopback port with nothing listening (connection refused)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- canned API bodies ------------------------------------------------------------------------


def openai_body(
    text: str | None = "Hello!",
    *,
    tool_calls: list[dict] | None = None,
    prompt_tokens: int = 12,
    completion_tokens: int = 5,
    cached_tokens: int | None = None,
    reasoning_tokens: int | None = None,
    model: str = "gpt-test-2026",
    finish_reason: str = "stop",
) -> dict:
    usage: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    if cached_tokens is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached_tokens, "audio_tokens": 0}
    if reasoning_tokens is not None:
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning_tokens}
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": usage,
    }


def anthropic_body(
    content: list[dict] | None = None,
    *,
    input_tokens: int = 20,
    output_tokens: int = 7,
    cache_read: int | None = None,
    cache_write: int | None = None,
    model: str = "claude-test-2026",
    stop_reason: str = "end_turn",
) -> dict:
    usage: dict[str, Any] = {"input_tokens": input_tokens, "output_tokens": output_tokens}
    if cache_read is not None:
        usage["cache_read_input_tokens"] = cache_read
    if cache_write is not None:
        usage["cache_creation_input_tokens"] = cache_write
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content if content is not None else [{"type": "text", "text": "Hello!"}],
        "stop_reason": stop_reason,
        "usage": usage,
    }


SEARCH_TOOLS = [
    {
        "name": "search_api",
        "description": "Search the web",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
    }
]
"""A neutral tool list both providers' tests offer the model."""


class Script:
    """A server handler whose next answer the test sets (`script.answer = Answer(...)`)."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.answer = Answer(body=body)

    def __call__(self, _request: Recorded) -> Answer:
        return self.answer
