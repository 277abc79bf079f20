"""`%%orchestrate --map VAR`: a template over a list or a DataFrame column, as one batch."""

from __future__ import annotations

import _thread
from decimal import Decimal

import pandas as pd
import pytest
from IPython.core.error import UsageError

from taskorch_nb import Orchestrator, RunStatus
from taskorch_nb.batch import Batch
from taskorch_nb.notebook.mapping import items, tasks


def test_a_list_fills_item_and_the_notebook_fills_the_rest() -> None:
    ns = {"topics": ["tides", "rust"], "tone": "short"}
    assert tasks("Write a {tone} note on {item}\n", "topics", ns) == [
        "Write a short note on tides", "Write a short note on rust"]


def test_a_dataframe_column_brings_its_row_along() -> None:
    frame = pd.DataFrame({"title": ["A", "B"], "year": [1999, 2024]})
    ns = {"papers": frame}
    assert tasks("Review {item} ({year})", "papers[title]", ns) == ["Review A (1999)",
                                                                    "Review B (2024)"]
    assert tasks("Review {item}", "papers['year']", ns) == ["Review 1999", "Review 2024"]
    assert [n["item"] for n in items("papers", {"papers": frame["title"]})] == ["A", "B"]


@pytest.mark.parametrize(("spec", "ns", "message"), [
    ("nope", {}, "no variable 'nope'"),
    ("x y", {}, "needs a variable"),
    ("n", {"n": 3}, "is a int"),
    ("e", {"e": []}, "is empty"),
    ("df", {"df": pd.DataFrame({"a": [1]})}, r"name its column, e.g. --map df\[a\]"),
    ("df[b]", {"df": pd.DataFrame({"a": [1]})}, "no column 'b'; it has: a"),
    ("l[a]", {"l": [1]}, "not a DataFrame"),
])
def test_bad_targets_are_one_line_usage_errors(spec, ns, message) -> None:
    with pytest.raises(UsageError, match=message):
        items(spec, ns)


def test_a_missing_name_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match=r"mentions \{who\}"):
        tasks("Greet {who} about {item}", "l", {"l": ["x"]})


def test_the_magic_runs_the_batch_and_shows_one_view(shell, capsys) -> None:
    shell.user_ns["topics"] = ["tides", "rust", "owls"]
    result = shell.run_cell("%%orchestrate --map topics --workflow single --archetype "
                            "researcher --budget 2 -o b\nSummarize {item}\n")
    batch = result.result
    assert isinstance(batch, Batch)
    assert shell.user_ns["b"] is batch
    assert [r.task for r in batch.runs] == ["Summarize tides", "Summarize rust",
                                            "Summarize owls"]
    assert all(r.status is RunStatus.COMPLETED for r in batch.runs)
    assert batch.cost.limit == Decimal(2)
    out = capsys.readouterr().out
    assert f"batch {batch.id} (local): 3/3 done: 3 COMPLETED" in out
    assert out.count("batch batch-") == 1  # one view, not one per run


def test_the_magic_says_how_to_resume_a_paused_batch(shell, capsys) -> None:
    shell.user_ns["topics"] = ["tides", "rust"]
    batch = shell.run_cell("%%orchestrate --map topics --workflow single --archetype "
                           "researcher --budget 0.05\nSummarize {item}\n").result
    assert batch.status["PAUSED"] >= 1
    assert "Resume with: await batch.resume(extra_budget=1.0)" in capsys.readouterr().err


@pytest.mark.parametrize(("line", "message"), [
    ("--engine ray", "--engine goes with --map"),
    ("--map topics --engine spark", "unknown engine 'spark'"),
    ("--map topics --engine ray", "needs a PostgreSQL store"),
    ("--map missing", "no variable 'missing'"),
    ("--map topics --background", "--background needs a running event loop"),
])
def test_bad_map_options_are_usage_errors(shell, line, message) -> None:
    shell.user_ns["topics"] = ["tides"]
    with pytest.raises(UsageError, match=message):
        shell.run_cell_magic("orchestrate", line, "Summarize {item}")


def test_an_interrupt_cancels_the_running_runs_and_keeps_the_rest(shell, capsys) -> None:
    orch = Orchestrator(store=":memory:", latency=30.0)  # real clock: each call hangs
    shell.user_ns["orch"] = orch
    shell.run_line_magic("config", "Orchestrate.orchestrator = 'orch'")
    shell.user_ns["topics"] = [f"topic {i}" for i in range(6)]
    started: list[str] = []

    def interrupt_at_the_first_call(event) -> None:
        if event.type == "llm.requested" and not started:
            started.append(event.run_id)
            _thread.interrupt_main()  # what "Interrupt kernel" does: SIGINT in the main thread

    unsubscribe = orch.subscribe(interrupt_at_the_first_call)
    batch = shell.run_cell("%%orchestrate --map topics --workflow single --archetype "
                           "researcher --budget 5\nSummarize {item}\n").result
    unsubscribe()
    assert batch.status["CANCELLED"] == 6  # all six were in their first call
    assert batch.cost.reserved == 0
    assert batch.cost.spent == 0
    assert f"interrupted: batch {batch.id}" in capsys.readouterr().err
    orch.close()


async def test_background_schedules_the_batch_on_the_running_loop(shell) -> None:
    shell.user_ns["topics"] = ["tides", "rust"]
    batch = shell.run_cell_magic("orchestrate", "--map topics --workflow single --archetype "
                                 "researcher --budget 1 --background --no-dashboard",
                                 "Summarize {item}")
    assert isinstance(batch, Batch)
    assert not batch.done  # returned at once
    await batch
    assert batch.status["COMPLETED"] == 2
