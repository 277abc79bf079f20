"""OpenAIProvider on the wire: what it sends to /chat/completions and how it reads the answer."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import pytest

from taskorch_nb.errors import ConfigurationError, ProviderResponseError
from taskorch_nb.llm import OpenAIProvider, ToolCall, Usage
from taskorch_nb.testing import FakeClock
from tests.unit.llm_servers import (
    SEARCH_TOOLS,
    Answer,
    LoopbackServer,
    Script,
    openai_body,
)


@pytest.fixture
def script() -> Script:
    return Script(openai_body())


@pytest.fixture
def server(script: Script) -> Iterator[LoopbackServer]:
    with LoopbackServer(script) as running:
        yield running


@pytest.fixture
async def provider(server: LoopbackServer) -> AsyncIterator[OpenAIProvider]:
    p = OpenAIProvider(api_key="sk-test", base_url=server.url + "/v1", clock=FakeClock())
    yield p
    await p.aclose()


async def test_plain_completion_and_usage_details(
    provider: OpenAIProvider, server: LoopbackServer, script: Script
) -> None:
    script.answer = Answer(
        body=openai_body("Hi there", prompt_tokens=100, completion_tokens=40,
                         cached_tokens=64, reasoning_tokens=25)
    )
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    completion = await provider.complete(messages, model="gpt-test", max_tokens=50,
                                         temperature=0.2)
    assert completion.text == "Hi there"
    assert completion.tool_calls == []
    assert completion.usage == Usage(input_tokens=100, output_tokens=40, cached_tokens=64,
                                     reasoning_tokens=25)
    assert (completion.model, completion.provider, completion.finish_reason) == (
        "gpt-test-2026", "openai", "stop"
    )
    sent = server.last
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer sk-test"
    assert sent.json == {
        "model": "gpt-test",
        "messages": messages,
        "max_tokens": 50,
        "temperature": 0.2,
    }


async def test_missing_usage_details_mean_zero(provider: OpenAIProvider) -> None:
    completion = await provider.complete([{"role": "user", "content": "x"}], model="m",
                                         max_tokens=5)
    assert completion.usage == Usage(input_tokens=12, output_tokens=5)


async def test_tool_calls_both_ways(
    provider: OpenAIProvider, server: LoopbackServer, script: Script
) -> None:
    script.answer = Answer(body=openai_body(
        None,
        finish_reason="tool_calls",
        tool_calls=[{"id": "call_9", "type": "function",
                     "function": {"name": "search_api", "arguments": '{"query": "llm"}'}}],
    ))
    history = [
        {"role": "user", "content": "find llm news"},
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "call_1", "name": "search_api", "arguments": {"query": "a"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "no results"},
    ]
    completion = await provider.complete(history, model="m", max_tokens=64, tools=SEARCH_TOOLS)
    assert completion.tool_calls == [ToolCall("call_9", "search_api", {"query": "llm"})]
    assert completion.text == ""
    assert completion.finish_reason == "tool_calls"
    body = server.last.json
    assert body["tools"] == [{"type": "function", "function": SEARCH_TOOLS[0]}]
    assert body["messages"][1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "call_1", "type": "function",
                        "function": {"name": "search_api", "arguments": '{"query": "a"}'}}],
    }
    assert body["messages"][2] == {"role": "tool", "tool_call_id": "call_1",
                                   "content": "no results"}


async def test_tool_arguments_that_are_not_json_are_a_response_error(
    provider: OpenAIProvider, script: Script
) -> None:
    script.answer = Answer(body=openai_body(
        None, tool_calls=[{"id": "c", "type": "function",
                           "function": {"name": "t", "arguments": "{broken"}}],
    ))
    with pytest.raises(ProviderResponseError, match="JSONDecodeError"):
        await provider.complete([{"role": "user", "content": "x"}], model="m", max_tokens=5)


async def test_json_schema_and_json_object_output(
    provider: OpenAIProvider, server: LoopbackServer, script: Script
) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}},
              "required": ["answer"]}
    script.answer = Answer(body=openai_body('{"answer": "42"}'))
    completion = await provider.complete(
        [{"role": "user", "content": "?"}], model="m", max_tokens=20,
        response_format={"type": "json_schema", "schema": schema, "name": "verdict",
                         "strict": True},
    )
    assert json.loads(completion.text) == {"answer": "42"}
    assert server.last.json["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "verdict", "schema": schema, "strict": True},
    }
    await provider.complete([{"role": "user", "content": "?"}], model="m", max_tokens=20,
                            response_format={"type": "json_object"})
    assert server.last.json["response_format"] == {"type": "json_object"}


async def test_unknown_response_format_is_a_configuration_error(
    provider: OpenAIProvider, server: LoopbackServer
) -> None:
    with pytest.raises(ConfigurationError, match="json_schema"):
        await provider.complete([{"role": "user", "content": "?"}], model="m", max_tokens=5,
                                response_format={"type": "yaml"})
    assert server.requests == []


async def test_environment_supplies_key_and_base_url(
    server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """How Ollama, vLLM or llama.cpp are reached: OPENAI_BASE_URL (and a dummy key)."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    monkeypatch.setenv("OPENAI_BASE_URL", server.url + "/v1")
    provider = OpenAIProvider(headers={"x-trace": "t1"})
    try:
        await provider.complete([{"role": "user", "content": "x"}], model="llama3",
                                max_tokens=5)
    finally:
        await provider.aclose()
    assert server.last.headers["authorization"] == "Bearer sk-from-env"
    assert server.last.headers["x-trace"] == "t1"


async def test_local_server_needs_no_key(
    server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    provider = OpenAIProvider(base_url=server.url + "/v1")
    try:
        await provider.complete([{"role": "user", "content": "x"}], model="m", max_tokens=5)
    finally:
        await provider.aclose()
    assert "authorization" not in server.last.headers


def test_official_api_without_key_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY"):
        OpenAIProvider()


def test_official_api_uses_max_completion_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    provider = OpenAIProvider(api_key="sk-x")
    assert provider.base_url == "https://api.openai.com/v1"
    assert provider.token_param == "max_completion_tokens"
    assert "sk-x" not in repr(provider)
