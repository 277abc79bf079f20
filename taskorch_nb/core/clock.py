"""Injectable time: every wait, timeout, deadline, timer and timestamp in the core reads a clock.

A component never calls `time.*`, `asyncio.sleep`, `asyncio.timeout` or
`threading.Timer` itself: it asks its clock. `RealClock` hands the machine's
primitives out as they are (the tool call's hot path pays no wrapper);
`taskorch_nb.testing.FakeClock` gives the same calls in fake time, so a test
full of 30 s timeouts runs in microseconds.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Cancellable(Protocol):
    """A timer armed with `Clock.call_later`."""

    def cancel(self) -> None: ...


class Clock(Protocol):
    """Monotonic time for durations, wall time for timestamps, and every way to wait.

    `timeout` and `to_thread` are here, not in asyncio, so that a fake clock can
    decide when a deadline passes and know when real work is going on in a thread.
    """

    def now(self) -> float:
        """Monotonic seconds (durations, deadlines)."""
        ...

    def wall(self) -> float:
        """Seconds since the Unix epoch (timestamps, HTTP dates)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` (<= 0: just yield to the loop)."""
        ...

    def timeout(self, seconds: float | None) -> AbstractAsyncContextManager[Any]:
        """`async with clock.timeout(s):` cancels the block after `s` and raises TimeoutError
        (as `asyncio.timeout`); None never expires."""
        ...

    async def to_thread(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run a blocking `fn` in a worker thread (as `asyncio.to_thread`)."""
        ...

    def call_later(self, seconds: float, callback: Callable[[], None]) -> Cancellable:
        """Run `callback()` once, `seconds` from now, on a thread of the clock's choosing.

        For sync components (the store's batch writer) that have no loop to sleep on.
        """
        ...


class RealClock:
    """The machine's clocks; each method is the stdlib primitive itself."""

    def __init__(self) -> None:
        # Bound builtins: the hot path reads the clock and enters timeouts several
        # times per call, and an attribute holding the primitive costs no extra frame.
        self.now = time.monotonic
        self.wall = time.time
        self.timeout = asyncio.timeout
        self.to_thread = asyncio.to_thread

    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def timeout(self, seconds: float | None) -> AbstractAsyncContextManager[Any]:
        return asyncio.timeout(seconds)

    async def to_thread(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(fn, *args, **kwargs)

    def call_later(self, seconds: float, callback: Callable[[], None]) -> Cancellable:
        timer = threading.Timer(max(0.0, seconds), callback)
        timer.daemon = True  # a pending flush must not keep the interpreter alive
        timer.name = "taskorch-timer"
        timer.start()
        return timer

    def __repr__(self) -> str:
        return "RealClock()"
