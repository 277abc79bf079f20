"""The Orchestrator: the composition root that builds and wires every service."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from taskorch_nb.core.circuit import CircuitBreaker
from taskorch_nb.core.clock import Clock, RealClock
from taskorch_nb.core.events import CircuitEvent, Event, EventBus
from taskorch_nb.core.immune import ImmuneSystem, Pattern
from taskorch_nb.core.retry import RetryPolicy
from taskorch_nb.core.store import Store
from taskorch_nb.core.tools import Toolbox

F = TypeVar("F", bound=Callable[..., Any])


class Orchestrator:
    """Every tool and model call of your agents, behind breakers, retries, a budget
    and a memory of failure patterns; every step an event."""

    def __init__(
        self,
        *,
        store: Store | str | os.PathLike[str] | None = None,
        clock: Clock | None = None,
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.clock: Clock = clock or RealClock()
        self.bus = EventBus(self.clock)
        self.store = store if isinstance(store, Store) else Store(store)
        self._owns_store = not isinstance(store, Store)
        self.bus.subscribe(self.store.record)
        self.bus.subscribe(self._persist_circuit)
        self.retry = retry or RetryPolicy()
        self._breaker_template = breaker or CircuitBreaker()
        self._saved_circuits = self.store.load_circuits()
        self.circuits: dict[str, CircuitBreaker] = {}
        self.immune = ImmuneSystem(
            clock=self.clock,
            emit=self.bus.emit,
            save=lambda p: self.store.save_pattern(p.to_record(), self.clock.wall()),
            patterns=[Pattern.from_record(r) for r in self.store.load_patterns()],
        )
        self.tools = Toolbox(
            clock=self.clock,
            emit=self.bus.emit,
            immune=self.immune,
            breaker_for=self.breaker,
            retry=self.retry,
        )

    # -- events ----------------------------------------------------------------

    def subscribe(self, callback: Callable[[Event], Any]) -> Callable[[], None]:
        """Call `callback(event)` for every event; returns the unsubscribe function."""
        return self.bus.subscribe(callback)

    # -- breakers --------------------------------------------------------------

    def breaker(self, name: str, template: CircuitBreaker | None = None) -> CircuitBreaker:
        """The breaker for a tool or `provider:model`, made on first use."""
        existing = self.circuits.get(name)
        if existing is not None:
            return existing
        made = (template or self._breaker_template).configured(name, self.clock, self.bus.emit)
        saved = self._saved_circuits.get(name)
        if saved is not None:
            opened_wall = saved["opened_wall"]
            opened_at = (
                None if opened_wall is None
                else self.clock.now() - (self.clock.wall() - opened_wall)
            )
            made.restore(saved["state"], saved["failures"], opened_at)
        self.circuits[name] = made
        return made

    def _persist_circuit(self, event: Event) -> None:
        if isinstance(event, CircuitEvent):
            breaker = self.circuits.get(event.name)
            opened_at = breaker.opened_at if breaker is not None else None
            opened_wall = None if opened_at is None else event.wall - (event.ts - opened_at)
            self.store.save_circuit(event.name, event.state, event.failures, opened_wall,
                                    event.wall)

    # -- tools -----------------------------------------------------------------

    def tool(
        self,
        fn: F | None = None,
        *,
        name: str | None = None,
        fallback: str | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> Any:
        """Register a sync or async function as a guarded tool (usable as a decorator)."""

        def register(func: F) -> F:
            self.tools.register(func, name=name, fallback=fallback, timeout=timeout,
                                retry=retry, breaker=breaker)
            return func

        return register(fn) if fn is not None else register

    async def call_tool(self, name: str, /, **kwargs: Any) -> Any:
        """Call a tool: breaker -> retry -> immune system -> fallback."""
        return await self.tools.call(name, kwargs)

    # -- lifecycle -------------------------------------------------------------

    def close(self) -> None:
        """Write what is pending and release the store."""
        if self._owns_store:
            self.store.close()
        else:
            self.store.flush()

    def __enter__(self) -> Orchestrator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Orchestrator:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
