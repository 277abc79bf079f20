"""Fitting a conversation into a model's context window before it is sent.

An agent's conversation grows with every tool result. When the window is known
(the `context_window=` option, the server's model list, or a "maximum context
length" refusal learned earlier), `fit` makes room: first it shortens old tool
results, then the model's own long turns (an answer cut off at the length limit,
the content of a file already written), then the latest result, then drops the
oldest whole turns, and it lowers the output limit to what is left. If even that
cannot fit (the instruction alone is too long), it raises `ContextWindowError`
and nothing is sent.

Sizes use `estimate_input_tokens`, an upper bound (bytes / 3), so a fitted
request fits the real tokenizer too.
"""

from __future__ import annotations

import math
from typing import Any

from taskorch_nb.errors import ContextWindowError
from taskorch_nb.llm.base import estimate_input_tokens, message_text

#: What is kept of a trimmed tool result.
KEPT_CHARS = 200
#: The smallest answer worth asking for, in tokens.
MIN_OUTPUT = 256


_AGAIN = "; call the tool again if you need them"


def _trimmed(message: dict[str, Any], keep: int, note: str = _AGAIN) -> dict[str, Any]:
    text = message_text(message.get("content"))
    if len(text) <= keep + 80:
        return message
    cut = len(text) - keep
    return {**message, "content": f"{text[:keep]}\n[... {cut} characters trimmed to fit the "
                                  f"context window{note}]"}


def _short_assistant(message: dict[str, Any]) -> dict[str, Any]:
    """An assistant turn with its long text (an answer cut off at the length limit) and long
    tool-call arguments (a file's content) cut short."""
    message = _trimmed(message, KEPT_CHARS, note="")
    calls = message.get("tool_calls")
    if not calls:
        return message
    short = []
    for call in calls:
        arguments = {
            key: (f"{value[:KEPT_CHARS]}[... {len(value) - KEPT_CHARS} characters trimmed]"
                  if isinstance(value, str) and len(value) > KEPT_CHARS + 80 else value)
            for key, value in call["arguments"].items()
        }
        short.append({**call, "arguments": arguments})
    return {**message, "tool_calls": short}


def _turns(messages: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """(start, end) of each turn after the opening instruction: an assistant message and
    what answers it (tool results, a follow-up user message)."""
    first_user = next((i for i, m in enumerate(messages) if m["role"] == "user"), len(messages))
    turns: list[tuple[int, int]] = []
    start = None
    for i in range(first_user + 1, len(messages)):
        if messages[i]["role"] == "assistant":
            if start is not None:
                turns.append((start, i))
            start = i
    if start is not None:
        turns.append((start, len(messages)))
    return turns


def fit(messages: list[dict[str, Any]], *, window: int, max_tokens: int,
        tools: list[dict] | None = None, reserve: int = 0,
        provider: str = "", model: str = "") -> tuple[list[dict[str, Any]], int]:
    """(messages that fit, output limit); `reserve` counts prompt text added later.

    The output limit is at least `min(max_tokens, MIN_OUTPUT)`; trimming aims at a
    quarter of the window for output (or `max_tokens` when smaller).
    """
    floor = min(max_tokens, MIN_OUTPUT)
    wanted = max(floor, min(max_tokens, window // 4))

    def room(msgs: list[dict[str, Any]]) -> int:
        return window - reserve - estimate_input_tokens(msgs, tools)

    out = list(messages)
    if room(out) >= wanted:
        return out, min(max_tokens, room(out))
    tool_results = [i for i, m in enumerate(out) if m["role"] == "tool"]
    for i in tool_results[:-1]:  # old tool results first, oldest first
        out[i] = _trimmed(out[i], KEPT_CHARS)
        if room(out) >= wanted:
            return out, min(max_tokens, room(out))
    if room(out) >= floor:
        return out, min(max_tokens, room(out))
    for i, message in enumerate(out):  # then the model's own long turns, oldest first
        if message["role"] == "assistant":
            out[i] = _short_assistant(message)
            if room(out) >= floor:
                return out, min(max_tokens, room(out))
    if tool_results:  # then the latest result, to what still fits
        last = tool_results[-1]
        short = math.floor(max(0, room(out) + estimate_input_tokens([out[last]]) - floor) * 3)
        out[last] = _trimmed(out[last], max(KEPT_CHARS, short - 200))
    while room(out) < floor:  # then whole old turns, keeping the latest
        turns = _turns(out)
        if len(turns) < 2:
            break
        start, end = turns[0]
        del out[start:end]
    left = room(out)
    if left < floor:
        needed = window - left + floor
        raise ContextWindowError(
            f"the conversation does not fit {model or 'the model'}'s context window of "
            f"{window} tokens even trimmed: about {needed} needed with {floor} for the "
            "answer; shorten the task or use a model with a larger window",
            window=window, needed=needed, provider=provider, model=model,
        )
    return out, min(max_tokens, left)
