"""Injectable time: every wait, timeout and timestamp in the core reads a clock."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Protocol


class Clock(Protocol):
    """Monotonic time for durations, wall time for timestamps, and an async sleep."""

    def now(self) -> float: ...

    def wall(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class RealClock:
    """The machine's clocks."""

    def __init__(self) -> None:
        # Bound builtins: the hot path reads the clock several times per call.
        self.now = time.monotonic
        self.wall = time.time

    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def __repr__(self) -> str:
        return "RealClock()"


class FakeClock:
    """A clock that only moves when told to; `sleep(s)` advances it by s and returns at once.

    Tests full of 30 s timeouts run in microseconds, and the waits they measure
    are exactly the waits the code asked for (`clock.slept`).
    """

    #: Wall time at `now() == 0.0` (2026-01-01 UTC), so timestamps look like dates.
    EPOCH = 1_767_225_600.0

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()
        self.slept: list[float] = []

    def now(self) -> float:
        return self._now

    def wall(self) -> float:
        return self.EPOCH + self._now

    def advance(self, seconds: float) -> None:
        """Move time forward at once."""
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        with self._lock:
            self._now += seconds

    async def sleep(self, seconds: float) -> None:
        seconds = max(0.0, float(seconds))
        self.slept.append(seconds)
        self.advance(seconds)
        await asyncio.sleep(0)

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now})"
