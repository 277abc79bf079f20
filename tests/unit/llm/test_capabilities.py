"""What a server accepts: read from its refusals, remembered, and kept across orchestrators."""

from __future__ import annotations

import math

import pytest

from taskorch_nb import FakeClock, Orchestrator
from taskorch_nb.core.events import Event
from taskorch_nb.errors import CapabilityError
from taskorch_nb.llm.capabilities import (
    CapabilityMemory,
    ModelCapabilities,
    context_overflow,
    memory_key,
    refused_feature,
)
from taskorch_nb.llm.openai import OpenAIProvider
from tests.unit.llm.test_openai import JSON_SCHEMA, LLAMA_CPP_500, llama_cpp_like
from tests.unit.llm_servers import Answer, MockServer, Recorded

#: Bodies seen from real servers (llama-cpp-python 0.3.36 here; OpenAI's documented errors).
NULL_CONTENT_500 = (
    "7 validation errors: {'type': 'string_type', 'loc': ('body', 'messages', 2, "
    "'ChatCompletionRequestAssistantMessage', 'content'), 'msg': 'Input should be a valid "
    "string', 'input': None}"
)
OPENAI_TOKENS_400 = ("Unsupported parameter: 'max_tokens' is not supported with this model. "
                     "Use 'max_completion_tokens' instead.")
LLAMA_CPP_CONTEXT_400 = (
    "This model's maximum context length is 4096 tokens. However, you requested 5091 tokens "
    "(5031 in the messages, 60 in the completion). Please reduce the length of the messages "
    "or completion."
)


@pytest.mark.parametrize(("status", "body", "sent", "feature"), [
    (500, str(LLAMA_CPP_500), {"response_format", "messages"}, "response_format"),
    (500, NULL_CONTENT_500, {"messages"}, "messages"),
    (400, OPENAI_TOKENS_400, {"max_tokens", "messages"}, "max_tokens"),
    (400, "'tool_choice' is not supported", {"tools", "tool_choice", "messages"}, "tools"),
    (422, "{'detail': 'whatever'}", {"messages"}, "request"),
    (500, "CUDA error: out of memory", {"response_format", "messages"}, None),
    (503, "model is loading", {"messages"}, None),
    (401, "invalid api key: input should be valid", {"messages"}, None),
    (429, "rate limited", {"messages"}, None),
    (400, "response_format is invalid", {"messages"}, None),  # not sent: a plain 400
])
def test_refused_feature(status: int, body: str, sent: set[str], feature: str | None) -> None:
    assert refused_feature(status, body, sent) == feature


def test_context_overflow_reads_the_window() -> None:
    assert context_overflow(400, LLAMA_CPP_CONTEXT_400) == (True, 4096)
    assert context_overflow(400, "prompt exceeds the available context size (8192 tokens)") \
        == (True, 8192)
    assert context_overflow(400, "context_length_exceeded") == (True, None)
    assert context_overflow(400, "max_tokens must be positive") == (False, None)
    assert context_overflow(None, LLAMA_CPP_CONTEXT_400) == (False, None)


def test_memory_learns_reports_and_reloads() -> None:
    heard: list[tuple[str, dict, str]] = []
    memory = CapabilityMemory(on_learn=lambda *fact: heard.append(fact))
    assert memory.get("http://h/v1/", "m") == ModelCapabilities()
    memory.learn("http://h/v1", "m", "refused json_schema", output_mode="json_object")
    memory.learn("http://h/v1", "m", "window", context_window=4096)
    key = memory_key("http://h/v1", "m")
    assert key == "http://h/v1#m"
    assert heard[-1] == (key, {"output_mode": "json_object", "tool_mode": None,
                               "context_window": 4096, "metadata_checked": False}, "window")
    again = CapabilityMemory(memory.records())
    assert again.get("http://h/v1", "m").output_mode == "json_object"
    with pytest.raises(TypeError, match="colour"):
        memory.learn("http://h/v1", "m", "?", colour="red")


ZERO = {"smollm2": {"input": 0, "output": 0}}


def _orchestrator(server: MockServer, store: str, events: list[Event]) -> Orchestrator:
    provider = OpenAIProvider(base_url=server.url + "/v1", api_key="none",
                              transport=server.transport, clock=FakeClock())
    # No deadline: the FakeClock would jump to it while an HTTP exchange is in flight.
    orch = Orchestrator(provider, model="smollm2", prices=ZERO, store=store, langfuse=False,
                        clock=provider.clock, deadline=math.inf)
    orch.subscribe(events.append)
    return orch


async def test_a_refusal_is_learned_once_announced_and_kept_in_the_store(tmp_path) -> None:
    store = str(tmp_path / "t.db")
    events: list[Event] = []
    ask = [{"role": "user", "content": "?"}]
    with MockServer(llama_cpp_like) as server:
        with _orchestrator(server, store, events) as orch:
            completion = await orch.complete(ask, response_format=JSON_SCHEMA)
            await orch.provider.aclose()
            breaker = orch.breaker("openai:smollm2")
        with _orchestrator(server, store, events) as orch:
            await orch.complete(ask, response_format=JSON_SCHEMA)
            await orch.provider.aclose()
    assert completion.text == '{"answer": "42"}'
    types = [e.type for e in events]
    assert "retry.scheduled" not in types  # the 500 was a refusal, not an outage
    assert "pattern.learned" not in types
    assert breaker.failures == 0
    adapted = [e for e in events if e.type == "model.adapted"]
    assert [e.detail.get("output_mode") for e in adapted] == [None, "json_object"]
    assert "using 'json_object' output" in adapted[-1].message
    kinds = [r.json["response_format"]["type"] for r in server.requests]
    assert kinds == ["json_schema", "json_object", "json_object"]  # the second remembered


async def test_a_capability_error_is_not_retried_nor_counted(tmp_path) -> None:
    def refuse(_request: Recorded) -> Answer:
        return Answer(500, {"error": {"message": "1 validation error: messages: Input should "
                                                  "be a valid list"}})

    events: list[Event] = []
    with MockServer(refuse) as server, \
            _orchestrator(server, str(tmp_path / "t.db"), events) as orch:
        with pytest.raises(CapabilityError, match="messages"):
            await orch.complete([{"role": "user", "content": "?"}])
        await orch.provider.aclose()
        assert orch.breaker("openai:smollm2").failures == 0
    assert len(server.requests) == 1
    failed = [e for e in events if e.type == "tool.failed"]
    assert [e.category for e in failed] == ["capability"]
    assert [e.type for e in events if e.type.startswith("llm.")] == ["llm.requested",
                                                                     "llm.failed"]

