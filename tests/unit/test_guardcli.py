"""`taskorch-nb guard -- python agent.py`: a real script, a real SDK, a loopback server."""

from __future__ import annotations

import json
import textwrap

import pytest

from taskorch_nb.cli import main
from tests.unit.llm_servers import Answer, LoopbackServer, openai_body

AGENT = textwrap.dedent("""
    import sys
    import openai

    client = openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key="k", max_retries=3)
    for i in range(int(sys.argv[2])):
        answer = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=50)
        print("answer", i, answer.choices[0].message.content)
    if len(sys.argv) > 3:
        raise RuntimeError(sys.argv[3])
""")


@pytest.fixture
def agent(tmp_path):
    path = tmp_path / "agent.py"
    path.write_text(AGENT)
    return str(path)


@pytest.fixture
def server():
    with LoopbackServer(lambda r: Answer(body=openai_body(model="gpt-4o-mini"))) as s:
        yield s


def test_a_script_runs_under_the_guard_and_its_report_is_printed(agent, server,
                                                                  capsys) -> None:
    code = main(["guard", "--budget", "1", "--store", ":memory:", "--json", "--",
                 "python", agent, server.url, "2"])
    out = capsys.readouterr().out
    assert code == 0
    assert "answer 1 Hello!" in out
    report = json.loads(out[out.index("{"):])
    assert report["calls"] == 2
    assert report["name"] == "agent"
    assert report["by_model"]["gpt-4o-mini"]["input_tokens"] == 24
    assert len(server.requests) == 2


def test_a_budget_stop_exits_3_before_the_request_is_sent(agent, server, capsys) -> None:
    code = main(["guard", "--budget", "0.00004", "--model", "gpt-4o-mini",
                 "--price-per-mtok", "0.15,0.60", "--store", ":memory:", "--",
                 "python", agent, server.url, "5"])
    captured = capsys.readouterr()
    assert code == 3
    # each call reserves up to $0.0000314 and costs $0.0000048: the third does not fit
    assert len(server.requests) == 2
    assert "stopped: budget_exceeded" in captured.err
    assert "refused: budget_exceeded x1" in captured.out


def test_a_script_that_raises_exits_1_with_one_line(agent, server, capsys) -> None:
    code = main(["guard", "--store", ":memory:", "--", agent, server.url, "1", "broken"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.strip().endswith("raised RuntimeError: broken")
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(("command", "says"), [
    ([], "give the script to run after --"),
    (["ls", "-l"], "is not a Python script"),
    (["python", "-c", "print(1)"], "python option '-c' is not supported"),
])
def test_bad_commands_are_one_line_errors(command, says, capsys) -> None:
    assert main(["guard", "--store", ":memory:", "--", *command]) == 2
    err = capsys.readouterr().err
    assert err.startswith("taskorch-nb guard: ")
    assert says in err


def test_the_command_line_entry_point_runs_a_script(agent, server, tmp_path) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "taskorch_nb.cli", "guard", "--budget", "1", "--store",
         str(tmp_path / "guard.db"), "--", "python", agent, server.url, "1"],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "answer 0 Hello!" in done.stdout
    assert "Guard 'agent': $0.00 of $1.00" in done.stdout
    assert (tmp_path / "guard.db").exists()
