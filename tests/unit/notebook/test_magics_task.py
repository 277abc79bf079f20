"""The task text of `%%orchestrate`: `{expr}` evaluated as IPython does, `{{`/`}}` escapes,
and errors that name the magic's own options."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError


@pytest.fixture
def shell(shell):
    shell.run_line_magic("config", "Orchestrate.dashboard = 'none'")
    return shell


def task_of(shell, body: str) -> str:
    return shell.run_cell_magic("orchestrate", "--workflow single", body).task


def test_double_braces_are_literal_braces_as_in_f_strings(shell) -> None:
    shell.user_ns["feature"] = "cache"
    assert task_of(shell, "Add a {feature} keyed by {{user_id}}") == (
        "Add a cache keyed by {user_id}")


def test_expressions_are_evaluated_in_the_users_namespace(shell) -> None:
    shell.user_ns["spec"] = {"name": "rate limiter", "limits": [10, 100]}
    body = "Add a {spec['name']} with {len(spec['limits'])} tiers, {spec['limits'][-1]}/min"
    assert task_of(shell, body) == "Add a rate limiter with 2 tiers, 100/min"


def test_conversions_and_slices_work_as_in_ipython(shell) -> None:
    # IPython's FullEvalFormatter: a colon is a slice, not a format spec
    shell.user_ns["modules"] = ["auth", "billing", "search"]
    shell.user_ns["name"] = "auth"
    assert task_of(shell, "Test {name!r} then {modules[1:]}") == (
        "Test 'auth' then ['billing', 'search']")


def test_an_unknown_name_is_a_one_line_usage_error(shell) -> None:
    with pytest.raises(UsageError, match=r"^task mentions \{nowhere\} but no such name is "
                                         r"defined$"):
        task_of(shell, "Add {nowhere}")


def test_an_expression_that_fails_is_a_one_line_usage_error(shell) -> None:
    shell.user_ns["spec"] = {}
    with pytest.raises(UsageError, match=r"^task text \{spec\['name'\]\}: KeyError: 'name'$"):
        task_of(shell, "Add {spec['name']}")
    with pytest.raises(UsageError, match=r"^task text \{\(\}: SyntaxError"):
        task_of(shell, "Add {(}")
    assert "Add" not in str(shell.user_ns.get("run", ""))


def test_an_unpriced_model_names_the_magics_option_not_a_python_argument(
        shell, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    with pytest.raises(UsageError) as caught:
        shell.run_cell_magic("orchestrate", "--provider openai --model nosuch-model",
                             "Write a haiku")
    message = str(caught.value)
    assert "prices={" not in message
    assert message == (
        "no price for model 'nosuch-model' (provider 'openai'): set %config "
        "Orchestrate.prices = {'nosuch-model': {'input': ..., 'output': ...}} "
        "(USD per million tokens)")


def test_the_prices_setting_prices_the_model(shell, monkeypatch) -> None:
    from taskorch_nb.notebook.magics import current_orchestrator

    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    shell.run_line_magic(
        "config", "Orchestrate.prices = {'nosuch-model': {'input': 3, 'output': 15}}")
    shell.run_line_magic("config", "Orchestrate.provider = 'openai'")
    shell.run_line_magic("config", "Orchestrate.model = 'nosuch-model'")
    orch = current_orchestrator(shell)
    price = orch.prices.price("openai", "nosuch-model")
    assert (float(price.input_mtok), float(price.output_mtok)) == (3.0, 15.0)
