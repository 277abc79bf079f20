"""Bad settings fail at construction with one clear ConfigurationError, before any spending."""

from __future__ import annotations

import pytest

from taskorch_nb import ConfigurationError, Orchestrator
from taskorch_nb.llm.simulated import SimulatedProvider


@pytest.mark.parametrize("value", [0, -5, float("inf"), float("nan"), "120", None, True])
def test_qc_timeout_must_be_positive_seconds(value: object) -> None:
    with pytest.raises(ConfigurationError, match="qc_timeout must be"):
        Orchestrator(store=":memory:", qc_timeout=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["3", 2.5, None, True, 0, -1])
def test_max_rounds_must_be_a_whole_number(value: object) -> None:
    with pytest.raises(ConfigurationError, match="max_rounds must be"):
        Orchestrator(store=":memory:", max_rounds=value)  # type: ignore[arg-type]


def test_good_values_are_kept() -> None:
    with Orchestrator(store=":memory:", max_rounds=5, qc_timeout=30) as orch:
        assert (orch.max_rounds, orch.qc_timeout) == (5, 30.0)


@pytest.mark.parametrize("value", [float("1e999999"), "1e999999", 10**30])
def test_a_huge_budget_is_refused_in_one_short_line(value: object) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Orchestrator(store=":memory:", budget=value)  # type: ignore[arg-type]
    message = str(caught.value)
    assert "budget must be a USD amount" in message
    assert len(message) < 200
    assert "\n" not in message


def test_the_simulated_provider_refuses_an_unknown_model_at_construction() -> None:
    with pytest.raises(ConfigurationError, match="no model 'gpt-4o'"):
        Orchestrator("simulated", model="gpt-4o", store=":memory:")
    with pytest.raises(ConfigurationError, match="no model 'gpt-4o'"):
        SimulatedProvider().check_model("gpt-4o")
    SimulatedProvider().check_model("sim-large")
