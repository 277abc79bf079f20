"""The provider seam: what a model call sends and returns, whoever answers it.

Messages are OpenAI-style dicts (`role`, `content`, optional `tool_calls` on an
assistant turn, `tool_call_id` on a tool turn); tools are neutral dicts
(`name`, `description`, `parameters` JSON schema). Each provider converts both
to its own wire format, so agents never see a vendor's API.

`HTTPProvider` is the shared plumbing of the real providers: one httpx client,
latency measured on the injected clock, and every HTTP failure mapped to one
typed error (`taskorch_nb.errors`) that the retry and breaker layer can judge.
Providers never retry by themselves.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from taskorch_nb.core.clock import Clock, RealClock
from taskorch_nb.core.retry import parse_retry_after
from taskorch_nb.core.tools import ToolSchema
from taskorch_nb.errors import (
    ProviderError,
    ProviderResponseError,
    ProviderTimeoutError,
    RateLimitError,
)

if TYPE_CHECKING:  # httpx costs ~0.3 s to import: only the HTTP providers load it
    import asyncio

    import httpx

#: How much of an error body is kept on the exception.
BODY_LIMIT = 500


@dataclass(slots=True)
class Usage:
    """Tokens of one call, as the provider bills them."""

    input_tokens: int
    """All prompt tokens, cached ones included."""
    output_tokens: int
    """All generated tokens, reasoning ones included."""
    cached_tokens: int = 0
    """Prompt tokens read from the provider's cache (billed cheaper)."""
    reasoning_tokens: int = 0
    """Hidden reasoning tokens inside `output_tokens`."""
    cache_write_tokens: int = 0
    """Prompt tokens written to the cache (Anthropic bills them dearer); inside `input_tokens`."""


@dataclass(slots=True)
class ToolCall:
    """A tool the model asks to run, with its already-decoded arguments."""

    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(slots=True)
class Completion:
    """One model answer: text, tool calls, usage and how long it took."""

    text: str
    tool_calls: list[ToolCall]
    usage: Usage
    model: str
    provider: str
    latency: float
    """Seconds on the provider's clock, request sent to answer parsed."""
    finish_reason: str | None = None


@runtime_checkable
class Provider(Protocol):
    """Anything that completes a conversation: OpenAI, Anthropic, the simulator."""

    name: str
    price_provider: str

    async def complete(
        self,
        messages: list[dict],
        *,
        model: str,
        max_tokens: int,
        tools: list[dict] | None = None,
        response_format: dict | None = None,
        temperature: float | None = None,
    ) -> Completion: ...

    async def aclose(self) -> None: ...


def message_text(content: Any) -> str:
    """The text of a message's `content`: a string, None, or a list of parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", "")) if isinstance(part, dict) else str(part) for part in content
        )
    return str(content)


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


#: One encoder for every estimate: `json.dumps` with options builds a new one per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)
to_json = _ENCODER.encode


def tools_json_size(tools: list[dict], *, utf8: bool) -> int:
    """Characters (or UTF-8 bytes) of `json.dumps(tools, ensure_ascii=False)`, without
    re-serialising the frozen `ToolSchema`s among them."""
    which = 1 if utf8 else 0
    total = 2 + 2 * max(len(tools) - 1, 0)  # "[", "]" and ", " between items (ASCII)
    for tool in tools:  # (a loop, not a generator: nothing to allocate per call)
        if type(tool) is ToolSchema:
            total += tool.json_sizes()[which]
        else:
            text = to_json(tool)
            total += _utf8_len(text) if utf8 else len(text)
    return total


def estimate_input_tokens(messages: list[dict], tools: list[dict] | None = None) -> int:
    """An upper bound on the prompt tokens, for reserving budget before a call.

    Rule: ceil(UTF-8 bytes / 3) over every message's content and tool calls
    (as JSON), plus 8 per message for role and framing, plus ceil(bytes / 3)
    of the tools' JSON. Real tokenizers give ~4 bytes per token for English
    and code, and ~3 bytes per CJK character, so this over-estimates.
    """
    total = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            size = len(content) if content.isascii() else _utf8_len(content)
        elif content is None:
            size = 0
        else:
            size = _utf8_len(to_json(content))
        calls = message.get("tool_calls")
        if calls:
            size += _utf8_len(to_json(calls))
        total += math.ceil(size / 3) + 8
    if tools:
        total += math.ceil(tools_json_size(tools, utf8=True) / 3)
    return total


def _error_message(body: str) -> str:
    """The human message inside a vendor's JSON error body, if there is one."""
    try:
        data = json.loads(body)
    except ValueError:
        return body[:200]
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"]
        if isinstance(error, str):
            return error
        if isinstance(data.get("message"), str):
            return data["message"]
    return body[:200]


@dataclass(slots=True)
class _Client:
    client: httpx.AsyncClient
    loop: asyncio.AbstractEventLoop


class HTTPProvider:
    """Shared plumbing of the HTTP providers: the client, latency, error mapping."""

    name: ClassVar[str] = "http"
    price_provider: ClassVar[str] = "http"

    def __init__(
        self,
        *,
        base_url: str,
        timeout: float,
        transport: httpx.AsyncBaseTransport | None,
        clock: Clock | None,
        headers: dict[str, str],
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = float(timeout)
        self.clock: Clock = clock or RealClock()
        self.chosen_because = "constructed directly"
        self._transport = transport
        self._headers = headers
        self._client: _Client | None = None

    def _http(self) -> httpx.AsyncClient:
        """The client for the running loop; a new loop (e.g. `asyncio.run` again) gets a new one.

        httpx connections belong to the loop that opened them, so a client is
        never shared across loops.
        """
        import asyncio

        import httpx

        loop = asyncio.get_running_loop()
        if self._client is None or self._client.loop is not loop:
            client = httpx.AsyncClient(
                base_url=self.base_url + "/",
                timeout=httpx.Timeout(self.timeout),
                transport=self._transport,
                headers=self._headers,
            )
            self._client = _Client(client, loop)
        return self._client.client

    path: ClassVar[str] = ""
    """The endpoint, relative to `base_url`."""

    def build(self, messages: list[dict], *, model: str, max_tokens: int,
              tools: list[dict] | None, response_format: dict | None,
              temperature: float | None) -> dict[str, Any]:
        """The request body in this API's shape."""
        raise NotImplementedError

    def parse(self, data: dict, *, model: str, latency: float,
              response_format: dict | None) -> Completion:
        """A decoded answer as a `Completion` (KeyError & co. mean a malformed answer)."""
        raise NotImplementedError

    async def complete(
        self,
        messages: list[dict],
        *,
        model: str,
        max_tokens: int,
        tools: list[dict] | None = None,
        response_format: dict | None = None,
        temperature: float | None = None,
    ) -> Completion:
        """One model call; HTTP failures raise the typed errors of `taskorch_nb.errors`."""
        payload = self.build(messages, model=model, max_tokens=max_tokens, tools=tools,
                             response_format=response_format, temperature=temperature)
        data, latency = await self._post(self.path, payload, model=model)
        try:
            return self.parse(data, model=model, latency=latency,
                              response_format=response_format)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise self.bad_response(f"{type(exc).__name__}: {exc}", model, data) from exc

    async def aclose(self) -> None:
        """Close the HTTP client (and its connections)."""
        if self._client is not None:
            client, self._client = self._client.client, None
            await client.aclose()

    async def __aenter__(self) -> HTTPProvider:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _post(self, path: str, payload: dict[str, Any], *, model: str) -> tuple[dict, float]:
        """POST JSON, return (decoded body, latency) or raise the typed error."""
        import httpx

        client = self._http()
        started = self.clock.now()
        try:
            response = await client.post(path, json=payload)
        except httpx.TimeoutException as exc:
            raise ProviderTimeoutError(
                f"{self.name} did not answer within {self.timeout:g} s ({type(exc).__name__})",
                provider=self.name,
                model=model,
            ) from exc
        except httpx.HTTPError as exc:
            raise ProviderError(
                f"{self.name} unreachable at {self.base_url}: {type(exc).__name__}: {exc}",
                provider=self.name,
                model=model,
                status=None,
            ) from exc
        latency = self.clock.now() - started
        body = response.text
        status = response.status_code
        if status == 429:
            raise RateLimitError(
                f"{self.name} rate limit for model {model!r}: {_error_message(body)}",
                provider=self.name,
                model=model,
                status=429,
                retry_after=parse_retry_after(response.headers, wall=self.clock.wall()),
                body=body[:BODY_LIMIT],
            )
        if not 200 <= status < 300:
            raise ProviderError(
                f"{self.name} answered {status} for model {model!r}: {_error_message(body)}",
                provider=self.name,
                model=model,
                status=status,
                body=body[:BODY_LIMIT],
            )
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise self.bad_response("body is not JSON", model, body) from exc
        if not isinstance(data, dict):
            raise self.bad_response("body is not a JSON object", model, body)
        return data, latency

    def bad_response(self, reason: str, model: str, body: Any) -> ProviderResponseError:
        """The error for a 2xx answer we cannot use."""
        text = body if isinstance(body, str) else json.dumps(body, default=str)
        return ProviderResponseError(
            f"{self.name} sent an unusable answer for model {model!r}: {reason}",
            provider=self.name,
            model=model,
            status=200,
            body=text[:BODY_LIMIT],
        )


def require_int(data: dict, key: str, default: int | None = None) -> int:
    """`data[key]` as a non-negative int (`default` when absent or null); else TypeError."""
    value = data.get(key) if isinstance(data, dict) else None
    if value is None and default is not None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TypeError(f"{key!r} is {value!r}, not a token count")
    return value



_FENCE = re.compile(r"^\s*```(?:[\w+-]*[ \t]*\n)?(.*?)\s*```\s*$", re.DOTALL)


def unfence(text: str) -> str:
    """The answer inside a Markdown code fence (```json ... ```), else `text` as it is.

    Models asked for JSON often wrap it in a fence anyway; only a fence around the
    whole answer is removed.
    """
    fenced = _FENCE.match(text)
    return fenced.group(1) if fenced else text
