"""`orch.guard(...)`: your own agent code under the orchestrator's money path.

Inside `with orch.guard(budget=2.0, name="research") as g:` (or `async with`), every model
request the official SDKs send over httpx/httpx2 (see `intercept`) is handled by a
`Call`: reserved before it is sent, settled from the answer's usage, behind the
`provider:model` breaker, retried by one policy (the orchestrator's `RetryPolicy`, the
SDK's own retries switched off per answer), known failure patterns applied. Every step
is an event on the orchestrator's bus (so the store, the dashboard, `events_df` and
Langfuse see it) under one id per outermost guard (`g.run_id`); `g.report()` sums it up.

Guards nest: an inner guard's budget is held in its parent's too (a phase cap inside a
session cap), and its calls carry its name as their phase.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator
from decimal import Decimal
from typing import Any, Protocol

from taskorch_nb.core.budget import BudgetGuard
from taskorch_nb.core.circuit import CircuitBreaker
from taskorch_nb.core.clock import Clock
from taskorch_nb.core.events import Event, EventBus, Notice, RunEvent, current_phase, current_run_id
from taskorch_nb.core.immune import ImmuneSystem
from taskorch_nb.core.money import parse_usd
from taskorch_nb.core.pricing import FREE, PriceTable
from taskorch_nb.core.retry import RetryPolicy
from taskorch_nb.errors import ConfigurationError
from taskorch_nb.guard import drive, intercept, wire
from taskorch_nb.guard.call import Call
from taskorch_nb.guard.refusal import HEADER, Refusal
from taskorch_nb.guard.report import GuardReport, ModelUse

#: The guards whose calls are being handled in this context (innermost first).
_handling: contextvars.ContextVar[tuple[Guard, ...]] = contextvars.ContextVar(
    "taskorch_guard_handling", default=())
#: Set inside `with guard.final():` (the reserve kept for the final answer may be used).
_final: contextvars.ContextVar[bool] = contextvars.ContextVar("taskorch_guard_final",
                                                              default=False)


class GuardHost(Protocol):
    """What a guard needs of the orchestrator (which satisfies it)."""

    bus: EventBus
    clock: Clock
    prices: PriceTable
    retry: RetryPolicy
    immune: ImmuneSystem
    provider: Any
    default_budget: Decimal
    warn_below: float
    circuits: dict[str, CircuitBreaker]

    def breaker(self, name: str, template: CircuitBreaker | None = None) -> CircuitBreaker: ...


def _cap(value: Any, what: str) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigurationError(f"{what} must be a whole number >= 1 (or None), got {value!r}")
    return value


class Guard:
    """A budget, caps and the orchestrator's safety nets around code you already have."""

    def __init__(
        self,
        host: GuardHost,
        *,
        budget: float | str | Decimal | None = None,
        name: str = "guard",
        max_requests: int | None = None,
        max_tokens: int | None = None,
        max_tool_calls: int | None = None,
        fallback_model: str | None = None,
        reserve_final: float | str | Decimal | None = None,
        retry: RetryPolicy | None = None,
        default_max_tokens: int = wire.DEFAULT_MAX_TOKENS,
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ConfigurationError(f"a guard's name must be a non-empty string, got {name!r}")
        if fallback_model is not None and (not isinstance(fallback_model, str)
                                           or not fallback_model.strip()):
            raise ConfigurationError(f"fallback_model must be a model name, got {fallback_model!r}")
        self.host = host
        self.name = name
        self.clock = host.clock
        self._limit = None if budget is None else parse_usd(budget, "budget")
        self._max_requests = _cap(max_requests, "max_requests")
        self._max_tokens = _cap(max_tokens, "max_tokens")
        self.max_tool_calls = _cap(max_tool_calls, "max_tool_calls")
        self.default_max_tokens = _cap(default_max_tokens, "default_max_tokens") or 1
        self.fallback_model = fallback_model
        self.reserve_final = (Decimal(0) if reserve_final is None
                              else parse_usd(reserve_final, "reserve_final", allow_zero=True))
        self.retry = retry or host.retry
        self.parent: Guard | None = None
        self.budget: BudgetGuard = BudgetGuard(self._limit or host.default_budget)
        self.run_id = f"guard-{uuid.uuid4().hex[:12]}"
        self.events: list[Event] = []
        self.open = False
        self.stopped: str | None = None
        self.tool_calls = 0
        self._chain: tuple[Guard, ...] = (self,)
        self._uses: dict[str, ModelUse] = {}
        self._refused: dict[str, int] = {}
        self._keys: set[str] = set()
        self._said: set[tuple[str, str]] = set()
        self._overheads: dict[str, int] = {}
        self._halted: str | None = None
        self.no_stream_usage: set[str] = set()
        """Hosts that refused `stream_options`: their streams are counted."""
        self._streams: list[Callable[[], None]] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._token: contextvars.Token[Any] | None = None
        self._phase: contextvars.Token[Any] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._used = False

    # -- the block ------------------------------------------------------------------

    def __enter__(self) -> Guard:
        if self._used:
            raise ConfigurationError("a guard is used once: make a new one with orch.guard()")
        self._used = True
        parent = intercept.current.get()
        if parent is not None and parent.open and parent.host is self.host:
            self.parent = parent
            self.run_id = parent.run_id
            self._chain = (self, *parent._chain)
            limit = self._limit or max(parent.budget.remaining, Decimal("0.000001"))
            self._phase = current_phase.set(self.name)
        else:
            limit = self._limit or self.host.default_budget
        self.budget = BudgetGuard(limit, warn_below=self.host.warn_below, on_event=self.emit,
                                  max_tokens=self._max_tokens, max_requests=self._max_requests,
                                  parent=self.parent.budget if self.parent else None)
        self._unsubscribe = self.host.bus.subscribe(self._collect)
        intercept.install()
        self._token = intercept.current.set(self)
        self.open = True
        if self.parent is None:
            self.emit(RunEvent(type="run.started", task=f"guard {self.name}", status="RUNNING",
                               workflow="guard", detail={"limit": str(limit)}))
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.open = False
        try:
            for finish in list(self._streams):
                finish()  # a stream the agent never closed pays for what it read
        finally:
            intercept.uninstall()  # whatever happens, the patch does not outlive its users
            try:
                if self._token is not None:
                    intercept.current.reset(self._token)
                if self._phase is not None:
                    current_phase.reset(self._phase)
            except ValueError:
                # left in another context than it was entered (an `async with` crossing
                # tasks): the variables there were never set, and this guard is closed
                pass
        report = self.report()
        if self.parent is None:
            failed = exc is not None and not isinstance(exc, GeneratorExit)
            self.emit(RunEvent(type="run.failed" if failed else "run.completed",
                               task=f"guard {self.name}",
                               status="FAILED" if failed else "COMPLETED", workflow="guard",
                               detail={"cost": report.to_dict()}))
        if self._unsubscribe is not None:
            self._unsubscribe()
        if exc is not None and self.stopped and isinstance(exc, Exception):
            exc.add_note(f"taskorch guard {self.name!r} stopped the agent: {self.stopped}")

    async def __aenter__(self) -> Guard:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)

    @contextlib.contextmanager
    def final(self) -> Iterator[None]:
        """Calls made inside may use the reserve kept for the final answer."""
        token = _final.set(True)
        try:
            yield
        finally:
            _final.reset(token)

    # -- what the interception asks ---------------------------------------------------

    def exempt(self, client: Any) -> bool:
        """The orchestrator's own provider client: its calls are paid on their own path."""
        own = getattr(getattr(self.host.provider, "_client", None), "client", None)
        return client is own

    def handle(self, module: Any, request: Any, send: Callable[[Any], Any], *,
               stream: bool) -> Any:
        """One request sent through a sync client inside the guard."""
        return drive.handle(self, module, request, send, stream=stream)

    async def ahandle(self, module: Any, request: Any, send: Callable[[Any], Awaitable[Any]],
                      *, stream: bool) -> Any:
        """One request sent through an async client inside the guard."""
        return await drive.ahandle(self, module, request, send, stream=stream)

    def track(self, finish: Callable[[], None], *, done: bool = False) -> None:
        """Remember an open stream's `finish` (settled at exit if never closed)."""
        with self._lock:
            if not done:
                self._streams.append(finish)
            elif finish in self._streams:
                self._streams.remove(finish)

    @contextlib.contextmanager
    def scope(self, run_id: str | None = None,
               chain: tuple[Guard, ...] | None = None) -> Iterator[None]:
        run = current_run_id.set(run_id or self.run_id)
        handling = _handling.set(chain or self._chain)
        try:
            yield
        finally:
            _handling.reset(handling)
            current_run_id.reset(run)

    # -- policy the calls ask for ------------------------------------------------------

    def room(self) -> Decimal:
        """What a call may reserve now: the remaining budget, less the final reserve."""
        remaining = self.budget.remaining
        return remaining if _final.get() else remaining - self.reserve_final

    def stop(self, reason: str = "stopped by hand") -> None:
        """Refuse every later model request (the dashboard's Stop, an interrupt): the agent
        stops at its next call. Thread-safe."""
        self._halted = reason

    def add_budget(self, extra: float | str | Decimal) -> None:
        """Raise the limit by `extra` USD (the dashboard's "add $"); a stop for lack of
        money no longer holds."""
        self.budget.extend(extra)
        if self.stopped is not None and self.stopped.startswith("budget_exceeded"):
            self.stopped = None

    def check_caps(self, ask: wire.Ask) -> Refusal | None:
        for guard in self._chain:
            if guard._halted is not None:
                return self.refuse(ask, "stopped", 402, guard._halted)
            cap = guard.max_tool_calls
            if cap is not None and guard.tool_calls > cap:
                return self.refuse(ask, "tool_call_limit", 402, (
                    f"tool call limit reached: the model asked for {guard.tool_calls} tool "
                    f"calls, the guard {guard.name!r} allows {cap}"))
        return None

    def price(self, provider: str, model: str, *, local: bool) -> str:
        """Resolve the model's price once (a local one is free unless priced) and
        return the price provider's id."""
        prices = self.host.prices
        if local:
            if prices.resolve(provider, model, default=FREE, local=True):
                self.said_once("pricing.free", model, (
                    f"model {model!r} is served from a local address: its calls cost $0 "
                    "(pass prices={...} to the Orchestrator to price it; cap the guard with "
                    "max_tokens= or max_requests=)"))
        else:
            prices.resolve(provider, model)
        return provider

    def refuse(self, ask: wire.Ask, reason: str, status: int, message: str, *,
               retry_after: float | None = None, count: bool = True) -> Refusal:
        """Answer a request here; the first refusal is why the agent stopped."""
        if reason == "budget_exceeded" and message.split(": ")[0].endswith("limit reached"):
            reason = "request_limit" if "request limit" in message else "token_limit"
        text = f"taskorch guard {self.name!r}: {message}"
        if count:
            with self._lock:
                for guard in self._chain:
                    guard._refused[reason] = guard._refused.get(reason, 0) + 1
                    if guard.stopped is None:
                        guard.stopped = f"{reason}: {message}"
        with self.scope():
            self.emit(Notice(type="guard.refused", level="warning", message=text,
                             detail={"reason": reason, "model": ask.model, "status": status}))
        return Refusal(reason, status, text, ask.kind, retry_after)

    def count(self, call: Call, tokens: wire.Tokens) -> None:
        with self._lock:
            for guard in self._chain:
                use = guard._uses.setdefault(call.model, ModelUse())
                use.calls += 1
                use.input_tokens += tokens.input_tokens
                use.output_tokens += tokens.output_tokens
                use.estimated += tokens.estimated
                guard.tool_calls += tokens.tool_calls
                guard._keys.add(call.key)

    def overhead(self, model: str) -> int:
        """Prompt tokens the model's chat template adds beyond the estimate (a default system
        prompt), learned from answers that carried usage."""
        return self._chain[-1]._overheads.get(model, 0)

    def learn_overhead(self, model: str, extra: int) -> None:
        overheads = self._chain[-1]._overheads
        if extra > overheads.get(model, 0):
            overheads[model] = extra

    def said_once(self, kind: str, model: str, message: str) -> None:
        if (kind, model) in self._said:
            return
        self._said.add((kind, model))
        self.emit(Notice(type=kind, message=message, detail={"model": model}))

    def next_call_id(self) -> str:
        return f"{self.run_id}#{self.name}-{next(self._ids)}"

    def emit(self, event: Event) -> None:
        if event.run_id is None:
            event.run_id = self.run_id
        self.host.bus.emit(event)

    def _collect(self, event: Event) -> None:
        if event.run_id == self.run_id and (self.parent is None or self in _handling.get()):
            self.events.append(event)

    # -- results ----------------------------------------------------------------------

    def report(self) -> GuardReport:
        """Spend by model, calls, refusals, breakers and patterns so far."""
        costs = self.budget.report()
        with self._lock:
            uses = {m: ModelUse(u.calls, u.input_tokens, u.output_tokens, u.estimated,
                                costs.by_model.get(m, Decimal(0)))
                    for m, u in self._uses.items()}
            refused, keys = dict(self._refused), set(self._keys)
        breakers = {k: b.state.value for k, b in sorted(self.host.circuits.items())
                    if k in keys or any(e.type.startswith("circuit.") and
                                        getattr(e, "name", None) == k for e in self.events)}
        patterns = sorted({e.name for e in self.events if e.type.startswith("pattern.")
                           and hasattr(e, "name")})
        return GuardReport(name=self.name, spent=costs.spent, limit=costs.limit,
                           remaining=costs.remaining, calls=costs.calls,
                           requests=self.budget.requests, tool_calls=self.tool_calls,
                           by_model=uses, refused=refused, stopped=self.stopped,
                           breakers=breakers, patterns=patterns)

    def events_df(self) -> Any:
        """The guard's events as a DataFrame (one row per event)."""
        from taskorch_nb.tracing.frames import events_df

        return events_df(self.events)

    def __repr__(self) -> str:
        state = "open" if self.open else "closed"
        return (f"Guard({self.name!r}, {state}, spent={self.budget.spent}, "
                f"limit={self.budget.limit})")

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return self.report()._repr_mimebundle_(include, exclude)


__all__ = ["HEADER", "Guard", "GuardHost"]
