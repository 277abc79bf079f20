"""Guarded tool calls: breaker -> retry -> immune system -> fallback.

The success path is the hot path: a closed breaker, the call, one
`tool.succeeded` event. Everything else (classification, retries, the immune
system, the fallback) is built only once an attempt has failed.

Every call names the guard its metered cost is charged to (a run's guard, or
the orchestrator's session guard): money travels as an argument, never through
a context variable. A strategy the immune system applies on the call's behalf
hands its corrective prompt back to the caller, in the `prompts` list it gave.
"""

from __future__ import annotations

import inspect
import itertools
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from taskorch_nb.core.budget import BudgetGuard
from taskorch_nb.core.circuit import CircuitBreaker, Permit
from taskorch_nb.core.clock import Clock
from taskorch_nb.core.events import Event, ToolEvent, current_agent
from taskorch_nb.core.immune import ImmuneSystem, Pattern
from taskorch_nb.core.money import format_usd, parse_usd
from taskorch_nb.core.retry import Failure, RetryPolicy, classify
from taskorch_nb.core.toolname import tool_name_problem
from taskorch_nb.errors import (
    CircuitOpenError,
    ConfigurationError,
    ToolArgumentsError,
    UnknownToolError,
)

_SIMPLE_TYPES: dict[Any, tuple[type, ...]] = {
    str: (str,), "str": (str,),
    int: (int,), "int": (int,),
    float: (int, float), "float": (int, float),
    bool: (bool,), "bool": (bool,),
    list: (list,), "list": (list,),
    dict: (dict,), "dict": (dict,),
}

#: Seconds a user tool may run when neither it nor the orchestrator names a limit:
#: a hung tool must not hang the run.
DEFAULT_TOOL_TIMEOUT = 60.0

_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean",
               list: "array", dict: "object"}


_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)


class ToolSchema(dict):  # type: ignore[type-arg]
    """A tool as offered to a model, frozen so that its JSON sizes are measured once.

    The engine offers the same tools on every call of every run; serialising them for
    each estimate was most of an estimate's cost. Mutating one raises `TypeError`.
    """

    __slots__ = ("_sizes",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sizes: tuple[int, int] | None = None

    def json_sizes(self) -> tuple[int, int]:
        """(characters, UTF-8 bytes) of this tool's JSON."""
        if self._sizes is None:
            text = _ENCODER.encode(self)
            self._sizes = (len(text), len(text.encode("utf-8", "surrogatepass")))
        return self._sizes

    def _frozen(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("a ToolSchema is frozen: copy it with dict(schema) to change it")

    __setitem__ = __delitem__ = update = pop = popitem = clear = setdefault = _frozen  # type: ignore[assignment]
    __ior__ = _frozen  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:  # copy, deepcopy and pickle rebuild it whole
        return (ToolSchema, (dict(self),))


@dataclass(slots=True)
class ToolSpec:
    """A registered tool and its guards."""

    name: str
    fn: Callable[..., Any]
    is_async: bool
    fallback: str | None
    timeout: float | None
    retry: RetryPolicy
    breaker: CircuitBreaker
    description: str
    params: frozenset[str]
    required: frozenset[str]
    open_kwargs: bool
    checks: tuple[tuple[str, tuple[type, ...]], ...]
    schema: dict[str, Any] | None = None
    quiet: bool = False
    """No `tool.succeeded` event (model calls: `llm.completed` already says it)."""
    cost: Decimal | None = None
    """USD charged to the call's guard per attempt (a metered API), failed or not."""
    builtin: bool = False
    """Registered by taskorch itself (workspace tools, model calls): no user tool replaces it."""
    offered: ToolSchema | None = None

    @classmethod
    def build(cls, fn: Callable[..., Any], *, name: str, fallback: str | None,
              timeout: float | None, retry: RetryPolicy, breaker: CircuitBreaker,
              cost: Decimal | None = None, quiet: bool = False,
              builtin: bool = False) -> ToolSpec:
        sig = inspect.signature(fn)
        params, required, checks = set(), set(), []
        open_kwargs = False
        for p in sig.parameters.values():
            if p.kind is p.VAR_KEYWORD:
                open_kwargs = True
                continue
            if p.kind in (p.VAR_POSITIONAL, p.POSITIONAL_ONLY):
                raise ConfigurationError(
                    f"tool {name!r}: parameter {p.name!r} must be passable by keyword"
                )
            params.add(p.name)
            if p.default is p.empty:
                required.add(p.name)
            if p.annotation in _SIMPLE_TYPES:
                checks.append((p.name, _SIMPLE_TYPES[p.annotation]))
        return cls(
            name=name,
            fn=fn,
            is_async=inspect.iscoroutinefunction(fn)
            or inspect.iscoroutinefunction(type(fn).__call__),
            fallback=fallback,
            timeout=timeout,
            retry=retry,
            breaker=breaker,
            description=inspect.getdoc(fn) or "",
            params=frozenset(params),
            required=frozenset(required),
            open_kwargs=open_kwargs,
            checks=tuple(checks),
            cost=cost,
            quiet=quiet,
            builtin=builtin,
        )

    def check(self, kwargs: Mapping[str, Any]) -> None:
        """Bad arguments are a caller error: raised before any attempt, never retried."""
        keys = kwargs.keys()
        if not self.required <= keys:
            missing = ", ".join(sorted(self.required - keys))
            raise ToolArgumentsError(self.name, f"missing required argument(s): {missing}")
        if not self.open_kwargs and not keys <= self.params:
            extra = ", ".join(sorted(keys - self.params))
            known = ", ".join(sorted(self.params)) or "none"
            raise ToolArgumentsError(self.name, f"unexpected argument(s): {extra}; takes {known}")
        for pname, types in self.checks:
            value = kwargs.get(pname, None)
            if (pname in kwargs and not isinstance(value, types)) or (
                types == (int,) and isinstance(value, bool)
            ):
                expected = " or ".join(t.__name__ for t in types)
                raise ToolArgumentsError(
                    self.name, f"{pname}={value!r} is {type(value).__name__}, expected {expected}"
                )

    def json_schema(self) -> dict[str, Any]:
        """Parameters as JSON schema, for offering the tool to a model (built once)."""
        if self.schema is not None:
            return self.schema
        props: dict[str, Any] = {}
        for p in inspect.signature(self.fn).parameters.values():
            if p.name in self.params:
                kinds = _SIMPLE_TYPES.get(p.annotation, (str,))
                props[p.name] = {"type": _JSON_TYPES[kinds[-1]]}
        self.schema = {"type": "object", "properties": props, "required": sorted(self.required)}
        return self.schema

    def offer(self) -> ToolSchema:
        """This tool as offered to a model (name, description, parameters), built once."""
        if self.offered is None:
            self.offered = ToolSchema(name=self.name, description=self.description,
                                      parameters=self.json_schema())
        return self.offered


def _check_timeout(seconds: object, what: str) -> float | None:
    if seconds is None:
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise ConfigurationError(f"{what} must be a number of seconds, got {seconds!r}")
    if not 0 < seconds < math.inf:
        raise ConfigurationError(f"{what} must be > 0 seconds and finite, got {seconds!r}")
    return float(seconds)


class Toolbox:
    """The registered tools of one orchestrator and the guarded way to call them."""

    def __init__(
        self,
        *,
        clock: Clock,
        emit: Callable[[Event], Any],
        immune: ImmuneSystem,
        breaker_for: Callable[[str, CircuitBreaker | None], CircuitBreaker],
        retry: RetryPolicy,
        timeout: float | None = DEFAULT_TOOL_TIMEOUT,
    ) -> None:
        self.clock = clock
        self.default_timeout = _check_timeout(timeout, "the default tool timeout")
        """Seconds a user tool may take when it names no `timeout` (None: no limit)."""
        self._emit = emit
        self.immune = immune
        self._breaker_for = breaker_for
        self.default_retry = retry
        self._tools: dict[str, ToolSpec] = {}
        self._ids = itertools.count(1)

    # -- registration --------------------------------------------------------

    def register(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        fallback: str | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        cost: float | str | Decimal | None = None,
        quiet: bool = False,
        builtin: bool = False,
    ) -> ToolSpec:
        """`timeout` None takes the toolbox's default for user tools; built-in tools (taskorch's
        own: `builtin=True`) have their own limits and get none."""
        tool_name = getattr(fn, "__name__", "") if name is None else name
        if not builtin:
            self._check_user_name(tool_name)
            # The hub's rule too, so every tool's patterns can be shared.
            for label, value in (("name", tool_name), ("fallback", fallback)):
                problem = None if value is None else tool_name_problem(value)
                if problem is not None:
                    hint = " (pass name=)" if label == "name" and name is None else ""
                    raise ConfigurationError(f"tool {label}: {problem}{hint}")
            timeout = self.default_timeout if timeout is None else timeout
        timeout = _check_timeout(timeout, f"tool {tool_name!r}: timeout")
        price = None if cost is None else parse_usd(cost, f"the cost of tool {tool_name!r}",
                                                     allow_zero=True)
        if fallback == tool_name:
            raise ConfigurationError(f"tool {tool_name!r} cannot be its own fallback")
        spec = ToolSpec.build(
            fn,
            name=tool_name,
            fallback=fallback,
            timeout=timeout,
            retry=retry or self.default_retry,
            breaker=self._breaker_for(tool_name, breaker),
            cost=price,
            quiet=quiet,
            builtin=builtin,
        )
        self._tools[tool_name] = spec
        return spec

    def _check_user_name(self, name: object) -> None:
        """Refuse names that would replace taskorch's own tools or say nothing."""
        if not isinstance(name, str) or not name.strip() or name == "<lambda>":
            rule = tool_name_problem(name) if isinstance(name, str) else None
            raise ConfigurationError(
                f"{rule + ': ' if rule else ''}a tool needs a name (got {name!r}): pass "
                "name='...' (pass name=) when registering a lambda or a callable without one")
        if ":" in name:
            raise ConfigurationError(
                f"tool name {name!r} is reserved: names with ':' belong to taskorch's own "
                "tools (model calls are 'provider:model', the hub is 'federation:hub')")
        existing = self._tools.get(name)
        if existing is not None and existing.builtin:
            raise ConfigurationError(
                f"tool name {name!r} is taken by a built-in tool; choose another name")

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __getitem__(self, name: str) -> ToolSpec:
        spec = self._tools.get(name)
        if spec is None:
            raise UnknownToolError(name, list(self._tools))
        return spec

    def names(self) -> list[str]:
        return sorted(self._tools)

    # -- calling -------------------------------------------------------------

    async def call(self, name: str, kwargs: dict[str, Any], *, guard: BudgetGuard | None,
                   prompts: list[str] | None = None, _via: tuple[str, ...] = ()) -> Any:
        """Call a tool behind its breaker, retries, immune system and fallback.

        `guard` pays a metered tool's cost (None only for calls that cost nothing:
        a metered tool then refuses); `prompts` receives the corrective prompts of
        the strategies applied on this call's behalf, for the caller's next model call.
        """
        spec = self._tools.get(name)
        if spec is None:
            referenced_by = _via[-1] if _via else None
            raise UnknownToolError(name, list(self._tools), referenced_by=referenced_by)
        spec.check(kwargs)
        if spec.cost is not None and guard is None:
            raise ConfigurationError(
                f"tool {name!r} costs {format_usd(spec.cost)} per request: call it with the guard "
                "that pays (a run's guard, or the orchestrator's session_guard)"
            )
        call_id = f"{name}#{next(self._ids)}"
        breaker = spec.breaker
        try:
            permit = breaker.acquire()
        except CircuitOpenError:
            if spec.fallback is None:
                raise
            pattern = self.immune.latest_for(name)
            return await self._fallback(spec, kwargs, call_id, pattern, _via, guard, prompts,
                                        cause=None)
        start = self.clock.now()
        try:
            if spec.cost is None and spec.timeout is None and spec.is_async:
                result = await spec.fn(**kwargs)  # what `_invoke` does here, two frames fewer
            else:
                result = await self._invoke(spec, kwargs, guard)
        except Exception as exc:
            return await self._recover(spec, kwargs, call_id, permit, exc, start, _via, guard,
                                       prompts)
        breaker.record_success(permit)
        if not spec.quiet:
            self._emit(ToolEvent(type="tool.succeeded", tool=name, call_id=call_id,
                                 duration=self.clock.now() - start, agent=current_agent.get()))
        return result

    async def _invoke(self, spec: ToolSpec, kwargs: dict[str, Any],
                      guard: BudgetGuard | None) -> Any:
        if spec.cost is None or guard is None:  # `call` refused a metered tool without a guard
            return await self._run(spec, kwargs)
        reservation = guard.reserve(spec.cost, agent=current_agent.get(), tool=spec.name)
        try:
            return await self._run(spec, kwargs)
        finally:
            guard.commit(reservation, spec.cost)  # a metered API bills failed requests too

    async def _run(self, spec: ToolSpec, kwargs: dict[str, Any]) -> Any:
        clock = self.clock
        call = spec.fn(**kwargs) if spec.is_async else clock.to_thread(spec.fn, **kwargs)
        if spec.timeout is None:
            return await call
        async with clock.timeout(spec.timeout):
            return await call

    async def _attempt(self, spec: ToolSpec, kwargs: dict[str, Any], call_id: str,
                       attempt: int, guard: BudgetGuard | None) -> Any:
        """One retry attempt: breaker, call, record, event."""
        permit = spec.breaker.acquire()
        start = self.clock.now()
        try:
            result = await self._invoke(spec, kwargs, guard)
        except Exception as exc:
            self._failed(spec, call_id, attempt, permit, classify(exc, self.clock), start)
            raise
        spec.breaker.record_success(permit)
        if not spec.quiet:
            self._emit(ToolEvent(type="tool.succeeded", tool=spec.name, call_id=call_id,
                                 attempt=attempt, duration=self.clock.now() - start,
                                 agent=current_agent.get()))
        return result

    def _failed(self, spec: ToolSpec, call_id: str, attempt: int, permit: Permit,
                failure: Failure, start: float) -> None:
        self._emit(ToolEvent(
            type="tool.failed", tool=spec.name, call_id=call_id, attempt=attempt,
            category=failure.category, status=failure.status, error=failure.message[:500],
            duration=self.clock.now() - start, agent=current_agent.get(),
        ))
        if failure.transient:
            spec.breaker.record_failure(permit)
        else:
            spec.breaker.release(permit)

    async def _recover(self, spec: ToolSpec, kwargs: dict[str, Any], call_id: str,
                       permit: Permit, exc: Exception, start: float,
                       via: tuple[str, ...], guard: BudgetGuard | None,
                       prompts: list[str] | None) -> Any:
        """The first attempt failed: known pattern, else retries, else learn and fall back."""
        failure = classify(exc, self.clock)
        self._failed(spec, call_id, 1, permit, failure, start)
        if not failure.transient:
            if failure.category == "error":  # a bug in the tool: remembered, never retried
                pattern = self.immune.analyze(spec.name, failure, fallback=spec.fallback)
                exc.add_note(f"taskorch: {spec.name!r} raised a non-transient error "
                             f"(not retried); pattern {pattern.name!r}")
            raise exc
        known = self.immune.match(spec.name, failure)
        if known is not None:
            self.immune.seen_again(known)
            return await self._fallback(spec, kwargs, call_id, known, via, guard, prompts,
                                        cause=exc)
        attempts = 1
        last_exc: Exception = exc
        policy = spec.retry
        if policy.max_attempts > 1:
            wait = policy.wait_for(1, failure)
            self._scheduled(spec, call_id, 2, wait, failure)
            await self.clock.sleep(wait)

            def on_wait(next_attempt: int, seconds: float, f: Failure) -> None:
                self._scheduled(spec, call_id, next_attempt, seconds, f)

            try:
                async for attempt in policy.retrying(self.clock, on_wait=on_wait):
                    with attempt:
                        attempts = attempt.retry_state.attempt_number + 1
                        result = await self._attempt(spec, kwargs, call_id, attempts, guard)
                return result
            except CircuitOpenError:
                pass  # the breaker opened under us: stop trying, keep the real failure
            except Exception as retry_exc:
                last_exc = retry_exc
                failure = classify(retry_exc, self.clock)
                if not failure.transient:
                    raise
        pattern = self.immune.analyze(spec.name, failure, fallback=spec.fallback)
        if spec.fallback is None:
            last_exc.add_note(
                f"taskorch: {spec.name!r} failed {attempts} attempt(s); pattern {pattern.name!r}"
            )
            raise last_exc
        return await self._fallback(spec, kwargs, call_id, pattern, via, guard, prompts,
                                    cause=last_exc)

    def _scheduled(self, spec: ToolSpec, call_id: str, attempt: int, wait: float,
                   failure: Failure) -> None:
        self._emit(ToolEvent(
            type="retry.scheduled", tool=spec.name, call_id=call_id, attempt=attempt,
            wait=wait, category=failure.category, status=failure.status,
            agent=current_agent.get(),
        ))

    async def _fallback(self, spec: ToolSpec, kwargs: dict[str, Any], call_id: str,
                        pattern: Pattern | None, via: tuple[str, ...],
                        guard: BudgetGuard | None, prompts: list[str] | None,
                        cause: Exception | None) -> Any:
        """Apply the strategy: corrective prompt to the caller, the fallback tool called
        instead (charged to the same guard)."""
        fallback = spec.fallback if pattern is None or not pattern.fallback else pattern.fallback
        if fallback is None or fallback not in self._tools:
            if fallback is not None:
                raise UnknownToolError(fallback, list(self._tools), referenced_by=spec.name)
            assert cause is not None
            raise cause
        chain = (*via, spec.name)
        if fallback in chain:
            path = " -> ".join((*chain, fallback))
            raise ConfigurationError(f"fallback cycle between {spec.name!r} and {fallback!r}: "
                                     f"{path}")
        if pattern is not None:
            self.immune.applied(pattern)
            if prompts is not None and pattern.usable_prompt:  # federated text: once approved
                prompts.append(pattern.usable_prompt)
        self._emit(ToolEvent(type="tool.fallback", tool=fallback, call_id=call_id,
                             fallback_of=spec.name, agent=current_agent.get()))
        try:
            result = await self.call(fallback, kwargs, guard=guard, prompts=prompts, _via=chain)
        except (ConfigurationError, ToolArgumentsError):
            raise
        except Exception as fallback_exc:
            if pattern is not None:
                self.immune.outcome(pattern, recovered=False)
            fallback_exc.add_note(
                f"taskorch: fallback {fallback!r} of {spec.name!r} failed too"
            )
            raise
        if pattern is not None:
            self.immune.outcome(pattern, recovered=True)
        return result
