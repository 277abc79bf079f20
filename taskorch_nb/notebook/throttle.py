"""Rate-limit widget refreshes: many requests, at most `max_rate` runs per second.

A run may emit thousands of events a second; a browser can take about ten
widget updates a second before the kernel's IOPub channel backs up. So event
subscribers only *request* a refresh (cheap: a flag check on the hot path) and
a timer runs the refresh later, at most once per `1 / max_rate` seconds. A
requested refresh always runs eventually (the timer is armed whenever one is
pending), so the last event is never left unshown; `flush()` runs it at once.

Time and timers are seams: `clock` gives `now()` (rate limiting), `scheduler`
arms a callback after a delay. The defaults are the monotonic clock and a
daemon `threading.Timer` (it fires even while a notebook cell blocks, and
updates sent from a thread reach the browser live). Tests pass a `FakeClock`
and a `ManualScheduler` to step time by hand.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from typing import Protocol


class _Now(Protocol):
    def now(self) -> float: ...


class Cancellable(Protocol):
    def cancel(self) -> None: ...


#: `scheduler(delay_seconds, callback)` arms `callback` to run once after the delay.
Scheduler = Callable[[float, Callable[[], None]], Cancellable]


class _MonotonicClock:
    def now(self) -> float:
        return time.monotonic()


def thread_scheduler(delay: float, callback: Callable[[], None]) -> Cancellable:
    """Run `callback` on a daemon timer thread after `delay` seconds."""
    timer = threading.Timer(max(0.0, delay), callback)
    timer.daemon = True
    timer.name = "taskorch-throttle"
    timer.start()
    return timer


class _ManualHandle:
    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualScheduler:
    """A scheduler driven by hand against a fake clock: `advance(s)` moves time, runs what is due.

    A test double (public, like `FakeClock`): nothing runs until the test says so.
    """

    def __init__(self, clock: _Now) -> None:
        self.clock = clock
        self._queue: list[tuple[float, int, _ManualHandle, Callable[[], None]]] = []
        self._order = itertools.count()
        self._lock = threading.Lock()

    def __call__(self, delay: float, callback: Callable[[], None]) -> Cancellable:
        handle = _ManualHandle()
        with self._lock:
            due = self.clock.now() + max(0.0, delay)
            heapq.heappush(self._queue, (due, next(self._order), handle, callback))
        return handle

    @property
    def pending(self) -> int:
        """Callbacks armed and not yet run or cancelled."""
        with self._lock:
            return sum(1 for _, _, handle, _ in self._queue if not handle.cancelled)

    def run_due(self) -> int:
        """Run every callback due at the clock's current time; returns how many ran."""
        ran = 0
        while True:
            with self._lock:
                if not self._queue or self._queue[0][0] > self.clock.now():
                    return ran
                _, _, handle, callback = heapq.heappop(self._queue)
            if not handle.cancelled:
                callback()
                ran += 1

    def advance(self, seconds: float) -> int:
        """Move the clock (it needs `advance`, as `FakeClock` has) and run what fell due."""
        self.clock.advance(seconds)  # type: ignore[attr-defined]
        return self.run_due()


class Throttle:
    """Runs `fn` when requested, at most `max_rate` times per second, never dropping the last.

    `request()` is safe from any thread and cheap while a run is already armed.
    `fn` runs on the scheduler's thread (or the caller's, for `flush()`), one
    run at a time. An exception from `fn` propagates on that thread (a timer
    thread reports it through `threading.excepthook`); it is never swallowed.
    """

    def __init__(
        self,
        fn: Callable[[], None],
        *,
        max_rate: float = 10.0,
        clock: _Now | None = None,
        scheduler: Scheduler | None = None,
    ) -> None:
        if not max_rate > 0:
            raise ValueError(f"max_rate must be positive, got {max_rate!r}")
        self._fn = fn
        self.interval = 1.0 / max_rate
        self._clock: _Now = clock or _MonotonicClock()
        self._schedule: Scheduler = scheduler or thread_scheduler
        self._lock = threading.Lock()  # guards _pending/_handle
        self._run_lock = threading.RLock()  # one run of fn at a time
        self._pending = False
        self._handle: Cancellable | None = None
        self._armed = 0  # which arming the pending timer belongs to
        self._deferred: Cancellable | None = None  # a request(not_before=...) waiting
        self._last = float("-inf")
        self._closed = False
        self.runs = 0
        """How many times `fn` ran."""

    @property
    def pending(self) -> bool:
        """A run is armed and has not started yet."""
        return self._pending

    @property
    def closed(self) -> bool:
        return self._closed

    def request(self, *, not_before: float = 0.0) -> None:
        """Ask for a run within the rate limit; with `not_before`, no sooner than that many
        seconds from now (a deferred request never delays the ordinary ones)."""
        if not_before > 0:
            self._defer(not_before)
            return
        if self._pending:  # the hot path: a run is already armed
            return
        with self._lock:
            if self._pending or self._closed:
                return
            self._pending = True
            self._armed += 1
            armed = self._armed
            delay = max(self._last + self.interval - self._clock.now(), 0.0)
            self._handle = self._schedule(delay, lambda: self._fire(armed))

    def _defer(self, delay: float) -> None:
        with self._lock:
            if self._closed or self._deferred is not None:
                return
            self._deferred = self._schedule(delay, self._deferred_due)

    def _deferred_due(self) -> None:
        with self._lock:
            self._deferred = None
        self.request()

    def flush(self) -> None:
        """Run `fn` now, in the calling thread, and disarm any pending run."""
        self._disarm()
        self._run()

    def close(self) -> None:
        """Run a last time if a run was pending; later requests do nothing."""
        with self._lock:
            self._closed = True
            deferred, self._deferred = self._deferred, None
        if deferred is not None:
            deferred.cancel()
        was_pending = self._disarm()
        if was_pending:
            self._run()

    def _disarm(self) -> bool:
        with self._lock:
            was_pending = self._pending
            handle, self._handle = self._handle, None
            self._pending = False
        if handle is not None:
            handle.cancel()
        return was_pending

    def _fire(self, armed: int) -> None:
        with self._lock:
            if not self._pending or armed != self._armed:  # a stale timer: flushed or re-armed
                return
            self._pending = False  # before fn: a request made during fn arms a new run
            self._handle = None
        self._run()

    def _run(self) -> None:
        with self._run_lock:
            self._last = self._clock.now()
            self.runs += 1
            self._fn()
