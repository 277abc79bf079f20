"""One guarded model request: the decisions between the SDK and the network.

A `Call` holds no I/O of its own; the guard's sync and async drivers ask it what to do
at each step (send, wait and try again, answer the SDK) so both share one policy:

- before sending: price the worst case, take the fallback model when the budget cannot
  cover the requested one, reserve, ask the `provider:model` breaker for a permit;
- after an answer: settle the usage (a stream settles when it ends), count the tool calls
  the model asked for;
- after a failure: the immune system's known pattern first, then the retry policy, each
  attempt counted by the breaker; when the attempts are spent the pattern is learned.

The guard owns the retries: every error it hands back to the SDK carries
`x-should-retry: false`, which both SDKs obey, so their own `max_retries` never
multiplies ours; a refusal (budget, caps, open breaker) is an answer made here, in the
API's error shape, without touching the network.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from taskorch_nb.core.circuit import Permit
from taskorch_nb.core.events import LLMEvent, Notice, ToolEvent, current_agent, current_phase
from taskorch_nb.core.retry import Failure, RetryPolicy, classify, parse_retry_after
from taskorch_nb.errors import BudgetExceededError, CircuitOpenError, ConfigurationError
from taskorch_nb.guard import wire
from taskorch_nb.guard.refusal import Refusal

if TYPE_CHECKING:
    from taskorch_nb.core.budget import Reservation

_TRANSPORT_STATUS = {"timeout": 504, "connection": 502}


class Call:
    """The life of one model request inside a guard."""

    def __init__(self, guard: Any, ask: wire.Ask, request: Any, module: Any, *,
                 local: bool) -> None:
        self.guard = guard
        self.ask = ask
        self.request = request
        self.module = module
        self.local = local
        self.model = ask.model
        self.key = f"{ask.provider}:{ask.model}"
        self.call_id = guard.next_call_id()
        self.attempt = 0
        self.reservation: Reservation | None = None
        self.permit: Permit | None = None
        self.started = 0.0
        self.options = ask.body.get("stream_options")  # as the caller sent them
        self.asked_usage = request.url.host not in guard.no_stream_usage \
            and wire.asking_for_usage(ask)
        self.rewritten = self.asked_usage
        self.pattern: Any = None
        self.estimate = ask.input_tokens
        ask.input_tokens += guard.overhead(ask.model)

    # -- before sending --------------------------------------------------------------

    def admit(self) -> Refusal | None:
        """Price, fall back, reserve and take a breaker permit; a `Refusal` stops the call."""
        guard = self.guard
        refusal = guard.check_caps(self.ask)
        if refusal is not None:
            return refusal
        try:
            worst = self._worst(self.model)
            room = guard.room()
            fallback = guard.fallback_model
            if worst > room and fallback and fallback != self.model:
                cheaper = self._worst(fallback)
                if cheaper < worst:
                    self._switch(fallback, f"the budget cannot cover {self.model}'s worst case "
                                 f"(${worst:.6f}, ${max(room, Decimal(0)):.6f} left)")
                    worst = cheaper
            if room < worst <= guard.budget.remaining:  # only the final reserve would cover it
                return guard.refuse(self.ask, "final_reserve", 402, (
                    f"the rest of the budget (${guard.reserve_final:.4f}) is kept for the final"
                    " answer: make that call inside `with guard.final():`"))
            self.reservation = guard.budget.reserve(
                worst, agent=current_agent.get(), model=self.model,
                tokens=self.ask.input_tokens + self.ask.max_tokens, requests=1)
        except BudgetExceededError as exc:
            return guard.refuse(self.ask, "budget_exceeded", 402, str(exc))
        except ConfigurationError as exc:
            return guard.refuse(self.ask, "unknown_price", 400, str(exc))
        self.started = guard.clock.now()
        guard.emit(LLMEvent(type="llm.requested", call_id=self.call_id,
                            provider=self.ask.provider, model=self.model,
                            agent=current_agent.get(), phase=current_phase.get()))
        return self.acquire()

    def _worst(self, model: str) -> Decimal:
        price_provider = self.guard.price(self.ask.provider, model, local=self.local)
        return self.guard.host.prices.worst_case(price_provider, model,
                                                 input_tokens=self.ask.input_tokens,
                                                 max_tokens=self.ask.max_tokens)

    def _switch(self, model: str, why: str) -> None:
        self.guard.emit(Notice(type="model.fallback", level="warning",
                               message=f"{self.model} -> {model}: {why}",
                               detail={"from": self.model, "to": model, "call_id": self.call_id}))
        self.model = model
        self.key = f"{self.ask.provider}:{model}"
        self.ask.body["model"] = model
        self.rewritten = True

    def acquire(self) -> Refusal | None:
        """A permit from the breaker of the model in use (the fallback model's when the
        primary's breaker is open)."""
        try:
            self.permit = self.guard.host.breaker(self.key).acquire()
        except CircuitOpenError as exc:
            fallback = self.guard.fallback_model
            if fallback and fallback != self.model:
                self._switch(fallback, f"circuit {self.key} is open")
                return self.acquire()
            self.give_up(Failure("circuit_open", False, 503, exc.retry_in, str(exc)))
            return self.guard.refuse(self.ask, "circuit_open", 503, str(exc),
                                     retry_after=exc.retry_in)
        self.attempt += 1
        return None

    def outgoing(self) -> Any:
        """The request to send (rebuilt when the guard changed its body)."""
        if not self.rewritten:
            return self.request
        self.rewritten = False
        content = wire.encode(self.ask.body)
        headers = [(k, v) for k, v in self.request.headers.raw
                   if k.lower() not in (b"content-length", b"transfer-encoding")]
        self.request = self.module.Request(self.request.method, self.request.url,
                                           headers=headers, content=content,
                                           extensions=self.request.extensions)
        return self.request

    # -- after an answer or an error -------------------------------------------------

    def failure_of(self, response: Any = None, error: BaseException | None = None
                   ) -> Failure | None:
        """What went wrong (None: a success); an error that is not a transport failure
        is not ours to judge and propagates."""
        clock = self.guard.clock
        if error is not None:
            if isinstance(error, self.module.TimeoutException):
                return Failure("timeout", True, message=f"{type(error).__name__}: {error}")
            if isinstance(error, self.module.TransportError):
                return Failure("connection", True, message=f"{type(error).__name__}: {error}")
            return classify(error, clock)
        status = response.status_code
        if status < 400:
            return None
        failure = classify(_StatusError(status), clock)
        retry_after = parse_retry_after(response.headers, wall=clock.wall())
        return Failure(failure.category, failure.transient, status, retry_after,
                       f"HTTP {status} from {self.request.url.host}")

    def without_usage_option(self, failure: Failure) -> bool:
        """A server that refuses the `stream_options` the guard added (a 400) gets the
        request as the caller wrote it, now and for the rest of the guard."""
        if not self.asked_usage or failure.status != 400:
            return False
        self.asked_usage = False
        if self.options is None:
            self.ask.body.pop("stream_options", None)
        else:
            self.ask.body["stream_options"] = self.options
        self.rewritten = True
        self.guard.no_stream_usage.add(self.request.url.host)
        return True

    def next_wait(self, failure: Failure, policy: RetryPolicy) -> float | None:
        """Count the failed attempt; the seconds to wait before the next one, or None
        when the attempts are spent (or retrying cannot help)."""
        guard = self.guard
        breaker = guard.host.breaker(self.key)
        if failure.transient:
            breaker.record_failure(self.permit)
        else:
            breaker.release(self.permit)
        guard.emit(ToolEvent(type="tool.failed", tool=self.key, call_id=self.call_id,
                             attempt=self.attempt, category=failure.category,
                             status=failure.status, error=failure.message[:500],
                             agent=current_agent.get()))
        if not failure.transient:
            return None
        if self.pattern is None:
            known = guard.host.immune.match(self.key, failure)
            fallback = guard.fallback_model
            if known is not None and fallback and known.fallback == fallback != self.model:
                guard.host.immune.seen_again(known)
                guard.host.immune.applied(known)
                self.pattern = known
                self._switch(fallback, f"known pattern {known.name}")
                return 0.0
        if self.attempt >= policy.max_attempts:
            pattern = guard.host.immune.analyze(self.key, failure, fallback=guard.fallback_model)
            fallback = guard.fallback_model
            if self.pattern is not None or not fallback or fallback == self.model:
                return None
            # the attempts are spent: the pattern's strategy, the fallback model, gets one go
            self.pattern = pattern
            guard.host.immune.applied(pattern)
            self._switch(fallback, f"{self.attempt} attempts failed ({failure.category})")
            self.attempt = 0
            return 0.0
        seconds = policy.wait_for(self.attempt, failure)
        guard.emit(ToolEvent(type="retry.scheduled", tool=self.key, call_id=self.call_id,
                             attempt=self.attempt + 1, category=failure.category,
                             status=failure.status, wait=seconds, agent=current_agent.get()))
        return seconds

    def succeeded(self) -> None:
        self.guard.host.breaker(self.key).record_success(self.permit)
        if self.pattern is not None and self.pattern.fallback == self.model:
            self.guard.host.immune.outcome(self.pattern, recovered=True)

    def settle(self, tokens: wire.Tokens, latency: float | None = None) -> None:
        """Charge what the answer used and say so."""
        reservation, self.reservation = self.reservation, None
        if reservation is None:
            return  # settled already (a stream closed twice)
        guard = self.guard
        if tokens.estimated:
            tokens.input_tokens = self.ask.input_tokens
        else:
            guard.learn_overhead(self.model, tokens.input_tokens - self.estimate)
        price_provider = guard.price(self.ask.provider, self.model, local=self.local)
        cached = min(tokens.cached_tokens, tokens.input_tokens)
        written = min(tokens.cache_write_tokens, tokens.input_tokens - cached)
        cost = guard.host.prices.cost(price_provider, self.model,
                                      input_tokens=tokens.input_tokens,
                                      output_tokens=tokens.output_tokens,
                                      cached_tokens=cached, cache_write_tokens=written)
        guard.budget.commit(reservation, cost,
                            tokens=tokens.input_tokens + tokens.output_tokens)
        guard.count(self, tokens)
        if tokens.estimated:
            guard.said_once("usage.estimated", self.model, (
                f"{self.request.url.host} sent no usage for {self.model}: its tokens are "
                "counted from the stream (one per chunk) and the prompt estimated"))
        guard.emit(LLMEvent(type="llm.completed", call_id=self.call_id,
                            provider=self.ask.provider, model=self.model,
                            agent=current_agent.get(), phase=current_phase.get(),
                            input_tokens=tokens.input_tokens,
                            output_tokens=tokens.output_tokens,
                            cached_tokens=tokens.cached_tokens, cost=cost,
                            latency=self.guard.clock.now() - self.started
                            if latency is None else latency))

    def give_up(self, failure: Failure) -> None:
        """The call ends in an error: nothing is charged."""
        self._release()
        self.guard.emit(LLMEvent(type="llm.failed", call_id=self.call_id,
                                 provider=self.ask.provider, model=self.model,
                                 agent=current_agent.get(), phase=current_phase.get(),
                                 status=failure.status, error=failure.message[:500]))
        if self.pattern is not None and self.pattern.fallback == self.model:
            self.guard.host.immune.outcome(self.pattern, recovered=False)

    def _release(self) -> None:
        reservation, self.reservation = self.reservation, None
        if reservation is not None:
            self.guard.budget.release(reservation)

    def transport_answer(self, failure: Failure) -> Any:
        """The SDK's answer when the network failed for good: a 502/504 it will not retry."""
        status = _TRANSPORT_STATUS.get(failure.category, 502)
        return self.guard.refuse(self.ask, failure.category, status,
                                 f"{failure.message} (after {self.attempt} attempt(s))",
                                 count=False).response(self.module, self.request)

    def read_whole(self, response: Any) -> wire.Tokens:
        """The usage of an answer read whole; estimated when the server sent none."""
        try:
            tokens = wire.read_usage(self.ask.kind, response.json())
        except ValueError:
            tokens = None
        if tokens is None:
            size = len(response.content)
            tokens = wire.Tokens(self.ask.input_tokens, min(-(-size // 4), self.ask.max_tokens),
                                 estimated=True)
        return tokens


class _StatusError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status_code = status


def blocking_sleep(clock: Any, seconds: float) -> None:
    """Wait on a sync path: a fake clock (which has `advance`) moves, a real one sleeps."""
    if seconds <= 0:
        return
    advance = getattr(clock, "advance", None)
    if advance is not None:
        clock.slept.append(seconds)
        advance(seconds)
    else:
        time.sleep(seconds)


__all__ = ["Call", "blocking_sleep"]
