from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskorch_nb import CircuitBreaker, CircuitOpenError, CircuitState, FakeClock
from taskorch_nb.core.events import EventBus


def make(clock: FakeClock, **kw) -> tuple[CircuitBreaker, list]:
    bus = EventBus(clock)
    seen: list = []
    bus.subscribe(seen.append)
    return CircuitBreaker("svc", clock=clock, on_event=bus.emit, **kw), seen


def fail(b: CircuitBreaker) -> None:
    b.record_failure(b.acquire())


def test_defaults_follow_the_seed() -> None:
    b = CircuitBreaker()
    assert (b.failure_threshold, b.reset_timeout, b.half_open_max_calls, b.success_threshold) == (
        3, 30.0, 1, 1
    )


def test_opens_after_threshold_consecutive_failures_and_success_resets_count() -> None:
    clock = FakeClock()
    b, seen = make(clock)
    fail(b)
    fail(b)
    b.record_success(b.acquire())
    assert b.failures == 0
    fail(b)
    fail(b)
    assert b.state is CircuitState.CLOSED
    fail(b)
    assert b.state is CircuitState.OPEN
    assert [e.type for e in seen] == ["circuit.opened"]
    assert seen[0].reset_at == 30.0
    with pytest.raises(CircuitOpenError) as info:
        b.acquire()
    assert info.value.retry_in == pytest.approx(30.0)


def test_half_open_admits_one_probe_and_closes_on_success() -> None:
    clock = FakeClock()
    b, seen = make(clock)
    for _ in range(3):
        fail(b)
    clock.advance(29.9)
    with pytest.raises(CircuitOpenError):
        b.acquire()
    clock.advance(0.1)
    probe = b.acquire()
    assert b.state is CircuitState.HALF_OPEN
    with pytest.raises(CircuitOpenError):
        b.acquire()  # the only probe slot is taken
    b.record_success(probe)
    assert b.state is CircuitState.CLOSED
    assert [e.type for e in seen] == ["circuit.opened", "circuit.half_opened", "circuit.closed"]


def test_probe_failure_reopens_for_a_full_timeout() -> None:
    clock = FakeClock()
    b, _ = make(clock)
    for _ in range(3):
        fail(b)
    clock.advance(30)
    b.record_failure(b.acquire())
    assert b.state is CircuitState.OPEN
    assert b.reset_at == 60.0


def test_caller_error_in_probe_frees_the_slot_without_a_verdict() -> None:
    clock = FakeClock()
    b, _ = make(clock)
    for _ in range(3):
        fail(b)
    clock.advance(30)
    b.release(b.acquire())
    assert b.state is CircuitState.HALF_OPEN
    b.record_success(b.acquire())
    assert b.state is CircuitState.CLOSED


def test_hanging_probe_cannot_wedge_the_breaker() -> None:
    clock = FakeClock()
    b, _ = make(clock, probe_timeout=5.0)
    for _ in range(3):
        fail(b)
    clock.advance(30)
    hung = b.acquire()  # never reports back
    with pytest.raises(CircuitOpenError):
        b.acquire()
    clock.advance(5.0)
    fresh = b.acquire()
    b.record_success(fresh)
    assert b.state is CircuitState.CLOSED
    b.record_failure(hung)  # a late report from the stale probe changes nothing
    assert b.state is CircuitState.CLOSED
    assert b.failures == 0


def test_success_threshold_and_several_probes() -> None:
    clock = FakeClock()
    b, _ = make(clock, half_open_max_calls=2, success_threshold=2)
    for _ in range(3):
        fail(b)
    clock.advance(30)
    p1, p2 = b.acquire(), b.acquire()
    with pytest.raises(CircuitOpenError):
        b.acquire()
    b.record_success(p1)
    assert b.state is CircuitState.HALF_OPEN
    b.record_success(p2)
    assert b.state is CircuitState.CLOSED


def test_failure_rate_window_opens_on_intermittent_failures() -> None:
    clock = FakeClock()
    b, _ = make(clock, failure_threshold=100, failure_rate=0.5, window=10)
    for i in range(10):
        permit = b.acquire()
        if i % 2:
            b.record_failure(permit)
        else:
            b.record_success(permit)
    assert b.state is CircuitState.OPEN


def test_reset_by_hand_and_bad_settings() -> None:
    clock = FakeClock()
    b, seen = make(clock)
    for _ in range(3):
        fail(b)
    b.reset()
    assert b.state is CircuitState.CLOSED
    assert (seen[-1].type, seen[-1].state, seen[-1].previous) == ("circuit.reset", "CLOSED", "OPEN")
    b.reset()  # a person acted even on a closed breaker: the post-mortem shows it
    assert (seen[-1].type, seen[-1].previous) == ("circuit.reset", "CLOSED")
    with pytest.raises(ValueError, match="failure_threshold"):
        CircuitBreaker(failure_threshold=0)
    with pytest.raises(ValueError, match="failure_rate"):
        CircuitBreaker(failure_rate=1.5)


def test_open_by_hand_quarantines_until_reset() -> None:
    clock = FakeClock()
    b, seen = make(clock)
    b.trip()
    assert (seen[-1].type, seen[-1].state, seen[-1].reset_at) == ("circuit.opened", "OPEN", None)
    assert b.held
    assert b.snapshot()["held"] is True
    clock.advance(3600)  # no half-open probe while quarantined by hand
    assert b.state is CircuitState.OPEN
    assert b.reset_at is None
    with pytest.raises(CircuitOpenError) as caught:
        b.acquire()
    assert caught.value.retry_in is None
    b.trip()  # already open by hand: nothing new to say
    assert [e.type for e in seen].count("circuit.opened") == 1
    b.reset()
    assert (b.state, b.held) == (CircuitState.CLOSED, False)
    b.record_success(b.acquire())


def test_open_by_hand_holds_a_breaker_that_was_already_open() -> None:
    clock = FakeClock()
    b, seen = make(clock)
    for _ in range(3):
        fail(b)
    b.trip()
    assert (seen[-1].type, seen[-1].previous) == ("circuit.opened", "OPEN")
    clock.advance(60)
    assert b.state is CircuitState.OPEN


ops = st.lists(
    st.one_of(
        st.tuples(st.just("call"), st.booleans()),
        st.tuples(st.just("advance"), st.floats(0, 40)),
        st.tuples(st.just("start"), st.just(True)),   # a call that stays in flight
        st.tuples(st.just("finish"), st.booleans()),  # the oldest in-flight call reports
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(ops, st.integers(1, 3))
def test_breaker_invariants_under_random_sequences(sequence, max_probes) -> None:
    """An open breaker lets nothing through before its timeout; half-open never admits
    more than its limit at once."""
    clock = FakeClock()
    b = CircuitBreaker("p", clock=clock, half_open_max_calls=max_probes, probe_timeout=1000)
    in_flight: list = []
    for op, arg in sequence:
        if op == "advance":
            clock.advance(arg)
            continue
        if op == "finish":
            if in_flight:
                oldest = in_flight.pop(0)
                (b.record_success if arg else b.record_failure)(oldest)
            continue
        before = b.state
        reset_at = b.reset_at
        try:
            permit = b.acquire()
        except CircuitOpenError:
            if before is CircuitState.CLOSED:
                raise AssertionError("a closed breaker refused a call") from None
            continue
        if before is CircuitState.OPEN:
            assert reset_at is not None
            assert clock.now() >= reset_at, "an open breaker let a call through early"
        if permit.probe:
            probes = sum(1 for p in in_flight if p.probe and p.generation == permit.generation)
            assert probes + 1 <= max_probes, "half-open admitted more probes than its limit"
        if op == "call":
            (b.record_success if arg else b.record_failure)(permit)
        else:
            in_flight.append(permit)


def test_a_restored_hold_stays_open_until_reset() -> None:
    clock = FakeClock()
    b, seen = make(clock, reset_timeout=5)
    assert b.restore("OPEN", 0, clock.now(), held=True) is CircuitState.CLOSED
    assert b.held
    clock.advance(3600)  # another process quarantined it: no probe here either
    assert b.state is CircuitState.OPEN
    with pytest.raises(CircuitOpenError):
        b.acquire()
    b.restore("CLOSED", 0, None)  # another process's reset: the hold goes with it
    assert (b.state, b.held) == (CircuitState.CLOSED, False)
    assert seen == []  # restoring says nothing: the adopter does
