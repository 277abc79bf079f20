"""`%%orchestrate --guard`: a cell's own openai code under a guard, in a real IPython shell."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError

from taskorch_nb.guard import Guard, GuardReport
from tests.unit.llm_servers import Answer, LoopbackServer, openai_body

AGENT = """
import openai
client = openai.OpenAI(base_url=url + "/v1", api_key="k")
answers = [client.chat.completions.create(model="gpt-4o-mini", max_tokens=20,
                                          messages=[{"role": "user", "content": "hi"}])
           for _ in range(2)]
"""

ASYNC_AGENT = """
import openai
client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="k")
answer = await client.chat.completions.create(model="gpt-4o-mini", max_tokens=20,
                                              messages=[{"role": "user", "content": "hi"}])
await client.close()
"""


@pytest.fixture
def server():
    with LoopbackServer(lambda r: Answer(body=openai_body(model="gpt-4o-mini"))) as s:
        yield s


def test_the_cells_value_is_the_guards_report(shell, server, capsys) -> None:
    shell.user_ns["url"] = server.url
    report = shell.run_cell_magic("orchestrate", "--guard --budget 1 -o g", AGENT)
    assert isinstance(report, GuardReport)
    assert report.calls == 2
    assert report.by_model["gpt-4o-mini"].input_tokens == 24
    assert len(shell.user_ns["answers"]) == 2  # the cell ran in the user's namespace
    guard = shell.user_ns["g"]
    assert isinstance(guard, Guard)
    assert [e.type for e in guard.events].count("llm.completed") == 2
    out = capsys.readouterr().out
    assert "Budget" in out or "$" in out  # the text dashboard's last state


def test_top_level_await_runs_on_the_cells_own_loop(shell, server) -> None:
    shell.user_ns["url"] = server.url
    report = shell.run_cell_magic("orchestrate", "--guard --no-dashboard", ASYNC_AGENT)
    assert report.calls == 1
    assert shell.user_ns["answer"].choices[0].message.content == "Hello!"


def test_a_stopped_guard_ends_the_cell_with_its_report(shell, server, capsys) -> None:
    shell.user_ns["url"] = server.url
    code = AGENT.replace("for _ in range(2)", "for _ in range(1)") + (
        "g.stop('enough for today')\n"  # what the dashboard's Stop does
        "client.chat.completions.create(model='gpt-4o-mini', max_tokens=20,\n"
        "    messages=[{'role': 'user', 'content': 'hi'}])\n"
        "never = True\n")
    report = shell.run_cell_magic("orchestrate", "--guard --no-dashboard -o g", code)
    assert report.calls == 1
    assert report.refused == {"stopped": 1}
    assert "never" not in shell.user_ns
    assert len(server.requests) == 1
    assert "stopped: stopped: enough for today" in capsys.readouterr().err


def test_bad_cells_are_usage_errors(shell) -> None:
    with pytest.raises(UsageError, match="not valid Python"):
        shell.run_cell_magic("orchestrate", "--guard", "def (")
    with pytest.raises(UsageError, match="empty"):
        shell.run_cell_magic("orchestrate", "--guard", "  \n")
    with pytest.raises(UsageError, match="budget"):
        shell.run_cell_magic("orchestrate", "--guard --budget -3", "x = 1")
    with pytest.raises(UsageError, match="--background"):
        shell.run_cell_magic("orchestrate", "--guard --background", "x = 1")
    with pytest.raises(UsageError, match="choose one"):
        shell.run_cell_magic("orchestrate", "--guard --map items", "x = 1")


def test_an_error_in_the_cell_is_raised_after_the_guard_closed(shell) -> None:
    with pytest.raises(ZeroDivisionError):
        shell.run_cell_magic("orchestrate", "--guard --no-dashboard", "1 / 0")
    assert not shell.magics_manager.registry["OrchestrateMagics"].last_guard.open
