"""Chart: a go.Figure whose display carries Plotly's JSON for Lab and a text/html drawing
for exports, with plotly.js embedded once per kernel (per cell that held it)."""

from __future__ import annotations

import json
import re

import plotly.graph_objects as go
import plotly.io as pio
import pytest

from taskorch_nb import chart
from taskorch_nb.chart import PLOTLY_MIME, Chart


@pytest.fixture(autouse=True)
def kernel_renderer(monkeypatch):
    """What a kernel gives plotly 7 (the JSON mimetype), and a fresh embedding record."""
    monkeypatch.setattr(pio.renderers, "default", "plotly_mimetype")
    monkeypatch.setattr(chart, "_embedded", chart._Embedded())
    cell = {"id": "cell-1", "request": "r1"}
    monkeypatch.setattr(chart, "_current_cell", lambda: (cell["id"], cell["request"]))
    return cell


def figure(title: str = "t") -> Chart:
    return Chart(go.Bar(x=["a", "b"], y=[1, 2]), layout={"title": title, "height": 300})


def test_a_chart_is_a_plotly_figure() -> None:
    fig = figure()
    assert isinstance(fig, go.Figure)
    assert isinstance(fig.update_layout(width=500), Chart)


def test_the_bundle_keeps_plotlys_json_and_adds_html_that_draws_it() -> None:
    bundle = figure("first")._repr_mimebundle_()
    assert set(bundle) == {PLOTLY_MIME, "text/html"}
    assert bundle[PLOTLY_MIME]["layout"]["title"]["text"] == "first"
    html = bundle["text/html"]
    assert html.count('class="taskorch-chart"') == 1
    assert "Plotly.newPlot" in html
    assert "<script src=" not in html  # plotly.js is inline: no CDN, works offline
    # the figure's JSON in the page is the same figure Lab draws from the JSON mimetype
    embedded = re.search(r"var figure = (\{.*?\});\n", html, re.S)
    assert embedded is not None
    drawn = json.loads(embedded.group(1).replace("<\\/", "</"))
    assert drawn.pop("config") == {"responsive": True, "displaylogo": False}
    assert drawn == {k: v for k, v in bundle[PLOTLY_MIME].items() if k != "config"}


def test_plotly_js_is_embedded_once_per_kernel() -> None:
    first = figure()._repr_mimebundle_()["text/html"]
    second = figure()._repr_mimebundle_()["text/html"]
    assert chart.LOADER_MARK in first  # plotly.min.js, inline (gzip, base64)
    assert 1_500_000 < len(first) < 2_500_000
    assert chart.LOADER_MARK not in second
    assert len(second) < 20_000


def test_a_rerun_of_the_cell_that_held_plotly_js_embeds_it_again(kernel_renderer) -> None:
    assert chart.LOADER_MARK in figure()._repr_mimebundle_()["text/html"]
    kernel_renderer.update(id="cell-2", request="r2")
    assert chart.LOADER_MARK not in figure()._repr_mimebundle_()["text/html"]
    kernel_renderer.update(id="cell-1", request="r3")  # its old output, plotly.js too, goes
    assert chart.LOADER_MARK in figure()._repr_mimebundle_()["text/html"]
    assert chart.LOADER_MARK not in figure()._repr_mimebundle_()["text/html"]


def test_script_ends_cannot_break_out_of_the_page() -> None:
    fig = figure("</script><script>alert(1)</script>")
    html = fig._repr_mimebundle_()["text/html"]
    assert "</script><script>alert(1)" not in html


def test_a_renderer_that_gives_html_itself_is_left_alone(monkeypatch) -> None:
    monkeypatch.setattr(pio.renderers, "default", "notebook_connected")
    bundle = figure()._repr_mimebundle_()
    assert "taskorch-chart" not in bundle["text/html"]


def test_chart_wraps_a_users_figure() -> None:
    user = go.Figure(go.Scatter(y=[1, 3]))
    wrapped = chart.exportable(user)
    assert isinstance(wrapped, Chart)
    assert wrapped.to_dict() == user.to_dict()
    assert chart.exportable(wrapped) is wrapped


def test_the_packed_plotly_js_is_the_installed_one_and_the_same_every_time() -> None:
    import base64
    import gzip
    from pathlib import Path

    import plotly

    source = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    packed = chart._plotlyjs()
    assert gzip.decompress(base64.b64decode(packed)) == source.read_bytes()
    chart._plotlyjs.cache_clear()
    assert chart._plotlyjs() == packed  # no timestamp inside: stored outputs compare equal
