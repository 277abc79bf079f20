"""One source of time: RealClock hands out the stdlib primitives (FakeClock is tested with
the test kit, in tests/unit/test_testing.py)."""

from __future__ import annotations

import asyncio
import threading
import time

from taskorch_nb.core.clock import RealClock
from taskorch_nb.core.watchdog import CoarseTimeout


async def test_real_clock_hands_out_the_stdlib_primitives() -> None:
    clock = RealClock()
    assert type(clock.timeout(5)) is type(asyncio.timeout(5))  # exact for short limits
    assert isinstance(clock.timeout(90), CoarseTimeout)  # long ones: one timer per loop
    worker = await clock.to_thread(threading.current_thread)
    assert worker is not threading.current_thread()
    assert worker.daemon  # a hung sync tool must not keep the process alive at exit
    async with clock.timeout(None):
        await clock.sleep(0)
    fired = threading.Event()
    clock.call_later(0, fired.set)
    assert await asyncio.to_thread(fired.wait, 10)  # a real timer thread, waited for by event
    cancelled = threading.Event()
    clock.call_later(3600, cancelled.set).cancel()
    assert not cancelled.is_set()


def test_the_real_clock_reads_the_machines_clocks() -> None:
    clock = RealClock()
    assert clock.now is time.monotonic  # the hot path pays no wrapper
    assert clock.wall is time.time
    assert repr(clock) == "RealClock()"


def test_a_real_timer_is_a_daemon_so_a_pending_flush_never_holds_the_interpreter() -> None:
    timer = RealClock().call_later(3600, lambda: None)
    try:
        assert isinstance(timer, threading.Timer)
        assert timer.daemon
        assert timer.name == "taskorch-timer"
    finally:
        timer.cancel()
