"""Circuit breakers: stop calling what keeps failing, probe it again after a while.

A breaker is CLOSED while calls succeed. It opens after `failure_threshold`
consecutive failed attempts (or, when a window is set, when the failure rate
over the last `window` attempts reaches `failure_rate`). While OPEN every call
is refused with `CircuitOpenError` until `reset_timeout` has passed; then it is
HALF_OPEN and admits at most `half_open_max_calls` probes at once. A probe
success (`success_threshold` of them) closes it; a probe failure opens it
again. A probe that never reports back frees its slot after `probe_timeout`,
so a hanging call cannot wedge the breaker. No lock is held while the guarded
call runs: `acquire()` and `record_*()` are the only critical sections.
"""

from __future__ import annotations

import enum
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from taskorch_nb.core.clock import Clock, RealClock
from taskorch_nb.core.events import CircuitEvent, Event
from taskorch_nb.errors import CircuitOpenError, ConfigurationError


class CircuitState(enum.StrEnum):
    CLOSED = "CLOSED"
    OPEN = "OPEN"
    HALF_OPEN = "HALF_OPEN"


@dataclass(slots=True)
class Permit:
    """Proof that a call was let through; hand it back to `record_*`."""

    probe: bool
    issued_at: float
    generation: int


_CLOSED = Permit(False, 0.0, -1)
"""The permit of every call through a closed breaker (it carries no state)."""

_TRANSITION_TYPES = {
    CircuitState.OPEN: "circuit.opened",
    CircuitState.HALF_OPEN: "circuit.half_opened",
    CircuitState.CLOSED: "circuit.closed",
}


class CircuitBreaker:
    """A breaker for one tool or `provider:model`; defaults follow the seed."""

    def __init__(
        self,
        name: str = "breaker",
        *,
        failure_threshold: int = 3,
        reset_timeout: float = 30.0,
        half_open_max_calls: int = 1,
        success_threshold: int = 1,
        failure_rate: float | None = None,
        window: int = 20,
        probe_timeout: float | None = None,
        clock: Clock | None = None,
        on_event: Callable[[Event], Any] | None = None,
    ) -> None:
        if failure_threshold < 1 or half_open_max_calls < 1 or success_threshold < 1:
            raise ConfigurationError(
                "failure_threshold, half_open_max_calls and success_threshold must be >= 1"
            )
        if reset_timeout < 0:
            raise ConfigurationError("reset_timeout must be >= 0 seconds")
        if failure_rate is not None and not 0 < failure_rate <= 1:
            raise ConfigurationError("failure_rate must be in (0, 1]")
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_timeout = float(reset_timeout)
        self.half_open_max_calls = half_open_max_calls
        self.success_threshold = success_threshold
        self.failure_rate = failure_rate
        self.window = window
        self.probe_timeout = reset_timeout if probe_timeout is None else float(probe_timeout)
        self.clock: Clock = clock or RealClock()
        self.on_event = on_event
        self._lock = threading.Lock()
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probes: list[Permit] = []
        self._probe_successes = 0
        self._generation = 0
        self._outcomes: deque[bool] = deque(maxlen=window)
        self._held = False

    def configured(
        self, name: str, clock: Clock, on_event: Callable[[Event], Any]
    ) -> CircuitBreaker:
        """A fresh breaker with these settings, for another name (a template's copy)."""
        return CircuitBreaker(
            name,
            failure_threshold=self.failure_threshold,
            reset_timeout=self.reset_timeout,
            half_open_max_calls=self.half_open_max_calls,
            success_threshold=self.success_threshold,
            failure_rate=self.failure_rate,
            window=self.window,
            probe_timeout=self.probe_timeout,
            clock=clock,
            on_event=on_event,
        )

    # -- reading -------------------------------------------------------------

    @property
    def state(self) -> CircuitState:
        """The state now (an OPEN breaker past its timeout reads as HALF_OPEN)."""
        state = self._state
        if state is CircuitState.CLOSED:  # nothing to tick: read before every call, unlocked
            return state
        with self._lock:
            events = self._tick()
        self._emit(events)
        return self._state

    @property
    def failures(self) -> int:
        """Consecutive failed attempts counted towards opening."""
        return self._failures

    @property
    def opened_at(self) -> float | None:
        """Clock time the breaker last opened (None while CLOSED)."""
        return None if self._state is CircuitState.CLOSED else self._opened_at

    @property
    def held(self) -> bool:
        """Opened by hand (`trip`): stays OPEN, with no probe, until `reset`."""
        return self._held

    @property
    def reset_at(self) -> float | None:
        """Clock time at which an OPEN breaker turns HALF_OPEN (None unless OPEN, or held)."""
        if self._state is CircuitState.OPEN and not self._held:
            return self._opened_at + self.reset_timeout
        return None

    def retry_in(self) -> float | None:
        """Seconds until an OPEN breaker turns HALF_OPEN (None unless OPEN)."""
        at = self.reset_at
        return None if at is None else max(0.0, at - self.clock.now())

    def snapshot(self) -> dict[str, Any]:
        """State for widgets and the store."""
        state = self.state
        return {
            "name": self.name,
            "state": state.value,
            "failures": self._failures,
            "opened_at": self._opened_at if state is not CircuitState.CLOSED else None,
            "reset_at": self.reset_at,
            "held": self._held,
        }

    # -- the protocol around one call ------------------------------------------

    def acquire(self) -> Permit:
        """Let one call through or raise `CircuitOpenError`."""
        if self._state is CircuitState.CLOSED:
            return _CLOSED  # the hot path: no lock, no allocation
        with self._lock:
            events = self._tick()
            state = self._state
            if state is CircuitState.CLOSED:
                permit = _CLOSED
            elif state is CircuitState.HALF_OPEN and len(self._probes) < self.half_open_max_calls:
                permit = Permit(True, self.clock.now(), self._generation)
                self._probes.append(permit)
            else:
                permit = None
                retry_in = (
                    max(0.0, self._opened_at + self.reset_timeout - self.clock.now())
                    if state is CircuitState.OPEN and not self._held
                    else None
                )
        self._emit(events)
        if permit is None:
            raise CircuitOpenError(self.name, retry_in=retry_in, state=state.value)
        return permit

    def record_success(self, permit: Permit | None = None) -> None:
        if self._failures == 0 and self.failure_rate is None and (
            permit is None or not permit.probe
        ):
            return  # the hot path: nothing to reset
        with self._lock:
            events: list[CircuitEvent] = []
            if self.failure_rate is not None:
                self._outcomes.append(True)
            if permit is not None and permit.probe:
                if self._drop_probe(permit) and self._state is CircuitState.HALF_OPEN:
                    self._probe_successes += 1
                    if self._probe_successes >= self.success_threshold:
                        events.append(self._move(CircuitState.CLOSED))
            elif self._state is CircuitState.CLOSED:
                self._failures = 0
        self._emit(events)

    def record_failure(self, permit: Permit | None = None) -> None:
        with self._lock:
            events: list[CircuitEvent] = []
            if self.failure_rate is not None:
                self._outcomes.append(False)
            if permit is not None and permit.probe:
                if self._drop_probe(permit) and self._state is CircuitState.HALF_OPEN:
                    self._failures += 1
                    events.append(self._move(CircuitState.OPEN))
            elif self._state is CircuitState.CLOSED:
                self._failures += 1
                if self._failures >= self.failure_threshold or self._rate_tripped():
                    events.append(self._move(CircuitState.OPEN))
        self._emit(events)

    def release(self, permit: Permit | None = None) -> None:
        """The call ended in a caller error: free a probe slot, count nothing."""
        if permit is not None and permit.probe:
            with self._lock:
                self._drop_probe(permit)

    def reset(self) -> None:
        """Close the breaker by hand (`%orchestrate reset NAME`, MCP `reset_circuit`, the
        dashboard's Reset): one `circuit.reset` event, even when it was closed already."""
        with self._lock:
            previous = self._state
            self._move(CircuitState.CLOSED)
            self._held = False
            event = CircuitEvent(type="circuit.reset", name=self.name, state="CLOSED",
                                 previous=previous.value, failures=0)
        self._emit([event])

    def trip(self) -> None:
        """Open the breaker by hand and hold it open until `reset` (a quarantine: the
        dashboard's Open). Calls are refused at once; no probe goes out meanwhile."""
        with self._lock:
            if self._held:
                return
            previous = self._state
            self._move(CircuitState.OPEN)
            self._held = True
            event = CircuitEvent(type="circuit.opened", name=self.name, state="OPEN",
                                 previous=previous.value, failures=self._failures)
        self._emit([event])

    def restore(self, state: str, failures: int, opened_at: float | None,
                held: bool = False) -> CircuitState:
        """Take a persisted state back (a new Orchestrator on the same store, or another
        process's transition or `trip`: `held`); returns the state it replaced."""
        with self._lock:
            previous = self._state
            self._state = CircuitState(state)
            self._failures = failures
            self._opened_at = opened_at or 0.0
            if self._state is CircuitState.HALF_OPEN:
                self._state = CircuitState.OPEN
            self._held = held and self._state is CircuitState.OPEN
        return previous

    # -- internals (called with the lock held) -------------------------------

    def _tick(self) -> list[CircuitEvent]:
        now = self.clock.now()
        if (self._state is CircuitState.OPEN and not self._held
                and now >= self._opened_at + self.reset_timeout):
            return [self._move(CircuitState.HALF_OPEN)]
        if self._state is CircuitState.HALF_OPEN and self._probes:
            # A probe that never reported back must not hold its slot for ever.
            self._probes = [p for p in self._probes if now - p.issued_at < self.probe_timeout]
        return []

    def _drop_probe(self, permit: Permit) -> bool:
        if permit.generation != self._generation:
            return False
        for i, p in enumerate(self._probes):
            if p is permit:
                del self._probes[i]
                return True
        return False

    def _rate_tripped(self) -> bool:
        if self.failure_rate is None or len(self._outcomes) < self.window:
            return False
        failed = sum(1 for ok in self._outcomes if not ok)
        return failed / len(self._outcomes) >= self.failure_rate

    def _move(self, new: CircuitState) -> CircuitEvent:
        previous = self._state
        self._state = new
        self._generation += 1
        self._probes = []
        self._probe_successes = 0
        if new is CircuitState.OPEN:
            self._opened_at = self.clock.now()
        elif new is CircuitState.CLOSED:
            self._failures = 0
            self._outcomes.clear()
        return CircuitEvent(
            type=_TRANSITION_TYPES[new],
            name=self.name,
            state=new.value,
            previous=previous.value,
            failures=self._failures,
            reset_at=self._opened_at + self.reset_timeout if new is CircuitState.OPEN else None,
        )

    def _emit(self, events: list[CircuitEvent]) -> None:
        if self.on_event is not None:
            for event in events:
                self.on_event(event)

    def __repr__(self) -> str:
        state = self._state.value
        return f"CircuitBreaker({self.name!r}, state={state}, failures={self._failures})"
