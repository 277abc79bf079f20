"""`%%orchestrate` through a real IPython `InteractiveShell`: options, interpolation, `-o`,
subcommands, bad input as `UsageError`, the dashboard's final state, background runs and
interrupts."""

from __future__ import annotations

import _thread
from decimal import Decimal

import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from taskorch_nb import FakeClock, Orchestrator, Run, RunStatus
from taskorch_nb.core.retry import RetryPolicy
from taskorch_nb.notebook.display import StatusView
from taskorch_nb.notebook.magics import (
    OrchestrateMagics,
    Worker,
    current_orchestrator,
)


def magics(sh: InteractiveShell) -> OrchestrateMagics:
    return sh.magics_manager.registry["OrchestrateMagics"]


def cell(sh: InteractiveShell, line: str, body: str = "Write a haiku") -> Run:
    return sh.run_cell_magic("orchestrate", line, body)


# -- running ---------------------------------------------------------------------------


def test_cell_value_is_the_run_and_task_is_interpolated(shell, capsys) -> None:
    shell.user_ns["feature"] = "rate limiter"
    result = shell.run_cell("%%orchestrate --workflow single --budget 1\nAdd a {feature} module\n")
    run = result.result
    assert isinstance(run, Run)
    assert run.task == "Add a rate limiter module"
    assert run.status is RunStatus.COMPLETED, run.error
    assert run.workflow == "single"
    assert run.guard.limit == Decimal("1")
    out = capsys.readouterr().out
    assert "Budget  [" in out  # the text view, printed once the run ended
    assert f"Run {run.id} [completed]" in out


def test_o_binds_the_run(shell) -> None:
    run = cell(shell, "--workflow single -o result")
    assert shell.user_ns["result"] is run
    assert magics(shell).last_run is run


def test_full_workflow_with_rounds_and_archetype(shell) -> None:
    run = cell(shell, "--max-rounds 2 --budget 5", "Add user authentication")
    assert run.status is RunStatus.COMPLETED, run.error
    assert run.max_rounds == 2
    phases = [e.phase for e in run.events if e.type == "phase.started"]
    assert phases[:2] == ["research", "design"]
    single = cell(shell, "--archetype architect")
    assert (single.workflow, single.archetype) == ("single", "architect")
    assert {e.agent for e in single.events if e.type == "agent.started"} == {"architect"}


def test_provider_and_model_options_choose_the_orchestrator(shell) -> None:
    run = cell(shell, "--workflow single --provider simulated --model sim-large")
    assert {e.model for e in run.events if e.type == "llm.completed"} == {"sim-large"}
    assert current_orchestrator(shell).model == "sim-small"  # the settings' one
    shell.run_line_magic("config", "Orchestrate.model = 'sim-large'")
    assert current_orchestrator(shell).model == "sim-large"


def test_settings_apply_and_rebuild_the_orchestrator(shell) -> None:
    first = current_orchestrator(shell)
    shell.run_line_magic("config", "Orchestrate.budget = 0.75")
    shell.run_line_magic("config", "Orchestrate.workflow = 'single'")
    run = cell(shell, "")  # no options: the settings decide
    assert (run.guard.limit, run.workflow) == (Decimal("0.75"), "single")
    assert current_orchestrator(shell) is first  # budget/workflow do not rebuild it
    shell.run_line_magic("config", "Orchestrate.model = 'sim-large'")
    assert current_orchestrator(shell) is not first
    assert current_orchestrator(shell).model == "sim-large"


def test_no_dashboard_prints_nothing(shell, capsys) -> None:
    run = cell(shell, "--workflow single --no-dashboard")
    assert run.status is RunStatus.COMPLETED
    assert capsys.readouterr().out == ""


def test_widget_dashboard_final_state(shell) -> None:
    shell.run_line_magic("config", "Orchestrate.dashboard = 'widget'")
    run = cell(shell, "--workflow single --budget 2 -o r")
    dash = magics(shell).dashboard
    assert dash is not None
    assert dash.closed
    gauge = dash.gauge
    assert gauge.spent == run.cost.spent > 0
    assert gauge.limit == Decimal("2")
    assert gauge.colour == "green"
    bar, label, resume, _ = gauge.widget.children
    assert resume.layout.display == "none"  # a completed run offers no resume
    assert bar.value == pytest.approx(float(run.cost.spent / 2))
    assert bar.bar_style == "success"
    assert "$2.00" in label.value
    assert dash.monitor.status == "completed"
    assert dash.monitor.run_id == run.id
    rows = dash.panel.rows
    assert rows["simulated:sim-small"]["state"] == "CLOSED"
    htmls = [line.children[0].value for line in dash.panel.widget.children[1:]]
    assert any("simulated:sim-small" in h and 'data-state="CLOSED"' in h for h in htmls)
    assert "taskorch-dashboard" in dash.widget._dom_classes


def test_budget_rejection_pauses_and_turns_the_gauge_red(shell, capsys) -> None:
    run = cell(shell, "--workflow single --budget 0.05")
    assert run.status is RunStatus.PAUSED
    hint = capsys.readouterr().err.strip().splitlines()[-1]
    assert hint.startswith("PAUSED: budget exceeded")
    assert hint.endswith("Resume with: await run.resume(extra_budget=1.0)")
    dash = magics(shell).dashboard
    assert dash.gauge.colour == "red"
    assert dash.gauge.rejected
    assert dash.monitor.status == "paused"
    assert any("refused" in alert for alert in dash.monitor.alerts)


def test_open_circuit_shows_in_the_panel_and_reset_closes_it(shell, capsys) -> None:
    clock = FakeClock()
    orch = Orchestrator(store=":memory:", clock=clock, faults="504x3",
                        retry=RetryPolicy(jitter=0.0))
    shell.user_ns["my_orch"] = orch
    shell.run_line_magic("config", "Orchestrate.orchestrator = 'my_orch'")
    run = cell(shell, "--workflow single")
    assert run.status is RunStatus.PAUSED  # the provider is down: resume when it is back
    printed = capsys.readouterr()
    hint = printed.err.strip().splitlines()[-1]
    assert "unavailable" in hint
    assert hint.endswith("Resume with: await run.resume()")
    row = magics(shell).dashboard.panel.rows["simulated:sim-small"]
    assert (row["state"], row["failures"]) == ("OPEN", 3)
    assert magics(shell).dashboard.panel.seconds_to_half_open("simulated:sim-small") == 30.0
    assert "half-open in 30 s" in printed.out
    frame = shell.run_line_magic("orchestrate", "circuits")
    assert frame.set_index("name").loc["simulated:sim-small", "state"] == "OPEN"
    shell.run_line_magic("orchestrate", "reset simulated:sim-small")
    assert orch.circuits["simulated:sim-small"].state == "CLOSED"
    assert "reset: CLOSED" in capsys.readouterr().out
    with pytest.raises(UsageError, match="--provider openai"):
        cell(shell, "--provider openai")
    shell.user_ns["my_orch"] = 42
    with pytest.raises(UsageError, match="int, not an Orchestrator"):
        cell(shell, "")
    orch.close()


# -- subcommands -----------------------------------------------------------------------


def test_status_circuits_patterns_history(shell) -> None:
    run = cell(shell, "--workflow single")
    status = shell.run_line_magic("orchestrate", "status")
    assert isinstance(status, StatusView)
    assert status["provider"] == "simulated"
    bundle = status._repr_mimebundle_()
    assert "simulated:sim-small" in bundle["text/plain"]
    assert "taskorch-status" in bundle["text/html"]
    circuits = shell.run_line_magic("orchestrate", "circuits")
    assert list(circuits.columns) == ["name", "state", "failures", "opened_at", "reset_at"]
    assert "write_file" in set(circuits["name"])
    patterns = shell.run_line_magic("orchestrate", "patterns")
    assert isinstance(patterns, pd.DataFrame)
    assert "signature" in patterns.columns
    history = shell.run_line_magic("orchestrate", "history")
    assert history["run_id"].tolist() == [run.id]
    assert history["status"].tolist() == ["COMPLETED"]


def test_reset_all(shell, capsys) -> None:
    cell(shell, "--workflow single")
    assert shell.run_line_magic("orchestrate", "reset") is None
    assert "all CLOSED" in capsys.readouterr().out


def test_help_is_the_argparse_usage(shell) -> None:
    doc = magics(shell).orchestrate.__doc__
    for flag in ("--budget", "--workflow", "--archetype", "--provider", "--model",
                 "--max-rounds", "--background", "--no-dashboard", "-o VAR"):
        assert flag in doc


# -- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "body", "message"),
    [
        ("--budget -1", "x", "above \\$0"),
        ("--budget 0", "x", "above \\$0"),
        ("--budget abc", "x", "USD amount"),
        ("--budget nan", "x", "got 'nan'"),
        ("--budget 1e999999", "x", "at most \\$1,000,000,000"),
        ("--frobnicate", "x", "unrecognized arguments"),
        ("--max-rounds two", "x", "invalid int"),
        ("--max-rounds 0", "x", ">= 1"),
        ("", "   \n ", "empty"),
        ("--workflow nope", "x", "unknown workflow"),
        ("--provider nope", "x", "unknown provider"),
        ("--archetype nope", "x", "unknown archetype"),
        ("", "Add {undefined_name}", "undefined_name"),
        ("-o 1x", "x", "variable name"),
        ("status", "x", "options only"),
        ("--background", "x", "running event loop"),
    ],
)
def test_bad_input_is_a_usage_error(shell, line, body, message) -> None:
    with pytest.raises(UsageError, match=message):
        cell(shell, line, body)


@pytest.mark.parametrize(
    ("line", "message"),
    [("", "needs a command"), ("bogus", "unknown command"), ("status extra", "no argument"),
     ("reset no_such_breaker", "no circuit")],
)
def test_bad_subcommand_is_a_usage_error(shell, line, message) -> None:
    with pytest.raises(UsageError, match=message):
        shell.run_line_magic("orchestrate", line)


def test_usage_error_shows_one_line_without_traceback(shell, capsys) -> None:
    result = shell.run_cell("%%orchestrate --budget -5\nx\n")
    assert isinstance(result.error_in_exec, UsageError)
    err = capsys.readouterr().err
    assert err.strip() == ("UsageError: --budget must be a USD amount above $0 and at most "
                           "$1,000,000,000 (e.g. 2.50), got '-5'")


def test_bad_setting_is_refused(shell) -> None:
    from traitlets import TraitError

    with pytest.raises(TraitError, match=r"^Orchestrate\.budget must be a USD amount above"):
        magics(shell).settings.budget = -2.0
    with pytest.raises(TraitError, match="got inf"):
        magics(shell).settings.budget = float("inf")


# -- background and interrupt -------------------------------------------------------------


async def test_background_returns_at_once_and_is_awaitable(shell) -> None:
    shell.user_ns["thing"] = "sonnet"
    run = cell(shell, "--background --workflow single -o bg", "Write a {thing}")
    assert shell.user_ns["bg"] is run
    assert not run.done  # scheduled on this loop, not run yet
    assert await run is run
    assert run.status is RunStatus.COMPLETED
    assert run.task == "Write a sonnet"
    for task in list(magics(shell)._background):
        await task
    dash = magics(shell).dashboard
    assert dash.closed
    assert dash.monitor.status == "completed"
    assert dash.gauge.spent == run.cost.spent


def test_interrupt_cancels_the_run_cleanly(shell, capsys) -> None:
    orch = current_orchestrator(shell)

    def interrupt_once(event) -> None:
        if event.type == "phase.started" and not worker_box:
            worker_box.append(magics(shell).worker)
            _thread.interrupt_main()  # what "Interrupt kernel" does: SIGINT in the main thread
            # hold the run here until the kernel thread asked it to stop
            assert worker_box[0].cancel_requested.wait(10)

    worker_box: list = []
    unsubscribe = orch.subscribe(interrupt_once)
    run = cell(shell, "--budget 5", "Add user authentication")
    unsubscribe()
    assert run.status is RunStatus.CANCELLED
    assert run.events[-1].type == "run.cancelled"
    stored = orch.history()
    assert stored.set_index("run_id").loc[run.id, "status"] == "CANCELLED"
    assert run.guard.reserved == 0  # nothing left reserved: the cost is settled
    assert "interrupted" in capsys.readouterr().err
    assert magics(shell).dashboard.monitor.status == "cancelled"


def test_a_cancel_before_the_worker_has_its_task_still_cancels_the_run(shell) -> None:
    # An interrupt that lands while start() is still starting the thread: cancel() finds no
    # task yet, so the worker's thread must see the request itself.
    orch = current_orchestrator(shell)
    run = orch.runner.create("Add user authentication")
    worker = Worker(run, orch.runner.execute)
    worker.cancel()
    worker.start()
    worker.wait()
    worker.cancel()  # again, after the end: nothing happens
    assert worker.error is None
    assert run.status is RunStatus.CANCELLED
    assert run.events[0].type == "run.started"
    assert run.events[-1].type == "run.cancelled"
    assert orch.history().set_index("run_id").loc[run.id, "status"] == "CANCELLED"


# -- the post-mortem helpers and the report the notebooks use ------------------------------


def test_analysis_helpers_on_a_failing_run(shell, tmp_path) -> None:
    from taskorch_nb.notebook.analysis import compare, failures, phase_durations

    orch = Orchestrator(store=":memory:", clock=FakeClock(), faults="504x3",
                        retry=RetryPolicy(jitter=0.0))
    bad = orch.run_sync("Summarise the changelog", workflow="single", archetype="researcher")
    good = cell(shell, "--workflow single")
    rows = failures(bad)
    assert rows["type"].tolist()[:4] == ["tool.failed", "retry.scheduled", "tool.failed",
                                         "retry.scheduled"]
    assert rows["wait"].dropna().tolist() == [2.0, 4.0]
    phases = phase_durations(good)
    assert phases[["phase", "round"]].values.tolist() == [["build", 1]]
    assert phases["cost"].iloc[0] == pytest.approx(float(good.cost.spent))
    table = compare([good, bad])
    assert table["status"].tolist() == ["COMPLETED", "PAUSED"]  # a provider outage pauses
    assert table["retries"].tolist() == [0, 2]
    orch.close()


def test_a_fake_clock_gives_simulated_calls_realistic_fake_latency(shell) -> None:
    from taskorch_nb.llm.simulated import REALISTIC_LATENCY

    run = shell.run_cell_magic("orchestrate", "--workflow single --no-dashboard", "Write a haiku")
    latencies = [e.latency for e in run.events if e.type == "llm.completed"]
    assert latencies
    low, high = REALISTIC_LATENCY
    assert all(low <= s <= high for s in latencies)  # time moves, so charts have a time axis
    assert run.summary()["metrics"]["duration_s"] >= low


def test_the_magics_fake_clock_carries_todays_date(shell) -> None:
    import time

    before = time.time()
    run = shell.run_cell_magic("orchestrate", "--workflow single --no-dashboard", "Write a haiku")
    # The epoch is whole seconds (stored outputs stay comparable): not 2026-01-01.
    assert run.events[0].wall >= int(before)
