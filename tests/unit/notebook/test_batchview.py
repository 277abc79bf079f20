"""The batch dashboard: counts, spend against the batch's budget, breakers; live."""

from __future__ import annotations

import asyncio

import pytest

from taskorch_nb import FakeClock, Orchestrator, RetryPolicy
from taskorch_nb.notebook.batchview import BatchView

ONE = {"workflow": "single", "archetype": "researcher"}


@pytest.fixture
def orch():
    made = Orchestrator(store=":memory:", clock=FakeClock())
    yield made
    made.close()


def test_before_and_after_a_batch(orch) -> None:
    batch = orch.map([f"Summarize topic {i}" for i in range(5)], budget=1, **ONE)  # no loop:
    # not started until waited for
    view = BatchView(batch)
    widget = view.widget
    assert view._bar.max == 5
    assert view._bar.value == 0
    assert view._done.value == "0/5"
    assert "<b>5</b> QUEUED" in view._counts.value
    assert "no breaker used yet" in view._breakers.value

    view.follow()
    asyncio.run(batch.wait())
    view.stop()
    assert view._bar.value == 5
    assert view._bar.bar_style == "success"
    assert view._done.value == "5/5"
    assert "<b>5</b> COMPLETED" in view._counts.value
    assert "mathjax_ignore" in view._money.value  # "$" must not become math in JupyterLab
    assert view._spend.value == pytest.approx(float(batch.cost.spent))
    assert "simulated:sim-small" in view._breakers.value
    assert "CLOSED" in view._breakers.value
    assert "taskorch-batch" in widget._dom_classes
    assert "write_file" not in view._breakers.value  # healthy tool breakers stay quiet
    text = view.text()
    assert f"batch {batch.id} (local): 5/5 done: 5 COMPLETED" in text
    assert "breaker simulated:sim-small: CLOSED (failures 0)" in text


def test_a_paused_batch_shows_warning_and_an_open_breaker() -> None:
    orch = Orchestrator(store=":memory:", faults="p1:503", retry=RetryPolicy(initial_wait=0.0))
    batch = orch.map_sync(["Summarize a", "Summarize b"], budget=1, **ONE)
    view = BatchView(batch)
    view.widget  # noqa: B018 - built and read once
    assert view._bar.bar_style == "warning"
    assert "<b>2</b> PAUSED" in view._counts.value
    assert "OPEN" in view._breakers.value
    orch.close()


def test_show_displays_the_widget_and_follows(orch, monkeypatch) -> None:
    shown = []
    monkeypatch.setattr("taskorch_nb.notebook.display.show", shown.append)
    batch = orch.map(["Summarize a"], budget=1, **ONE)
    view = BatchView(batch).show()
    assert shown == [view.widget]
    asyncio.run(batch.wait())
    view.stop()
    assert view._done.value == "1/1"


def test_a_cancelled_batch_shows_what_ran_and_what_waits(orch) -> None:
    batch = orch.map([f"Summarize topic {i}" for i in range(5)], budget=1, max_concurrency=1,
                     **ONE)
    stop = orch.subscribe(lambda e: e.type == "run.completed" and batch.cancel())
    view = BatchView(batch)
    view.widget  # noqa: B018 - built before the batch starts, as a cell shows it
    view.follow()

    async def cancelled() -> None:
        with pytest.raises(asyncio.CancelledError):
            await batch

    asyncio.run(cancelled())
    stop()
    view._thread.join()  # the batch is done once cancelled: following ends by itself
    assert "<b>1</b> COMPLETED" in view._counts.value
    assert "<b>4</b> CANCELLED" in view._counts.value
    assert "QUEUED" not in view._counts.value
    assert view._bar.bar_style == "warning"  # not a success: 4 runs wait for resume()
    assert view._done.value == "1/5"
    assert "4 to resume: batch.resume()" in view._counts.value
    text = view.text()
    assert "1/5 done: 1 COMPLETED, 4 CANCELLED; 4 to resume: batch.resume()" in text

    asyncio.run(batch.resume())
    view.refresh()
    assert "<b>5</b> COMPLETED" in view._counts.value
    assert "to resume" not in view._counts.value
    assert (view._bar.bar_style, view._done.value) == ("success", "5/5")
