"""OpenAI-compatible chat completions over httpx, adapting to what the server accepts.

Speaks `POST {base_url}/chat/completions`, so besides OpenAI it reaches any
server with the same API: Ollama (`http://localhost:11434/v1`), vLLM,
llama.cpp's server, OpenRouter. Key and base URL come from the arguments or
`OPENAI_API_KEY` / `OPENAI_BASE_URL`.

Compatible servers accept less than OpenAI. Structured output is tried as the
native `json_schema` format, then `json_object` with the schema, then the
schema in the prompt; tools as the API's `tools` (with `tool_choice="auto"`),
then as JSON actions in the prompt when the server never returns tool calls.
A refused shape is learned (`capabilities`, per base URL and model) and the
call goes on in the next shape; the caller sees one completion whose usage
counts every request made for it. The conversation is fitted to the context
window when it is known (`context_window=`, the server's model list, or a
"maximum context length" refusal, learned).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from taskorch_nb.core.clock import Clock
from taskorch_nb.errors import (
    CapabilityError,
    ConfigurationError,
    ContextWindowError,
    ProviderError,
)
from taskorch_nb.llm import context, prompted
from taskorch_nb.llm.base import (
    Completion,
    HTTPProvider,
    ToolCall,
    Usage,
    estimate_input_tokens,
    message_text,
    require_int,
)
from taskorch_nb.llm.capabilities import (
    OUTPUT_MODES,
    CapabilityMemory,
    ModelCapabilities,
    context_overflow,
    refused_feature,
)

if TYPE_CHECKING:
    import httpx

DEFAULT_BASE_URL = "https://api.openai.com/v1"

#: Requests one `complete()` may make while it adapts (each learns one fact or answers).
MAX_SHAPES = 6

#: Fields of a model-list entry that state its context window (vLLM, OpenRouter, others).
_WINDOW_FIELDS = ("max_model_len", "context_length", "context_window", "max_context_length")

_PROBE_TOOL = {"name": "ping", "description": "Answers pong.",
               "parameters": {"type": "object", "properties": {"x": {"type": "integer"}},
                              "required": ["x"]}}


@dataclass(slots=True)
class _Shape:
    """One request as it will be sent, and how its answer is to be read."""

    payload: dict[str, Any]
    output_mode: str | None
    tool_mode: str | None
    output_schema: dict[str, Any] | None


class OpenAIProvider(HTTPProvider):
    """Chat completions with tool calls and JSON output, for OpenAI and compatible servers.

    `token_param` names the length limit field: OpenAI itself wants
    `max_completion_tokens` (reasoning models refuse `max_tokens`), while most
    compatible servers read `max_tokens`; by default it follows the host.
    """

    name = "openai"
    price_provider = "openai"

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 25.0,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock | None = None,
        headers: dict[str, str] | None = None,
        *,
        token_param: str | None = None,
        context_window: int | None = None,
        capabilities: CapabilityMemory | None = None,
    ) -> None:
        api_key = api_key or os.environ.get("OPENAI_API_KEY") or None
        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        official = "api.openai.com" in base_url
        if api_key is None and official:
            raise ConfigurationError(
                "OpenAIProvider needs an API key: pass api_key= or set OPENAI_API_KEY "
                "(a local server such as Ollama needs only OPENAI_BASE_URL)"
            )
        all_headers = {"content-type": "application/json"}
        if api_key:
            all_headers["authorization"] = f"Bearer {api_key}"
        all_headers.update(headers or {})
        super().__init__(
            base_url=base_url, timeout=timeout, transport=transport, clock=clock,
            headers=all_headers,
        )
        self.token_param = token_param or ("max_completion_tokens" if official else "max_tokens")
        if context_window is not None and context_window < 2 * context.MIN_OUTPUT:
            raise ConfigurationError(
                f"context_window={context_window} is too small: give the model's window in "
                f"tokens (at least {2 * context.MIN_OUTPUT})"
            )
        self.context_window = context_window
        self.capabilities = capabilities if capabilities is not None else CapabilityMemory()
        self._official = official

    def __repr__(self) -> str:
        return f"OpenAIProvider(base_url={self.base_url!r})"

    path = "chat/completions"

    # -- adapting to the server (instead of HTTPProvider's one-shot build/parse) ---------

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
        """One model call in the richest shape the server accepts (see the module doc)."""
        caps = self.capabilities.get(self.base_url, model)
        await self._read_window(model, caps)
        spent: list[Completion] = []
        for _ in range(MAX_SHAPES):
            shape = self._shape(messages, caps, model=model, max_tokens=max_tokens, tools=tools,
                                response_format=response_format, temperature=temperature)
            try:
                data, latency = await self._post(self.path, shape.payload, model=model)
            except ProviderError as exc:
                if not self._learn_refusal(exc, caps, shape, model):
                    raise
                continue
            completion = self._read(data, shape, model=model, latency=latency, tools=tools)
            spent.append(completion)
            if tools and shape.tool_mode == "native" and caps.tool_mode is None:
                if completion.tool_calls or await self._returns_tool_calls(model, spent):
                    self.capabilities.learn(
                        self.base_url, model,
                        f"{self.name} {model!r} at {self.base_url} returns tool calls",
                        tool_mode="native")
                else:
                    self.capabilities.learn(
                        self.base_url, model,
                        f"{self.name} {model!r} at {self.base_url} never returns tool calls "
                        "(even with tool_choice='required'): tools are described in the "
                        "prompt and called with JSON actions", tool_mode="prompted")
                    continue  # ask again, now that the model can call tools
            return _merged(spent)
        raise CapabilityError(
            f"{self.name} {model!r} at {self.base_url} refused every request shape tried",
            provider=self.name, model=model)

    def _window(self, caps: ModelCapabilities) -> int | None:
        return self.context_window or caps.context_window

    async def _read_window(self, model: str, caps: ModelCapabilities) -> None:
        """Once per server and model: the context window its model list states, if any."""
        if self._official or self.context_window or caps.context_window \
                or caps.metadata_checked:
            return
        import httpx

        window = None
        try:
            response = await self._http().get("models")
        except httpx.HTTPError:
            return  # unreachable now: the chat request says so; look again next call
        try:
            entries = response.json().get("data") if response.status_code == 200 else None
        except (ValueError, AttributeError):
            entries = None
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, dict) and entry.get("id") == model:
                found = [entry.get(f) for f in _WINDOW_FIELDS]
                window = next((v for v in found if isinstance(v, int) and v > 0), None)
        reason = (f"{model!r} at {self.base_url} has a context window of {window} tokens "
                  "(the server's model list)" if window else
                  f"the model list of {self.base_url} states no context window for {model!r}")
        self.capabilities.learn(self.base_url, model, reason, metadata_checked=True,
                                context_window=window)

    def _shape(self, messages: list[dict], caps: ModelCapabilities, *, model: str,
               max_tokens: int, tools: list[dict] | None, response_format: dict | None,
               temperature: float | None) -> _Shape:
        """The request in the shape `caps` says the server accepts, fitted to its window."""
        schema = None
        if response_format:
            kind = response_format.get("type")
            if kind == "json_schema":
                schema = response_format["schema"]
            elif kind != "json_object":
                raise ConfigurationError(
                    f"response_format type {kind!r} unknown; use 'json_object' or 'json_schema'"
                )
        output_mode = (caps.output_mode or "json_schema") if response_format else None
        tool_mode = (caps.tool_mode or "native") if tools else None
        parts: list[str] = []
        wire_format = response_format
        if tool_mode == "prompted":
            assert tools is not None
            final = ("When you are done, answer with the final JSON object instead."
                     if response_format else "When you are done, answer in plain text.")
            parts.append(prompted.tool_instructions(tools, final=final))
            if schema is not None:
                wire_format = {**response_format, "name": "action",
                               "schema": prompted.action_schema(tools, schema)}
                wire_format.pop("strict", None)  # a union is not a strict schema
        if output_mode in ("json_object", "prompted") and schema is not None:
            parts.append(prompted.output_instructions(schema, final=tool_mode == "prompted"))
        if output_mode == "json_object" and wire_format is not None:
            wire_format = {"type": "json_object", **(
                {"schema": wire_format["schema"]} if "schema" in wire_format else {})}
        elif output_mode == "prompted":
            wire_format = None
        wire_tools = tools if tool_mode == "native" else None
        window = self._window(caps)
        if window is not None:
            reserve = estimate_input_tokens([{"role": "system", "content": "\n\n".join(parts)}])
            messages, max_tokens = context.fit(
                messages, window=window, max_tokens=max_tokens, tools=wire_tools,
                reserve=reserve if parts else 0, provider=self.name, model=model)
        if tool_mode == "prompted":
            messages = prompted.as_text_turns(messages)
        messages = prompted.with_instructions(messages, parts)
        payload = build_request(messages, model=model, max_tokens=max_tokens, tools=wire_tools,
                                response_format=wire_format, temperature=temperature,
                                token_param=self.token_param)
        return _Shape(payload, output_mode, tool_mode, schema)

    def _read(self, data: dict, shape: _Shape, *, model: str, latency: float,
              tools: list[dict] | None) -> Completion:
        try:
            completion = parse_response(data, model=model, latency=latency)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise self.bad_response(f"{type(exc).__name__}: {exc}", model, data) from exc
        if shape.tool_mode == "prompted" and tools and not completion.tool_calls:
            call = prompted.parse_action(completion.text, tools, shape.output_schema)
            if call is not None:
                completion.tool_calls = [call]
                completion.text = ""
                completion.finish_reason = "tool_calls"
        return completion

    def _learn_refusal(self, exc: ProviderError, caps: ModelCapabilities, shape: _Shape,
                       model: str) -> bool:
        """Learn from a refused request; True when the next shape may be accepted.

        A refusal nothing can be learned from is raised as `CapabilityError` (or
        `ContextWindowError`): the same request would be refused again.
        """
        text = exc.body or str(exc)
        overflow, window = context_overflow(exc.status, text)
        if overflow:
            known = self._window(caps)
            if window is not None and (known is None or window < known) \
                    and not self.context_window:
                self.capabilities.learn(
                    self.base_url, model,
                    f"{model!r} at {self.base_url} has a context window of {window} tokens "
                    f"(learned from a {exc.status} answer)", context_window=window)
                return True
            raise ContextWindowError(
                f"{self.name} {model!r} refused the request as too long for its context "
                f"window ({window or known or 'unknown'} tokens): {_short(exc)}",
                window=window or known, needed=None, provider=self.name, model=model,
                status=exc.status, body=exc.body) from exc
        sent = set(shape.payload)
        if "max_completion_tokens" in sent:
            sent.add("max_tokens")
        feature = refused_feature(exc.status, text, sent)
        if feature is None:
            return False
        why = f"{self.name} {model!r} at {self.base_url} answered {exc.status} to "
        if feature == "response_format" and shape.output_mode in OUTPUT_MODES[:-1]:
            following = OUTPUT_MODES[OUTPUT_MODES.index(shape.output_mode) + 1]
            self.capabilities.learn(
                self.base_url, model,
                f"{why}response_format {shape.output_mode!r} ({_short(exc)}): using "
                f"{following!r} output", output_mode=following)
            return True
        if feature == "tools" and shape.tool_mode == "native":
            self.capabilities.learn(
                self.base_url, model,
                f"{why}tools ({_short(exc)}): tools are described in the prompt instead",
                tool_mode="prompted")
            return True
        if feature == "max_tokens":
            other = "max_tokens" if self.token_param == "max_completion_tokens" \
                else "max_completion_tokens"
            if other not in text:
                return False
            self.token_param = other
            return True
        raise CapabilityError(
            f"{why}a request it cannot take ({feature}): {_short(exc)}", feature=feature,
            provider=self.name, model=model, status=exc.status, body=exc.body) from exc

    async def _returns_tool_calls(self, model: str, spent: list[Completion]) -> bool:
        """Whether the server returns tool calls at all: one small request that requires one.

        Asked once per server and model, after an answer with tools offered came
        back without any (the model may just have chosen not to).
        """
        probe = {"model": model, self.token_param: 32, "tool_choice": "required",
                 "messages": [{"role": "user", "content": "Call the ping tool with x=1."}],
                 "tools": build_request([], model=model, max_tokens=1, tools=[_PROBE_TOOL],
                                        response_format=None, temperature=None)["tools"]}
        try:
            data, latency = await self._post(self.path, probe, model=model)
        except ProviderError as exc:
            if refused_feature(exc.status, exc.body or str(exc), {"tools"}) is not None:
                return False  # it refuses tool_choice="required": no tool calls to rely on
            raise
        answer = parse_response(data, model=model, latency=latency)
        spent.insert(len(spent) - 1, replace(answer, text="", tool_calls=[]))
        return bool(answer.tool_calls)


def _short(exc: ProviderError) -> str:
    """The refusal in one line, without a server traceback."""
    text = str(exc).split(' File "', 1)[0]
    return " ".join(text.split())[:240]


def _merged(spent: list[Completion]) -> Completion:
    """The last answer, with the tokens and time of every request made for it."""
    last = spent[-1]
    if len(spent) == 1:
        return last
    usage = Usage(
        input_tokens=sum(c.usage.input_tokens for c in spent),
        output_tokens=sum(c.usage.output_tokens for c in spent),
        cached_tokens=sum(c.usage.cached_tokens for c in spent),
        reasoning_tokens=sum(c.usage.reasoning_tokens for c in spent),
    )
    return replace(last, usage=usage, latency=sum(c.latency for c in spent))


def to_openai_message(message: dict) -> dict:
    """A neutral message in the chat completions shape (tool call arguments as JSON text).

    An assistant turn's missing content is sent as "" (llama-cpp-python refuses null).
    """
    role = message["role"]
    out: dict[str, Any] = {"role": role, "content": message.get("content")}
    if role == "assistant" and message.get("tool_calls"):
        out["tool_calls"] = [
            {
                "id": call["id"],
                "type": "function",
                "function": {"name": call["name"], "arguments": json.dumps(call["arguments"])},
            }
            for call in message["tool_calls"]
        ]
    elif role == "tool":
        out["tool_call_id"] = message["tool_call_id"]
        out["content"] = message_text(message.get("content"))
    if out["content"] is None:
        out["content"] = ""
    if message.get("name"):
        out["name"] = message["name"]
    return out


def build_request(
    messages: list[dict],
    *,
    model: str,
    max_tokens: int,
    tools: list[dict] | None,
    response_format: dict | None,
    temperature: float | None,
    token_param: str = "max_tokens",
) -> dict[str, Any]:
    """The JSON body of `POST /chat/completions`."""
    payload: dict[str, Any] = {
        "model": model,
        "messages": [to_openai_message(m) for m in messages],
        token_param: max_tokens,
    }
    if tools:
        payload["tool_choice"] = "auto"  # some servers read a missing tool_choice as "none"
        payload["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": tool["name"],
                    "description": tool.get("description", ""),
                    "parameters": tool.get("parameters") or {"type": "object", "properties": {}},
                },
            }
            for tool in tools
        ]
    if response_format:
        kind = response_format.get("type")
        if kind == "json_schema":
            spec: dict[str, Any] = {
                "name": response_format.get("name") or "response",
                "schema": response_format["schema"],
            }
            if "strict" in response_format:
                spec["strict"] = bool(response_format["strict"])
            payload["response_format"] = {"type": "json_schema", "json_schema": spec}
        elif kind == "json_object":
            payload["response_format"] = {"type": "json_object"}
            if response_format.get("schema") is not None:  # llama.cpp: a grammar
                payload["response_format"]["schema"] = response_format["schema"]
        else:
            raise ConfigurationError(
                f"response_format type {kind!r} unknown; use 'json_object' or 'json_schema'"
            )
    if temperature is not None:
        payload["temperature"] = temperature
    return payload


def parse_response(data: dict, *, model: str, latency: float) -> Completion:
    """A `Completion` from a chat completions body; KeyError/TypeError/ValueError if malformed."""
    choice = data["choices"][0]
    message = choice["message"]
    calls = []
    for raw in message.get("tool_calls") or []:
        function = raw["function"]
        arguments = function.get("arguments") or "{}"
        decoded = json.loads(arguments) if isinstance(arguments, str) else arguments
        if not isinstance(decoded, dict):
            raise TypeError(f"arguments of tool call {raw.get('id')!r} are not an object")
        calls.append(ToolCall(id=str(raw["id"]), name=str(function["name"]), arguments=decoded))
    usage = data["usage"]
    prompt_details = usage.get("prompt_tokens_details") or {}
    completion_details = usage.get("completion_tokens_details") or {}
    return Completion(
        text=message_text(message.get("content")),
        tool_calls=calls,
        usage=Usage(
            input_tokens=require_int(usage, "prompt_tokens"),
            output_tokens=require_int(usage, "completion_tokens"),
            cached_tokens=require_int(prompt_details, "cached_tokens", 0),
            reasoning_tokens=require_int(completion_details, "reasoning_tokens", 0),
        ),
        model=str(data.get("model") or model),
        provider=OpenAIProvider.name,
        latency=latency,
        finish_reason=choice.get("finish_reason"),
    )
