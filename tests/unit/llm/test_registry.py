"""Providers by name: `make_provider`'s names, options, and what "auto" picks and says once."""

from __future__ import annotations

import logging

import pytest

from taskorch_nb.errors import ConfigurationError
from taskorch_nb.llm import (
    AnthropicProvider,
    OpenAIProvider,
    SimulatedProvider,
    make_provider,
    registry,
)
from taskorch_nb.testing import FakeClock


@pytest.fixture
def no_keys(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(registry, "_announced", set())
    return monkeypatch


def test_make_provider_by_name(no_keys: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    sim = make_provider("simulated", clock=clock, seed=3, latency=0.5)
    assert isinstance(sim, SimulatedProvider)
    assert (sim.clock, sim.seed, sim.latency) == (clock, 3, 0.5)
    assert sim.chosen_because == "requested by name 'simulated'"
    openai = make_provider(" OpenAI ", api_key="k", base_url="http://127.0.0.1:9/v1")
    assert isinstance(openai, OpenAIProvider)
    anthropic = make_provider("anthropic", api_key="k", timeout=5.0)
    assert isinstance(anthropic, AnthropicProvider)
    assert anthropic.timeout == 5.0


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ConfigurationError, match="simulated, openai, anthropic, auto"):
        make_provider("gemini")


def test_unknown_option_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="seed"):
        make_provider("openai", api_key="k", seed=1)


@pytest.mark.parametrize(
    ("env", "chosen", "why"),
    [
        ({"OPENAI_API_KEY": "sk-1", "ANTHROPIC_API_KEY": "sk-2"}, OpenAIProvider, "OPENAI_API_KEY"),
        ({"ANTHROPIC_API_KEY": "sk-2"}, AnthropicProvider, "ANTHROPIC_API_KEY is set"),
        ({"OPENAI_API_KEY": ""}, SimulatedProvider, "none of OPENAI_BASE_URL"),
    ],
)
def test_auto_follows_the_environment(
    no_keys: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    env: dict[str, str],
    chosen: type,
    why: str,
) -> None:
    for name, value in env.items():
        no_keys.setenv(name, value)
    with caplog.at_level(logging.INFO, logger="taskorch_nb.llm"):
        provider = make_provider("auto")
        again = make_provider("auto")
    assert isinstance(provider, chosen)
    assert provider.chosen_because.startswith("auto: ")
    assert why in provider.chosen_because
    assert again.chosen_because == provider.chosen_because
    logged = [r.getMessage() for r in caplog.records if r.name == "taskorch_nb.llm"]
    assert len(logged) == 1
    assert why in logged[0]


def test_unknown_option_names_what_the_provider_takes_without_the_clock() -> None:
    with pytest.raises(ConfigurationError) as info:
        make_provider("simulated", temperature=0.2, bogus=1)
    message = str(info.value)
    assert message.startswith("provider 'simulated' takes no option(s) bogus, temperature; ")
    assert "seed" in message
    assert "clock" not in message


@pytest.mark.parametrize("name", [None, 3, "", "open ai"])
def test_a_name_that_is_not_a_known_string_is_refused(name: object) -> None:
    with pytest.raises(ConfigurationError, match="unknown provider"):
        make_provider(name)  # type: ignore[arg-type]


def test_choose_auto_says_why_without_building_anything(no_keys: pytest.MonkeyPatch) -> None:
    assert registry.choose_auto() == (
        "simulated", "none of OPENAI_BASE_URL, OPENAI_API_KEY, ANTHROPIC_API_KEY is set")
    no_keys.setenv("ANTHROPIC_API_KEY", "sk-2")
    assert registry.choose_auto()[0] == "anthropic"
    no_keys.setenv("OPENAI_API_KEY", "sk-1")
    assert registry.choose_auto() == ("openai", "OPENAI_API_KEY is set")
    no_keys.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8080/v1")
    assert registry.choose_auto() == ("openai",
                                      "OPENAI_BASE_URL is set (http://127.0.0.1:8080/v1)")
    assert registry._announced == set()  # choosing is not announcing
