"""The demo's flows say what really happened, and run on the plainest install."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from taskorch_nb.core.money import format_usd
from taskorch_nb.demo import run_demo
from taskorch_nb.demo.flows import flow2_budget, flow4_federation, flow6_lifecycle


def _pct(part: object, whole: object) -> float:
    return round(float(part) / float(whole) * 100, 1)  # type: ignore[arg-type]


async def test_flow2_warns_with_the_percentage_left_after_the_reservation(tmp_path: Path) -> None:
    result = await flow2_budget(tmp_path)
    assert result.ok
    [warning] = [e for e in result.events if e.type == "budget.warning"]
    [at] = [i for i, line in enumerate(result.lines) if "WARNING" in line]
    said = result.lines[at]
    shown = float(re.search(r"\(([\d.]+)%\), under 20%", said).group(1))  # type: ignore[union-attr]
    assert shown == _pct(warning.remaining, warning.limit) < 20
    assert f"reserving up to {format_usd(warning.amount)}" in said
    # Every approved call shows what is left after settling, in the same format.
    settled = [e for e in result.events if e.type == "budget.settled"]
    approved = [line for line in result.lines if ": approved," in line]
    assert len(approved) == len(settled)
    for line, event in zip(approved, settled, strict=True):
        assert line.endswith(
            f"{format_usd(event.remaining)} ({_pct(event.remaining, event.limit)}%) left")
    # The warning stands right before the settled line of the call it came with.
    call = said.split(":")[0]
    assert result.lines[at + 1].startswith(call + ": approved")
    assert "REJECTED" in result.lines[len(approved) + 1]


async def test_flow6_prints_the_diagrams_five_steps_once_each(tmp_path: Path) -> None:
    result = await flow6_lifecycle(tmp_path)
    assert result.ok
    steps = [line.split("  ")[1].strip() for line in result.lines]
    assert steps == ["1. request", "2. safety checks", "3. execution", "4. learning",
                     "5. result"]
    checks = [e for e in result.events if e.type == "safety.checked"]
    agents = [e for e in result.events if e.type == "agent.started"]
    assert f"checked {len(checks) // 3} times" in result.lines[1]
    assert f"{len(agents)} agent steps" in result.lines[2]
    assert "COMPLETED" in result.lines[4]


async def test_flow4_without_a_hub_names_the_extra_and_still_shares(tmp_path: Path) -> None:
    result = await flow4_federation(tmp_path, hub=False)
    assert result.ok, result.lines
    named = [line for line in result.lines if "[hub]" in line]
    assert len(named) == 1
    assert "pip install 'taskorch-nb[hub]'" in named[0]
    assert result.data["merged"] == [1, 1]
    assert result.data["calls"] == {"A (learned)": 3, "B (federated)": 1}
    patterns = result.data["patterns"]
    assert patterns["name"].tolist() == ["search_api_timeout"]
    assert patterns["source"].tolist() == ["federation"]
    assert patterns["recovered"].tolist() == [1]


async def test_the_report_is_text_only_without_plotly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in [m for m in sys.modules if m == "plotly" or m.startswith("plotly.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "plotly", None)  # import plotly now fails, as uninstalled
    report = tmp_path / "report.html"
    assert await run_demo(report_path=str(report), flows="1") == 0
    out = capsys.readouterr().out
    assert f"HTML report: {report} (text only: the charts need the [notebook] extra, " \
           "pip install 'taskorch-nb[notebook]')" in out
    assert out.strip().splitlines()[-1] == "1 of 1 flows did what the seed diagrams say."
    page = report.read_text(encoding="utf-8")
    assert "<script" not in page
    assert "circuit.opened" in page


async def test_the_reports_runs_show_their_dashboards(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "report.html"
    assert await run_demo(report_path=str(report), flows="5") == 0
    page = report.read_text(encoding="utf-8")
    assert page.count("[completed]: Add user authentication") == 1  # flow 5's one run
    assert "Budget  [" in page
    assert "Controls need a running kernel" not in page  # a completed run offers none
