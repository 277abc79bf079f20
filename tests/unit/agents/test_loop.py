"""The agent loop on a scripted context: repairs that do not pile up, loops that stop."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from taskorch_nb.agents.archetypes import RESEARCHER, ContextReport
from taskorch_nb.agents.loop import REPEAT_LIMIT, parse_output, run_agent
from taskorch_nb.errors import WorkflowError
from taskorch_nb.llm.base import Completion, ToolCall, Usage

TOOLS = [{"name": "read_file", "description": "Read a file.",
          "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}]
VALID = '{"summary": "done", "findings": ["f"]}'


def reply(text: str = "", *calls: tuple[str, dict], finish: str = "stop") -> Completion:
    return Completion(
        text=text,
        tool_calls=[ToolCall(f"c{i}", name, args) for i, (name, args) in enumerate(calls)],
        usage=Usage(10, 5), model="m", provider="scripted", latency=0.0, finish_reason=finish,
    )


class ScriptedContext:
    """An `AgentContext` whose model answers from a list; it keeps what each call saw."""

    def __init__(self, *answers: Completion) -> None:
        self.answers = list(answers)
        self.seen: list[tuple[list[dict], list[dict] | None]] = []
        self.tool_calls: list[tuple[str, dict]] = []

    async def complete(self, messages: list[dict], *, archetype: Any,
                       tools: list[dict] | None, response_format: dict | None) -> Completion:
        self.seen.append((copy.deepcopy(messages), tools))
        return self.answers.pop(0)

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> Any:
        self.tool_calls.append((name, arguments))
        return f"contents of {arguments.get('path')}"

    def tool_schemas(self, names: tuple[str, ...]) -> list[dict]:
        return TOOLS

    def take_prompts(self) -> list[str]:
        return []


async def test_only_the_latest_repair_stays_in_the_conversation() -> None:
    ctx = ScriptedContext(reply("not json"), reply('{"summary": 3}'), reply("still not"),
                          reply(VALID))
    output = await run_agent(ctx, RESEARCHER, "Task: x")
    assert output == ContextReport(summary="done", findings=["f"])
    last_messages, _ = ctx.seen[-1]
    assert [m["role"] for m in last_messages] == ["system", "user", "assistant", "user"]
    assert last_messages[2]["content"] == "still not"
    assert "not valid ContextReport JSON" in last_messages[3]["content"]


async def test_a_cut_off_answer_is_asked_shorter() -> None:
    ctx = ScriptedContext(reply('{"summary": "a long sto', finish="length"), reply(VALID))
    await run_agent(ctx, RESEARCHER, "Task: x")
    assert "cut off at the length limit" in ctx.seen[-1][0][-1]["content"]


async def test_a_repeated_call_withholds_the_tools_until_the_answer() -> None:
    read = ("read_file", {"path": "a.py"})
    ctx = ScriptedContext(reply("", read), reply("", read), reply("not json"), reply(VALID))
    await run_agent(ctx, RESEARCHER, "Task: x")
    assert [tools for _, tools in ctx.seen] == [TOOLS, TOOLS, None, None]
    third_messages, _ = ctx.seen[2]
    assert "exact call 2 times" in third_messages[-1]["content"]
    assert ctx.tool_calls == [read, read]


async def test_an_agent_repeating_the_same_call_stops_with_a_clear_error() -> None:
    read = ("read_file", {"path": "a.py"})
    ctx = ScriptedContext(reply("", *[read] * (REPEAT_LIMIT + 1)))
    with pytest.raises(WorkflowError, match=rf"read_file\(\{{\"path\": \"a.py\"\}}\) "
                                            rf"{REPEAT_LIMIT} times .* looping"):
        await run_agent(ctx, RESEARCHER, "Task: x")
    assert ctx.tool_calls == [read] * (REPEAT_LIMIT - 1)  # the third one is never run


async def test_different_calls_are_not_a_loop() -> None:
    calls = [reply("", ("read_file", {"path": f"{i}.py"})) for i in range(REPEAT_LIMIT + 1)]
    ctx = ScriptedContext(*calls, reply(VALID))
    await run_agent(ctx, RESEARCHER, "Task: x")
    assert len(ctx.tool_calls) == REPEAT_LIMIT + 1


def test_prose_and_fences_around_the_json_are_tolerated() -> None:
    expected = ContextReport(summary="done", findings=["f"])
    assert parse_output(ContextReport, f"Here it is: {VALID} Hope it helps.") == expected
    assert parse_output(ContextReport, f"```json\n{VALID}\n```") == expected
    with pytest.raises(ValueError, match="summary"):
        parse_output(ContextReport, 'Here: {"findings": []}')
