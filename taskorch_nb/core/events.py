"""Typed events and the bus that carries them.

Every change in taskorch_nb is an event; widgets, traces, DataFrames and the
store learn of the world only from them. Events are slotted dataclasses: cheap
to make on the hot path, flattened to plain dicts (`to_record`) at the edges.
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import itertools
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from taskorch_nb.core.clock import Clock, RealClock

Subscriber = Callable[["Event"], None]

#: The run, agent and phase the current task works for; events pick them up.
current_run_id: ContextVar[str | None] = ContextVar("taskorch_run_id", default=None)
current_agent: ContextVar[str | None] = ContextVar("taskorch_agent", default=None)
current_phase: ContextVar[str | None] = ContextVar("taskorch_phase", default=None)


@dataclass(slots=True, frozen=True)
class Actor:
    """A person acting by hand (a dashboard button): events they cause carry their name.

    `until` is the event type that ends the action: an action that starts work (resume)
    names its own events, not everything the work emits afterwards.
    """

    name: str
    until: str | None = None


current_actor: ContextVar[Actor | None] = ContextVar("taskorch_actor", default=None)


def person() -> str:
    """Who is acting at this keyboard: JupyterHub's user when there is one, else the login
    name (recorded as an event's actor and with a pattern's approval)."""
    hub = os.environ.get("JUPYTERHUB_USER")
    if hub:
        return hub
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER (containers)
        return "unknown"


@contextlib.contextmanager
def acting(name: str, *, until: str | None = None) -> Iterator[None]:
    """Name `name` as the actor of the events emitted inside the block (and, for a task
    created inside it, of its events up to and including the first `until` event)."""
    token = current_actor.set(Actor(name, until))
    try:
        yield
    finally:
        current_actor.reset(token)


class scope:  # (named as the function it replaced: `with scope(run_id=...)`)
    """Attribute the events emitted inside the block to a run, agent and phase.

    A class, not a generator: every run enters several, and each live one is an object
    the cyclic GC walks while the run waits (a generator context manager is four)."""

    __slots__ = ("_agent", "_phase", "_run_id", "_tokens")

    def __init__(self, *, run_id: str | None = None, agent: str | None = None,
                 phase: str | None = None) -> None:
        self._run_id, self._agent, self._phase = run_id, agent, phase

    def __enter__(self) -> None:
        run_id, agent, phase = self._run_id, self._agent, self._phase
        self._tokens = (
            None if run_id is None else current_run_id.set(run_id),
            None if agent is None else current_agent.set(agent),
            None if phase is None else current_phase.set(phase),
        )

    def __exit__(self, *exc: object) -> None:
        run_token, agent_token, phase_token = self._tokens
        if phase_token is not None:
            current_phase.reset(phase_token)
        if agent_token is not None:
            current_agent.reset(agent_token)
        if run_token is not None:
            current_run_id.reset(run_token)


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def field_names(cls: type) -> tuple[str, ...]:
    """The field names of an event class, computed once."""
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


@dataclass(slots=True, kw_only=True)
class Event:
    """Base of all events: a `type` like `circuit.opened`, stamped by the bus."""

    type: str
    run_id: str | None = None
    ts: float = 0.0
    """Monotonic seconds from the orchestrator's clock."""
    wall: float = 0.0
    """Epoch seconds from the orchestrator's clock."""
    seq: int = 0
    """Order of emission on its bus."""
    actor: str | None = None
    """The person whose action caused the event (None: the system did)."""

    def to_record(self) -> dict[str, Any]:
        """A flat dict (class name under `kind`) for JSON, DataFrames and spans."""
        record = {name: getattr(self, name) for name in field_names(type(self))}
        record["kind"] = type(self).__name__
        return record


@dataclass(slots=True, kw_only=True)
class ToolEvent(Event):
    """`tool.called`, `tool.succeeded`, `tool.failed`, `retry.scheduled`, `tool.fallback`."""

    tool: str
    call_id: str | None = None
    """Shared by the attempts (and the fallback) of one `call_tool`."""
    attempt: int = 1
    category: str | None = None
    status: int | None = None
    error: str | None = None
    wait: float | None = None
    duration: float | None = None
    fallback_of: str | None = None
    agent: str | None = None


@dataclass(slots=True, kw_only=True)
class CircuitEvent(Event):
    """`circuit.opened`, `circuit.half_opened`, `circuit.closed`, `circuit.rejected`."""

    name: str
    state: str
    previous: str | None = None
    failures: int = 0
    reset_at: float | None = None


@dataclass(slots=True, kw_only=True)
class PatternEvent(Event):
    """`pattern.learned`, `pattern.seen`, `pattern.applied`, `pattern.recovered`, ..."""

    name: str
    signature: str
    tool: str
    category: str
    fallback: str | None = None
    prompt: str | None = None
    source: str = "local"
    occurrences: int = 0


@dataclass(slots=True, kw_only=True)
class BudgetEvent(Event):
    """`budget.approved`, `budget.settled`, `budget.warning`, `budget.rejected`, ..."""

    amount: Decimal
    spent: Decimal
    reserved: Decimal
    limit: Decimal
    remaining: Decimal
    reservation: int | None = None
    agent: str | None = None
    model: str | None = None
    tool: str | None = None


@dataclass(slots=True, kw_only=True)
class LLMEvent(Event):
    """`llm.requested`, `llm.completed`, `llm.failed`: one model call."""

    call_id: str
    provider: str
    model: str
    agent: str | None = None
    phase: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost: Decimal | None = None
    latency: float | None = None
    status: int | None = None
    error: str | None = None


@dataclass(slots=True, kw_only=True)
class RunEvent(Event):
    """Run lifecycle: `run.*`, `phase.*`, `agent.*`, `safety.checked`, `qc.*`, `learning.*`."""

    task: str | None = None
    status: str | None = None
    workflow: str | None = None
    phase: str | None = None
    agent: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True, kw_only=True)
class Notice(Event):
    """Everything else worth a line: `subscriber.failed`, `alert.failed`, `tracing.warning`."""

    message: str
    level: str = "info"
    detail: dict[str, Any] = field(default_factory=dict)


EVENT_KINDS: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (Event, ToolEvent, CircuitEvent, PatternEvent, BudgetEvent, LLMEvent, RunEvent,
                Notice)
}


def _wants(wanted: frozenset[str], event_type: str) -> bool:
    if event_type in wanted:
        return True
    return any(t.endswith(".") and event_type.startswith(t) for t in wanted)


def event_from_record(record: dict[str, Any]) -> Event:
    """Rebuild an event from `to_record()` output (as read back from the store)."""
    data = dict(record)
    cls = EVENT_KINDS.get(data.pop("kind", "Event"), Event)
    names = _FIELD_SETS.get(cls)
    if names is None:
        names = _FIELD_SETS[cls] = frozenset(field_names(cls))
    return cls(**{k: v for k, v in data.items() if k in names})


_FIELD_SETS: dict[type, frozenset[str]] = {}


class EventBus:
    """Delivers each event to every subscriber, in order, on the emitting thread.

    A subscriber that raises is reported as a `subscriber.failed` notice and
    never breaks the emitter. A subscriber that wants only some event types says
    so when it subscribes (`types=`): the bus works out once per type who gets it,
    so an event costs nothing for the subscribers that do not want it.
    """

    #: Distinct event types whose subscriber lists are kept (more are worked out per event).
    MAX_TYPES = 1024

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or RealClock()
        self._entries: tuple[tuple[Subscriber, frozenset[str] | None], ...] = ()
        self._by_type: dict[str, tuple[Subscriber, ...]] = {}
        self._seq = itertools.count(1)
        self._lock = threading.Lock()

    def subscribe(self, fn: Subscriber, *,
                  types: Iterable[str] | None = None) -> Callable[[], None]:
        """Call `fn(event)` for every event from now on, or only for those whose type is
        in `types` (an entry ending in "." is a prefix: "circuit." is every circuit event;
        by default the `event_types` its class declares); returns the unsubscribe."""
        if types is None:  # the class's, not any attribute a proxy object makes up
            types = getattr(type(fn), "event_types", None)
        wanted = None
        if types is not None:
            if isinstance(types, str):
                raise TypeError("types must be a collection of event types, not one string")
            wanted = frozenset(types)
        with self._lock:
            self._entries = (*self._entries, (fn, wanted))
            self._by_type = {}

        def unsubscribe() -> None:
            with self._lock:
                self._entries = tuple(e for e in self._entries if e[0] is not fn)
                self._by_type = {}

        return unsubscribe

    def _subscribers(self, event_type: str) -> tuple[Subscriber, ...]:
        by_type = self._by_type  # before the entries: a subscribe in between drops it
        found = tuple(fn for fn, wanted in self._entries
                      if wanted is None or _wants(wanted, event_type))
        if len(by_type) < self.MAX_TYPES:
            by_type[event_type] = found
        return found

    def emit(self, event: Event) -> Event:
        """Stamp the event (time, order, current run) and deliver it."""
        clock = self.clock
        event.ts = clock.now()
        event.wall = clock.wall()
        event.seq = next(self._seq)
        if event.run_id is None:
            event.run_id = current_run_id.get()
        actor = current_actor.get()
        if actor is not None and event.actor is None:
            event.actor = actor.name
            if event.type == actor.until:  # the action is done: what follows is the system's
                current_actor.set(None)
        failures = None
        subscribers = self._by_type.get(event.type)
        if subscribers is None:
            subscribers = self._subscribers(event.type)
        for fn in subscribers:
            try:
                fn(event)
            except Exception as exc:  # a broken subscriber must not break the run
                failures = failures or []
                failures.append((fn, exc))
        if failures and event.type != "subscriber.failed":
            for fn, exc in failures:
                self.emit(
                    Notice(
                        type="subscriber.failed",
                        level="error",
                        message=f"subscriber {getattr(fn, '__qualname__', fn)!r} raised "
                        f"{type(exc).__name__}: {exc}",
                        detail={"event": event.type},
                    )
                )
        return event
