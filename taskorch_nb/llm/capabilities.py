"""What a server and model accept, learned from what they refuse, and remembered.

OpenAI-compatible servers differ: llama-cpp-python answers a native
`json_schema` response format with HTTP 500 and a validation body, ignores
`tools` unless it was started with a function-calling chat format, and has a
4,096-token window by default. Rather than configure each, the provider tries
the richest request shape, reads a refusal, and remembers the shape that works
per base URL and model (`CapabilityMemory`). The memory is plain records so an
orchestrator can persist it (`on_learn`) and load it back next time.

The second half reads error bodies: which request field a refusal names, and
the window a "maximum context length" answer states.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

#: Structured output, richest first: the server's own JSON schema mode, JSON mode with the
#: schema attached (llama.cpp turns it into a grammar), then the schema in the prompt.
OUTPUT_MODES = ("json_schema", "json_object", "prompted")
#: Tool calling: the API's `tools` field, or JSON action objects described in the prompt.
TOOL_MODES = ("native", "prompted")


@dataclass(slots=True)
class ModelCapabilities:
    """What one model behind one base URL accepts (None: not known yet)."""

    output_mode: str | None = None
    tool_mode: str | None = None
    context_window: int | None = None
    metadata_checked: bool = False
    """The server's model list was read once for a context window (found or not)."""

    def to_record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ModelCapabilities:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in names})


Listener = Callable[[str, dict[str, Any], str], Any]
"""`on_learn(key, record, reason)`: called after each fact learned."""


def memory_key(base_url: str, model: str) -> str:
    return f"{base_url.rstrip('/')}#{model}"


class CapabilityMemory:
    """Capabilities per `base_url#model`; `on_learn` hears every change (to persist it)."""

    def __init__(self, records: Mapping[str, Mapping[str, Any]] | None = None, *,
                 on_learn: Listener | None = None) -> None:
        self._known: dict[str, ModelCapabilities] = {}
        self._lock = threading.Lock()
        self.on_learn = on_learn
        self.load(records or {})

    def get(self, base_url: str, model: str) -> ModelCapabilities:
        """The (live) capabilities of `model` at `base_url`, empty when nothing is known."""
        key = memory_key(base_url, model)
        with self._lock:
            caps = self._known.get(key)
            if caps is None:
                caps = self._known[key] = ModelCapabilities()
            return caps

    def learn(self, base_url: str, model: str, reason: str, **facts: Any) -> ModelCapabilities:
        """Record facts (`output_mode=`, `tool_mode=`, `context_window=`, ...) and say why."""
        unknown = set(facts) - {f.name for f in fields(ModelCapabilities)}
        if unknown:
            raise TypeError(f"unknown capability field(s): {', '.join(sorted(unknown))}")
        caps = self.get(base_url, model)
        with self._lock:
            for name, value in facts.items():
                setattr(caps, name, value)
            record = caps.to_record()
        if self.on_learn is not None:
            self.on_learn(memory_key(base_url, model), record, reason)
        return caps

    def load(self, records: Mapping[str, Mapping[str, Any]]) -> None:
        """Add records saved earlier (`{key: record}`), e.g. from the store."""
        with self._lock:
            for key, record in records.items():
                self._known[key] = ModelCapabilities.from_record(record)

    def records(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {k: c.to_record() for k, c in self._known.items()}

    def __len__(self) -> int:
        return len(self._known)


# -- reading refusals ---------------------------------------------------------------------

#: Words of a validation error (pydantic's, FastAPI's, OpenAI's): a 500 that says them is
#: the server refusing the request's shape, not a server fault.
_VALIDATION = ("validation error", "input should be", "literal_error", "field required",
               "extra inputs are not permitted", "unsupported parameter", "unsupported value",
               "not supported", "unrecognized request argument", "invalid_request_error",
               "does not support", "unknown field", "invalid value")

#: Request fields a refusal may name, most specific first.
_FIELDS = (
    ("response_format", ("response_format", "json_schema")),
    ("tools", ("tool_choice", "tools", "tool_calls", "function")),
    ("max_tokens", ("max_completion_tokens", "max_tokens")),
    ("temperature", ("temperature",)),
    ("messages", ("messages",)),
)

_WINDOW_PATTERNS = (
    re.compile(r"maximum context length is (\d+)", re.I),
    re.compile(r"context (?:window|length|size) (?:of|is) (\d+)", re.I),
    re.compile(r"exceeds? (?:the )?(?:available )?context (?:window|size|length)[^\d]{0,20}(\d+)",
               re.I),
    re.compile(r"n_ctx[^\d]{0,5}(\d+)", re.I),
)
_CONTEXT_WORDS = ("maximum context length", "context window", "context length", "context size",
                  "context_length_exceeded", "too many tokens", "n_ctx")


def context_overflow(status: int | None, text: str) -> tuple[bool, int | None]:
    """(is this a context-length refusal, the window it states if any)."""
    if status is None or not 400 <= status < 600:
        return False, None
    lowered = text.lower()
    if not any(word in lowered for word in _CONTEXT_WORDS):
        return False, None
    for pattern in _WINDOW_PATTERNS:
        match = pattern.search(text)
        if match:
            return True, int(match.group(1))
    return True, None


def refused_feature(status: int | None, text: str, sent: Iterable[str]) -> str | None:
    """The request field a refusal names, if the answer is a refusal of the request's shape.

    400 and 422 are refusals by definition when they name a field we sent; a 5xx only
    when its body reads like a validation error (llama-cpp-python answers 500 to a
    response format it does not know).
    """
    if status is None or status in (401, 403, 404, 408, 409, 429):
        return None
    lowered = text.lower()
    if status >= 500 and not any(word in lowered for word in _VALIDATION):
        return None
    if not (status in (400, 422) or status >= 500):
        return None
    sent = set(sent)
    for feature, words in _FIELDS:
        if feature in sent and any(word in lowered for word in words):
            return feature
    if status == 422 or any(word in lowered for word in _VALIDATION):
        return "request"
    return None
