"""OpenAIProvider on the wire: what it sends to /chat/completions and how it reads the answer."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from taskorch_nb.core.retry import classify
from taskorch_nb.errors import (
    CapabilityError,
    ConfigurationError,
    ContextWindowError,
    ProviderError,
    ProviderResponseError,
)
from taskorch_nb.llm import OpenAIProvider, ToolCall, Usage
from taskorch_nb.llm.capabilities import CapabilityMemory
from taskorch_nb.llm.openai import to_openai_message
from taskorch_nb.testing import FakeClock
from tests.unit.llm_servers import (
    SEARCH_TOOLS,
    Answer,
    MockServer,
    Recorded,
    Script,
    openai_body,
)


@pytest.fixture
def script() -> Script:
    return Script(openai_body())


@pytest.fixture
async def provider(server: MockServer) -> AsyncIterator[OpenAIProvider]:
    p = OpenAIProvider(api_key="sk-test", base_url=server.url + "/v1",
                       transport=server.transport, clock=FakeClock())
    yield p
    await p.aclose()


async def test_plain_completion_and_usage_details(
    provider: OpenAIProvider, server: MockServer, script: Script
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
    provider: OpenAIProvider, server: MockServer, script: Script
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
    assert body["tool_choice"] == "auto"  # llama-cpp-python reads a missing one as "none"
    assert body["messages"][1] == {
        "role": "assistant",
        "content": "",  # llama-cpp-python refuses null content
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
    provider: OpenAIProvider, server: MockServer, script: Script
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
    provider: OpenAIProvider, server: MockServer
) -> None:
    with pytest.raises(ConfigurationError, match="json_schema"):
        await provider.complete([{"role": "user", "content": "?"}], model="m", max_tokens=5,
                                response_format={"type": "yaml"})
    assert server.requests == []


async def test_environment_supplies_key_and_base_url(
    server: MockServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """How Ollama, vLLM or llama.cpp are reached: OPENAI_BASE_URL (and a dummy key)."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    monkeypatch.setenv("OPENAI_BASE_URL", server.url + "/v1")
    provider = OpenAIProvider(headers={"x-trace": "t1"}, transport=server.transport)
    try:
        await provider.complete([{"role": "user", "content": "x"}], model="llama3",
                                max_tokens=5)
    finally:
        await provider.aclose()
    assert server.last.headers["authorization"] == "Bearer sk-from-env"
    assert server.last.headers["x-trace"] == "t1"


async def test_local_server_needs_no_key(
    server: MockServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    provider = OpenAIProvider(base_url=server.url + "/v1", transport=server.transport)
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


# -- adapting to what the server accepts -------------------------------------------------------

SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
JSON_SCHEMA = {"type": "json_schema", "name": "Answer", "schema": SCHEMA}
#: What llama-cpp-python 0.3.36 answers to a json_schema response format (seen on the wire).
LLAMA_CPP_500 = {"error": {
    "message": "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', "
    "'response_format', 'type'), 'msg': \"Input should be 'text' or 'json_object'\", "
    "'input': 'json_schema'}\n\n  File \"app.py\", line 376, in create_chat_completion",
    "type": "internal_server_error", "param": None, "code": None}}


def llama_cpp_like(request: Recorded) -> Answer:
    """Refuses json_schema as llama-cpp-python does, ignores tools, answers JSON."""
    body = request.json
    if (body.get("response_format") or {}).get("type") == "json_schema":
        return Answer(500, LLAMA_CPP_500)
    return Answer(body=openai_body('{"answer": "42"}', prompt_tokens=30, completion_tokens=8))


async def test_refused_json_schema_falls_back_to_json_object_and_is_remembered() -> None:
    learned: list[tuple[str, dict, str]] = []
    memory = CapabilityMemory(on_learn=lambda *fact: learned.append(fact))
    with MockServer(llama_cpp_like) as server:
        provider = OpenAIProvider(base_url=server.url + "/v1", transport=server.transport,
                                  clock=FakeClock(),
                                  capabilities=memory)
        ask = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "?"}]
        first = await provider.complete(ask, model="smollm2", max_tokens=50,
                                        response_format=JSON_SCHEMA)
        second = await provider.complete(ask, model="smollm2", max_tokens=50,
                                         response_format=JSON_SCHEMA)
        await provider.aclose()
    assert json.loads(first.text) == json.loads(second.text) == {"answer": "42"}
    formats = [r.json["response_format"] for r in server.requests]
    assert formats == [
        {"type": "json_schema", "json_schema": {"name": "Answer", "schema": SCHEMA}},
        {"type": "json_object", "schema": SCHEMA},  # the schema becomes llama.cpp's grammar
        {"type": "json_object", "schema": SCHEMA},  # remembered: never refused twice
    ]
    assert json.loads(server.last.json["messages"][0]["content"].split("\n")[-1]) == SCHEMA
    assert memory.get(server.url + "/v1", "smollm2").output_mode == "json_object"
    reasons = [reason for _, _, reason in learned]
    assert any("answered 500 to response_format 'json_schema'" in r
               and "using 'json_object' output" in r and "app.py" not in r for r in reasons)


async def test_refused_json_object_falls_back_to_the_schema_in_the_prompt() -> None:
    def no_formats(request: Recorded) -> Answer:
        if "response_format" in request.json:
            return Answer(400, {"error": {"message": "response_format is not supported"}})
        return Answer(body=openai_body('Sure! {"answer": "42"}'))

    with MockServer(no_formats) as server:
        provider = OpenAIProvider(base_url=server.url + "/v1", transport=server.transport,
                                  clock=FakeClock())
        completion = await provider.complete([{"role": "user", "content": "?"}], model="m",
                                             max_tokens=50, response_format=JSON_SCHEMA)
        await provider.aclose()
    assert completion.text == 'Sure! {"answer": "42"}'  # the agent loop validates and repairs
    assert [("response_format" in r.json) for r in server.requests] == [True, True, False]
    system = server.last.json["messages"][0]
    assert system["role"] == "system"
    assert "matches this JSON schema" in system["content"]
    memory = provider.capabilities.get(server.url + "/v1", "m")
    assert memory.output_mode == "prompted"


async def test_a_plain_server_error_is_not_a_capability_error() -> None:
    with MockServer(lambda _r: Answer(500, {"error": {"message": "CUDA out of memory"}})) \
            as server:
        provider = OpenAIProvider(base_url=server.url + "/v1", transport=server.transport,
                                  clock=FakeClock())
        with pytest.raises(ProviderError) as caught:
            await provider.complete([{"role": "user", "content": "?"}], model="m",
                                    max_tokens=5, response_format=JSON_SCHEMA)
        await provider.aclose()
    assert not isinstance(caught.value, CapabilityError)
    assert classify(caught.value, FakeClock()).transient
    assert len(server.requests) == 1


async def test_a_refused_shape_nothing_can_replace_is_a_capability_error() -> None:
    body = {"detail": [{"type": "extra_forbidden", "loc": ["body", "messages", 0, "name"],
                        "msg": "Extra inputs are not permitted"}]}
    with MockServer(lambda _r: Answer(422, body)) as server:
        provider = OpenAIProvider(base_url=server.url + "/v1", transport=server.transport,
                                  clock=FakeClock())
        with pytest.raises(CapabilityError, match="messages") as caught:
            await provider.complete([{"role": "user", "content": "?", "name": "x"}],
                                    model="m", max_tokens=5)
        await provider.aclose()
    assert caught.value.feature == "messages"
    assert caught.value.status == 422
    failure = classify(caught.value, FakeClock())
    assert (failure.category, failure.transient) == ("capability", False)


def _plain_text_server(action: str):
    """Ignores tools (like llama-cpp-python without --chat_format); `action` once prompted."""
    def handler(request: Recorded) -> Answer:
        body = request.json
        system = body["messages"][0]["content"] if body["messages"] else ""
        if "You can use tools" in system:
            return Answer(body=openai_body(action, prompt_tokens=50, completion_tokens=20))
        return Answer(body=openai_body("I would write the file.", prompt_tokens=40,
                                       completion_tokens=6))
    return handler


async def test_a_server_that_never_calls_tools_gets_the_prompted_tool_protocol() -> None:
    action = '{"tool": "search_api", "arguments": {"query": "llm"}}'
    with MockServer(_plain_text_server(action)) as server:
        provider = OpenAIProvider(base_url=server.url + "/v1", transport=server.transport,
                                  clock=FakeClock())
        ask = [{"role": "system", "content": "You research."},
               {"role": "user", "content": "find llm news"}]
        completion = await provider.complete(ask, model="m", max_tokens=64,
                                             tools=SEARCH_TOOLS)
        history = [*ask,
                   {"role": "assistant", "content": "", "tool_calls": [
                       {"id": "c1", "name": "search_api", "arguments": {"query": "llm"}}]},
                   {"role": "tool", "tool_call_id": "c1", "content": "3 results"}]
        await provider.complete(history, model="m", max_tokens=64, tools=SEARCH_TOOLS)
        await provider.aclose()
    [call] = completion.tool_calls
    assert (call.name, call.arguments, completion.text) == ("search_api", {"query": "llm"}, "")
    sent = [r.json for r in server.requests]
    assert sent[0]["tool_choice"] == "auto"
    assert "tools" in sent[0]
    assert sent[1]["tool_choice"] == "required"  # the one probe: does it return tool calls?
    assert "tools" not in sent[2]
    assert "search_api {" in sent[2]["messages"][0]["content"]
    # every request made for the answer is paid for: 40+6, the probe, 50+20
    assert completion.usage.input_tokens == 40 + 40 + 50
    assert completion.usage.output_tokens == 6 + 6 + 20
    assert len(sent) == 4  # the next call goes straight to the prompted protocol
    assert sent[3]["messages"][-2:] == [
        {"role": "assistant", "content": action},
        {"role": "user", "content": "Result of search_api:\n3 results"},
    ]


async def test_a_server_that_returns_tool_calls_is_never_probed(
    provider: OpenAIProvider, server: MockServer, script: Script
) -> None:
    script.answer = Answer(body=openai_body(None, tool_calls=[
        {"id": "c", "type": "function", "function": {"name": "search_api", "arguments": "{}"}}]))
    await provider.complete([{"role": "user", "content": "x"}], model="m", max_tokens=5,
                            tools=SEARCH_TOOLS)
    script.answer = Answer(body=openai_body("done"))
    await provider.complete([{"role": "user", "content": "x"}], model="m", max_tokens=5,
                            tools=SEARCH_TOOLS)
    assert [r.json["tool_choice"] for r in server.requests] == ["auto", "auto"]
    assert provider.capabilities.get(server.url + "/v1", "m").tool_mode == "native"


def _windowed(window: int):
    """Refuses prompts past `window` tokens (counted as bytes / 4) like llama-cpp-python."""
    def handler(request: Recorded) -> Answer:
        size = len(json.dumps(request.json["messages"])) // 4 + request.json["max_tokens"]
        if size > window:
            return Answer(400, {"error": {
                "message": f"This model's maximum context length is {window} tokens. However, "
                f"you requested {size} tokens. Please reduce the length of the messages.",
                "type": "invalid_request_error", "code": "context_length_exceeded"}})
        return Answer(body=openai_body("fits"))
    return handler


def _long_conversation(results: int, size: int) -> list[dict]:
    messages: list[dict] = [{"role": "system", "content": "You read files."},
                            {"role": "user", "content": "Summarise the files."}]
    for i in range(results):
        messages.append({"role": "assistant", "content": "", "tool_calls": [
            {"id": f"c{i}", "name": "read_file", "arguments": {"path": f"f{i}.py"}}]})
        messages.append({"role": "tool", "tool_call_id": f"c{i}", "content": f"{i}" * size})
    return messages


async def test_context_window_is_learned_from_a_refusal_and_old_results_trimmed() -> None:
    with MockServer(_windowed(4096)) as server:
        provider = OpenAIProvider(base_url=server.url + "/v1", transport=server.transport,
                                  clock=FakeClock())
        messages = _long_conversation(6, 3000)
        completion = await provider.complete(messages, model="small", max_tokens=1024)
        await provider.aclose()
    assert completion.text == "fits"
    assert [g.path for g in server.gets] == ["/v1/models"]  # no window stated there
    assert provider.capabilities.get(server.url + "/v1", "small").context_window == 4096
    first, fitted = (r.json for r in server.requests)
    assert first["messages"] == [to_openai_message(m) for m in messages]
    tool_texts = [m["content"] for m in fitted["messages"] if m["role"] == "tool"]
    trimmed = ["trimmed to fit the context window" in t for t in tool_texts]
    assert trimmed[0]
    assert trimmed == sorted(trimmed, reverse=True)  # oldest first, only as many as needed
    assert tool_texts[-1] == "5" * 3000  # the latest result is kept whole
    assert messages[3]["content"] == "0" * 3000  # the caller's conversation is untouched


async def test_a_request_that_cannot_fit_is_never_sent() -> None:
    with MockServer(_windowed(1024)) as server:
        provider = OpenAIProvider(base_url=server.url + "/v1", transport=server.transport,
                                  clock=FakeClock(),
                                  context_window=1024)
        with pytest.raises(ContextWindowError, match="1024 tokens") as caught:
            await provider.complete([{"role": "user", "content": "x" * 6000}], model="m",
                                    max_tokens=512)
        await provider.aclose()
    assert server.requests == []
    assert server.gets == []
    assert caught.value.window == 1024
    assert caught.value.needed > 1024
    assert not classify(caught.value, FakeClock()).transient


async def test_context_window_from_the_model_list() -> None:
    models = Answer(body={"object": "list", "data": [
        {"id": "other", "max_model_len": 99999}, {"id": "qwen", "max_model_len": 2048}]})
    with MockServer(_windowed(2048), get=lambda _r: models) as server:
        provider = OpenAIProvider(base_url=server.url + "/v1", transport=server.transport,
                                  clock=FakeClock())
        await provider.complete(_long_conversation(3, 2000), model="qwen", max_tokens=4096)
        await provider.complete([{"role": "user", "content": "hi"}], model="qwen",
                                max_tokens=4096)
        await provider.aclose()
    assert len(server.gets) == 1  # read once per server and model
    assert len(server.requests) == 2  # both fitted first time: no refusal
    assert server.requests[0].json["max_tokens"] < 2048  # the output limit fits too


def refuse(_request: Recorded) -> Answer:
    raise httpx.ConnectError("[Errno 111] Connection refused")


async def test_an_unreachable_server_teaches_nothing() -> None:
    server = MockServer(refuse, get=refuse)  # nothing answers, not even the model list
    provider = OpenAIProvider(base_url=server.url + "/v1", transport=server.transport,
                              clock=FakeClock())
    with pytest.raises(ProviderError, match="unreachable") as caught:
        await provider.complete([{"role": "user", "content": "x"}], model="m", max_tokens=5,
                                response_format=JSON_SCHEMA)
    await provider.aclose()
    assert not isinstance(caught.value, CapabilityError)
    assert classify(caught.value, FakeClock()).transient
    assert provider.capabilities.records() == {provider.base_url + "#m": {
        "output_mode": None, "tool_mode": None, "context_window": None,
        "metadata_checked": False}}
