"""The throttle: many requests, few runs, and the last request is never dropped."""

from __future__ import annotations

import itertools
import threading

import pytest

from taskorch_nb.notebook.throttle import ManualScheduler, Throttle
from taskorch_nb.testing import FakeClock


def make(max_rate: float = 10.0) -> tuple[Throttle, ManualScheduler, FakeClock, list[float]]:
    clock = FakeClock()
    scheduler = ManualScheduler(clock)
    ran: list[float] = []
    throttle = Throttle(
        lambda: ran.append(clock.now()), max_rate=max_rate, clock=clock, scheduler=scheduler
    )
    return throttle, scheduler, clock, ran


def test_first_request_runs_at_once_then_at_most_max_rate() -> None:
    throttle, scheduler, _, ran = make(max_rate=10.0)
    for _ in range(1000):  # a request every millisecond for one second
        throttle.request()
        scheduler.advance(0.001)
    scheduler.advance(1.0)  # let the trailing run happen
    assert ran[0] == pytest.approx(0.001)  # the first request is not delayed
    assert 2 <= len(ran) <= 11
    gaps = [b - a for a, b in itertools.pairwise(ran)]
    assert min(gaps) >= 0.1 - 1e-9


def test_requests_while_armed_arm_only_one_run() -> None:
    throttle, scheduler, _, ran = make()
    for _ in range(10_000):
        throttle.request()
    assert scheduler.pending == 1
    scheduler.run_due()
    assert ran == [0.0]
    assert not throttle.pending


def test_a_request_after_a_run_waits_for_the_interval() -> None:
    throttle, scheduler, _, ran = make(max_rate=4.0)  # 0.25 s apart
    throttle.request()
    scheduler.run_due()
    throttle.request()
    assert scheduler.advance(0.2) == 0
    assert scheduler.advance(0.05) == 1
    assert ran == pytest.approx([0.0, 0.25])


def test_not_before_delays_a_run() -> None:
    throttle, scheduler, _, ran = make()
    throttle.request(not_before=1.0)
    scheduler.advance(0.5)
    assert ran == []
    scheduler.advance(0.5)
    assert ran == [1.0]


def test_a_deferred_request_does_not_hold_back_ordinary_ones() -> None:
    throttle, scheduler, _, ran = make()
    throttle.request(not_before=1.0)
    throttle.request()
    scheduler.run_due()
    assert ran == [0.0]  # at once, not after the deferred second
    scheduler.advance(1.0)
    assert ran == [0.0, 1.0]
    throttle.request(not_before=1.0)
    throttle.close()  # a deferred request dies with the throttle
    scheduler.advance(2.0)
    assert ran == [0.0, 1.0]


def test_flush_runs_now_and_disarms_the_timer() -> None:
    throttle, scheduler, _, ran = make()
    throttle.request()
    throttle.flush()
    assert ran == [0.0]
    assert scheduler.advance(1.0) == 0  # the armed timer was cancelled
    assert throttle.runs == 1


def test_close_runs_a_pending_request_and_ignores_later_ones() -> None:
    throttle, scheduler, _, ran = make()
    throttle.request()
    throttle.close()
    assert ran == [0.0]
    throttle.request()
    scheduler.advance(5.0)
    assert ran == [0.0]
    assert throttle.closed


def test_close_without_pending_request_does_not_run() -> None:
    throttle, _, _, ran = make()
    throttle.close()
    assert ran == []


def test_a_stale_timer_does_not_run_twice() -> None:
    """A timer that fires after a flush re-armed the throttle must not steal the new run."""
    clock = FakeClock()
    callbacks = []
    ran: list[float] = []

    class Handle:
        def cancel(self) -> None:  # too late: the timer is already firing
            pass

    def scheduler(delay, callback):
        callbacks.append(callback)
        return Handle()

    throttle = Throttle(lambda: ran.append(clock.now()), clock=clock, scheduler=scheduler)
    throttle.request()
    throttle.flush()
    throttle.request()
    callbacks[0]()  # the stale one
    assert ran == [0.0]
    callbacks[1]()
    assert ran == [0.0, 0.0]


def test_real_timer_thread_delivers_the_last_request() -> None:
    done = threading.Event()
    throttle = Throttle(done.set, max_rate=50.0)
    throttle.request()
    assert done.wait(5.0)
    assert throttle.runs == 1


def test_max_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_rate"):
        Throttle(lambda: None, max_rate=0)
