"""AnthropicProvider on the wire: what it sends to /v1/messages and how it reads the answer."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from taskorch_nb.errors import ConfigurationError, ProviderResponseError, RateLimitError
from taskorch_nb.llm import AnthropicProvider, ToolCall, Usage
from taskorch_nb.testing import FakeClock
from tests.unit.llm_servers import (
    SEARCH_TOOLS,
    Answer,
    MockServer,
    Script,
    anthropic_body,
)


@pytest.fixture
def script() -> Script:
    return Script(anthropic_body())


@pytest.fixture
async def provider(server: MockServer) -> AsyncIterator[AnthropicProvider]:
    p = AnthropicProvider(api_key="sk-ant-test", base_url=server.url,
                          transport=server.transport, clock=FakeClock())
    yield p
    await p.aclose()


async def test_system_moves_out_and_headers_are_set(
    provider: AnthropicProvider, server: MockServer
) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]
    completion = await provider.complete(messages, model="claude-x", max_tokens=50,
                                         temperature=0.0)
    assert completion.text == "Hello!"
    assert (completion.provider, completion.model, completion.finish_reason) == (
        "anthropic", "claude-test-2026", "end_turn"
    )
    sent = server.last
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == "sk-ant-test"
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.json == {
        "model": "claude-x",
        "max_tokens": 50,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
        "temperature": 0.0,
    }


async def test_cache_tokens_are_added_into_input(
    provider: AnthropicProvider, script: Script
) -> None:
    script.answer = Answer(body=anthropic_body(input_tokens=10, output_tokens=30,
                                               cache_read=900, cache_write=100))
    completion = await provider.complete([{"role": "user", "content": "x"}], model="c",
                                         max_tokens=40)
    assert completion.usage == Usage(input_tokens=1010, output_tokens=30, cached_tokens=900,
                                     cache_write_tokens=100)


async def test_tool_use_and_tool_results(
    provider: AnthropicProvider, server: MockServer, script: Script
) -> None:
    script.answer = Answer(body=anthropic_body(
        [{"type": "text", "text": "Let me look."},
         {"type": "tool_use", "id": "toolu_2", "name": "search_api", "input": {"query": "b"}}],
        stop_reason="tool_use",
    ))
    history = [
        {"role": "user", "content": "find two things"},
        {"role": "assistant", "content": "Searching.",
         "tool_calls": [{"id": "toolu_a", "name": "search_api", "arguments": {"query": "a"}},
                        {"id": "toolu_b", "name": "search_api", "arguments": {"query": "b"}}]},
        {"role": "tool", "tool_call_id": "toolu_a", "content": "A found"},
        {"role": "tool", "tool_call_id": "toolu_b", "content": "B failed"},
        {"role": "user", "content": "Try once more for B."},
    ]
    completion = await provider.complete(history, model="c", max_tokens=64, tools=SEARCH_TOOLS)
    assert completion.text == "Let me look."
    assert completion.tool_calls == [ToolCall("toolu_2", "search_api", {"query": "b"})]
    assert completion.finish_reason == "tool_use"
    body = server.last.json
    assert body["tools"] == [{"name": "search_api", "description": "Search the web",
                              "input_schema": SEARCH_TOOLS[0]["parameters"]}]
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "find two things"}]},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Searching."},
            {"type": "tool_use", "id": "toolu_a", "name": "search_api", "input": {"query": "a"}},
            {"type": "tool_use", "id": "toolu_b", "name": "search_api", "input": {"query": "b"}},
        ]},
        # Tool results and the next user words share one user turn: strict alternation.
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_a", "content": "A found"},
            {"type": "tool_result", "tool_use_id": "toolu_b", "content": "B failed"},
            {"type": "text", "text": "Try once more for B."},
        ]},
    ]


async def test_json_output_is_asked_in_the_system_prompt_and_unfenced(
    provider: AnthropicProvider, server: MockServer, script: Script
) -> None:
    script.answer = Answer(body=anthropic_body(
        [{"type": "text", "text": '```json\n{"answer": "42"}\n```'}]
    ))
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    completion = await provider.complete(
        [{"role": "system", "content": "You judge."}, {"role": "user", "content": "?"}],
        model="c", max_tokens=20, response_format={"type": "json_schema", "schema": schema},
    )
    assert json.loads(completion.text) == {"answer": "42"}
    system = server.last.json["system"]
    assert system.startswith("You judge.\n\n")
    assert json.dumps(schema, separators=(",", ":")) in system


async def test_rate_limit_with_anthropic_headers(
    provider: AnthropicProvider, script: Script
) -> None:
    script.answer = Answer(
        status=429,
        body={"type": "error", "error": {"type": "rate_limit_error", "message": "Too fast"}},
        headers={"retry-after": "20"},
    )
    with pytest.raises(RateLimitError, match="Too fast") as info:
        await provider.complete([{"role": "user", "content": "x"}], model="c", max_tokens=5)
    assert info.value.retry_after == 20.0


async def test_an_error_typed_body_with_200_is_a_response_error(
    provider: AnthropicProvider, script: Script
) -> None:
    script.answer = Answer(body={"type": "error", "error": {"message": "odd"}})
    with pytest.raises(ProviderResponseError):
        await provider.complete([{"role": "user", "content": "x"}], model="c", max_tokens=5)


async def test_environment_supplies_key_and_base_url(
    server: MockServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-env")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
    provider = AnthropicProvider(transport=server.transport)
    try:
        await provider.complete([{"role": "user", "content": "x"}], model="c", max_tokens=5)
    finally:
        await provider.aclose()
    assert server.last.headers["x-api-key"] == "sk-ant-env"


def test_official_api_without_key_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    with pytest.raises(ConfigurationError, match="ANTHROPIC_API_KEY"):
        AnthropicProvider()
