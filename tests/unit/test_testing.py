"""The test kit: FakeClock jumps like trio's MockClock(autojump_threshold=0) and holds still
while real work it started runs in a thread; http_error, FlakyTool and the naive agent script
the failures and the agent without taskorch_nb."""

from __future__ import annotations

import asyncio
import math
import threading
from decimal import Decimal

import pytest

from taskorch_nb import FakeClock as FacadeFakeClock
from taskorch_nb.testing import (
    FakeClock,
    FlakyTool,
    NaiveOutcome,
    SimulatedProvider,
    http_error,
    naive_retry_agent,
)


async def idle_loop() -> None:
    """Let the event loop block in its selector once (a real thread round trip)."""
    await asyncio.to_thread(lambda: None)


def test_one_home_for_the_fake_clock() -> None:
    assert FacadeFakeClock is FakeClock
    assert FakeClock.__module__ == "taskorch_nb.testing"
    assert FakeClock().now() == 0.0


# -- autojump ----------------------------------------------------------------------------


async def test_concurrent_sleepers_end_at_the_latest_deadline_not_the_sum() -> None:
    clock = FakeClock()
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.now()))

    async with asyncio.TaskGroup() as tg:
        tg.create_task(sleeper("four", 4.0))
        tg.create_task(sleeper("two", 2.0))
    assert woke == [("two", 2.0), ("four", 4.0)]
    assert clock.now() == 4.0
    assert sorted(clock.slept) == [2.0, 4.0]


async def test_a_lone_sleep_returns_at_once_after_advancing_by_its_length() -> None:
    clock = FakeClock(start=10.0)
    await clock.sleep(2.0)
    await clock.sleep(4.0)
    await clock.sleep(0)
    await clock.sleep(-1)  # a negative wait is no wait
    assert clock.now() == 16.0
    assert clock.slept == [2.0, 4.0, 0.0, 0.0]
    assert clock.wall() == FakeClock.EPOCH + 16.0


async def test_advance_wakes_what_falls_due_and_never_goes_back() -> None:
    clock = FakeClock()
    sleeper = asyncio.create_task(clock.sleep(30.0))
    await asyncio.sleep(0)  # the sleeper is waiting; nothing idles the loop yet
    clock.advance(30.0)
    await sleeper
    assert clock.now() == 30.0
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)


async def test_a_cancelled_sleep_leaves_no_deadline_behind() -> None:
    clock = FakeClock()
    task = asyncio.create_task(clock.sleep(100.0))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await clock.sleep(1.0)
    assert clock.now() == 1.0  # the jump went to 1 s, not to the abandoned 100 s


# -- timeouts ----------------------------------------------------------------------------


async def test_a_stuck_block_times_out_at_its_deadline_in_fake_time() -> None:
    clock = FakeClock()
    with pytest.raises(TimeoutError):
        async with clock.timeout(5.0) as scope:
            await asyncio.Event().wait()
    assert scope.expired()
    assert clock.now() == 5.0


async def test_a_block_that_ends_in_time_is_left_alone() -> None:
    clock = FakeClock()
    async with clock.timeout(5.0) as scope:
        await clock.sleep(1.0)
    assert not scope.expired()
    await clock.sleep(10.0)  # the spent deadline neither fires nor stops the jump at 5 s
    assert clock.now() == 11.0


async def test_a_timeout_cuts_a_longer_sleep_short() -> None:
    clock = FakeClock()
    with pytest.raises(TimeoutError):
        async with clock.timeout(3.0):
            await clock.sleep(10.0)
    assert clock.now() == 3.0
    with pytest.raises(TimeoutError):
        async with clock.timeout(2.0):
            await clock.sleep(math.inf)  # an endless wait never makes the clock jump to it
    assert clock.now() == 5.0


async def test_nested_timeouts_belong_to_their_own_block() -> None:
    clock = FakeClock()
    async with clock.timeout(10.0) as outer:
        with pytest.raises(TimeoutError):
            async with clock.timeout(1.0):
                await clock.sleep(5.0)
        await clock.sleep(2.0)
    assert not outer.expired()
    assert clock.now() == 3.0


async def test_no_timeout_and_a_spent_timeout() -> None:
    clock = FakeClock()
    async with clock.timeout(None):
        await clock.sleep(100.0)
    with pytest.raises(TimeoutError):
        async with clock.timeout(0):
            await asyncio.Event().wait()
    assert clock.now() == 100.0  # spent before it began: no time passes


# -- real work in a thread ---------------------------------------------------------------


async def test_the_clock_holds_still_while_its_thread_works() -> None:
    """The hazard: the loop looks idle while a sync tool works; a naive jump would fire the
    5 s timeout at once. Work started through `clock.to_thread` holds the clock."""
    clock = FakeClock()
    started, release = threading.Event(), threading.Event()

    def blocking() -> str:
        started.set()
        release.wait()
        return "done"

    async def guarded() -> str:
        async with clock.timeout(5.0):
            return await clock.to_thread(blocking)

    call = asyncio.create_task(guarded())
    await asyncio.to_thread(started.wait)
    for _ in range(3):
        await idle_loop()
    assert not call.done()
    assert clock.now() == 0.0
    release.set()
    assert await call == "done"
    assert clock.now() == 0.0


async def test_a_thread_the_clock_did_not_start_does_not_hold_it() -> None:
    """The documented other side of the rule: real waits the clock cannot see count as idle."""
    clock = FakeClock()
    release = threading.Event()
    with pytest.raises(TimeoutError):
        async with clock.timeout(5.0):
            await asyncio.to_thread(release.wait)
    assert clock.now() == 5.0
    release.set()


async def test_advance_still_expires_a_timeout_around_thread_work() -> None:
    clock = FakeClock()
    release = threading.Event()

    def blocking() -> None:
        clock.advance(5.0)  # from the worker thread: the loop is told thread-safely
        release.wait()

    try:
        with pytest.raises(TimeoutError):
            async with clock.timeout(5.0):
                await clock.to_thread(blocking)
    finally:
        release.set()
    assert clock.now() == 5.0


async def test_to_thread_passes_arguments_context_and_errors() -> None:
    clock = FakeClock()

    def divide(a: int, *, by: int) -> float:
        assert threading.current_thread() is not threading.main_thread()
        return a / by

    assert await clock.to_thread(divide, 6, by=3) == 2.0
    with pytest.raises(ZeroDivisionError):
        await clock.to_thread(divide, 1, by=0)
    await clock.sleep(1.0)  # the finished threads released the clock
    assert clock.now() == 1.0


# -- timers --------------------------------------------------------------------------------


def test_timers_fire_when_time_passes_them_in_the_advancing_thread() -> None:
    clock = FakeClock()
    fired: list[tuple[str, float, str]] = []

    def note(name: str) -> None:
        fired.append((name, clock.now(), threading.current_thread().name))

    clock.call_later(0.5, lambda: note("flush"))
    clock.call_later(0.75, lambda: note("second"))
    cancelled = clock.call_later(0.25, lambda: note("never"))
    cancelled.cancel()
    clock.advance(0.25)
    assert fired == []
    clock.advance(1.0)
    here = threading.current_thread().name
    assert fired == [("flush", 0.5, here), ("second", 0.75, here)]  # each at its own time
    assert clock.now() == 1.25


def test_every_due_timer_fires_and_every_error_is_raised() -> None:
    clock = FakeClock()
    fired: list[int] = []

    def boom() -> None:
        raise RuntimeError("timer failed")

    clock.call_later(1, boom)
    clock.call_later(2, lambda: fired.append(2))
    with pytest.raises(RuntimeError, match="timer failed"):
        clock.advance(5)
    assert fired == [2]
    clock.call_later(1, boom)
    clock.call_later(1, boom)
    with pytest.raises(ExceptionGroup) as group:
        clock.advance(1)
    assert len(group.value.exceptions) == 2


async def test_timers_never_make_the_clock_jump_but_ride_along() -> None:
    clock = FakeClock()
    fired: list[float] = []
    clock.call_later(0.5, lambda: fired.append(clock.now()))
    clock.call_later(60.0, lambda: fired.append(clock.now()))
    await idle_loop()
    assert (clock.now(), fired) == (0.0, [])  # nothing but timers: no jump
    await clock.sleep(1.0)
    assert (clock.now(), fired) == (1.0, [0.5])


def test_many_cancelled_timers_do_not_pile_up() -> None:
    clock = FakeClock()
    for _ in range(10_000):
        clock.call_later(1.0, lambda: None).cancel()
    assert len(clock._heap) <= 128


# -- http_error, FlakyTool, the naive agent ------------------------------------------------


def test_http_error_is_what_raise_for_status_raises() -> None:
    import httpx

    error = http_error(429, retry_after=2.5, text="slow down")
    assert isinstance(error, httpx.HTTPStatusError)
    assert str(error) == "429 Too Many Requests"
    assert error.response.status_code == 429
    assert error.response.headers["retry-after"] == "2.5"
    assert error.response.text == "slow down"
    assert str(error.request.url) == "https://api.example/search"
    assert "retry-after" not in http_error(500).response.headers


async def test_flaky_tool_fails_as_scripted_then_answers() -> None:
    boom = ConnectionResetError("reset")
    tool = FlakyTool([504, boom], result=lambda q: f"found {q}")
    with pytest.raises(Exception, match="504 Gateway Timeout") as first:
        await tool(q="a")
    assert first.value.response.status_code == 504
    with pytest.raises(ConnectionResetError) as second:
        await tool(q="b")
    assert second.value is boom
    assert await tool(q="c") == "found c"
    assert await tool(q="d") == "found d"
    assert tool.calls == [{"q": "a"}, {"q": "b"}, {"q": "c"}, {"q": "d"}]


async def test_flaky_tool_always_fails_after_its_script() -> None:
    tool = FlakyTool([404], always=503)
    for status in (404, 503, 503):
        with pytest.raises(Exception, match=str(status)):
            await tool()
    assert await FlakyTool(result={"a": 1})() == {"a": 1}  # a value that is not callable


async def test_the_naive_agent_pays_for_every_immediate_retry() -> None:
    provider = SimulatedProvider(clock=FakeClock(), seed=1)
    tool = FlakyTool([504, 504, 504], result="docs")
    outcome = await naive_retry_agent(provider, tool, task="Find auth docs",
                                      tool_cost=Decimal("0.01"), query="auth")
    assert outcome.succeeded
    assert (outcome.iterations, outcome.model_calls, outcome.tool_calls) == (4, 4, 4)
    assert tool.calls == [{"query": "auth"}] * 4
    one_call = (await naive_retry_agent(SimulatedProvider(clock=FakeClock(), seed=1),
                                        FlakyTool(), task="Find auth docs")).cost
    assert one_call > 0
    assert outcome.cost == 4 * one_call + 4 * Decimal("0.01")  # the same prompt, every time


async def test_the_naive_agent_gives_up_only_at_its_test_bound() -> None:
    outcome = await naive_retry_agent(SimulatedProvider(clock=FakeClock()),
                                      FlakyTool(always=504), task="t", max_iterations=7)
    assert outcome == NaiveOutcome(7, 7, 7, outcome.cost, False)
    assert outcome.cost > 0


def test_a_fake_clock_can_start_at_a_real_date() -> None:
    import time

    from taskorch_nb.testing import FakeClock

    assert FakeClock().wall() == FakeClock.EPOCH
    now = time.time()
    clock = FakeClock(epoch=now)
    clock.advance(2.5)
    assert clock.wall() == round(now) + 2.5  # charts of a fake run show the day it ran
    assert FakeClock.EPOCH == 1_767_225_600.0  # the class default is untouched
