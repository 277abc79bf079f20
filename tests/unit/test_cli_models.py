"""The CLI's model options: --base-url, --timeout, --deadline, prices, token/request caps."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from taskorch_nb.cli import main
from tests.unit.llm_servers import closed_port

MODEL_VARIABLES = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY",
                   "TASKORCH_PROVIDER")


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in MODEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TASKORCH_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def call(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(("args", "message"), [
    (["--timeout", "0"], "--timeout: must be a number of seconds > 0, not 0"),
    (["--deadline", "soon"], "--deadline: must be a number of seconds, not 'soon'"),
    (["--price-per-mtok", "1"], "--price-per-mtok: must be IN,OUT"),
    (["--price-per-mtok", "1,-2"], "--price-per-mtok: "),
    (["--max-tokens", "0"], "--max-tokens: must be >= 1, not 0"),
    (["--free"], "--price-per-mtok and --free price a model: give --model too"),
    (["--free", "--price-per-mtok", "1,2", "--model", "m"], "give --free or --price-per-mtok"),
    (["--base-url", "http://127.0.0.1:9/v1", "--provider", "simulated"],
     "the simulated provider takes no base_url"),
])
def test_bad_model_options_are_one_line(capsys, args, message) -> None:
    code, _, err = call(capsys, "run", "x", *args)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1, err


def test_request_cap_pauses_and_the_hint_resumes_with_extra_requests(capsys) -> None:
    code, _, err = call(capsys, "run", "Build a CSV parser", "--max-requests", "2", "-q")
    assert code == 3
    hint = re.search(r"Resume with: (.+)$", err.strip()).group(1).split()
    assert hint[1:2] == ["resume"]
    assert hint[3:] == ["--extra-requests", "2"]
    code, _, err = call(capsys, "resume", hint[2], "--extra-requests", "100", "-q")
    assert code == 0, err


def test_a_server_that_is_down_pauses_and_resume_needs_no_money(capsys) -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1"
    code, out, err = call(capsys, "run", "Build a CSV parser", "--base-url", url,
                          "--model", "smollm2", "--timeout", "1", "--deadline", "1")
    assert code == 3
    assert f"served from {url}, a local address: its calls cost $0" in err
    assert out
    paused = err.strip().splitlines()[-1]
    assert paused.startswith("PAUSED: provider openai:smollm2 unavailable: ")
    assert re.search(r"Resume with: taskorch-nb resume run-[0-9a-f]{12}$", paused), paused


def test_price_per_mtok_prices_the_model(capsys) -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1"
    code, _, err = call(capsys, "run", "x", "--base-url", url, "--model", "smollm2",
                        "--price-per-mtok", "0.15,0.60", "--deadline", "1")
    assert code == 3
    assert "a local address" not in err  # priced: no free notice
    assert "PAUSED: provider openai:smollm2 unavailable" in err
