"""The dashboard's buttons as ipywidgets, and as disabled HTML where no kernel runs.

Each view holds a `Controls` (notebook/controls.py) and only calls it: what a click does,
and the event that records who clicked, live there. A view is hidden (`display: none`)
while its action does not apply, and shows the last outcome or refusal beside it. Text
with dollars goes into `HTML` widgets inside MathJax's ignore classes: JupyterLab would
typeset a `Label`'s "$1.00 ... $2.00" as math.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from taskorch_nb.core.money import format_usd, parse_usd
from taskorch_nb.engine.run import Run
from taskorch_nb.notebook.controls import Controls
from taskorch_nb.notebook.display import NO_MATH


def default_extra(run: Run | None) -> Decimal:
    """The amount the resume field starts with: the run's limit again, at least $1."""
    limit = run.guard.limit if run is not None else None
    return max(Decimal(str(limit)) if limit else Decimal(0), Decimal(1))


def resume_label(amount_text: str) -> str:
    """`Add $2.00 and resume` (the amount as typed when it is not money yet)."""
    try:
        shown = format_usd(parse_usd(amount_text))
    except ValueError:
        shown = amount_text.strip() or "$?"
    return f"Add {shown} and resume"


_DISABLED = ('<button disabled title="needs a running kernel" style="margin-right:4px">'
             "{}</button>")


def static_html(*, resume: bool, stop: bool, circuits: list[str],
                patterns: list[str]) -> str:
    """The controls as disabled HTML buttons, for views without a kernel."""
    parts: list[str] = []
    if resume:
        parts.append(_DISABLED.format("Add $ and resume"))
    if stop:
        parts.append(_DISABLED.format("Stop"))
    for name in circuits:
        label = html.escape(name)
        parts.append(f"<span>{label}</span> " + _DISABLED.format("Reset")
                     + _DISABLED.format("Open"))
    for name in patterns:
        label = html.escape(name)
        parts.append(f"<span>{label}</span> " + _DISABLED.format("Approve")
                     + _DISABLED.format("Reject"))
    if not parts:
        return ""
    return ('<div class="taskorch-controls taskorch-static"><i>Controls need a running '
            "kernel:</i><br>" + "<br>".join(parts) + "</div>")


def _show(widget: Any, visible: bool) -> None:
    display = "" if visible else "none"
    if widget.layout.display != display:
        widget.layout.display = display


def _write(widget: Any, trait: str, value: Any) -> None:
    if getattr(widget, trait) != value:
        setattr(widget, trait, value)


class ResumeView:
    """Beside the gauge of a paused run: an amount, "Add $X and resume", the outcome."""

    def __init__(self, w: Any) -> None:
        self.controls: Controls | None = None
        self.amount = w.Text(value="", placeholder="1.00", layout=w.Layout(width="6em"))
        self.amount.add_class("taskorch-resume-amount")
        self.button = w.Button(description="Add $ and resume", button_style="warning",
                               icon="play", layout=w.Layout(width="auto", min_width="14em"))
        self.button.add_class("taskorch-resume")
        self.note = w.HTML(value="")  # not a Label: MathJax would typeset its dollars
        self.note.add_class("taskorch-control-note")
        self.box = w.HBox([self.amount, self.button], layout=w.Layout(flex="0 0 auto"))
        self.box.add_class("taskorch-resume-box")
        self.amount.observe(self._typed, names="value")
        self.button.on_click(self._click)
        _show(self.box, False)

    def bind(self, controls: Controls) -> None:
        self.controls = controls
        if not self.amount.value:
            self.amount.value = f"{default_extra(controls.run):.2f}"

    def _typed(self, change: dict[str, Any]) -> None:
        self.button.description = resume_label(change["new"])

    def _click(self, _button: Any = None) -> None:
        if self.controls is not None:
            self.controls.attempt(self.controls.resume, self.amount.value)

    def refresh(self) -> None:
        controls = self.controls
        _show(self.box, controls is not None and controls.can_resume)
        message = html.escape(controls.message) if controls is not None else ""
        style = "color:#555;font-style:italic;margin-left:1em"
        _write(self.note, "value",
               f'<span class="{NO_MATH}" style="{style}">{message}</span>' if message else "")


class StopView:
    """A Stop button, shown while the run runs on a loop a click can reach."""

    def __init__(self, w: Any) -> None:
        self.controls: Controls | None = None
        self.button = w.Button(description="Stop", button_style="danger", icon="stop",
                               tooltip="cancel the run, like an interrupt",
                               layout=w.Layout(width="auto"))
        self.button.add_class("taskorch-stop")
        self.button.on_click(self._click)
        _show(self.button, False)

    def _click(self, _button: Any = None) -> None:
        if self.controls is not None:
            self.controls.attempt(self.controls.stop)

    def refresh(self) -> None:
        controls = self.controls
        _show(self.button, controls is not None and controls.can_stop
              and controls.stop_reachable)


class BreakerButtons:
    """Reset and Open for one breaker (Open quarantines it until Reset)."""

    def __init__(self, w: Any, name: str, get_controls: Callable[[], Controls | None]) -> None:
        self.name = name
        self._controls = get_controls
        self.reset = w.Button(description="Reset", tooltip=f"close {name} now",
                              layout=w.Layout(width="auto"))
        self.reset.add_class("taskorch-circuit-reset")
        self.open = w.Button(description="Open", button_style="danger",
                             tooltip=f"quarantine {name} until reset",
                             layout=w.Layout(width="auto"))
        self.open.add_class("taskorch-circuit-open")
        self.reset.on_click(lambda _b: self._act("reset_circuit"))
        self.open.on_click(lambda _b: self._act("open_circuit"))
        self.box = w.HBox([self.reset, self.open])
        _show(self.box, False)

    def _act(self, action: str) -> None:
        controls = self._controls()
        if controls is not None:
            controls.attempt(getattr(controls, action), self.name)

    def refresh(self, held: bool) -> None:
        _show(self.box, self._controls() is not None)
        _write(self.open, "disabled", held)


class PatternReview:
    """Remote patterns whose text waits for a person: the text, Approve and Reject.

    Rows come from `immune.pending()` when bound and from `pattern.*` events; a decided
    pattern keeps its row with the decision and who made it.
    """

    def __init__(self) -> None:
        self.controls: Controls | None = None
        self.rows: dict[str, dict[str, Any]] = {}
        self._widget: Any = None
        self._row_widgets: dict[str, tuple[Any, Any, Any, Any]] = {}

    def bind(self, controls: Controls) -> None:
        self.controls = controls
        immune = getattr(controls.orch, "immune", None)
        for pattern in immune.pending() if immune is not None else []:
            self.rows[pattern.name] = {"tool": pattern.tool, "text": pattern.corrective_prompt,
                                       "source": pattern.source, "decision": "pending",
                                       "by": None}

    def update(self, event: Any) -> None:
        etype = event.type
        if etype in ("pattern.approved", "pattern.rejected"):
            row = self.rows.setdefault(event.name, {"tool": event.tool, "text": event.prompt,
                                                    "source": event.source})
            row.update(decision=etype.split(".", 1)[1], by=event.actor)
        elif etype == "pattern.merged" and self.controls is not None:
            self.bind(self.controls)  # a hub's text arrived: it may wait for a person now

    @property
    def pending(self) -> list[str]:
        return [name for name, row in self.rows.items() if row["decision"] == "pending"]

    @property
    def widget(self) -> Any:
        if self._widget is None:
            import ipywidgets as w

            self._w = w
            self._heading = w.HTML(value="<b>Remote patterns to review</b>")
            self._widget = w.VBox([self._heading])
            self._widget.add_class("taskorch-patterns")
            self.refresh()
        return self._widget

    def refresh(self) -> None:
        if self._widget is None:
            return
        w, added = self._w, False
        for name, row in self.rows.items():
            parts = self._row_widgets.get(name)
            if parts is None:
                text = w.HTML()
                approve = w.Button(description="Approve", button_style="success",
                                   tooltip=f"let {name}'s text reach the model",
                                   layout=w.Layout(width="auto"))
                approve.add_class("taskorch-pattern-approve")
                reject = w.Button(description="Reject", tooltip=f"keep {name}'s text out",
                                  layout=w.Layout(width="auto"))
                reject.add_class("taskorch-pattern-reject")
                approve.on_click(lambda _b, n=name: self._act("approve", n))
                reject.on_click(lambda _b, n=name: self._act("reject", n))
                box = w.HBox([text, approve, reject])
                box.add_class("taskorch-pattern-row")
                parts = self._row_widgets[name] = (box, text, approve, reject)
                added = True
            box, text, approve, reject = parts
            _write(text, "value", _pattern_html(name, row))
            decided = row["decision"] != "pending"
            for button in (approve, reject):
                _show(button, self.controls is not None and not decided)
        if added:
            self._widget.children = (self._heading, *(p[0] for p in self._row_widgets.values()))
        _show(self._widget, bool(self.rows))

    def _act(self, action: str, name: str) -> None:
        if self.controls is not None:
            self.controls.attempt(getattr(self.controls, action), name)
            self.refresh()

    def text(self) -> str:
        if not self.rows:
            return "Remote patterns to review: none"
        return "Remote patterns to review\n" + "\n".join(
            f"  {name} ({row.get('tool')}): {row['decision']}"
            + (f" by {row['by']}" if row.get("by") else "")
            for name, row in self.rows.items())

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        bundle: dict[str, Any] = {
            "text/plain": self.text(),
            "text/html": f'<pre class="{NO_MATH}">{html.escape(self.text())}</pre>'
            + static_html(resume=False, stop=False, circuits=[], patterns=self.pending),
        }
        bundle.update({k: v for k, v in (self.widget._repr_mimebundle_() or {}).items()
                       if k != "text/plain"})
        return bundle


def _pattern_html(name: str, row: dict[str, Any]) -> str:
    decision = row["decision"]
    who = f" by {html.escape(row['by'])}" if row.get("by") else ""
    return (f'<div class="{NO_MATH}" data-decision="{decision}" style="min-width:28em">'
            f"<code>{html.escape(name)}</code> ({html.escape(str(row.get('tool')))}, from "
            f"{html.escape(str(row.get('source')))}): <i>{decision}{who}</i><br>"
            f"<span style='font-size:11px'>{html.escape(row.get('text') or '')}</span></div>")


def review_patterns(orch: Any, *, actor: str | None = None) -> PatternReview:
    """The remote patterns whose text waits for a person, with Approve and Reject, outside
    any run's dashboard (display the result; `orch.immune.pending()` lists the same)."""
    review = PatternReview()
    controls = Controls(orch, actor=actor)

    def feed(event: Any) -> None:
        review.update(event)
        review.refresh()

    controls.feed = feed
    review.bind(controls)
    return review
