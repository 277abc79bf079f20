"""The Orchestrator: the composition root that builds and wires every service."""

from __future__ import annotations

import asyncio
import functools
import itertools
import math
import os
import shutil
import tempfile
import warnings
import weakref
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from taskorch_nb.agents.retention import (
    Pruned,
    candidates,
    check_keep,
    default_keep,
    prune,
    workspaces_root,
)
from taskorch_nb.batch import Batch
from taskorch_nb.core.alerts import LoggingAlerts, WebhookAlerts
from taskorch_nb.core.backends import open_store
from taskorch_nb.core.budget import BudgetGuard
from taskorch_nb.core.circuit import CircuitBreaker
from taskorch_nb.core.clock import Clock, RealClock
from taskorch_nb.core.events import (
    CircuitEvent,
    Event,
    EventBus,
    LLMEvent,
    Notice,
    current_agent,
    current_phase,
)
from taskorch_nb.core.immune import ImmuneSystem, Pattern
from taskorch_nb.core.money import parse_usd
from taskorch_nb.core.pricing import FREE, ModelPrice, PriceTable
from taskorch_nb.core.retry import RetryPolicy, classify
from taskorch_nb.core.store import Store
from taskorch_nb.core.tools import DEFAULT_TOOL_TIMEOUT, Toolbox
from taskorch_nb.engine.execution import workspace_tools
from taskorch_nb.engine.run import Run
from taskorch_nb.engine.runner import Runner
from taskorch_nb.engine.sync import wait_for
from taskorch_nb.errors import (
    BudgetExceededError,
    CircuitOpenError,
    ConfigurationError,
    ProviderUnavailableError,
    SandboxUnavailableError,
)
from taskorch_nb.llm.base import Completion, Provider, estimate_input_tokens
from taskorch_nb.sandbox import jail_status, sandbox_mode

F = TypeVar("F", bound=Callable[..., Any])

#: True while a breaker transition another process saved is announced here: the store
#: has it already, and saving it again would echo it back to every process.
_adopting: ContextVar[bool] = ContextVar("taskorch_adopting", default=False)

#: The budget of a run when neither the run nor the Orchestrator names one.
DEFAULT_BUDGET = Decimal("5.00")

#: The most one model call may take, its attempts and the waits between them included.
DEFAULT_DEADLINE = 90.0


class Orchestrator:
    """Every tool and model call of your agents behind breakers, retries, a budget
    and a memory of failure patterns; every step an event.

    `provider` is a name ("simulated", "openai", "anthropic", "auto") or a
    provider object; `budget` is the USD limit of a run that names none
    (`default_budget`); `session_budget` the USD limit of `session_guard`, which
    pays for the calls you make outside runs (default: `budget`); `store` a
    SQLite path, ":memory:" or a `postgresql://` URL shared by many processes
    (default: TASKORCH_STORE, else `~/.taskorch/taskorch.db`). A budget is an
    amount, a guard a `BudgetGuard`. Runs without a workspace work in
    `workspaces/RUN_ID` next to the store (under TASKORCH_HOME for a URL); at start
    the workspaces of finished runs beyond the `keep_workspaces` (50) newest are removed.
    `sandbox` is where QC runs generated code: "auto" (the jail, else a warning),
    "require" (the jail or `SandboxUnavailableError`), "off" (default: TASKORCH_SANDBOX).

    `base_url`, `api_key` and `timeout` (seconds per request) go to an HTTP provider
    (default: OPENAI_BASE_URL / OPENAI_API_KEY); a model served from a loopback or
    private address is free unless `prices` names it. `deadline` bounds one model
    call, retries and waits included (default 90 s; `math.inf` for none, e.g. with a
    `FakeClock`, which jumps to the deadline while real I/O is in flight): a provider
    still unreachable then, or whose breaker is open, pauses the run instead of failing it.
    """

    def __init__(
        self,
        provider: str | Provider = "simulated",
        model: str | None = None,
        budget: float | str | Decimal | None = None,
        *,
        session_budget: float | str | Decimal | None = None,
        store: Store | str | os.PathLike[str] | None = None,
        clock: Clock | None = None,
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        prices: Mapping[str, ModelPrice | Mapping[str, Any]] | None = None,
        federation: Any = None,
        seed: int = 0,
        latency: float | tuple[float, float] = 0.0,
        faults: Any = None,
        warn_below: float = 0.20,
        max_rounds: int = 3,
        qc_timeout: float = 120.0,
        tool_timeout: float | None = DEFAULT_TOOL_TIMEOUT,
        sandbox: str | None = None,
        langfuse: Any = None,
        alert_webhook: str | None = None,
        keep_workspaces: int | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float | None = None,
        deadline: float | None = None,
    ) -> None:
        # What a batch's Ray workers build their own Orchestrator from (see `map`).
        self._settings = {k: v for k, v in locals().items() if k not in ("self", "clock")}
        self.clock: Clock = clock or RealClock()
        self.bus = EventBus(self.clock)
        # Said once the store listens (None after): which provider "auto" chose, free models.
        self._notices: list[Notice] | None = []
        if timeout is not None and (isinstance(timeout, bool)
                                    or not isinstance(timeout, int | float) or timeout <= 0):
            raise ConfigurationError(f"timeout must be a number of seconds > 0, got {timeout!r}")
        http = {k: v for k, v in (("base_url", base_url), ("api_key", api_key),
                                  ("timeout", timeout)) if v is not None}
        self.provider = self._make_provider(provider, clock=self.clock, seed=seed,
                                            latency=latency, faults=faults, http=http)
        if isinstance(provider, str) and provider.strip().lower() == "auto":
            because = getattr(self.provider, "chosen_because", "")
            self._notices.append(Notice(
                type="provider.chosen", message=f"provider 'auto' chose {self.provider.name!r}"
                f" ({because.removeprefix('auto: ')})",
                detail={"provider": self.provider.name}))
        self.model = model or ("sim-small" if self.provider.name == "simulated" else "")
        if not self.model:
            raise ConfigurationError(
                f"provider {self.provider.name!r} needs a model: pass model='...'"
            )
        check_model = getattr(self.provider, "check_model", None)
        if check_model is not None:
            check_model(self.model)  # an unknown model fails here, not as a FAILED run
        if deadline is not None and (isinstance(deadline, bool)
                                     or not isinstance(deadline, int | float) or deadline <= 0):
            raise ConfigurationError(f"deadline must be a number of seconds > 0, got {deadline!r}")
        self.deadline = float(DEFAULT_DEADLINE if deadline is None else deadline)
        self.prices = PriceTable(prices, clock=self.clock)
        from taskorch_nb.llm.registry import is_local

        self.base_url: str | None = getattr(self.provider, "base_url", None)
        """Where an HTTP provider sends its requests (None for the simulated one)."""
        self.local = self.provider.name != "simulated" and is_local(self.base_url)
        """Served from a loopback or private address: free unless `prices` names it."""
        self._free: set[str] = set()
        self._price(self.model)  # unknown: fail now
        self.warn_below = warn_below
        self.default_budget: Decimal = (DEFAULT_BUDGET if budget is None
                                        else parse_usd(budget, "budget"))
        """The USD limit of a run that names none."""
        self.session_guard = BudgetGuard(
            self.default_budget if session_budget is None
            else parse_usd(session_budget, "session_budget"),
            warn_below=warn_below, on_event=self.bus.emit,
        )
        """Pays for the calls made outside runs (`complete`, `call_tool` from your code);
        a run's calls are paid by the run's own guard (`run.guard`)."""
        self.max_rounds = _whole("max_rounds", max_rounds)
        self.qc_timeout = _seconds("qc_timeout", qc_timeout)
        self.keep_workspaces = (default_keep() if keep_workspaces is None
                                else check_keep(keep_workspaces, source="keep_workspaces"))
        # Where generated code runs: "auto", "require" (refuse without a jail), "off".
        self.sandbox = sandbox_mode(sandbox)
        if self.sandbox == "require" and not (jail := jail_status()).ok:
            raise SandboxUnavailableError(jail.reason)
        self.store = open_store(store, clock=self.clock)
        self._owns_store = not isinstance(store, Store)
        self._scratch: Path | None = None  # an in-memory store's workspaces, removed on close
        self.bus.subscribe(self.store.record)
        self.bus.subscribe(self._persist_circuit, types=("circuit.",))
        self.retry = retry or RetryPolicy()
        self._breaker_template = breaker or CircuitBreaker()
        self._saved_circuits = self.store.load_circuits()
        self.circuits: dict[str, CircuitBreaker] = {}
        self.store.watch_circuits(self._adopt_circuit)
        self.immune = ImmuneSystem(
            clock=self.clock,
            emit=self.bus.emit,
            save=lambda p, added: self.store.save_pattern(p.to_record(), self.clock.wall(), added),
            patterns=[Pattern.from_record(r) for r in self.store.load_patterns()],
        )
        # What another process on a shared store learns is known here at once.
        self.store.watch_patterns(lambda r: self.immune.adopt(Pattern.from_record(r)))
        self._remember_capabilities()
        self.tools = Toolbox(clock=self.clock, emit=self.bus.emit, immune=self.immune,
                             breaker_for=self.breaker, retry=self.retry,
                             timeout=tool_timeout)
        for name, fn in workspace_tools().items():
            self.tools.register(fn, name=name, retry=RetryPolicy(max_attempts=1), builtin=True)
        self._call_ids = itertools.count(1)
        self._model_keys: dict[str, str] = {}  # model -> its registered `provider:model` tool
        self.runner = Runner(self)
        # The seed's Alert System: warnings and rejections always reach the log, and a
        # Slack-compatible webhook when one is given (or TASKORCH_ALERT_WEBHOOK is set).
        self.bus.subscribe(LoggingAlerts())
        webhook = alert_webhook or os.environ.get("TASKORCH_ALERT_WEBHOOK")
        self.webhook = WebhookAlerts(webhook, on_error=self.bus.emit) if webhook else None
        if self.webhook is not None:
            self.bus.subscribe(self.webhook)
        self.langfuse = self._make_exporter(langfuse)
        if self.langfuse is not None:
            self.bus.subscribe(self.langfuse)
        self.federation = federation
        if federation is not None:
            self._connect_federation(federation)
        self._prune_at_start()
        self.notices: tuple[Notice, ...] = tuple(self._notices)
        """What was said while it was built (provider chosen, free models), for front ends
        that subscribe later."""
        self._notices = None
        for notice in self.notices:
            self.bus.emit(notice)

    @staticmethod
    def _make_provider(provider: str | Provider, *, clock: Clock, seed: int, latency: Any,
                       faults: Any, http: dict[str, Any]) -> Provider:
        if not isinstance(provider, str):
            if http:
                raise ConfigurationError(
                    f"{', '.join(sorted(http))} configure a provider given by name: set them "
                    "on the provider object you pass instead"
                )
            return provider
        from taskorch_nb.llm.registry import choose_auto, make_provider

        key = provider.strip().lower()
        simulated = key == "simulated" or (key == "auto" and choose_auto()[0] == "simulated")
        if simulated and http:
            raise ConfigurationError(
                f"the simulated provider takes no {', '.join(sorted(http))}: "
                "pass provider='openai' (or 'anthropic') with them"
            )
        if key == "simulated":
            from taskorch_nb.agents.simteam import team_responder

            return make_provider("simulated", clock=clock, seed=seed, latency=latency,
                                 faults=faults, responder=team_responder)
        return make_provider(key, clock=clock, **http)

    def _price(self, model: str) -> None:
        """Resolve a model's price; a self-hosted one is free unless `prices` names it,
        which a `pricing.free` notice says once per model."""
        provider = self.provider.price_provider
        if not self.local:
            self.prices.resolve(provider, model)
            return
        if model in self._free or not self.prices.resolve(provider, model, default=FREE,
                                                          local=True):
            return
        self._free.add(model)
        notice = Notice(
            type="pricing.free",
            message=f"model {model!r} is served from {self.base_url}, a local address: its "
            "calls cost $0 (pass prices={...} to price it; cap a run with max_tokens= or "
            "max_requests=)",
            detail={"model": model, "base_url": self.base_url})
        if self._notices is None:
            self.bus.emit(notice)
        else:
            self._notices.append(notice)

    def _remember_capabilities(self) -> None:
        """What the provider learns about a server (request shapes, context window) is kept
        in the store and announced once as a `model.adapted` notice."""
        memory = getattr(self.provider, "capabilities", None)
        if memory is None:
            return
        memory.load(self.store.load_capabilities())

        def learned(key: str, record: dict[str, Any], reason: str) -> None:
            self.store.save_capability(key, record, self.clock.wall())
            self.bus.emit(Notice(type="model.adapted", message=reason,
                                 detail={"key": key, **record}))

        memory.on_learn = learned

    def _connect_federation(self, federation: Any) -> None:
        """Bind the client to the immune system; its HTTP exchange is a tool of its own
        (`federation:hub`, free of charge), so it has a breaker and retries like any call."""
        federation.bind(self.immune, tools=self.tools.names)
        self.tools.register(federation.exchange, name="federation:hub", quiet=True,
                            builtin=True)
        tools = self.tools
        federation.route_through(
            lambda **request: tools.call("federation:hub", request, guard=None))

    def _make_exporter(self, langfuse: Any) -> Any:
        """None: export when LANGFUSE_PUBLIC_KEY/SECRET_KEY are set; False: never; True:
        required; or a ready `LangfuseExporter`. The local trace is kept either way."""
        if langfuse is False:
            return None
        if langfuse is None or langfuse is True:
            from taskorch_nb.tracing.langfuse import LangfuseExporter

            exporter = LangfuseExporter.from_env(on_warning=self.bus.emit)
            if exporter is None and langfuse is True:
                raise ConfigurationError(
                    "langfuse=True needs LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY "
                    "(and LANGFUSE_BASE_URL for a self-hosted server)"
                )
            return exporter
        if getattr(langfuse, "on_warning", False) is None:
            langfuse.on_warning = self.bus.emit  # its warnings become this bus's events
        return langfuse

    @property
    def budget(self) -> BudgetGuard:
        """Deprecated name of `session_guard`."""
        warnings.warn(
            "Orchestrator.budget is deprecated: the guard of calls made outside runs is "
            "Orchestrator.session_guard (a run's own guard is run.guard)",
            DeprecationWarning, stacklevel=2,
        )
        return self.session_guard

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
            made.restore(saved["state"], saved["failures"], opened_at, saved.get("held", False))
        self.circuits[name] = made
        return made

    def _adopt_circuit(self, name: str, state: str, failures: int,
                       opened_wall: float | None, held: bool = False) -> None:
        """Another process on the store opened or closed breaker `name`: so do we. Its
        HALF_OPEN is its own probing, not adopted (each process probes for itself). A
        hold (`trip`) on a breaker already OPEN here is said too: the state is the same,
        but this process's dashboard must show it held."""
        saved = {"state": state, "failures": failures, "opened_wall": opened_wall, "held": held}
        breaker = self.circuits.get(name)
        if breaker is None:
            self._saved_circuits[name] = saved
            return
        if state == "HALF_OPEN":
            return
        opened_at = (None if opened_wall is None
                     else self.clock.now() - (self.clock.wall() - opened_wall))
        was_held = breaker.held
        previous = breaker.restore(state, failures, opened_at, held)
        if previous != state or (breaker.held and not was_held):
            # Said here too (widgets, the log), as the local transition or `trip` says it,
            # but marked adopted: not saved, nor announced, again.
            token = _adopting.set(True)
            try:
                self.bus.emit(CircuitEvent(
                    type="circuit.opened" if state == "OPEN" else "circuit.closed",
                    name=name, state=state, previous=previous.value, failures=failures,
                    reset_at=breaker.reset_at))
            finally:
                _adopting.reset(token)

    def _persist_circuit(self, event: Event) -> None:
        if isinstance(event, CircuitEvent) and not _adopting.get():
            breaker = self.circuits.get(event.name)
            opened_at = breaker.opened_at if breaker is not None else None
            opened_wall = None if opened_at is None else event.wall - (event.ts - opened_at)
            self.store.save_circuit(event.name, event.state, event.failures, opened_wall,
                                    event.wall, breaker is not None and breaker.held)

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
        cost: float | str | Decimal | None = None,
    ) -> Any:
        """Register a sync or async function as a guarded tool (usable as a decorator).

        `fallback` names the tool to use when this one keeps failing; `cost` is
        the USD a metered API bills per request, charged to the guard of the call
        (the run's guard inside a run)."""

        def register(func: F) -> F:
            self.tools.register(func, name=name, fallback=fallback, timeout=timeout,
                                retry=retry, breaker=breaker, cost=cost)
            return func

        return register(fn) if fn is not None else register

    async def call_tool(self, name: str, guard: BudgetGuard | None = None, /,
                        **kwargs: Any) -> Any:
        """Call a tool: breaker -> retry -> immune system -> fallback.

        A metered tool's cost is charged to `guard` (positional, so every keyword is
        the tool's): by default `session_guard`, the guard of calls outside runs.
        """
        return await self.tools.call(name, kwargs,
                                     guard=self.session_guard if guard is None else guard)

    # -- model calls -----------------------------------------------------------

    def model_key(self, model: str | None = None) -> str:
        """The breaker name of a model: `provider:model`."""
        return f"{self.provider.name}:{model or self.model}"

    def _model_tool(self, model: str) -> str:
        key = self.model_key(model)
        if key not in self.tools:
            provider = self.provider

            async def model_call(messages: list, max_tokens: int, tools: Any = None,
                                 response_format: Any = None,
                                 temperature: Any = None) -> Completion:
                return await provider.complete(
                    messages, model=model, max_tokens=max_tokens, tools=tools,
                    response_format=response_format, temperature=temperature,
                )

            self._price(model)
            self.tools.register(model_call, name=key, quiet=True, builtin=True)
        self._model_keys[model] = key
        return key

    async def complete(
        self,
        messages: list[dict],
        *,
        model: str | None = None,
        max_tokens: int = 1024,
        tools: list[dict] | None = None,
        response_format: dict | None = None,
        temperature: float | None = None,
        guard: BudgetGuard | None = None,
    ) -> Completion:
        """One guarded model call: approve (reserve the worst case), call through the
        `provider:model` breaker and retries, price, settle. A refusal raises
        `BudgetExceededError` carrying the cost report.

        `guard` pays: by default `session_guard`, the guard of calls outside runs
        (a run's calls pass `run.guard`).
        """
        model = model or self.model
        key = self._model_keys.get(model) or self._model_tool(model)
        if guard is None:
            guard = self.session_guard
        agent = current_agent.get()
        phase = current_phase.get()
        price_provider = self.provider.price_provider
        input_tokens = estimate_input_tokens(messages, tools)
        worst = self.prices.worst_case(
            price_provider, model, input_tokens=input_tokens, max_tokens=max_tokens,
        )
        reservation = guard.reserve(worst, agent=agent, model=model,
                                    tokens=input_tokens + max_tokens, requests=1)
        call_id = f"llm#{next(self._call_ids)}"
        emit = self.bus.emit
        emit(LLMEvent(type="llm.requested", call_id=call_id, provider=self.provider.name,
                      model=model, agent=agent, phase=phase))
        try:
            async with self.clock.timeout(None if math.isinf(self.deadline) else self.deadline):
                completion: Completion = await self.tools.call(key, {
                    "messages": messages, "max_tokens": max_tokens, "tools": tools,
                    "response_format": response_format, "temperature": temperature,
                }, guard=guard)
        except BaseException as exc:
            guard.release(reservation)
            if not isinstance(exc, Exception):
                raise
            failure = classify(exc, self.clock)
            emit(LLMEvent(type="llm.failed", call_id=call_id, provider=self.provider.name,
                          model=model, agent=agent, phase=phase, status=failure.status,
                          error=f"{type(exc).__name__}: {exc}"[:500]))
            if type(exc) is TimeoutError:  # the deadline's own, not one request's
                reason = f"no answer within the {self.deadline:g} s deadline of one call"
            elif isinstance(exc, CircuitOpenError) or (
                    failure.transient and not isinstance(exc, BudgetExceededError)):
                reason = str(exc)
            else:
                raise
            raise ProviderUnavailableError(
                f"provider {key} unavailable: {reason}; resume when it is back",
                provider=self.provider.name, model=model, status=failure.status,
            ) from exc
        usage = completion.usage
        cost = self.prices.cost(price_provider, model, input_tokens=usage.input_tokens,
                                output_tokens=usage.output_tokens,
                                cached_tokens=usage.cached_tokens,
                                cache_write_tokens=usage.cache_write_tokens)
        guard.commit(reservation, cost, tokens=usage.input_tokens + usage.output_tokens)
        emit(LLMEvent(type="llm.completed", call_id=call_id, provider=self.provider.name,
                      model=model, agent=agent, phase=phase,
                      input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
                      cached_tokens=usage.cached_tokens, cost=cost, latency=completion.latency))
        return completion

    # -- your own agent ----------------------------------------------------------

    def guard(
        self,
        budget: float | str | Decimal | None = None,
        *,
        name: str = "guard",
        max_requests: int | None = None,
        max_tokens: int | None = None,
        max_tool_calls: int | None = None,
        fallback_model: str | None = None,
        reserve_final: float | str | Decimal | None = None,
        retry: RetryPolicy | None = None,
    ) -> Any:
        """`with orch.guard(budget=2.0) as g:` (or `async with`): the model calls the
        official `openai` / `anthropic` SDKs make inside the block (and in threads and tasks
        it starts) get this orchestrator's budget, breakers, retries, immune system and
        events. `g.report()` sums them up; see docs/guard.md.

        `budget` in USD (default `default_budget`; a nested guard: its parent's remainder);
        `max_requests` / `max_tokens` / `max_tool_calls` cap the model requests, tokens and
        the tool calls the model asks for; `fallback_model` takes a request the budget cannot
        cover (or whose breaker is open); `reserve_final` is kept for the calls made inside
        `with g.final():`; `retry` replaces the orchestrator's policy.
        """
        from taskorch_nb.guard import Guard

        return Guard(self, budget=budget, name=name, max_requests=max_requests,
                     max_tokens=max_tokens, max_tool_calls=max_tool_calls,
                     fallback_model=fallback_model, reserve_final=reserve_final, retry=retry)

    # -- runs ------------------------------------------------------------------

    async def run(
        self,
        task: str,
        *,
        workflow: str = "full",
        archetype: str | None = None,
        budget: float | str | Decimal | None = None,
        workspace: str | os.PathLike[str] | None = None,
        max_rounds: int | None = None,
        tools: tuple[str, ...] | list[str] = (),
        max_tokens: int | None = None,
        max_requests: int | None = None,
        **names: Any,
    ) -> Run:
        """Run a task through a workflow (`full` or `single`) and return the `Run`.

        `{name}` in the task is filled from `names`. A budget rejection pauses
        the run (`status` PAUSED); `await run.resume(extra_budget=...)` goes on.
        `max_tokens` / `max_requests` cap the run's model tokens and requests too (a free
        local model's bound); reaching one pauses the run like money
        (`resume(extra_tokens=..., extra_requests=...)`). A provider that stays down
        pauses it as well.
        """
        run = self.runner.create(task, workflow=workflow, archetype=archetype, budget=budget,
                                 workspace=workspace, max_rounds=max_rounds, tools=tools,
                                 names=names, max_tokens=max_tokens,
                                 max_requests=max_requests)
        return await self.runner.execute(run)

    def run_sync(self, task: str, **options: Any) -> Run:
        """`run` for scripts and blocking notebook cells (works inside a running loop)."""
        return wait_for(self.run(task, **options))

    async def start(
        self,
        task: str,
        *,
        workflow: str = "full",
        archetype: str | None = None,
        budget: float | str | Decimal | None = None,
        workspace: str | os.PathLike[str] | None = None,
        max_rounds: int | None = None,
        tools: tuple[str, ...] | list[str] = (),
        max_tokens: int | None = None,
        max_requests: int | None = None,
        **names: Any,
    ) -> Run:
        """`run`, returning as soon as the run is scheduled on this loop: `await run` waits
        for its end. Bad input raises here, before anything is scheduled."""
        run = self.runner.create(task, workflow=workflow, archetype=archetype, budget=budget,
                                 workspace=workspace, max_rounds=max_rounds, tools=tools,
                                 names=names, max_tokens=max_tokens,
                                 max_requests=max_requests)
        return self.runner.schedule(run)

    async def resume(self, run: Run | str, *, extra_budget: float | str | None = None,
                     extra_tokens: int | None = None, extra_requests: int | None = None) -> Run:
        """Continue a PAUSED or INTERRUPTED run (by object or id) from its checkpoint."""
        return await self.runner.resume(run, extra_budget=extra_budget,
                                        extra_tokens=extra_tokens,
                                        extra_requests=extra_requests)

    def resume_sync(self, run: Run | str, *, extra_budget: float | str | None = None,
                    extra_tokens: int | None = None, extra_requests: int | None = None) -> Run:
        """`resume` for scripts and blocking notebook cells (works inside a running loop)."""
        return wait_for(self.resume(run, extra_budget=extra_budget, extra_tokens=extra_tokens,
                                    extra_requests=extra_requests))

    def get_run(self, run_id: str) -> Run:
        """A run of this orchestrator or, by id, from the store (`KeyError` if unknown)."""
        return self.runner.get(run_id)

    def history(self, limit: int | None = None) -> Any:
        """Past runs from the store as a DataFrame (crashed ones show as INTERRUPTED)."""
        return self.runner.history(limit)

    # -- batches ---------------------------------------------------------------

    def map(self, tasks: Iterable[str], *, workflow: str = "full", archetype: str | None = None,
            budget: float | str | Decimal | None = None,
            run_budget: float | str | Decimal | None = None, engine: str = "local",
            max_concurrency: int | None = None, workers: int | None = None,
            max_rounds: int | None = None, **names: Any) -> Batch:
        """Run every task through `workflow` as one `Batch` under one `budget` (USD for
        the whole batch; `run_budget` caps each run). `await batch` waits; in a running
        loop it starts at once. engine="local" runs `max_concurrency` runs at a time on
        this loop; engine="ray" sends them to `workers` processes of the Ray cluster
        (`ray.init(address=...)` first, or a local one is started), which needs a
        PostgreSQL store. Out of budget, the runs left are PAUSED: `batch.resume(...)`."""
        batch = self._batch(tasks, workflow=workflow, archetype=archetype, budget=budget,
                            run_budget=run_budget, engine=engine,
                            max_concurrency=max_concurrency, workers=workers,
                            max_rounds=max_rounds, **names)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return batch  # started by `await batch` / `batch.wait()`
        return batch.schedule()

    def map_sync(self, tasks: Iterable[str], **options: Any) -> Batch:
        """`map` for scripts and blocking notebook cells: returns the finished batch."""
        return wait_for(self._batch(tasks, **options).wait())

    def _batch(self, tasks: Iterable[str], *, budget: Any = None, run_budget: Any = None,
               engine: str = "local", max_concurrency: int | None = None,
               workers: int | None = None, workflow: str = "full",
               archetype: str | None = None, max_rounds: int | None = None,
               **names: Any) -> Batch:
        from taskorch_nb.batch.start import new_batch

        # A URL store's `path` hides its password; the workers need the URL itself.
        store = getattr(self.store, "url", self.store.path)
        settings = {**self._settings, "store": store, "langfuse": False}
        return new_batch(self, tasks, budget=budget, run_budget=run_budget, engine=engine,
                         max_concurrency=max_concurrency, workers=workers,
                         default_budget=self.default_budget, warn_below=self.warn_below,
                         recipe=functools.partial(type(self), **settings),
                         options={"workflow": workflow, "archetype": archetype,
                                  "max_rounds": max_rounds, "names": names})

    # -- workspaces ------------------------------------------------------------

    @property
    def workspace_home(self) -> Path:
        """Where a run without `workspace=` works: `<store folder>/workspaces/RUN_ID`, or for
        an in-memory store a temp folder removed by `close()`."""
        root = workspaces_root(self.store.path)
        if root is not None:
            return root
        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix="taskorch-"))
            # Also when close() is never called: at garbage collection or interpreter exit.
            self._scratch_cleanup = weakref.finalize(self, shutil.rmtree, self._scratch,
                                                     ignore_errors=True)
        return self._scratch

    def prune_workspaces(self, keep: int | None = None) -> Pruned:
        """Remove the workspaces of finished runs beyond the `keep` (default
        `keep_workspaces`) most recent; those of paused or interrupted runs always stay."""
        root = workspaces_root(self.store.path)
        if root is None:
            return Pruned()
        folders = candidates(root)
        states = self.store.run_states(p.name for p in folders)
        return prune(root, states, self.keep_workspaces if keep is None else keep)

    def _prune_at_start(self) -> None:
        pruned = self.prune_workspaces()
        for path, reason in pruned.failed:
            self.bus.emit(Notice(type="workspace.warning", level="warning",
                                 message=f"could not remove old workspace {path}: {reason}"))

    # -- lifecycle -------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Budget and circuits now: what `%orchestrate status` and MCP show (`budget`: the
        session guard's)."""
        guard = self.session_guard
        return {
            "budget": guard.report().to_dict() | {"status": guard.status},
            "circuits": {n: b.snapshot() for n, b in sorted(self.circuits.items())},
            "patterns": len(self.immune),
            "provider": self.provider.name,
            "model": self.model,
        }

    async def aclose(self) -> None:
        """Close the provider's and the hub client's connections, hand the last spans to
        Langfuse, write what is pending and release the store (a store handed in is
        flushed, not closed). The blocking part runs off the loop."""
        try:
            await self.provider.aclose()
            if self.federation is not None:
                await self.federation.aclose()
        finally:
            await asyncio.to_thread(self._release)

    def close(self) -> None:
        """`aclose` for scripts and `with` blocks (works inside a running loop)."""
        wait_for(self.aclose())

    def _release(self) -> None:
        if self.langfuse is not None:
            self.langfuse.close()
        if self.webhook is not None:
            self.webhook.close()
        if self._owns_store:
            self.store.close()
        else:
            self.store.flush()
        if self._scratch is not None:
            self._scratch_cleanup()

    def __enter__(self) -> Orchestrator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Orchestrator:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _whole(name: str, value: object, minimum: int = 1) -> int:
    # bool is an int to Python, "3" is not: both are a caller's slip, said in one line
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    if value < minimum:
        raise ConfigurationError(f"{name} must be >= {minimum}, got {value!r}")
    return value


def _seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"{name} must be a number of seconds, got {value!r}")
    if not 0 < value < math.inf:
        raise ConfigurationError(f"{name} must be > 0 seconds and finite, got {value!r}")
    return float(value)


def history(store: str | os.PathLike[str] | None = None, limit: int | None = None) -> Any:
    """Past runs (newest first) as a DataFrame; runs whose process died are INTERRUPTED.

    `store` is the SQLite file (default `$TASKORCH_HOME/taskorch.db`).
    """
    with Orchestrator(store=store) as orch:
        return orch.history(limit)
