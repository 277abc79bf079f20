"""A deterministic, offline model: scripted answers, simulated latency, injected faults.

The whole toolkit runs on it without a key or a network: the demo, the
scenario tests and users' own tests. Answers come from a *responder*, a
function of a `SimRequest` (the conversation plus the agent and phase of the
calling task); `ScriptedResponder` builds one from rules. Faults come from a
`FaultPlan` (`taskorch_nb.llm.faults`).

Token rule (documented so costs can be checked by hand):
input  = per message ceil(chars of content and tool calls as JSON / 4) + 4,
         plus ceil(chars of the tools' JSON / 4);
output = ceil((chars of text + chars of the tool calls' JSON) / 4), at least 1.
An answer longer than `max_tokens` is cut to `max_tokens * 4` characters,
loses its tool calls and ends with `finish_reason="length"`, as a real model
would. `estimate_input_tokens` is always at least the simulated input count.
"""

from __future__ import annotations

import inspect
import json
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from taskorch_nb.core.clock import Clock, RealClock
from taskorch_nb.core.events import current_agent, current_phase
from taskorch_nb.errors import ConfigurationError, ProviderError
from taskorch_nb.llm.base import (
    Completion,
    ToolCall,
    Usage,
    message_text,
    to_json,
    tools_json_size,
)
from taskorch_nb.llm.faults import FaultPlan


@dataclass(frozen=True, slots=True)
class SimRequest:
    """What the simulated model is asked, and by whom."""

    messages: list[dict]
    model: str
    tools: list[dict] | None
    response_format: dict | None
    agent: str | None
    """`current_agent` of the calling task (set by the workflow)."""
    phase: str | None
    """`current_phase` of the calling task."""
    call_index: int
    """1-based number of this call on the provider."""
    max_tokens: int = 0

    @property
    def last_user_message(self) -> str:
        """Text of the last user message ('' if none)."""
        for message in reversed(self.messages):
            if message.get("role") == "user":
                return message_text(message.get("content"))
        return ""

    @property
    def wants_json(self) -> bool:
        """True when `response_format` asks for JSON."""
        return bool(self.response_format) and self.response_format.get("type") in (
            "json_object", "json_schema",
        )


@dataclass(slots=True)
class SimReply:
    """A scripted answer: text and/or tool calls (dicts `{"name", "arguments"}` are accepted)."""

    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)

    @classmethod
    def call(cls, name: str, arguments: dict[str, Any] | None = None, *, id: str = "",
             text: str = "") -> SimReply:
        """A reply that asks for one tool call (`id` is generated when empty)."""
        return cls(text=text, tool_calls=[ToolCall(id=id, name=name, arguments=arguments or {})])


ReplyLike: TypeAlias = "SimReply | str | dict"
Responder: TypeAlias = Callable[[SimRequest], "ReplyLike | Awaitable[ReplyLike]"]
Reply: TypeAlias = "ReplyLike | Callable[[SimRequest], ReplyLike]"


def _snippet(text: str, limit: int = 120) -> str:
    text = " ".join(text[: limit * 4].split())  # only the head: long prompts stay cheap
    return text if len(text) <= limit else text[: limit - 1] + "…"


def example_for_schema(schema: dict, text: str, *, _root: dict | None = None,
                       _name: str | None = None, _depth: int = 0) -> Any:
    """A small deterministic instance of a JSON schema; string fields named like an answer
    (or the top level) get `text`."""
    root = _root if _root is not None else schema
    if _depth > 8 or not isinstance(schema, dict):
        return None
    if "$ref" in schema:
        ref = str(schema["$ref"])
        target: Any = root
        for part in ref.removeprefix("#/").split("/") if ref.startswith("#/") else ["?"]:
            target = target.get(part) if isinstance(target, dict) else None
        return example_for_schema(target or {}, text, _root=root, _name=_name, _depth=_depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return example_for_schema(schema[key][0], text, _root=root, _name=_name,
                                      _depth=_depth + 1)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        return {
            name: example_for_schema(sub, text, _root=root, _name=name, _depth=_depth + 1)
            for name, sub in (schema.get("properties") or {}).items()
        }
    if kind == "array":
        item = example_for_schema(schema.get("items") or {}, text, _root=root, _name=_name,
                                  _depth=_depth + 1)
        return [item] * int(schema.get("minItems", 0))
    if kind == "integer":
        return int(schema.get("minimum", 0))
    if kind == "number":
        return float(schema.get("minimum", 0.0))
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    if _name in (None, "answer", "text", "content", "summary", "result", "output"):
        return text
    return f"simulated {_name}"


def default_reply(request: SimRequest) -> SimReply | dict:
    """Echo the last user message, shaped as the caller asked (text, `{"answer"}` or a schema)."""
    text = f"Simulated answer to: {_snippet(request.last_user_message)}"
    fmt = request.response_format or {}
    if fmt.get("type") == "json_schema":
        return example_for_schema(fmt.get("schema") or {}, text)
    if fmt.get("type") == "json_object":
        return {"answer": text}
    return SimReply(text=text)


@dataclass(slots=True)
class _Rule:
    reply: Reply
    agent: str | None = None
    phase: str | None = None
    contains: str | None = None

    def matches(self, request: SimRequest) -> bool:
        return (
            (self.agent is None or self.agent == request.agent)
            and (self.phase is None or self.phase == request.phase)
            and (self.contains is None or self.contains in request.last_user_message)
        )


class ScriptedResponder:
    """Answers from rules: queued replies first (`.then`), then standing rules (`.on`).

    A queued reply is used once, by the first request it matches; a standing
    rule answers every request it matches (first match wins). Anything else
    gets `default` (the echoing `default_reply` unless given). A reply is a
    str, a dict (sent as JSON text), a `SimReply`, or a function of the
    `SimRequest` returning one of those.
    """

    def __init__(self, default: Reply | None = None) -> None:
        self._rules: list[_Rule] = []
        self._queue: list[_Rule] = []
        self.default: Reply = default if default is not None else default_reply

    def on(self, *, agent: str | None = None, phase: str | None = None,
           contains: str | None = None, reply: Reply) -> ScriptedResponder:
        """Answer every matching request with `reply`; `contains` looks in the last user message."""
        self._rules.append(_Rule(reply, agent, phase, contains))
        return self

    def then(self, reply: Reply, *, agent: str | None = None, phase: str | None = None,
             contains: str | None = None) -> ScriptedResponder:
        """Queue `reply` for the next matching request, once; queued replies go in order."""
        self._queue.append(_Rule(reply, agent, phase, contains))
        return self

    @property
    def pending(self) -> int:
        """Queued replies not used yet."""
        return len(self._queue)

    def __call__(self, request: SimRequest) -> ReplyLike:
        for index, rule in enumerate(self._queue):
            if rule.matches(request):
                del self._queue[index]
                return _resolve(rule.reply, request)
        for rule in self._rules:
            if rule.matches(request):
                return _resolve(rule.reply, request)
        return _resolve(self.default, request)


def _resolve(reply: Reply, request: SimRequest) -> ReplyLike:
    return reply(request) if callable(reply) else reply


def _as_reply(raw: Any, call_index: int) -> SimReply:
    if isinstance(raw, str):
        return SimReply(text=raw)
    if isinstance(raw, dict | list):
        return SimReply(text=json.dumps(raw))
    if not isinstance(raw, SimReply):
        raise ConfigurationError(
            f"a responder must return a str, dict or SimReply, not {type(raw).__name__}"
        )
    calls = []
    for i, call in enumerate(raw.tool_calls, start=1):
        if isinstance(call, dict):
            call = ToolCall(id=call.get("id", ""), name=call["name"],
                            arguments=call.get("arguments") or {})
        calls.append(call if call.id else ToolCall(f"sim_call_{call_index}_{i}", call.name,
                                                   call.arguments))
    return SimReply(text=raw.text, tool_calls=calls)


def _calls_json(calls: list[ToolCall]) -> str:
    return json.dumps([{"name": c.name, "arguments": c.arguments} for c in calls]) if calls else ""


def count_input_tokens(messages: list[dict], tools: list[dict] | None = None) -> int:
    """The simulated provider's input tokens (see the module docstring)."""
    total = 0
    for message in messages:
        content = message.get("content")
        chars = len(content) if isinstance(content, str) else len(message_text(content))
        calls = message.get("tool_calls")
        if calls:
            chars += len(to_json(calls))
        total += math.ceil(chars / 4) + 4
    if tools:
        total += math.ceil(tools_json_size(tools, utf8=False) / 4)
    return total


#: Seconds a simulated call takes where fake time should look real (the magic's fake
#: clock, the demo): a small hosted model's range. The provider's own default stays 0.
REALISTIC_LATENCY = (0.4, 1.6)


class SimulatedProvider:
    """The offline provider; model names must start with `sim-` (`sim-small`, `sim-large`).

    `latency` is seconds per call, or a `(low, high)` range drawn from the
    seeded generator; waits go through the injected clock. `faults` is a
    `FaultPlan` or a spec string; assigning `provider.faults` later restarts
    its call numbering at the next call.
    """

    name = "simulated"
    price_provider = "simulated"

    def __init__(
        self,
        clock: Clock | None = None,
        seed: int = 0,
        latency: float | tuple[float, float] = 0.0,
        faults: FaultPlan | str | None = None,
        responder: Responder | None = None,
        *,
        timeout: float = 60.0,
    ) -> None:
        self.clock: Clock = clock or RealClock()
        self.seed = seed
        self.latency = latency
        self.timeout = float(timeout)
        self.responder: Responder = responder if responder is not None else default_reply
        self.chosen_because = "constructed directly"
        self.call_count = 0
        self._rng = random.Random(seed)
        self._faults: FaultPlan | None = None
        self._fault_base = 0
        self.faults = faults
        self._check_latency()

    def __repr__(self) -> str:
        faults = f", faults={self._faults.to_spec()!r}" if self._faults else ""
        return f"SimulatedProvider(seed={self.seed}, latency={self.latency!r}{faults})"

    @property
    def faults(self) -> FaultPlan | None:
        """The fault plan; its call 1 is the first call after it was set."""
        return self._faults

    @faults.setter
    def faults(self, value: FaultPlan | str | None) -> None:
        self._faults = FaultPlan.coerce(value)
        self._fault_base = self.call_count

    def check_model(self, model: str) -> None:
        """Refuse a model this provider cannot answer before anything is spent or recorded."""
        if not isinstance(model, str) or not model.startswith("sim-"):
            raise ConfigurationError(
                f"the simulated provider has no model {model!r}: simulated models start "
                "with 'sim-' (sim-small, sim-large); for a real model choose its provider")

    def _check_latency(self) -> None:
        low, high = self.latency if isinstance(self.latency, tuple) else (self.latency,) * 2
        if not 0.0 <= low <= high:
            raise ConfigurationError(f"latency must be >= 0 (or a low <= high range), "
                                     f"not {self.latency!r}")

    def _draw_latency(self) -> float:
        if isinstance(self.latency, tuple):
            return self._rng.uniform(*self.latency)
        return float(self.latency)

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
        """Answer from the responder after the simulated latency, unless a fault hits."""
        if not model.startswith("sim-"):
            raise ProviderError(
                f"simulated answered 404 for model {model!r}: unknown model "
                "(simulated models start with 'sim-')",
                provider=self.name, model=model, status=404,
                body='{"error": {"message": "unknown model"}}',
            )
        if max_tokens < 1:
            raise ProviderError(
                f"simulated answered 400 for model {model!r}: max_tokens must be >= 1",
                provider=self.name, model=model, status=400,
            )
        self.call_count += 1
        call = self.call_count
        delay = self._draw_latency()
        plan = self._faults
        fault = plan.fault_for(call - self._fault_base, self._rng) if plan else None
        started = self.clock.now()
        if fault is not None and fault.kind == "timeout":
            waited = self.timeout if fault.after is None else fault.after
            await self.clock.sleep(waited)
            raise fault.error(provider=self.name, model=model, waited=waited)
        if delay:
            await self.clock.sleep(delay)
        if fault is not None:
            raise fault.error(provider=self.name, model=model)
        request = SimRequest(
            messages=messages, model=model, tools=tools, response_format=response_format,
            agent=current_agent.get(), phase=current_phase.get(), call_index=call,
            max_tokens=max_tokens,
        )
        raw = self.responder(request)
        if inspect.isawaitable(raw):
            raw = await raw
        reply = _as_reply(raw, call)
        text, calls = reply.text, reply.tool_calls
        finish = "tool_calls" if calls else "stop"
        output = max(1, math.ceil((len(text) + len(_calls_json(calls))) / 4))
        if output > max_tokens:
            text, calls, finish = text[: max_tokens * 4], [], "length"
            output = max(1, math.ceil(len(text) / 4))
        return Completion(
            text=text,
            tool_calls=calls,
            usage=Usage(input_tokens=count_input_tokens(messages, tools), output_tokens=output),
            model=model,
            provider=self.name,
            latency=self.clock.now() - started,
            finish_reason=finish,
        )

    async def aclose(self) -> None:
        """Nothing to release; here for the `Provider` protocol."""
