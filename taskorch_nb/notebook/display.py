"""Display plumbing for the magics: where output goes and how small results look.

`frontend(shell)` decides between live widgets (a kernel with a browser behind
it) and the plain-text view (a terminal IPython, a test shell). `StatusView` is
what `%orchestrate status` returns: a `_repr_mimebundle_` with text and HTML,
as every result object of the package has.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from taskorch_nb.notebook import text as _text


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

    def _budget_line(self) -> str:
        budget = self.data.get("budget", {})
        return (
            f"{_text.money(budget.get('spent'))} of {_text.money(budget.get('limit'))} spent, "
            f"{_text.money(budget.get('remaining'))} left ({budget.get('status', '?')})"
        )

    def text(self) -> str:
        lines = [
            f"Orchestrator  provider {self.data.get('provider')}  model {self.data.get('model')}",
            f"Budget (calls outside runs)  {self._budget_line()}",
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

    def _repr_html_(self) -> str:
        circuits = self.data.get("circuits", {})
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
            '<div class="taskorch-status">'
            f"<b>Orchestrator</b> {html.escape(str(self.data.get('provider')))} / "
            f"{html.escape(str(self.data.get('model')))}<br>"
            f"<b>Budget</b> {html.escape(self._budget_line())}<br>"
            f"<b>Patterns known</b> {self.data.get('patterns', 0)}<br>{table}</div>"
        )

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/plain": self.text(), "text/html": self._repr_html_()}

    def __repr__(self) -> str:
        return self.text()


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
