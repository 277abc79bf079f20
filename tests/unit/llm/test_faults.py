"""Fault injection: every kind raises what a real provider raises; plans build and parse."""

from __future__ import annotations

import random

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskorch_nb.errors import (
    ConfigurationError,
    ProviderError,
    ProviderResponseError,
    ProviderTimeoutError,
    RateLimitError,
)
from taskorch_nb.llm import Fault, FaultPlan, FaultSpecError, SimulatedProvider
from taskorch_nb.testing import FakeClock

ASK = [{"role": "user", "content": "hi"}]


async def outcomes(provider: SimulatedProvider, calls: int) -> list[str]:
    """'ok' or the error's class and status, call by call."""
    seen = []
    for _ in range(calls):
        try:
            await provider.complete(ASK, model="sim-small", max_tokens=20)
            seen.append("ok")
        except ProviderError as exc:
            seen.append(f"{type(exc).__name__}:{exc.status}")
    return seen


async def test_timeout_waits_the_provider_timeout_on_the_clock() -> None:
    clock = FakeClock()
    provider = SimulatedProvider(clock=clock, latency=0.5, timeout=30.0,
                                 faults=FaultPlan().timeout(at=2))
    await provider.complete(ASK, model="sim-small", max_tokens=5)
    with pytest.raises(ProviderTimeoutError) as info:
        await provider.complete(ASK, model="sim-small", max_tokens=5)
    assert isinstance(info.value, TimeoutError)
    assert (info.value.provider, info.value.model, info.value.status) == ("simulated",
                                                                          "sim-small", None)
    assert clock.slept == [0.5, 30.0]


async def test_timeout_after_overrides_the_wait() -> None:
    clock = FakeClock()
    provider = SimulatedProvider(clock=clock, faults="timeout:after=4")
    with pytest.raises(ProviderTimeoutError):
        await provider.complete(ASK, model="sim-small", max_tokens=5)
    assert clock.slept == [4.0]


async def test_rate_limit_carries_retry_after() -> None:
    provider = SimulatedProvider(clock=FakeClock(), faults=FaultPlan().rate_limit(retry_after=3))
    with pytest.raises(RateLimitError) as info:
        await provider.complete(ASK, model="sim-small", max_tokens=5)
    assert (info.value.status, info.value.retry_after) == (429, 3.0)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_server_errors(status: int) -> None:
    provider = SimulatedProvider(clock=FakeClock(), faults=FaultPlan().server_error(status))
    with pytest.raises(ProviderError) as info:
        await provider.complete(ASK, model="sim-small", max_tokens=5)
    assert type(info.value) is ProviderError
    assert info.value.status == status


async def test_caller_errors_and_malformed_answers_and_refused_connections() -> None:
    provider = SimulatedProvider(
        clock=FakeClock(),
        faults=FaultPlan().http_error(401).malformed().connection_error(),
    )
    with pytest.raises(ProviderError) as info:
        await provider.complete(ASK, model="sim-small", max_tokens=5)
    assert info.value.status == 401
    with pytest.raises(ProviderResponseError) as bad:
        await provider.complete(ASK, model="sim-small", max_tokens=5)
    assert bad.value.body
    with pytest.raises(ProviderError) as conn:
        await provider.complete(ASK, model="sim-small", max_tokens=5)
    assert conn.value.status is None
    assert isinstance(conn.value.__cause__, httpx.ConnectError)


async def test_faults_without_at_follow_each_other() -> None:
    plan = FaultPlan().timeout(at=1).rate_limit(at=2, retry_after=3).server_error(504, times=3)
    provider = SimulatedProvider(clock=FakeClock(), faults=plan.malformed(at=7))
    assert await outcomes(provider, 8) == [
        "ProviderTimeoutError:None", "RateLimitError:429",
        "ProviderError:504", "ProviderError:504", "ProviderError:504",
        "ok", "ProviderResponseError:200", "ok",
    ]


async def test_a_new_plan_counts_from_the_next_call() -> None:
    provider = SimulatedProvider(clock=FakeClock())
    assert await outcomes(provider, 2) == ["ok", "ok"]
    provider.faults = "504@2"
    assert await outcomes(provider, 3) == ["ok", "ProviderError:504", "ok"]
    provider.faults = None
    assert await outcomes(provider, 1) == ["ok"]


async def test_random_faults_follow_p() -> None:
    always = SimulatedProvider(clock=FakeClock(), faults=FaultPlan().random(1.0, "conn"))
    assert await outcomes(always, 3) == ["ProviderError:None"] * 3
    never = SimulatedProvider(clock=FakeClock(), faults=FaultPlan().random(0.0, "500"))
    assert await outcomes(never, 3) == ["ok"] * 3


def test_scheduled_faults_win_over_random_ones_without_shifting_the_stream() -> None:
    plan = FaultPlan().server_error(504, at=2).random(0.5, "503")
    bare = FaultPlan().random(0.5, "503")
    rng_a, rng_b = random.Random(1), random.Random(1)
    with_schedule = [plan.fault_for(i, rng_a) for i in range(1, 30)]
    without = [bare.fault_for(i, rng_b) for i in range(1, 30)]
    assert with_schedule[1] == Fault("http", status=504)
    assert with_schedule[:1] + with_schedule[2:] == without[:1] + without[2:]


def test_spec_parses_to_the_same_plan_as_the_python_api() -> None:
    parsed = FaultPlan.parse("504x3, timeout@5,429@7:retry_after=2,malformed@9,p0.1:503")
    built = (
        FaultPlan().server_error(504, times=3).timeout(at=5).rate_limit(at=7, retry_after=2)
        .malformed(at=9).random(0.1, "503")
    )
    assert parsed == built
    assert parsed.faults[0] == (1, 3, Fault("http", status=504))
    assert FaultPlan.parse(parsed.to_spec()) == parsed
    assert SimulatedProvider(faults="504x3").faults == FaultPlan().server_error(504, times=3)
    assert not FaultPlan.parse("  ")


def test_spec_accepts_count_and_position_in_either_order() -> None:
    assert FaultPlan.parse("503@4x2") == FaultPlan.parse("503x2@4") == \
        FaultPlan().server_error(503, at=4, times=2)
    assert FaultPlan.parse("conn,timeout:after=1.5") == \
        FaultPlan().connection_error().timeout(after=1.5)


@pytest.mark.parametrize(
    ("spec", "position", "reason"),
    [
        ("504x3,timout@5", 6, "fault kind"),
        ("504x", 4, "number after 'x'"),
        ("504@0", 4, "from 1"),
        ("504;503", 3, "separated by ','"),
        ("200", 0, "not an HTTP error"),
        ("p2:503", 1, "at most 1"),
        ("p0.1503", 7, "':'"),
        ("p0.1:503@4", 8, "random fault takes no '@'"),
        ("504:retry_after=2", 4, "does not apply"),
        ("429:retry_after=soon", 16, "seconds"),
        ("504x2x3", 5, "given twice"),
        ("504x2@2,503@3", 8, "overlap"),
        ("504,", 4, "fault kind"),
    ],
)
def test_bad_specs_name_the_position(spec: str, position: int, reason: str) -> None:
    with pytest.raises(FaultSpecError, match=reason) as info:
        FaultPlan.parse(spec)
    assert info.value.position == position
    assert isinstance(info.value, ConfigurationError)
    assert f"position {position}" in str(info.value)


@pytest.mark.parametrize(
    "build",
    [
        lambda: FaultPlan().server_error(404),
        lambda: FaultPlan().http_error(302),
        lambda: FaultPlan().timeout(times=0),
        lambda: FaultPlan().malformed(at=0),
        lambda: FaultPlan().random(1.5),
        lambda: FaultPlan().random(0.1, kind="explode"),
        lambda: FaultPlan.coerce(42),
    ],
)
def test_bad_python_plans_are_configuration_errors(build) -> None:
    with pytest.raises(ConfigurationError):
        build()


entries = st.tuples(
    st.sampled_from(["timeout", "malformed", "conn", "429", "500", "503", "504", "401"]),
    st.integers(1, 4),
)


@settings(max_examples=50, deadline=None)
@given(steps=st.lists(entries, max_size=6), p=st.none() | st.floats(0, 1))
def test_to_spec_round_trips(steps: list[tuple[str, int]], p: float | None) -> None:
    plan = FaultPlan()
    for kind, times in steps:
        plan._schedule(Fault("http", status=int(kind)) if kind.isdigit() and kind != "429"
                       else FaultPlan.parse(kind).faults[0][2], None, times)
    if p is not None:
        plan.random(p, "503")
    assert FaultPlan.parse(plan.to_spec()) == plan
