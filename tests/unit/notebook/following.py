"""Helpers for the dashboard tests: a dashboard following a run as the magic makes one."""

from __future__ import annotations

from taskorch_nb import Orchestrator
from taskorch_nb.notebook.throttle import ManualScheduler
from taskorch_nb.notebook.widgets import Dashboard
from taskorch_nb.testing import FakeClock

TASK = "Add user authentication"


def dashboard_for(orch: Orchestrator, run, actor: str = "ada") -> tuple[Dashboard, object]:
    """A widget dashboard following `run` as the magic makes one; the buttons act as
    `actor`."""
    scheduler = ManualScheduler(FakeClock())
    dash = Dashboard(limit=run.guard.limit, clock=orch.clock, rate_clock=scheduler.clock,
                     scheduler=scheduler,
                     circuits={n: b.snapshot() for n, b in orch.circuits.items()})
    release = dash.follow(orch, run)
    dash.controls.actor = actor
    dash.widget  # noqa: B018  (built: the buttons exist)
    return dash, release


def acted(events) -> list[tuple[str, str | None]]:
    return [(e.type, e.actor) for e in events if e.actor is not None]
