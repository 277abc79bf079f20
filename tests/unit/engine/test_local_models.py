"""Self-hosted models: free unless priced, configured in the constructor, chosen by "auto"."""

from __future__ import annotations

from decimal import Decimal

import pytest

from taskorch_nb import Orchestrator
from taskorch_nb.core.events import Notice
from taskorch_nb.errors import ConfigurationError
from taskorch_nb.llm.registry import is_local
from tests.unit.llm_servers import Answer, openai_body, serve


@pytest.fixture
def server():
    yield from serve(Answer(body=openai_body("hi", prompt_tokens=1000,
                                             completion_tokens=500, model="gpt-4o")))


def _notices(orch: Orchestrator, type_: str) -> list[Notice]:
    return [e for e in orch.store.events() if isinstance(e, Notice) and e.type == type_]


@pytest.mark.parametrize(("url", "local"), [
    ("http://127.0.0.1:8080/v1", True), ("http://localhost:11434/v1", True),
    ("http://[::1]:8000/v1", True), ("http://192.168.1.20:8000/v1", True),
    ("http://10.0.0.5/v1", True), ("https://api.openai.com/v1", False),
    ("https://openrouter.ai/api/v1", False), ("http://8.8.8.8/v1", False), (None, False),
])
def test_is_local(url, local) -> None:
    assert is_local(url) is local


async def test_a_loopback_model_is_free_with_one_notice(server) -> None:
    # "gpt-4o" has a public price; served from this machine it costs nothing.
    orch = Orchestrator(provider="openai", model="gpt-4o", base_url=server.url + "/v1",
                        api_key="local", timeout=7, store=":memory:")
    assert orch.provider.timeout == 7
    assert orch.provider.base_url == server.url + "/v1"
    for _ in range(2):
        await orch.complete([{"role": "user", "content": "hi"}], max_tokens=50)
    assert orch.session_guard.spent == Decimal(0)
    orch.store.flush()
    [notice] = _notices(orch, "pricing.free")
    assert "'gpt-4o'" in notice.message
    assert "cost $0" in notice.message
    assert server.last.headers["authorization"] == "Bearer local"
    orch.close()


async def test_prices_still_price_a_local_model(server) -> None:
    orch = Orchestrator(provider="openai", model="gpt-4o", base_url=server.url + "/v1",
                        prices={"gpt-4o": {"input": 1, "output": 2}}, store=":memory:")
    await orch.complete([{"role": "user", "content": "hi"}], max_tokens=50)
    assert orch.session_guard.spent == Decimal("0.002")  # 1000 in at $1, 500 out at $2 /MTok
    orch.store.flush()
    assert _notices(orch, "pricing.free") == []
    orch.close()


def test_a_remote_unknown_model_still_needs_a_price() -> None:
    with pytest.raises(ConfigurationError, match="no price for model 'smollm2'"):
        Orchestrator(provider="openai", model="smollm2", base_url="https://example.com/v1",
                     api_key="k", store=":memory:")


def test_auto_picks_openai_when_openai_base_url_is_set_and_says_so(monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    orch = Orchestrator(provider="auto", model="smollm2", store=":memory:")
    assert orch.provider.name == "openai"
    assert orch.local
    orch.store.flush()
    [chosen] = _notices(orch, "provider.chosen")
    assert chosen.message == ("provider 'auto' chose 'openai' (OPENAI_BASE_URL is set "
                              "(http://127.0.0.1:9/v1))")
    assert len(_notices(orch, "pricing.free")) == 1
    orch.close()


def test_auto_without_configuration_says_it_simulates(monkeypatch) -> None:
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    orch = Orchestrator(provider="auto", store=":memory:")
    assert orch.provider.name == "simulated"
    orch.store.flush()
    [chosen] = _notices(orch, "provider.chosen")
    assert "chose 'simulated'" in chosen.message
    orch.close()


def test_http_options_for_the_simulated_provider_are_a_clear_error() -> None:
    with pytest.raises(ConfigurationError, match="simulated provider takes no base_url"):
        Orchestrator(base_url="http://127.0.0.1:9/v1", store=":memory:")
