"""A priced orchestrator on a fake clock and loopback servers speaking the two APIs."""

from __future__ import annotations

import json

import pytest

from taskorch_nb import FakeClock, Orchestrator, RetryPolicy
from tests.unit.llm_servers import Answer, Recorded

#: Loopback models are free unless priced: these prices make money visible.
PRICES = {
    "gpt-4o-mini": {"input": 0.15, "output": 0.60},
    "gpt-4o": {"input": 2.50, "output": 10.00},
    "claude-haiku": {"input": 1.00, "output": 5.00, "cache_read": 0.10, "cache_write": 1.25},
}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def orch(clock: FakeClock):
    o = Orchestrator(store=":memory:", clock=clock, prices=PRICES,
                     retry=RetryPolicy(max_attempts=3, initial_wait=2.0, jitter=0.0))
    yield o
    o.close()


def sse(events: list[dict], *, done: bool = True, named: bool = False) -> Answer:
    """A server-sent-event answer carrying `events` as `data:` lines (`named`: with an
    `event:` line naming each, as Anthropic sends)."""
    lines = [(f"event: {e['type']}\n" if named else "") + f"data: {json.dumps(e)}\n\n"
             for e in events]
    if done:
        lines.append("data: [DONE]\n\n")
    return Answer(body="".join(lines), headers={"content-type": "text/event-stream"})


def openai_chunks(words: list[str], *, usage: dict | None = None,
                  model: str = "gpt-4o-mini") -> list[dict]:
    chunks = [{"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": model,
               "choices": [{"index": 0, "delta": {"role": "assistant", "content": w},
                            "finish_reason": None}]} for w in words]
    chunks.append({"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": model,
                   "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if usage is not None:
        chunks.append({"id": "c1", "object": "chat.completion.chunk", "created": 0,
                       "model": model, "choices": [], "usage": usage})
    return chunks


def anthropic_events(words: list[str], *, input_tokens: int, output_tokens: int,
                     model: str = "claude-haiku") -> list[dict]:
    events: list[dict] = [
        {"type": "message_start", "message": {
            "id": "msg_1", "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0,
         "content_block": {"type": "text", "text": ""}},
    ]
    events += [{"type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": w}} for w in words]
    events += [{"type": "content_block_stop", "index": 0},
               {"type": "message_delta", "delta": {"stop_reason": "end_turn",
                                                   "stop_sequence": None},
                "usage": {"output_tokens": output_tokens}},
               {"type": "message_stop"}]
    return events


def model_posts(requests: list[Recorded]) -> list[Recorded]:
    return [r for r in requests if r.method == "POST"]
