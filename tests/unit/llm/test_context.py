"""Fitting a conversation into a context window: trim the old, keep the new, or refuse."""

from __future__ import annotations

import pytest

from taskorch_nb.errors import ContextWindowError
from taskorch_nb.llm.base import estimate_input_tokens
from taskorch_nb.llm.context import MIN_OUTPUT, fit


def conversation(results: list[int]) -> list[dict]:
    messages: list[dict] = [{"role": "system", "content": "S"},
                            {"role": "user", "content": "Task"}]
    for i, size in enumerate(results):
        messages.append({"role": "assistant", "content": "", "tool_calls": [
            {"id": f"c{i}", "name": "read_file", "arguments": {"path": f"{i}"}}]})
        messages.append({"role": "tool", "tool_call_id": f"c{i}", "content": "x" * size})
    return messages


def test_a_conversation_that_fits_is_left_alone() -> None:
    messages = conversation([300, 300])
    fitted, limit = fit(messages, window=8192, max_tokens=1024)
    assert fitted == messages
    assert limit == 1024


def test_the_output_limit_is_lowered_to_what_is_left() -> None:
    messages = conversation([600])
    fitted, limit = fit(messages, window=1024, max_tokens=4096)
    assert fitted == messages
    assert limit == 1024 - estimate_input_tokens(messages)


def test_old_tool_results_are_trimmed_first_and_the_result_fits() -> None:
    messages = conversation([3000, 3000, 3000])
    fitted, limit = fit(messages, window=3072, max_tokens=1024, reserve=100)
    assert estimate_input_tokens(fitted) + 100 + limit <= 3072
    assert limit >= MIN_OUTPUT
    tools = [m["content"] for m in fitted if m["role"] == "tool"]
    assert "trimmed to fit" in tools[0]
    assert tools[-1] == "x" * 3000


def test_then_the_latest_result_and_old_turns_go() -> None:
    messages = conversation([3000] * 8)
    fitted, limit = fit(messages, window=1024, max_tokens=512)
    assert estimate_input_tokens(fitted) + limit <= 1024
    assert limit >= min(512, MIN_OUTPUT)
    assert fitted[:2] == messages[:2]  # the instruction stays
    assert fitted[-1]["tool_call_id"] == "c7"
    assert "trimmed to fit" in fitted[-1]["content"]


def test_an_instruction_too_long_for_the_window_is_refused() -> None:
    messages = [{"role": "user", "content": "y" * 9000}]
    with pytest.raises(ContextWindowError, match="2048 tokens") as caught:
        fit(messages, window=2048, max_tokens=256, model="tiny")
    assert caught.value.window == 2048
    assert caught.value.needed is not None
    assert caught.value.needed > 2048


def test_the_content_of_files_already_written_is_trimmed_before_refusing() -> None:
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "Write it"},
                {"role": "assistant", "content": "", "tool_calls": [
                    {"id": "w", "name": "write_file",
                     "arguments": {"path": "calc.py", "content": "z" * 12000}}]},
                {"role": "tool", "tool_call_id": "w", "content": "wrote 12000 bytes"}]
    fitted, limit = fit(messages, window=2048, max_tokens=1024)
    assert estimate_input_tokens(fitted) + limit <= 2048
    arguments = fitted[2]["tool_calls"][0]["arguments"]
    assert arguments["path"] == "calc.py"
    assert arguments["content"].endswith("characters trimmed]")
    assert messages[2]["tool_calls"][0]["arguments"]["content"] == "z" * 12000


def test_a_long_invalid_answer_kept_for_its_repair_is_trimmed() -> None:
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "Answer"},
                {"role": "assistant", "content": '{"summary": "' + "blah " * 2000},
                {"role": "user", "content": "That answer is not valid JSON: cut off."}]
    fitted, limit = fit(messages, window=2048, max_tokens=1024)
    assert estimate_input_tokens(fitted) + limit <= 2048
    assert fitted[2]["content"].endswith("trimmed to fit the context window]")
    assert fitted[3] == messages[3]
