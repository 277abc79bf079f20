"""The simulated provider: deterministic answers, clock-driven latency, the token rule, scripts."""

from __future__ import annotations

import asyncio
import json

import pytest

from taskorch_nb.core.events import scope
from taskorch_nb.errors import ConfigurationError, ProviderError
from taskorch_nb.llm import (
    Provider,
    ScriptedResponder,
    SimReply,
    SimRequest,
    SimulatedProvider,
    ToolCall,
    Usage,
)
from taskorch_nb.llm.simulated import example_for_schema
from taskorch_nb.testing import FakeClock

ASK = [{"role": "user", "content": "Plan the auth module"}]


async def ask(provider: SimulatedProvider, messages: list[dict] | None = None, **kw: object):
    kw.setdefault("model", "sim-small")
    kw.setdefault("max_tokens", 200)
    return await provider.complete(messages or ASK, **kw)  # type: ignore[arg-type]


def test_is_a_provider_priced_as_simulated() -> None:
    provider = SimulatedProvider()
    assert isinstance(provider, Provider)
    assert (provider.name, provider.price_provider) == ("simulated", "simulated")


async def test_default_reply_echoes_the_last_user_message() -> None:
    completion = await ask(SimulatedProvider(clock=FakeClock()))
    assert completion.text == "Simulated answer to: Plan the auth module"
    assert completion.finish_reason == "stop"
    assert (completion.provider, completion.model) == ("simulated", "sim-small")


async def test_default_json_replies() -> None:
    provider = SimulatedProvider(clock=FakeClock())
    plain = await ask(provider, response_format={"type": "json_object"})
    assert json.loads(plain.text) == {"answer": "Simulated answer to: Plan the auth module"}
    schema = {
        "type": "object",
        "properties": {
            "summary": {"type": "string"},
            "risk": {"enum": ["low", "high"]},
            "steps": {"type": "array", "items": {"$ref": "#/$defs/step"}, "minItems": 1},
            "passed": {"type": "boolean"},
            "score": {"type": "number", "minimum": 1},
        },
        "$defs": {"step": {"type": "object", "properties": {"n": {"type": "integer"}}}},
    }
    shaped = await ask(provider, response_format={"type": "json_schema", "schema": schema})
    assert json.loads(shaped.text) == {
        "summary": "Simulated answer to: Plan the auth module",
        "risk": "low",
        "steps": [{"n": 0}],
        "passed": False,
        "score": 1.0,
    }


def test_example_for_schema_handles_unions_and_nullable_types() -> None:
    schema = {"type": "object", "properties": {
        "note": {"type": ["null", "string"]},
        "either": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
    }}
    assert example_for_schema(schema, "t") == {"note": "simulated note", "either": 0}


async def test_token_rule() -> None:
    provider = SimulatedProvider(clock=FakeClock(), responder=lambda _r: "x" * 10)
    messages = [
        {"role": "system", "content": "s" * 8},  # 2 + 4
        {"role": "user", "content": "u" * 9},  # 3 + 4
    ]
    tools = [{"name": "t", "description": "", "parameters": {}}]
    tools_tokens = -(-len(json.dumps(tools)) // 4)
    completion = await ask(provider, messages, tools=tools)
    assert completion.usage == Usage(input_tokens=13 + tools_tokens, output_tokens=3)


async def test_empty_answer_still_costs_one_token() -> None:
    completion = await ask(SimulatedProvider(clock=FakeClock(), responder=lambda _r: ""))
    assert completion.usage.output_tokens == 1


async def test_answers_longer_than_max_tokens_are_cut() -> None:
    provider = SimulatedProvider(
        clock=FakeClock(), responder=lambda _r: SimReply("y" * 100, [ToolCall("c", "t", {})])
    )
    completion = await ask(provider, max_tokens=10)
    assert completion.text == "y" * 40
    assert completion.tool_calls == []
    assert completion.usage.output_tokens == 10
    assert completion.finish_reason == "length"


async def test_unknown_model_is_a_404() -> None:
    provider = SimulatedProvider(clock=FakeClock())
    with pytest.raises(ProviderError, match="unknown model") as info:
        await ask(provider, model="gpt-4o")
    assert (info.value.status, info.value.model, info.value.provider) == (404, "gpt-4o",
                                                                           "simulated")
    assert provider.call_count == 0


async def test_latency_is_awaited_on_the_clock() -> None:
    clock = FakeClock()
    provider = SimulatedProvider(clock=clock, latency=1.5)
    first = await ask(provider)
    await ask(provider)
    assert clock.slept == [1.5, 1.5]
    assert first.latency == 1.5
    assert clock.now() == 3.0


async def run_seed(seed: int) -> list[tuple[float, str]]:
    clock = FakeClock()
    provider = SimulatedProvider(clock=clock, seed=seed, latency=(0.1, 2.0), faults="p0.3:503")
    outcomes = []
    for _ in range(12):
        try:
            await ask(provider)
            outcomes.append((clock.slept[-1], "ok"))
        except ProviderError as exc:
            outcomes.append((clock.slept[-1], str(exc.status)))
    return outcomes


async def test_same_seed_same_run_other_seed_other_run() -> None:
    first, again, other = await run_seed(7), await run_seed(7), await run_seed(8)
    assert first == again
    assert first != other
    assert all(0.1 <= wait <= 2.0 for wait, _ in first)
    assert {outcome for _, outcome in first + other} == {"ok", "503"}


def test_bad_latency_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        SimulatedProvider(latency=(2.0, 1.0))
    with pytest.raises(ConfigurationError):
        SimulatedProvider(latency=-1.0)


async def test_rules_by_agent_phase_and_text() -> None:
    script = (
        ScriptedResponder(default="fallback")
        .on(agent="architect", phase="design", reply={"spec": "jwt"})
        .on(agent="architect", reply="architect, any phase")
        .on(contains="pytest", reply=lambda req: f"call {req.call_index} for {req.agent}")
        .on(phase="qc", reply="never reached for pytest asks")
    )
    provider = SimulatedProvider(clock=FakeClock(), responder=script)
    with scope(agent="architect", phase="design"):
        assert json.loads((await ask(provider)).text) == {"spec": "jwt"}
    with scope(agent="architect", phase="build"):
        assert (await ask(provider)).text == "architect, any phase"
    with scope(agent="qc", phase="qc"):
        pytest_ask = [{"role": "user", "content": "run pytest now"}]
        assert (await ask(provider, pytest_ask)).text == "call 3 for qc"
        assert (await ask(provider)).text == "never reached for pytest asks"
    assert (await ask(provider)).text == "fallback"


async def test_queued_replies_script_a_tool_loop() -> None:
    script = (
        ScriptedResponder()
        .then(SimReply.call("search_api", {"query": "oauth"}))
        .then(lambda req: f"done after: {req.messages[-1]['content']}")
    )
    provider = SimulatedProvider(clock=FakeClock(), responder=script)
    first = await ask(provider)
    assert first.tool_calls == [ToolCall("sim_call_1_1", "search_api", {"query": "oauth"})]
    assert first.finish_reason == "tool_calls"
    history = [*ASK,
               {"role": "assistant", "content": "", "tool_calls": [
                   {"id": "sim_call_1_1", "name": "search_api", "arguments": {"query": "oauth"}}]},
               {"role": "tool", "tool_call_id": "sim_call_1_1", "content": "3 results"}]
    second = await ask(provider, history)
    assert second.text == "done after: 3 results"
    assert script.pending == 0
    third = await ask(provider)
    assert third.text.startswith("Simulated answer to:")


async def test_queued_replies_wait_for_their_agent() -> None:
    script = ScriptedResponder().then("for builder", agent="builder").then("for anyone")
    provider = SimulatedProvider(clock=FakeClock(), responder=script)
    with scope(agent="researcher"):
        assert (await ask(provider)).text == "for anyone"
    with scope(agent="builder"):
        assert (await ask(provider)).text == "for builder"


async def test_tool_calls_as_dicts_and_async_responders() -> None:
    async def responder(request: SimRequest) -> SimReply:
        await asyncio.sleep(0)
        return SimReply(text="t", tool_calls=[{"name": "run_tests", "arguments": {"k": 1}}])

    completion = await ask(SimulatedProvider(clock=FakeClock(), responder=responder))
    assert completion.tool_calls == [ToolCall("sim_call_1_1", "run_tests", {"k": 1})]


async def test_a_responder_returning_nonsense_is_a_configuration_error() -> None:
    provider = SimulatedProvider(clock=FakeClock(), responder=lambda _r: 42)  # type: ignore[arg-type,return-value]
    with pytest.raises(ConfigurationError, match="int"):
        await ask(provider)


async def test_request_carries_what_the_model_was_asked() -> None:
    seen: list[SimRequest] = []

    def responder(request: SimRequest) -> str:
        seen.append(request)
        return "ok"

    provider = SimulatedProvider(clock=FakeClock(), responder=responder)
    tools = [{"name": "t", "description": "d", "parameters": {}}]
    with scope(agent="qc", phase="qc"):
        await ask(provider, tools=tools, response_format={"type": "json_object"})
    request = seen[0]
    assert (request.model, request.agent, request.phase, request.call_index) == (
        "sim-small", "qc", "qc", 1
    )
    assert request.tools == tools
    assert request.wants_json
    assert request.last_user_message == "Plan the auth module"
