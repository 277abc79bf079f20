"""One live view of a batch instead of one dashboard per run.

A progress bar with the runs counted by state, the batch's spend against its budget,
and the breakers its runs go through. It reads the batch (`status`, `cost`,
`breakers()`) rather than following events: a Ray batch's events happen in other
processes, and a batch of thousands would flood a per-event view. `follow()` re-reads
it on a daemon thread a few times a second until the batch is done (widget updates
from a thread arrive live, even while the cell blocks).
"""

from __future__ import annotations

import html
import threading
from typing import Any

from taskorch_nb.batch.batch import RESUMABLE
from taskorch_nb.core.money import format_usd
from taskorch_nb.notebook.display import NO_MATH, usd_html

#: Colours of the counts, as the run view colours a run's status.
_COLOURS = {"RUNNING": "#1565c0", "PAUSED": "#f9a825", "COMPLETED": "#2e7d32",
            "FAILED": "#c62828", "CANCELLED": "#757575", "INTERRUPTED": "#6a1b9a"}
_STATE_COLOURS = {"CLOSED": "#2e7d32", "HALF_OPEN": "#f9a825", "OPEN": "#c62828"}


class BatchView:
    """The batch dashboard: `widget` for a kernel, `text()` for everything else."""

    def __init__(self, batch: Any, *, interval: float = 0.25) -> None:
        self.batch = batch
        self.interval = interval
        self._widget: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- what it shows -------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Runs by state, the zeros left out (QUEUED first)."""
        return {state: n for state, n in self.batch.status.items() if n}

    def finished(self) -> int:
        """Runs ended for good (COMPLETED or FAILED): a paused or cancelled one is not done."""
        status = self.batch.status
        return status["COMPLETED"] + status["FAILED"]

    def to_resume(self) -> int:
        """Runs `batch.resume()` would continue, once the batch is done (0 before)."""
        if not self.batch.done:
            return 0
        status = self.batch.status
        return sum(status[state] for state in RESUMABLE)

    def _hint(self) -> str:
        waiting = self.to_resume()
        return f"{waiting} to resume: batch.resume()" if waiting else ""

    def text(self) -> str:
        total = len(self.batch.tasks)
        cost = self.batch.cost
        counts = ", ".join(f"{n} {state}" for state, n in self.counts().items())
        hint = self._hint()
        lines = [f"batch {self.batch.id} ({self.batch.engine.name}): {self.finished()}/{total}"
                 f" done: {counts}{'; ' + hint if hint else ''}",
                 f"spent {format_usd(cost.spent)} of {format_usd(cost.limit)} "
                 f"({format_usd(cost.reserved)} reserved)"]
        lines += [f"breaker {name}: {row['state']} (failures {row['failures']})"
                  for name, row in self.breakers().items()]
        return "\n".join(lines)

    def counts_html(self) -> str:
        parts = [f"<span style='color:{_COLOURS.get(state, '#555')}'><b>{n}</b> "
                 f"{state}</span>" for state, n in self.counts().items()]
        hint = self._hint()
        if hint:
            parts.append(f"<i>{html.escape(hint)}</i>")
        return f"<div class='taskorch-batch-counts {NO_MATH}'>{' &middot; '.join(parts)}</div>"

    def money_html(self) -> str:
        cost = self.batch.cost
        return (f"<div class='taskorch-batch-money {NO_MATH}'>spent {usd_html(cost.spent)} of "
                f"{usd_html(cost.limit)} ({usd_html(cost.reserved)} reserved)</div>")

    def breakers_html(self) -> str:
        rows = [f"<div class='taskorch-circuit' data-state='{row['state']}' "
                f"style='font-family:monospace'>{html.escape(name)} "
                f"<b style='color:{_STATE_COLOURS.get(row['state'], '#555')}'>&#9679; "
                f"{row['state']}</b> failures {row['failures']}</div>"
                for name, row in self.breakers().items()]
        return f"<div class='{NO_MATH}'>{''.join(rows) or 'no breaker used yet'}</div>"

    def breakers(self) -> dict[str, dict[str, Any]]:
        """The model breakers (`provider:model`), and any other that has failed: the many
        healthy workspace-tool breakers would hide the one that matters."""
        return {name: row for name, row in self.batch.breakers().items()
                if ":" in name or row["state"] != "CLOSED" or row["failures"]}

    # -- the widget ----------------------------------------------------------------------

    @property
    def widget(self) -> Any:
        if self._widget is None:
            import ipywidgets as w

            total = len(self.batch.tasks)
            self._bar = w.IntProgress(value=0, min=0, max=total, description="Runs")
            self._done = w.Label(value="")
            self._counts, self._money, self._breakers = w.HTML(), w.HTML(), w.HTML()
            self._spend = w.FloatProgress(value=0.0, min=0.0, max=1.0, description="Budget")
            self._widget = w.VBox([w.HBox([self._bar, self._done]), self._counts,
                                   w.HBox([self._spend, self._money]), self._breakers])
            self._widget.add_class("taskorch-batch")
            self.refresh()
        return self._widget

    def refresh(self) -> None:
        """Read the batch again and update the widget (if it was built)."""
        if self._widget is None:
            return
        total = len(self.batch.tasks)
        finished = self.finished()
        cost = self.batch.cost
        self._bar.value = finished
        status = self.batch.status
        self._bar.bar_style = ("warning" if any(status[s] for s in RESUMABLE)
                               else "success" if finished == total else "info")
        self._done.value = f"{finished}/{total}"
        self._counts.value = self.counts_html()
        self._spend.value = float(min(cost.spent / cost.limit, 1)) if cost.limit else 0.0
        self._spend.bar_style = "danger" if cost.remaining < cost.limit / 10 else "success"
        self._money.value = self.money_html()
        self._breakers.value = self.breakers_html()

    # -- following a batch ---------------------------------------------------------------

    def show(self) -> BatchView:
        """Display the widget in the cell's output and follow the batch live."""
        from taskorch_nb.notebook.display import show

        show(self.widget)
        return self.follow()

    def follow(self) -> BatchView:
        """Refresh on a daemon thread until the batch is done (then once more) or `stop()`."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="taskorch-batchview",
                                            daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.refresh()
            if self.batch.done:
                break
        self.refresh()

    def stop(self) -> None:
        """Stop following and show the final state."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self.refresh()

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return {"text/plain": self.text()}


__all__ = ["BatchView"]
