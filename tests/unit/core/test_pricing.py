"""Prices: genai-prices' own calculation (cache reads and writes, tiers, dates), overrides,
the simulated table, the worst-case reservation and the errors."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest
from genai_prices import Usage, calc_price

from taskorch_nb.core.pricing import FREE, SIMULATED_PRICES, ModelPrice, PriceTable, _State
from taskorch_nb.engine.orchestrator import Orchestrator
from taskorch_nb.errors import ConfigurationError
from taskorch_nb.llm import AnthropicProvider, OpenAIProvider
from taskorch_nb.testing import FakeClock
from tests.unit.llm_servers import anthropic_body, openai_body

#: FakeClock's epoch; the snapshot is read "as of" this day in every test.
PRICE_DAY = datetime.fromtimestamp(FakeClock.EPOCH, tz=UTC)
M = 1_000_000


@pytest.fixture
def table() -> PriceTable:
    return PriceTable(clock=FakeClock())


def reference(provider: str | None, model: str, inp: int, out: int, read: int = 0,
              write: int = 0, *, day: datetime = PRICE_DAY) -> Decimal:
    """genai-prices' own number for one call."""
    usage = Usage(input_tokens=inp, output_tokens=out, cache_read_tokens=read,
                  cache_write_tokens=write)
    return calc_price(usage, model, provider_id=provider, genai_request_timestamp=day).total_price


@pytest.mark.parametrize(
    ("provider", "model"),
    [
        ("openai", "gpt-4o"),
        ("openai", "gpt-4o-mini"),
        ("anthropic", "claude-3-5-sonnet"),
        ("anthropic", "claude-sonnet-4-5"),
        ("anthropic", "claude-3-5-sonnet-20241022"),
        ("google", "gemini-2.5-pro"),
        ("perplexity", "sonar"),
    ],
)
@pytest.mark.parametrize(
    ("inp", "out", "read", "write"),
    [
        (1_000, 200, 0, 0),
        (12_345, 678, 4_000, 0),
        (12_345, 678, 4_000, 2_000),
        (5_000, 10, 0, 5_000),
        (250_000, 1_000, 100_000, 50_000),
        (0, 0, 0, 0),
    ],
)
def test_cost_equals_genai_prices_calc_price(
    table: PriceTable, provider: str, model: str, inp: int, out: int, read: int, write: int
) -> None:
    ours = table.cost(provider, model, input_tokens=inp, output_tokens=out, cached_tokens=read,
                      cache_write_tokens=write)
    assert ours == reference(provider, model, inp, out, read, write)
    assert isinstance(ours, Decimal)
    again = table.cost(provider, model, input_tokens=inp, output_tokens=out, cached_tokens=read,
                       cache_write_tokens=write)
    assert again == ours  # the memoised answer is the calculated one


def test_anthropic_cache_writes_and_reads_at_their_own_prices(table: PriceTable) -> None:
    # claude-sonnet-4-5 up to 200k input: input $3, cache write $3.75, cache read $0.30 per M
    k100 = 100_000
    writes = table.cost("anthropic", "claude-sonnet-4-5", input_tokens=k100, output_tokens=0,
                        cache_write_tokens=k100)
    assert writes == Decimal("0.375")
    reads = table.cost("anthropic", "claude-sonnet-4-5", input_tokens=k100, output_tokens=0,
                       cached_tokens=k100)
    assert reads == Decimal("0.03")
    mixed = table.cost("anthropic", "claude-sonnet-4-5", input_tokens=k100, output_tokens=0,
                       cached_tokens=40_000, cache_write_tokens=10_000)
    assert mixed == Decimal("0.15") + Decimal("0.012") + Decimal("0.0375")
    # past 200k input the long-context tier prices every token, writes included ($7.50)
    long = table.cost("anthropic", "claude-sonnet-4-5", input_tokens=M, output_tokens=0,
                      cache_write_tokens=M)
    assert long == Decimal("7.5")


def test_openai_cached_input_at_the_cached_price(table: PriceTable) -> None:
    # gpt-4o: input $2.50, cached input $1.25 per million; OpenAI bills no cache writes
    assert table.price("openai", "gpt-4o").input_mtok == Decimal("2.5")
    cost = table.cost("openai", "gpt-4o", input_tokens=M, output_tokens=0, cached_tokens=M // 2)
    assert cost == Decimal("1.25") + Decimal("0.625")


def test_tier_applies_to_the_whole_call_above_its_threshold(table: PriceTable) -> None:
    below = table.cost("google", "gemini-2.5-pro", input_tokens=200_000, output_tokens=0)
    above = table.cost("google", "gemini-2.5-pro", input_tokens=200_001, output_tokens=0)
    assert below == 200_000 * Decimal("1.25") / M
    assert above == 200_001 * Decimal("2.5") / M


def test_prices_in_force_follow_the_clock() -> None:
    # claude-sonnet-4-6 dropped its long-context tier on 2026-03-13 (genai-prices' data).
    clock = FakeClock()
    table = PriceTable(clock=clock)
    before = table.cost("anthropic", "claude-sonnet-4-6", input_tokens=300_000, output_tokens=0)
    assert before == reference("anthropic", "claude-sonnet-4-6", 300_000, 0)
    clock.advance(90 * 86_400)
    later_day = datetime.fromtimestamp(clock.wall(), tz=UTC)
    after = table.cost("anthropic", "claude-sonnet-4-6", input_tokens=300_000, output_tokens=0)
    assert after == reference("anthropic", "claude-sonnet-4-6", 300_000, 0, day=later_day)
    assert after == Decimal("0.9") < before


def test_simulated_prices() -> None:
    table = PriceTable()
    assert table.price("simulated", "sim-small") == SIMULATED_PRICES["sim-small"].to_genai()
    assert table.cost("simulated", "sim-small", input_tokens=1_000, output_tokens=1_000,
                      cached_tokens=1_000) == Decimal("0.155")
    assert table.cost("simulated", "sim-large", input_tokens=1_000,
                      output_tokens=1_000) == Decimal("0.8")
    # no cache-write price: written tokens are billed as input
    assert table.cost("simulated", "sim-small", input_tokens=1_000, output_tokens=0,
                      cache_write_tokens=1_000) == Decimal("0.05")


def test_simulated_provider_with_a_real_model_name_uses_the_snapshot(table: PriceTable) -> None:
    assert table.price("simulated", "gpt-4o") == table.price("openai", "gpt-4o")


@pytest.mark.parametrize(
    ("provider", "model", "est", "max_tokens"),
    [
        ("openai", "gpt-4o", 2_000, 500),
        ("openai", "gpt-4o-mini", 0, 1),
        ("google", "gemini-2.5-pro", 200_000, 4_000),
        ("google", "gemini-2.5-pro", 200_001, 4_000),
        ("perplexity", "sonar", 10, 10),
        ("simulated", "sim-small", 2_000, 500),
    ],
)
def test_worst_case_is_the_estimate_plus_max_output_in_its_tier(
    table: PriceTable, provider: str, model: str, est: int, max_tokens: int
) -> None:
    # No cache-write price above the input price: the worst case is all input fresh.
    price_provider = None if provider == "simulated" else provider
    worst = table.worst_case(provider, model, input_tokens=est, max_tokens=max_tokens)
    if provider == "simulated":
        assert worst == (est * 50 + max_tokens * 150) / Decimal(M)
    else:
        assert worst == reference(price_provider, model, est, max_tokens)


@pytest.mark.parametrize("est", [1_000, 250_000])
def test_worst_case_covers_input_written_to_the_cache(table: PriceTable, est: int) -> None:
    worst = table.worst_case("anthropic", "claude-sonnet-4-5", input_tokens=est, max_tokens=300)
    assert worst == reference("anthropic", "claude-sonnet-4-5", est, 300, 0, est)
    for read, write in [(0, 0), (est // 2, 0), (0, est), (est // 3, est // 3)]:
        actual = table.cost("anthropic", "claude-sonnet-4-5", input_tokens=est, output_tokens=300,
                            cached_tokens=read, cache_write_tokens=write)
        assert actual <= worst


def test_worst_case_in_tiers_narrow_or_wide_matches_the_calculation() -> None:
    # A tier from 1 token leaves [0, 1] too narrow to measure rates in: priced directly.
    from genai_prices.types import ModelPrice as GenaiPrice
    from genai_prices.types import Tier, TieredPrices

    price = GenaiPrice(input_mtok=TieredPrices(base=Decimal(1), tiers=[Tier(1, Decimal(2))]),
                       output_mtok=Decimal(4), cache_write_mtok=Decimal(3))
    state = _State(price)
    for est in (0, 1, 2, 10, 10**6):
        expected = max(price.calc_price(Usage(input_tokens=est, output_tokens=5))["total_price"],
                       price.calc_price(Usage(input_tokens=est, output_tokens=5,
                                              cache_write_tokens=est))["total_price"])
        assert state.worst(est, 5) == expected, est
    assert state.rates == {0: None, 1: state.rates[1]}
    assert state.rates[1] is not None


def test_override_mapping_and_model_price(table: PriceTable) -> None:
    overridden = PriceTable(
        {
            "gpt-4o": {"input": 1.5, "output": "2", "cache_read": 0.1, "cache_write": 3},
            "local": ModelPrice(Decimal(0), Decimal(0)),
            "search-model": {"input": 1, "output": 1, "per_request": "0.005"},
        },
        clock=FakeClock(),
    )
    cost = overridden.cost("openai", "gpt-4o", input_tokens=4 * M, output_tokens=M,
                           cached_tokens=M, cache_write_tokens=M)
    assert cost == Decimal("1.5") * 2 + Decimal("0.1") + 3 + 2
    assert cost != table.cost("openai", "gpt-4o", input_tokens=4 * M, output_tokens=M,
                              cached_tokens=M, cache_write_tokens=M)
    assert overridden.cost("ollama", "local", input_tokens=M, output_tokens=M) == 0
    assert overridden.cost("x", "search-model", input_tokens=0, output_tokens=0) == Decimal(
        "0.005")
    assert overridden.price("openai", "gpt-4o-mini") == table.price("openai", "gpt-4o-mini")


def test_override_beats_simulated_table() -> None:
    table = PriceTable({"sim-small": {"input": 1, "output": 1}})
    assert table.cost("simulated", "sim-small", input_tokens=M, output_tokens=0) == 1


def test_unknown_model_error_names_the_fix(table: PriceTable) -> None:
    with pytest.raises(ConfigurationError) as info:
        table.resolve("openai", "no-such-model-xyz")
    assert str(info.value) == (
        "no price for model 'no-such-model-xyz' (provider 'openai'): pass "
        "prices={'no-such-model-xyz': {'input': ..., 'output': ...}} (USD per million tokens)"
    )


def test_unknown_provider_and_model(table: PriceTable) -> None:
    expected = r"no price for model 'llama3' \(provider 'ollama'"
    with pytest.raises(ConfigurationError, match=expected):
        table.cost("ollama", "llama3", input_tokens=1, output_tokens=1)


def test_unknown_simulated_model(table: PriceTable) -> None:
    with pytest.raises(ConfigurationError, match="sim-huge"):
        table.resolve("simulated", "sim-huge")


def test_default_prices_an_unknown_model_and_sticks(table: PriceTable) -> None:
    # The hook for a model served from a private address: free, by the caller's decision.
    table.resolve("http", "llama3", default=FREE)
    assert table.cost("http", "llama3", input_tokens=M, output_tokens=M) == 0
    assert table.worst_case("http", "llama3", input_tokens=M, max_tokens=M) == 0
    # a default never hides a price genai-prices has
    table.resolve("openai", "gpt-4o", default=FREE)
    assert table.cost("openai", "gpt-4o", input_tokens=M, output_tokens=0) == Decimal("2.5")
    with pytest.raises(ConfigurationError, match="llama4"):
        table.resolve("http", "llama4")


def test_unknown_model_is_refused_when_the_orchestrator_is_made() -> None:
    # A remote server (a local one's models are free: tests/unit/engine/test_local_models.py)
    provider = OpenAIProvider(api_key="k", base_url="https://models.example.com/v1",
                              clock=FakeClock(),
                              transport=httpx.MockTransport(lambda r: httpx.Response(500)))
    with pytest.raises(ConfigurationError, match="no price for model 'my-finetune'"):
        Orchestrator(provider, model="my-finetune", store=":memory:", clock=FakeClock())


def test_model_without_token_price_is_an_error_not_zero(table: PriceTable) -> None:
    # whisper-1 is priced per audio hour: no per-token price to budget with
    with pytest.raises(ConfigurationError, match="no per-token price for model 'whisper-1'"):
        table.resolve("openai", "whisper-1")


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ({"input": 1}, "missing ['output']"),
        ({"input": 1, "output": 2, "cached_input": 3}, "unknown keys ['cached_input']"),
        ({"input": "abc", "output": 2}, "must be a number"),
        ({"input": -1, "output": 2}, "must not be negative"),
        ({"input": 1, "output": 2, "cache_write": -1}, "must not be negative"),
        ({"input": float("nan"), "output": 2}, "must be finite"),
        ({"input": True, "output": 2}, "must be a number"),
        (3.0, "must be a ModelPrice or a mapping"),
    ],
)
def test_bad_override_is_configuration_error(override: object, fragment: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        PriceTable({"my-model": override})  # type: ignore[dict-item]
    message = str(info.value)
    assert "'my-model'" in message
    assert fragment in message
    assert "prices={'my-model': {'input': ..., 'output': ...}}" in message


@pytest.mark.parametrize(
    "kwargs",
    [
        {"input_tokens": -1, "output_tokens": 0},
        {"input_tokens": 1, "output_tokens": 0, "cached_tokens": 2},
        {"input_tokens": 2, "output_tokens": 0, "cached_tokens": 1, "cache_write_tokens": 2},
        {"input_tokens": 1, "output_tokens": 0, "cache_write_tokens": -1},
        {"input_tokens": 1.5, "output_tokens": 0},
    ],
)
def test_bad_token_counts(table: PriceTable, kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="tokens"):
        table.cost("simulated", "sim-small", **kwargs)  # type: ignore[arg-type]


def test_lookups_are_cached(table: PriceTable) -> None:
    first = table.price("openai", "gpt-4o")
    assert table.price("openai", "gpt-4o") is first


def test_a_new_table_starts_warm(table: PriceTable) -> None:
    # What is cached about a price (costs, tier rates) is shared by every table.
    table.cost("openai", "gpt-4o", input_tokens=1234, output_tokens=5)
    fresh = PriceTable({"mine": {"input": 1, "output": 2}}, clock=FakeClock())
    state = fresh._priced("openai", "gpt-4o").state(fresh._now)
    assert state is table._priced("openai", "gpt-4o").state(table._now)
    assert (1234, 5, 0, 0) in state.memo


@pytest.mark.parametrize(
    ("provider", "model", "body", "usage"),
    [
        (AnthropicProvider, "claude-sonnet-4-5",
         anthropic_body(input_tokens=1_000, output_tokens=200, cache_read=3_000,
                        cache_write=6_000),
         (10_000, 200, 3_000, 6_000)),
        (OpenAIProvider, "gpt-4o",
         openai_body(prompt_tokens=10_000, completion_tokens=200, cached_tokens=3_000),
         (10_000, 200, 3_000, 0)),
    ],
)
async def test_a_guarded_call_settles_genai_prices_cost(
    provider: type, model: str, body: dict, usage: tuple[int, int, int, int]
) -> None:
    """Provider usage -> cost, end to end: the settled cost is genai-prices' number."""
    clock = FakeClock()
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=body))
    # A remote address: a model served from this machine would be free.
    orch = Orchestrator(provider(api_key="k", base_url="https://api.example.com", clock=clock,
                                 transport=transport),
                        model=model, budget=10, store=":memory:", clock=clock)
    events: list = []
    orch.subscribe(events.append)
    try:
        completion = await orch.complete([{"role": "user", "content": "hi"}], max_tokens=300,
                                         guard=orch.session_guard)
    finally:
        orch.close()
    inp, out, read, write = usage
    assert (completion.usage.input_tokens, completion.usage.cached_tokens,
            completion.usage.cache_write_tokens) == (inp, read, write)
    expected = reference(provider.price_provider, model, inp, out, read, write)
    assert orch.session_guard.spent == expected
    assert orch.session_guard.report().by_model == {model: expected}
    assert [e.cost for e in events if e.type == "llm.completed"] == [expected]
