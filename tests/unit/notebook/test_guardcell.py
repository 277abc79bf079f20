"""`%%orchestrate --guard`: a cell's own openai code under a guard, in a real IPython shell."""

from __future__ import annotations

from decimal import Decimal

import pytest
from IPython.core.error import UsageError

from taskorch_nb.guard import Guard, GuardReport
from taskorch_nb.notebook.magics import current_magics
from tests.unit.llm_servers import Answer, LoopbackServer, openai_body
from tests.unit.notebook.following import acted

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


def _clicker(shell, actor: str = "ada"):
    """What a person does in the dashboard of the running cell: click Stop or "add $X"
    (called from the cell's own code, on the thread that runs it, while the guard is open)."""
    magics = current_magics(shell)

    def click(which: str, amount: str = "") -> None:
        dash = magics.dashboard
        dash.controls.actor = actor
        if which == "stop":
            button = dash.widget.children[-1]
            assert button.layout.display == ""  # shown while the guard is open
        else:
            _bar, _label, resume, _note = dash.gauge.widget.children
            assert resume.layout.display == ""  # offered while the guard is open
            box_amount, button = resume.children
            box_amount.value = amount
        button.click()

    return click


def test_the_dashboards_stop_ends_the_cell_with_a_stopped_report(shell, server, capsys) -> None:
    shell.user_ns["url"] = server.url
    shell.user_ns["click"] = _clicker(shell)
    code = AGENT.replace("for _ in range(2)", "for _ in range(1)") + (
        "click('stop')\n"
        "client.chat.completions.create(model='gpt-4o-mini', max_tokens=20,\n"
        "    messages=[{'role': 'user', 'content': 'hi'}])\n"
        "never = True\n")
    report = shell.run_cell_magic("orchestrate", "--guard --budget 1 -o g", code)
    guard = shell.user_ns["g"]
    assert report.calls == 1
    assert report.refused == {"stopped": 1}
    assert report.stopped == "stopped: stopped by ada from the dashboard"
    assert "never" not in shell.user_ns
    assert len(server.requests) == 1
    assert acted(guard.events) == [("run.stopped", "ada")]
    types = [e.type for e in guard.events]
    assert types.index("run.stopped") < types.index("guard.refused") < types.index(
        "run.completed")
    assert "stopped: stopped: stopped by ada from the dashboard" in capsys.readouterr().err
    dash = current_magics(shell).dashboard
    assert dash.controls.message == "ada stopped the guard: the agent's next model call is refused"
    assert dash.widget.children[-1].layout.display == "none"  # the cell is over
    assert not dash.controls.attempt(dash.controls.stop)
    assert dash.controls.message == f"guard {guard.name!r} is closed: its cell has ended"


def test_add_money_lets_a_guard_refused_for_money_go_on(shell, server) -> None:
    shell.user_ns["url"] = server.url
    shell.user_ns["click"] = _clicker(shell)
    # a loopback model is free unless priced
    shell.run_line_magic("config", "Orchestrate.prices = {'gpt-4o-mini': "
                         "{'input': 0.15, 'output': 0.6}}")
    code = (
        "import openai\n"
        "client = openai.OpenAI(base_url=url + '/v1', api_key='k', max_retries=0)\n"
        "ask = lambda: client.chat.completions.create(model='gpt-4o-mini', max_tokens=20,\n"
        "    messages=[{'role': 'user', 'content': 'hi'}])\n"
        "try:\n"
        "    ask()\n"
        "except openai.APIStatusError as exc:\n"
        "    refused = exc.status_code\n"
        "click('add', '$2')\n"
        "answer = ask()\n")
    report = shell.run_cell_magic("orchestrate", "--guard --budget 0.000001 -o g", code)
    guard = shell.user_ns["g"]
    assert shell.user_ns["refused"] == 402
    assert shell.user_ns["answer"].choices[0].message.content == "Hello!"
    assert report.refused == {"budget_exceeded": 1}
    assert report.stopped is None  # money added: the refusal no longer holds
    assert report.calls == 1
    assert report.limit == Decimal("2.000001")
    assert len(server.requests) == 1
    assert acted(guard.events) == [("budget.extended", "ada")]
    dash = current_magics(shell).dashboard
    assert dash.controls.message == "ada added $2.00: the agent's next call may spend it"
    assert (dash.gauge.colour, dash.gauge.refused) == ("green", None)


def test_outside_a_kernel_clicks_need_no_route() -> None:
    from taskorch_nb.notebook.guardcell import _ClickRoute

    route = _ClickRoute()
    assert route.open([]) is False  # no ipykernel running here: nothing to route
    route.close()
    assert (route.client, route.subshell, route.comms) == (None, None, [])
