"""Prices: overrides, the simulated table, the genai-prices snapshot, and error messages."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from genai_prices import Usage, calc_price

from taskorch_nb.core.pricing import SIMULATED_PRICES, ModelPrice, PriceTable
from taskorch_nb.errors import ConfigurationError
from taskorch_nb.testing import FakeClock

#: FakeClock's epoch; the snapshot is read "as of" this day in every test.
PRICE_DAY = datetime.fromtimestamp(FakeClock.EPOCH, tz=UTC)


@pytest.fixture
def table() -> PriceTable:
    return PriceTable(clock=FakeClock())


def reference(provider: str, model: str, inp: int, out: int, cached: int) -> Decimal:
    usage = Usage(input_tokens=inp, output_tokens=out, cache_read_tokens=cached)
    result = calc_price(usage, model, provider_id=provider, genai_request_timestamp=PRICE_DAY)
    return result.total_price


@pytest.mark.parametrize(
    ("provider", "model"),
    [
        ("openai", "gpt-4o"),
        ("openai", "gpt-4o-mini"),
        ("anthropic", "claude-3-5-sonnet"),
        ("anthropic", "claude-3-5-sonnet-20241022"),
        ("google", "gemini-2.5-pro"),
        ("perplexity", "sonar"),
    ],
)
@pytest.mark.parametrize(
    ("inp", "out", "cached"),
    [(1_000, 200, 0), (12_345, 678, 4_000), (250_000, 1_000, 100_000), (0, 0, 0)],
)
def test_cost_equals_genai_prices_calc_price(
    table: PriceTable, provider: str, model: str, inp: int, out: int, cached: int
) -> None:
    ours = table.cost(provider, model, input_tokens=inp, output_tokens=out, cached_tokens=cached)
    assert ours == reference(provider, model, inp, out, cached)
    assert isinstance(ours, Decimal)


def test_gpt_4o_prices_from_snapshot(table: PriceTable) -> None:
    price = table.resolve("openai", "gpt-4o")
    assert price.input_per_mtok == Decimal("2.5")
    assert price.output_per_mtok == Decimal("10")
    assert price.cached_input_per_mtok == Decimal("1.25")


def test_cached_tokens_billed_at_cached_price(table: PriceTable) -> None:
    # 1M input of which 400k cached, claude-3-5-sonnet: 600k*$3 + 400k*$0.30 per M
    cost = table.cost("anthropic", "claude-3-5-sonnet", input_tokens=1_000_000,
                      output_tokens=0, cached_tokens=400_000)
    assert cost == Decimal("1.8") + Decimal("0.12")


def test_cached_tokens_without_cached_price_billed_as_input() -> None:
    table = PriceTable({"mine": {"input": 2, "output": 4}})
    cost = table.cost("openai", "mine", input_tokens=1_000_000, output_tokens=0,
                      cached_tokens=500_000)
    assert cost == Decimal(2)


def test_tiered_price_applies_above_threshold(table: PriceTable) -> None:
    below = table.resolve("google", "gemini-2.5-pro").for_input(200_000)
    above = table.resolve("google", "gemini-2.5-pro").for_input(200_001)
    assert above.input_per_mtok > below.input_per_mtok
    assert table.worst_case("google", "gemini-2.5-pro", input_tokens=200_001, max_tokens=0) == (
        200_001 * above.input_per_mtok / Decimal(1_000_000)
    )


def test_simulated_prices() -> None:
    table = PriceTable()
    assert table.resolve("simulated", "sim-small") == SIMULATED_PRICES["sim-small"]
    assert table.cost("simulated", "sim-small", input_tokens=1_000, output_tokens=1_000,
                      cached_tokens=1_000) == Decimal("0.155")
    assert table.cost("simulated", "sim-large", input_tokens=1_000,
                      output_tokens=1_000) == Decimal("0.8")


def test_simulated_provider_with_a_real_model_name_uses_the_snapshot(table: PriceTable) -> None:
    assert table.resolve("simulated", "gpt-4o") == table.resolve("openai", "gpt-4o")


def test_worst_case_is_full_input_plus_max_output(table: PriceTable) -> None:
    worst = table.worst_case("simulated", "sim-small", input_tokens=2_000, max_tokens=500)
    assert worst == Decimal("0.1") + Decimal("0.075")
    actual = table.cost("simulated", "sim-small", input_tokens=2_000, output_tokens=500,
                        cached_tokens=2_000)
    assert actual < worst


def test_override_mapping_and_model_price(table: PriceTable) -> None:
    overridden = PriceTable(
        {
            "gpt-4o": {"input": 1.5, "output": "2", "cached_input": 0.1},
            "local": ModelPrice(Decimal(0), Decimal(0)),
        },
        clock=FakeClock(),
    )
    price = overridden.resolve("openai", "gpt-4o")
    assert price == ModelPrice(Decimal("1.5"), Decimal(2), Decimal("0.1"))
    assert overridden.cost("ollama", "local", input_tokens=10**6, output_tokens=10**6) == 0
    assert overridden.resolve("openai", "gpt-4o-mini") == table.resolve("openai", "gpt-4o-mini")


def test_override_beats_simulated_table() -> None:
    table = PriceTable({"sim-small": {"input": 1, "output": 1}})
    assert table.cost("simulated", "sim-small", input_tokens=10**6, output_tokens=0) == 1


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


def test_model_without_token_price_is_an_error_not_zero(table: PriceTable) -> None:
    # whisper-1 is priced per audio hour: no per-token price to budget with
    with pytest.raises(ConfigurationError, match="no per-token price for model 'whisper-1'"):
        table.resolve("openai", "whisper-1")


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ({"input": 1}, "missing ['output']"),
        ({"input": 1, "output": 2, "cache": 3}, "unknown keys ['cache']"),
        ({"input": "abc", "output": 2}, "must be a number"),
        ({"input": -1, "output": 2}, "must not be negative"),
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
        {"input_tokens": 1.5, "output_tokens": 0},
    ],
)
def test_bad_token_counts(table: PriceTable, kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="tokens"):
        table.cost("simulated", "sim-small", **kwargs)  # type: ignore[arg-type]


def test_lookups_are_cached(table: PriceTable) -> None:
    first = table.resolve("openai", "gpt-4o")
    assert table.resolve("openai", "gpt-4o") is first
