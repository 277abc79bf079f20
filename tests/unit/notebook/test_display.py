"""notebook/display: the HTML of every result, with money out of MathJax's reach.

JupyterLab 4 typesets `$...$` in `text/html` outputs with MathJax 3, which skips
the text of any element whose class matches `mathjax_ignore` (its
`ignoreHtmlClass`, kept at its default by JupyterLab). `unprotected_dollars` reads
an HTML output the way MathJax walks it and lists the text it would scan that
holds a `$`: for our outputs the list must be empty.
"""

from __future__ import annotations

from decimal import Decimal
from html.parser import HTMLParser

import pytest

import taskorch_nb
from taskorch_nb.core.budget import BudgetGuard, CostReport
from taskorch_nb.core.display import html_renderer
from taskorch_nb.core.events import BudgetEvent
from taskorch_nb.core.immune import Pattern
from taskorch_nb.engine.orchestrator import Orchestrator
from taskorch_nb.engine.run import Run
from taskorch_nb.notebook import display
from taskorch_nb.notebook.display import StatusView, usd_html
from taskorch_nb.notebook.widgets import RunMonitor
from taskorch_nb.testing import FakeClock

_VOID = {"br", "hr", "img", "input", "meta", "link", "wbr"}


class _MathJaxWalk(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.stack: list[bool] = []  # per open element: is MathJax ignoring it?
        self.scanned: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _VOID:
            return
        classes = (dict(attrs).get("class") or "").split()
        self.stack.append((bool(self.stack) and self.stack[-1]) or "mathjax_ignore" in classes)

    def handle_endtag(self, tag: str) -> None:
        if tag not in _VOID:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        if not (self.stack and self.stack[-1]):
            self.scanned.append(data)


def unprotected_dollars(markup: str) -> list[str]:
    walk = _MathJaxWalk()
    walk.feed(markup)
    walk.close()
    assert walk.stack == [], "unbalanced HTML"
    return [text for text in walk.scanned if "$" in text]


def test_the_checker_sees_bare_money() -> None:
    assert unprotected_dollars("<td>$0.12 of $1.00</td>") == ["$0.12 of $1.00"]
    assert unprotected_dollars(f"<td>{usd_html(0.12)} of {usd_html(1)}</td>") == []


def test_usd_html_is_the_one_format_in_an_ignored_span() -> None:
    assert usd_html(Decimal("0.6884")) == (
        '<span class="taskorch-usd tex2jax_ignore mathjax_ignore">$0.69</span>'
    )
    assert usd_html(None) == '<span class="taskorch-usd tex2jax_ignore mathjax_ignore">-</span>'


def test_importing_the_package_registers_every_result() -> None:
    assert taskorch_nb.Run is Run
    assert html_renderer(Run) is display.run_html
    assert html_renderer(CostReport) is display.cost_report_html
    assert html_renderer(Pattern) is display.pattern_html
    assert html_renderer(StatusView) is display.status_html


def test_cost_report_html() -> None:
    guard = BudgetGuard(1)
    guard.commit(guard.reserve(Decimal("0.7"), agent="<i>qc</i>", model="m"), Decimal("0.6884"))
    markup = guard.report()._repr_mimebundle_()["text/html"]
    assert unprotected_dollars(markup) == []
    assert f"<td style='text-align:left'>{usd_html(Decimal('0.6884'))}</td>" in markup
    assert "&lt;i&gt;qc&lt;/i&gt;" in markup
    assert markup.count("$0.69") == 3  # spent, by agent, by model


async def test_run_html_keeps_money_and_errors_from_mathjax(tmp_path) -> None:
    orch = Orchestrator(store=":memory:", clock=FakeClock())
    run = await orch.run("Add user authentication", budget=0.25, workspace=tmp_path)
    orch.close()
    assert run.status == "PAUSED"
    assert run.error is not None
    assert "$" in run.error  # "budget exceeded: call needs up to $0.xx, ..."
    bundle = run._repr_mimebundle_()
    assert unprotected_dollars(bundle["text/html"]) == []
    assert "<b style='color:#f9a825'>PAUSED</b>" in bundle["text/html"]
    assert bundle["text/plain"].splitlines()[0].endswith(" of $0.25)")


def test_pattern_html_rows_and_escaping() -> None:
    pattern = Pattern(signature="abc", name="search_api_timeout", tool="search_api",
                      category="timeout", message="<b>timed out</b> after $3")
    markup = pattern._repr_mimebundle_()["text/html"]
    assert "search_api_timeout" in markup
    assert "&lt;b&gt;timed out&lt;/b&gt;" in markup
    assert "remote" not in markup
    assert unprotected_dollars(markup) == []


def test_status_view_text_and_html() -> None:
    view = StatusView({
        "budget": {"spent": 0.6884, "limit": 1.0, "remaining": 0.3116, "status": "warning"},
        "circuits": {"search_api": {"state": "OPEN", "failures": 3, "reset_at": 30.0}},
        "patterns": 2, "provider": "simulated", "model": "<sim>",
    })
    bundle = view._repr_mimebundle_()
    assert "Budget (calls outside runs)  $0.69 of $1.00 spent, $0.31 left (warning)" in (
        bundle["text/plain"])
    assert unprotected_dollars(bundle["text/html"]) == []
    assert "&lt;sim&gt;" in bundle["text/html"]
    assert set(view._repr_mimebundle_(exclude={"text/html"})) == {"text/plain"}


@pytest.mark.parametrize("mode", ["widget", "text", "none"])
def test_frontend_follows_an_explicit_setting(mode: str) -> None:
    assert display.frontend(object(), mode) == mode


def test_the_monitor_alert_box_keeps_money_from_mathjax() -> None:
    pytest.importorskip("ipywidgets")
    monitor = RunMonitor()
    monitor.widget  # noqa: B018  (built on first use)
    monitor.apply(BudgetEvent(type="budget.warning", amount=Decimal("0.1"),
                              spent=Decimal("0.85"), reserved=Decimal(0), limit=Decimal(1),
                              remaining=Decimal("0.15")))
    markup = monitor._alert_box.value
    assert "$0.15 of $1.00" in markup
    assert unprotected_dollars(markup) == []
