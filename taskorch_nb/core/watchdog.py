"""Long timeouts on one timer per loop.

Every model call runs under a deadline (90 s by default) and every tool under its
timeout (60 s), and almost none of them ever fires. `asyncio.timeout` arms a loop
timer for each: a heap push with Python comparisons, then a cancelled entry left
in the heap until the loop sweeps it, which for 2,000 concurrent runs is a heap
of thousands. A `Watchdog` keeps the deadlines of one loop in a dict and checks
them on a single timer every `period` seconds, so a timeout costs a dict entry,
and fires at most `period` late: a second on a minute's limit.

The semantics are `asyncio.timeout`'s: the block's task is cancelled, the
`CancelledError` leaving the block becomes `TimeoutError`, and a cancel from
elsewhere stays a cancel.
"""

from __future__ import annotations

import asyncio
import weakref
from types import TracebackType
from typing import Any

#: Timeouts of at least this many seconds go to the watchdog; shorter ones keep
#: asyncio's exact timers (their lateness would be a large share of them).
COARSE_FROM = 10.0
#: How often the watchdog looks: the most a long timeout fires late.
PERIOD = 0.5


class Watchdog:
    """The long timeouts of one event loop, checked every `period` seconds."""

    def __init__(self, loop: asyncio.AbstractEventLoop, period: float = PERIOD) -> None:
        self.loop = loop
        self.period = period
        self._waiting: dict[CoarseTimeout, None] = {}  # insertion-ordered set
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._waiting)

    @property
    def armed(self) -> bool:
        """Whether the timer runs (only while some timeout waits)."""
        return self._timer is not None

    def add(self, timeout: CoarseTimeout) -> None:
        self._waiting[timeout] = None
        if self._timer is None:
            self._timer = self.loop.call_later(self.period, self._check)

    def discard(self, timeout: CoarseTimeout) -> None:
        self._waiting.pop(timeout, None)

    def _check(self) -> None:
        now = self.loop.time()
        due = [t for t in self._waiting if t.when <= now]
        for timeout in due:
            del self._waiting[timeout]
            timeout.expire()
        self._timer = self.loop.call_later(self.period, self._check) if self._waiting else None


class CoarseTimeout:
    """`async with CoarseTimeout(watchdog, seconds):` as `asyncio.timeout(seconds)`, up to
    the watchdog's period late."""

    __slots__ = ("_cancelling", "_task", "_watchdog", "expired", "seconds", "when")

    def __init__(self, watchdog: Watchdog, seconds: float) -> None:
        self._watchdog = watchdog
        self.seconds = seconds
        self.when = 0.0
        self.expired = False
        self._task: asyncio.Task[Any] | None = None
        self._cancelling = 0

    async def __aenter__(self) -> CoarseTimeout:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a timeout must be used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        self.when = self._watchdog.loop.time() + self.seconds
        self._watchdog.add(self)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self._watchdog.discard(self)
        assert self._task is not None
        if (self.expired and exc_type is asyncio.CancelledError
                and self._task.uncancel() <= self._cancelling):
            raise TimeoutError from exc

    def expire(self) -> None:
        assert self._task is not None
        self.expired = True
        self._task.cancel()


_WATCHDOGS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Watchdog] = (
    weakref.WeakKeyDictionary())
_last: Watchdog | None = None  # the loop asked last (almost always the only one)


def watchdog_of(loop: asyncio.AbstractEventLoop) -> Watchdog:
    """The loop's watchdog (loops in other threads have their own)."""
    global _last
    last = _last  # one read: another thread's loop may replace it meanwhile
    if last is not None and last.loop is loop:
        return last
    watchdog = _WATCHDOGS.get(loop)
    if watchdog is None:
        watchdog = _WATCHDOGS[loop] = Watchdog(loop)
    _last = watchdog
    return watchdog


def timeout(seconds: float | None) -> Any:
    """`asyncio.timeout(seconds)`, or for a long one the running loop's watchdog's."""
    if seconds is None or seconds < COARSE_FROM:
        return asyncio.timeout(seconds)
    return CoarseTimeout(watchdog_of(asyncio.get_running_loop()), seconds)
