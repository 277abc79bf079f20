"""The prompted protocol: tools and schemas said in the prompt, actions read back."""

from __future__ import annotations

import json

from taskorch_nb.agents.archetypes import DesignSpec
from taskorch_nb.llm.prompted import (
    action_schema,
    as_text_turns,
    extract_json,
    parse_action,
    tool_instructions,
    with_instructions,
)

WRITE = {"name": "write_file", "description": "Write a file.\nMore detail.",
         "parameters": {"type": "object",
                        "properties": {"path": {"type": "string"},
                                       "content": {"type": "string"}},
                        "required": ["path", "content"]}}


def test_instructions_list_each_tool_in_one_line() -> None:
    text = tool_instructions([WRITE], final="Then answer.")
    assert '- write_file {"path": string, "content": string}: Write a file.' in text
    assert "More detail" not in text
    assert text.endswith("Then answer.")


def test_action_schema_is_a_union_with_the_answer_and_its_defs_at_the_root() -> None:
    output = DesignSpec.model_json_schema()
    union = action_schema([WRITE], output)
    assert union["$defs"] == output["$defs"]
    action, answer = union["anyOf"]
    assert action["properties"]["tool"] == {"type": "string", "const": "write_file"}
    assert action["properties"]["arguments"] == WRITE["parameters"]
    assert "$defs" not in answer
    assert answer["properties"] == output["properties"]


def test_actions_are_read_only_for_offered_tools() -> None:
    call = parse_action('{"tool": "write_file", "arguments": {"path": "a.py", "content": ""}}',
                        [WRITE], None)
    assert call is not None
    assert (call.name, call.arguments) == ("write_file", {"path": "a.py", "content": ""})
    hermes = parse_action('<tool_call>{"name": "write_file", "arguments": "{\\"path\\": '
                          '\\"b\\"}"}</tool_call>', [WRITE], None)
    assert hermes is not None
    assert hermes.arguments == {"path": "b"}
    assert parse_action('{"tool": "rm_rf", "arguments": {}}', [WRITE], None) is None
    assert parse_action('{"summary": "final"}', [WRITE], None) is None
    assert parse_action("no json here", [WRITE], None) is None
    # an answer whose own schema has a `name` field is the answer, not a call
    named = {"properties": {"name": {"type": "string"}}}
    assert parse_action('{"name": "write_file"}', [WRITE], named) is None


def test_tool_turns_become_text_turns() -> None:
    messages = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "U"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "c1", "name": "write_file", "arguments": {"path": "a.py", "content": "x"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "wrote 1 byte"},
    ]
    turns = as_text_turns(messages)
    assert turns[:2] == messages[:2]
    assert json.loads(turns[2]["content"]) == {"tool": "write_file",
                                               "arguments": {"path": "a.py", "content": "x"}}
    assert turns[3] == {"role": "user", "content": "Result of write_file:\nwrote 1 byte"}
    merged = with_instructions(turns, ["Tools here."])
    assert merged[0] == {"role": "system", "content": "S\n\nTools here."}
    assert messages[0] == {"role": "system", "content": "S"}  # the caller's list is untouched
    assert with_instructions(turns[1:], ["T"])[0] == {"role": "system", "content": "T"}


def test_extract_json_finds_the_first_object() -> None:
    assert extract_json('Sure: {"a": {"b": 1}} and {"c": 2}') == '{"a": {"b": 1}}'
    assert extract_json("{broken {\"ok\": true}") == '{"ok": true}'
    assert extract_json("[1, 2]") is None
