"""Long timeouts on one timer per loop: asyncio.timeout's semantics, a dict entry each."""

from __future__ import annotations

import asyncio

import pytest

from taskorch_nb.core import watchdog as wd
from taskorch_nb.core.watchdog import CoarseTimeout, Watchdog


def _watchdog(period: float = 0.02) -> Watchdog:
    return Watchdog(asyncio.get_running_loop(), period=period)


async def test_a_block_past_its_limit_is_cancelled_and_raises_timeout_error() -> None:
    dog = _watchdog()
    limit = CoarseTimeout(dog, 0.05)
    reached = []

    async def sleeps() -> None:
        async with limit:
            await asyncio.sleep(30)
            reached.append("after the sleep")

    with pytest.raises(TimeoutError):
        await sleeps()
    assert reached == []
    assert limit.expired
    assert asyncio.current_task().cancelling() == 0  # the cancel was the timeout's own
    assert len(dog) == 0
    await asyncio.sleep(0.05)
    assert not dog.armed  # nothing waits: the timer stops


async def test_a_block_that_ends_in_time_leaves_nothing_behind() -> None:
    dog = _watchdog()
    async with CoarseTimeout(dog, 30) as limit:
        assert (len(dog), dog.armed) == (1, True)
        await asyncio.sleep(0.05)  # the watchdog looks twice meanwhile
    assert (limit.expired, len(dog)) == (False, 0)
    await asyncio.sleep(0.05)
    assert not dog.armed


async def test_an_error_inside_and_a_cancel_from_outside_keep_their_kind() -> None:
    dog = _watchdog()
    with pytest.raises(ValueError, match="inside"):
        async with CoarseTimeout(dog, 30):
            raise ValueError("inside")

    async def waits() -> None:
        async with CoarseTimeout(dog, 30):
            await asyncio.sleep(30)

    task = asyncio.create_task(waits())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(dog) == 0


async def test_many_limits_share_the_one_timer_and_only_the_due_ones_fire() -> None:
    dog = _watchdog()

    async def limited(seconds: float, work: float) -> str:
        try:
            async with CoarseTimeout(dog, seconds):
                await asyncio.sleep(work)
        except TimeoutError:
            return "timed out"
        return "done"

    results = await asyncio.gather(*(limited(0.05, 5) for _ in range(50)),
                                   *(limited(30, 0.1) for _ in range(50)))
    assert results == ["timed out"] * 50 + ["done"] * 50


async def test_short_limits_keep_asyncios_exact_timer_and_none_never_expires() -> None:
    assert type(wd.timeout(wd.COARSE_FROM / 2)) is type(asyncio.timeout(1))
    assert isinstance(wd.timeout(wd.COARSE_FROM), CoarseTimeout)
    async with wd.timeout(None):
        await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    assert wd.watchdog_of(loop) is wd.watchdog_of(loop)  # one per loop


async def test_outside_a_task_it_is_a_clear_error() -> None:
    loop = asyncio.get_running_loop()
    entered = loop.create_future()

    def from_a_callback() -> None:  # on the loop, but in no task
        coro = CoarseTimeout(Watchdog(loop), 30).__aenter__()
        try:
            coro.send(None)
        except RuntimeError as exc:
            entered.set_result(str(exc))

    loop.call_soon(from_a_callback)
    assert await entered == "a timeout must be used inside a task"


def test_loops_in_other_threads_get_their_own_watchdog() -> None:
    import threading

    seen: list[tuple[asyncio.AbstractEventLoop, Watchdog]] = []

    async def ask() -> None:
        loop = asyncio.get_running_loop()
        for _ in range(200):
            seen.append((loop, wd.watchdog_of(loop)))
            await asyncio.sleep(0)

    threads = [threading.Thread(target=asyncio.run, args=(ask(),)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(dog.loop is loop for loop, dog in seen)
    assert len({id(dog) for _, dog in seen}) == 3
