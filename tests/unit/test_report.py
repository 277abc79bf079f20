"""write_report: one offline HTML file of sections, figures and text."""

from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go
import pytest

from taskorch_nb.report import write_report


def test_report_is_one_offline_file(tmp_path) -> None:
    figure = go.Figure(go.Bar(x=["a"], y=[1]))
    path = write_report(tmp_path / "out" / "r.html",
                        [("Charts", [figure, "a note", figure]), ("Text", "only words")])
    page = path.read_text()
    assert page.count("<script src=") == 0  # plotly.js is inline, not from a CDN
    assert page.count("Plotly.newPlot") >= 2
    assert "<h2>Charts</h2>" in page
    assert "<p>only words</p>" in page
    with pytest.raises(TypeError, match="a Plotly figure, a str or a dashboard"):
        write_report(tmp_path / "bad.html", [("x", [42])])
    assert not (tmp_path / "bad.html").exists()


def test_plotly_js_is_inlined_once_for_any_number_of_figures(tmp_path: Path) -> None:
    import plotly.offline

    figures = [go.Figure(go.Bar(x=["a"], y=[i])) for i in range(3)]
    page = write_report(tmp_path / "r.html", [("A", figures[:2]), ("B", figures[2:])]).read_text()
    js = plotly.offline.get_plotlyjs()
    assert page.count(js[:200]) == 1
    assert page.index(js[:200]) < page.index("</head>")
    assert [f'id="figure-{i}"' in page for i in (1, 2, 3)] == [True] * 3
    assert "2 section(s), 3 chart(s)" in page


def test_a_text_report_carries_no_script(tmp_path: Path) -> None:
    page = write_report(tmp_path / "t.html", [("Only text", "one")], title="Plain").read_text()
    assert "<script" not in page
    assert "<title>Plain</title>" in page
    assert "1 section(s), 0 chart(s)" in page


def test_text_becomes_paragraphs_and_blocks_keep_their_layout(tmp_path: Path) -> None:
    text = "First <b>para</b>.\n\n  indented log\n\nline one\nline two\n\n\n"
    page = write_report(tmp_path / "t.html", [("Notes & logs", text)]).read_text()
    assert "<p>First &lt;b&gt;para&lt;/b&gt;.</p>" in page  # escaped, never injected
    assert "<pre>  indented log</pre>" in page
    assert "<pre>line one\nline two</pre>" in page
    assert '<li><a href="#s1">Notes &amp; logs</a></li>' in page
    assert '<section id="s1"><h2>Notes &amp; logs</h2>' in page


def test_the_folder_is_created_and_the_path_returned(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "report.html"
    assert write_report(str(target), []) == target
    assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


async def test_a_runs_dashboard_shows_its_controls_disabled(tmp_path: Path) -> None:
    from taskorch_nb import Orchestrator
    from taskorch_nb.notebook.widgets import Dashboard
    from taskorch_nb.testing import FakeClock

    orch = Orchestrator(store=":memory:", clock=FakeClock())
    run = orch.runner.create("Add user authentication", workflow="single", budget="0.0005",
                             workspace=tmp_path / "ws")
    await orch.runner.execute(run)
    assert run.status == "PAUSED"
    page = write_report(tmp_path / "r.html", [("Paused", ["why", Dashboard.replay(run)])])
    text = page.read_text()
    assert f"Run {run.id} [paused]" in text
    assert "<p>why</p>" in text
    assert ('<button disabled title="needs a running kernel" style="margin-right:4px">'
            "Add $ and resume</button>") in text
    assert ">Stop</button>" not in text  # a paused run has nothing to stop
    assert "Controls need a running kernel" in text
