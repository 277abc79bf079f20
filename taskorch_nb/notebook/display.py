"""All notebook display in one place: where output goes, and the HTML of every result.

Result objects (`Run`, `CostReport`, `Pattern`) give their text themselves and ask
`taskorch_nb.core.display` for HTML; the renderers below are registered there when
`taskorch_nb` is imported, as rich keeps its notebook output in `jupyter.py`.
JupyterLab typesets `$...$` in HTML outputs with MathJax, so every HTML view
carries MathJax's ignore classes and amounts go through `usd_html`. `frontend`
decides between live widgets and the plain-text view; `StatusView` is what
`%orchestrate status` returns. Light on import: IPython and pandas load on use.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from taskorch_nb.core.budget import CostReport
from taskorch_nb.core.display import mimebundle, register_html
from taskorch_nb.core.immune import Pattern
from taskorch_nb.core.money import format_usd
from taskorch_nb.engine.run import Run

#: Classes that keep MathJax out of an element: `mathjax_ignore` for MathJax 3
#: (JupyterLab 4, whose typesetter keeps MathJax's defaults), `tex2jax_ignore` for 2.
NO_MATH = "tex2jax_ignore mathjax_ignore"

_STATUS_COLOURS = {"COMPLETED": "#2e7d32", "PAUSED": "#f9a825", "FAILED": "#c62828",
                   "CANCELLED": "#757575"}


def usd_html(value: Decimal | float | str | None) -> str:
    """An amount for HTML: the one money format, in a span MathJax leaves alone."""
    return f'<span class="taskorch-usd {NO_MATH}">{html.escape(format_usd(value))}</span>'


def _table(rows: Iterable[tuple[str, str]], kind: str) -> str:
    """Rows of (heading, HTML cell) as a two-column table MathJax does not touch."""
    body = "".join(f"<tr><th style='text-align:left'>{html.escape(head)}</th>"
                   f"<td style='text-align:left'>{cell}</td></tr>" for head, cell in rows)
    return f"<table class='{kind} {NO_MATH}'>{body}</table>"


def run_html(run: Run) -> str:
    status = run.status.value
    colour = _STATUS_COLOURS.get(status, "#1565c0")
    cells = [
        ("run", html.escape(run.id)),
        ("task", html.escape(run.task)),
        ("workflow", html.escape(run.workflow)),
        ("status", f"<b style='color:{colour}'>{status}</b>"),
        ("cost", f"{usd_html(run.cost.spent)} of {usd_html(run.cost.limit)}"),
        ("output", html.escape(run.output or "")),
        ("error", html.escape(run.error or "")),
    ]
    return _table(((k, v) for k, v in cells if v), "taskorch-run")


def cost_report_html(report: CostReport) -> str:
    rows = [("Spent", usd_html(report.spent)), ("Limit", usd_html(report.limit)),
            ("Remaining", usd_html(report.remaining)), ("Used", f"{report.used_fraction:.1%}"),
            ("Calls", str(report.calls))]
    for name, items in report.breakdowns():
        rows.append((f"By {name}", ""))
        rows.extend((key, usd_html(value)) for key, value in items)
    return _table(rows, "taskorch-cost-report")


def pattern_html(pattern: Pattern) -> str:
    record = pattern.to_record()
    return _table(((k, html.escape(str(v))) for k, v in record.items() if k != "remote"),
                  "taskorch-pattern")


def frontend(shell: Any, mode: str = "auto") -> str:
    """"widget", "text" or "none" for a `dashboard` setting of auto|widget|text|none.

    `auto` shows widgets only in a kernel (a shell with a `kernel`: Jupyter, VS Code,
    Colab); a terminal IPython gets the text view, printed when the run ends.
    """
    if mode != "auto":
        return mode
    return "widget" if getattr(shell, "kernel", None) is not None else "text"


def show(obj: Any) -> None:
    """Display `obj` in the cell's output (IPython's `display`)."""
    from IPython.display import display

    display(obj)


class StatusView:
    """The orchestrator's status (budget, circuits, patterns) readable in both views.

    `data` is `Orchestrator.status()` as it was when asked; index it like the dict.
    """

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = dict(data)

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def budget_line(self, usd: Any = format_usd) -> str:
        """`$0.12 of $5.00 spent, $4.88 left (ok)`, amounts written by `usd`."""
        budget = self.data.get("budget", {})
        return (f"{usd(budget.get('spent'))} of {usd(budget.get('limit'))} spent, "
                f"{usd(budget.get('remaining'))} left ({budget.get('status', '?')})")

    def text(self) -> str:
        lines = [
            f"Orchestrator  provider {self.data.get('provider')}  model {self.data.get('model')}",
            f"Budget (calls outside runs)  {self.budget_line()}",
            f"Patterns known  {self.data.get('patterns', 0)}",
        ]
        circuits = self.data.get("circuits", {})
        if not circuits:
            lines.append("Circuits  (none yet)")
        else:
            lines.append("Circuits")
            width = max(len(name) for name in circuits)
            for name, snap in circuits.items():
                reset_at = snap.get("reset_at")
                lines.append(
                    f"  {name:<{width}}  {snap.get('state'):<9}  failures {snap.get('failures')}"
                    + (f"  reset at t={reset_at:.1f}s" if reset_at is not None else "")
                )
        return "\n".join(lines)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return mimebundle(self, self.text(), include, exclude)

    def __repr__(self) -> str:
        return self.text()


def status_html(view: StatusView) -> str:
    circuits = view.data.get("circuits", {})
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{html.escape(str(snap.get('state')))}</td>"
        f"<td>{snap.get('failures')}</td></tr>"
        for name, snap in circuits.items()
    )
    table = (
        "<table><tr><th>circuit</th><th>state</th><th>failures</th></tr>" + rows + "</table>"
        if rows
        else "<i>no circuits yet</i>"
    )
    return (
        f'<div class="taskorch-status {NO_MATH}">'
        f"<b>Orchestrator</b> {html.escape(str(view.data.get('provider')))} / "
        f"{html.escape(str(view.data.get('model')))}<br>"
        f"<b>Budget</b> {view.budget_line(usd_html)}<br>"
        f"<b>Patterns known</b> {view.data.get('patterns', 0)}<br>{table}</div>"
    )


def circuits_frame(snapshots: Mapping[str, Mapping[str, Any]]) -> Any:
    """`%orchestrate circuits`: one row per breaker (name, state, failures, opened_at,
    reset_at), in name order."""
    import pandas as pd

    columns = ["name", "state", "failures", "opened_at", "reset_at"]
    rows = [{c: snap.get(c) for c in columns} | {"name": name}
            for name, snap in sorted(snapshots.items())]
    frame = pd.DataFrame(rows, columns=columns)
    frame["failures"] = frame["failures"].astype("int64")
    for column in ("opened_at", "reset_at"):
        frame[column] = pd.to_numeric(frame[column]).astype("float64")
    return frame


register_html(Run, run_html)
register_html(CostReport, cost_report_html)
register_html(Pattern, pattern_html)
register_html(StatusView, status_html)
