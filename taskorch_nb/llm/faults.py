"""Fault injection for the simulated provider: the failures of a real API, on schedule.

Each fault raises exactly what `OpenAIProvider`/`AnthropicProvider` raise for
the matching HTTP failure, so the retry, breaker and immune layers cannot tell
the difference. Call numbers are 1-based and count the calls the provider
made since the plan was given to it.

Python API (each method returns the plan, so calls chain)::

    FaultPlan().timeout(at=1).rate_limit(at=2, retry_after=3) \\
        .server_error(504, times=3).malformed(at=8).random(p=0.1, kind="500")

`at=N` puts the fault on call N; without `at` a fault follows the ones before
it (its first call is one past the last scheduled call); `times=K` repeats it
on K consecutive calls. Random faults hit any call with no scheduled fault,
with probability `p`, drawn from the provider's seeded generator.

Spec grammar (`FaultPlan.parse`), entries separated by commas::

    plan   := entry ("," entry)*              spaces around entries are ignored
    entry  := ["p" PROB ":"] kind ["x" TIMES] ["@" AT] (":" option)*
    kind   := "timeout" | "malformed" | "conn" | STATUS    STATUS: 400-599, 429 = rate limit
    option := "retry_after=" SECONDS          on 429
            | "after=" SECONDS                on timeout: wait this long, not the timeout

    "504x3,timeout@5,429@7:retry_after=2,malformed@9,p0.1:503"

A random entry (`pPROB:`) takes neither `x` nor `@`. A bad spec raises
`FaultSpecError` (a `ConfigurationError`) naming the position.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Literal

from taskorch_nb.errors import (
    ConfigurationError,
    ProviderError,
    ProviderResponseError,
    ProviderTimeoutError,
    RateLimitError,
)

FaultKind = Literal["timeout", "rate_limit", "http", "malformed", "connection"]


class FaultSpecError(ConfigurationError):
    """A fault spec string that does not parse; `position` is the 0-based offset."""

    def __init__(self, spec: str, position: int, reason: str) -> None:
        self.spec = spec
        self.position = position
        self.reason = reason
        super().__init__(f"bad fault spec {spec!r} at position {position}: {reason}")


def _num(value: float) -> str:
    """A number as the spec writes it: `2`, `0.1`, exact enough to parse back equal."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected failure."""

    kind: FaultKind
    status: int | None = None
    """HTTP status for `http` (and 429 for `rate_limit`)."""
    retry_after: float | None = None
    """Seconds the 429 asks to wait (None: no Retry-After header)."""
    after: float | None = None
    """Seconds a timeout waits before raising (None: the provider's timeout)."""

    def to_spec(self) -> str:
        """This fault in the spec grammar (without position or count)."""
        if self.kind == "timeout":
            return "timeout" + ("" if self.after is None else f":after={_num(self.after)}")
        if self.kind == "rate_limit":
            extra = "" if self.retry_after is None else f":retry_after={_num(self.retry_after)}"
            return "429" + extra
        if self.kind == "malformed":
            return "malformed"
        if self.kind == "connection":
            return "conn"
        return str(self.status)

    def error(self, *, provider: str, model: str, waited: float = 0.0) -> ProviderError:
        """The exception a real provider raises for this failure."""
        if self.kind == "timeout":
            return ProviderTimeoutError(
                f"{provider} did not answer within {waited:g} s (injected timeout)",
                provider=provider, model=model,
            )
        if self.kind == "rate_limit":
            return RateLimitError(
                f"{provider} rate limit for model {model!r}: injected 429",
                provider=provider, model=model, status=429, retry_after=self.retry_after,
                body='{"error": {"message": "injected rate limit"}}',
            )
        if self.kind == "malformed":
            return ProviderResponseError(
                f"{provider} sent an unusable answer for model {model!r}: body is not JSON "
                "(injected)",
                provider=provider, model=model, status=200, body='{"choices": [{"mess',
            )
        if self.kind == "connection":
            import httpx  # lazily: ~0.3 s to import, and only this fault needs it

            exc = ProviderError(
                f"{provider} unreachable: ConnectError: injected connection refused",
                provider=provider, model=model, status=None,
            )
            exc.__cause__ = httpx.ConnectError("injected connection refused")
            exc.__suppress_context__ = True
            return exc
        return ProviderError(
            f"{provider} answered {self.status} for model {model!r}: injected fault",
            provider=provider, model=model, status=self.status,
            body=f'{{"error": {{"message": "injected {self.status}"}}}}',
        )


@dataclass(frozen=True, slots=True)
class _Scheduled:
    fault: Fault
    start: int
    times: int

    @property
    def end(self) -> int:
        return self.start + self.times - 1


@dataclass(frozen=True, slots=True)
class _Random:
    fault: Fault
    p: float


def _check_status(status: int) -> int:
    if not isinstance(status, int) or not 400 <= status <= 599:
        raise ConfigurationError(f"fault status must be an HTTP error 400-599, not {status!r}")
    return status


class FaultPlan:
    """Which calls fail, and how; build it in Python or with `FaultPlan.parse(spec)`."""

    def __init__(self) -> None:
        self._scheduled: list[_Scheduled] = []
        self._random: list[_Random] = []

    # building ---------------------------------------------------------------------------------

    def _schedule(self, fault: Fault, at: int | None, times: int) -> FaultPlan:
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            raise ConfigurationError(f"times must be a positive int, not {times!r}")
        if at is None:
            at = max((s.end for s in self._scheduled), default=0) + 1
        elif isinstance(at, bool) or not isinstance(at, int) or at < 1:
            raise ConfigurationError(f"at must be a 1-based call number, not {at!r}")
        entry = _Scheduled(fault, at, times)
        for other in self._scheduled:
            if entry.start <= other.end and other.start <= entry.end:
                raise ConfigurationError(
                    f"calls {entry.start}-{entry.end} ({fault.to_spec()}) overlap calls "
                    f"{other.start}-{other.end} ({other.fault.to_spec()})"
                )
        self._scheduled.append(entry)
        return self

    def timeout(
        self, *, at: int | None = None, times: int = 1, after: float | None = None
    ) -> FaultPlan:
        """Calls that hang: wait `after` (default: the provider's timeout), then time out."""
        return self._schedule(Fault("timeout", after=after), at, times)

    def rate_limit(
        self, *, at: int | None = None, times: int = 1, retry_after: float | None = None
    ) -> FaultPlan:
        """HTTP 429, with `retry_after` seconds as the server's Retry-After."""
        return self._schedule(Fault("rate_limit", status=429, retry_after=retry_after), at, times)

    def server_error(
        self, status: int = 500, *, at: int | None = None, times: int = 1
    ) -> FaultPlan:
        """An HTTP 5xx answer."""
        if not isinstance(status, int) or not 500 <= status <= 599:
            raise ConfigurationError(f"server_error needs a 5xx status, not {status!r}")
        return self._schedule(Fault("http", status=status), at, times)

    def http_error(self, status: int, *, at: int | None = None, times: int = 1) -> FaultPlan:
        """Any HTTP error status (401, 404, 529, ...); 429 becomes a rate limit."""
        if _check_status(status) == 429:
            return self.rate_limit(at=at, times=times)
        return self._schedule(Fault("http", status=status), at, times)

    def malformed(self, *, at: int | None = None, times: int = 1) -> FaultPlan:
        """A 200 answer whose body is not valid JSON."""
        return self._schedule(Fault("malformed"), at, times)

    def connection_error(self, *, at: int | None = None, times: int = 1) -> FaultPlan:
        """The server cannot be reached (connection refused)."""
        return self._schedule(Fault("connection"), at, times)

    def random(
        self,
        p: float,
        kind: str = "500",
        *,
        retry_after: float | None = None,
        after: float | None = None,
    ) -> FaultPlan:
        """Any call without a scheduled fault fails with probability `p`; `kind` as in a spec."""
        if not isinstance(p, int | float) or not 0.0 <= p <= 1.0:
            raise ConfigurationError(f"fault probability must be within [0, 1], not {p!r}")
        fault = _fault_of_kind(str(kind), retry_after=retry_after, after=after)
        self._random.append(_Random(fault, float(p)))
        return self

    # using ------------------------------------------------------------------------------------

    def fault_for(self, call: int, rng: random.Random) -> Fault | None:
        """The fault of 1-based call `call`, if any.

        Every random entry draws once per call, whether or not a scheduled
        fault wins, so the random stream does not depend on the schedule.
        """
        drawn = [r.fault for r in self._random if rng.random() < r.p]
        for entry in self._scheduled:
            if entry.start <= call <= entry.end:
                return entry.fault
        return drawn[0] if drawn else None

    @property
    def faults(self) -> list[tuple[int, int, Fault]]:
        """Scheduled faults as (first call, times, fault), by first call."""
        return [(s.start, s.times, s.fault) for s in sorted(self._scheduled, key=lambda s: s.start)]

    def to_spec(self) -> str:
        """The plan in the spec grammar; `FaultPlan.parse(plan.to_spec()) == plan`."""
        parts = []
        for start, times, fault in self.faults:
            kind, _, options = fault.to_spec().partition(":")
            count = f"x{times}" if times > 1 else ""
            parts.append(f"{kind}{count}@{start}" + (f":{options}" if options else ""))
        parts += [f"p{_num(r.p)}:{r.fault.to_spec()}" for r in self._random]
        return ",".join(parts)

    def __str__(self) -> str:
        return self.to_spec()

    def __repr__(self) -> str:
        return f"FaultPlan.parse({self.to_spec()!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FaultPlan):
            return NotImplemented
        return self.faults == other.faults and self._random == other._random

    __hash__ = None  # type: ignore[assignment]  # mutable builder

    def __bool__(self) -> bool:
        return bool(self._scheduled or self._random)

    @classmethod
    def coerce(cls, value: FaultPlan | str | None) -> FaultPlan | None:
        """A plan from a plan, a spec string or None."""
        if value is None or isinstance(value, FaultPlan):
            return value
        if isinstance(value, str):
            return cls.parse(value)
        raise ConfigurationError(f"faults must be a FaultPlan or a spec string, not {value!r}")

    @classmethod
    def parse(cls, spec: str) -> FaultPlan:
        """A plan from the spec grammar in this module's docstring."""
        return _Parser(spec).plan()


def _fault_of_kind(
    kind: str, *, retry_after: float | None = None, after: float | None = None
) -> Fault:
    if kind == "timeout":
        return Fault("timeout", after=after)
    if kind == "malformed":
        return Fault("malformed")
    if kind == "conn":
        return Fault("connection")
    if kind.isdigit() and _check_status(int(kind)) == 429:
        return Fault("rate_limit", status=429, retry_after=retry_after)
    if kind.isdigit():
        return Fault("http", status=int(kind))
    raise ConfigurationError(
        f"fault kind {kind!r} unknown; use timeout, malformed, conn or an HTTP status"
    )


_KIND = re.compile(r"timeout|malformed|conn|\d{3}")
_INT = re.compile(r"\d+")
_NUMBER = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_OPTION = re.compile(r"([a-z_]+)=")


class _Parser:
    """A one-pass scanner that reports the offset of the first thing it cannot read."""

    def __init__(self, spec: str) -> None:
        if not isinstance(spec, str):
            raise ConfigurationError(f"a fault spec is a string, not {spec!r}")
        self.spec = spec
        self.pos = 0

    def fail(self, reason: str, position: int | None = None) -> FaultSpecError:
        return FaultSpecError(self.spec, self.pos if position is None else position, reason)

    def take(self, pattern: re.Pattern[str], what: str) -> str:
        match = pattern.match(self.spec, self.pos)
        if match is None:
            raise self.fail(f"expected {what}")
        self.pos = match.end()
        return match.group(0)

    def skip_spaces(self) -> None:
        while self.pos < len(self.spec) and self.spec[self.pos].isspace():
            self.pos += 1

    def plan(self) -> FaultPlan:
        plan = FaultPlan()
        self.skip_spaces()
        if self.pos == len(self.spec):
            return plan
        while True:
            self.skip_spaces()
            self.entry(plan)
            self.skip_spaces()
            if self.pos == len(self.spec):
                return plan
            if self.spec[self.pos] != ",":
                raise self.fail(f"unexpected {self.spec[self.pos]!r}; entries are separated by ','")
            self.pos += 1

    def entry(self, plan: FaultPlan) -> None:
        start = self.pos
        prob: float | None = None
        if self.spec.startswith("p", self.pos):
            self.pos += 1
            prob = float(self.take(_NUMBER, "a probability after 'p'"))
            if prob > 1.0:
                raise self.fail("a probability is at most 1", start + 1)
            if not self.spec.startswith(":", self.pos):
                raise self.fail("expected ':' after the probability")
            self.pos += 1
        kind_at = self.pos
        kind = self.take(_KIND, "a fault kind (timeout, malformed, conn or an HTTP status)")
        if kind.isdigit() and not 400 <= int(kind) <= 599:
            raise self.fail(f"status {kind} is not an HTTP error (400-599)", kind_at)
        times, at = 1, None
        while self.pos < len(self.spec) and self.spec[self.pos] in "x@":
            mark, mark_at = self.spec[self.pos], self.pos
            if prob is not None:
                raise self.fail(f"a random fault takes no '{mark}'", mark_at)
            self.pos += 1
            value = int(self.take(_INT, f"a number after '{mark}'"))
            if value < 1:
                raise self.fail(f"'{mark}' needs a number from 1", mark_at + 1)
            if mark == "x":
                if times != 1:
                    raise self.fail("'x' given twice", mark_at)
                times = value
            else:
                if at is not None:
                    raise self.fail("'@' given twice", mark_at)
                at = value
        options: dict[str, float] = {}
        while self.spec.startswith(":", self.pos):
            self.pos += 1
            name_at = self.pos
            name = self.take(_OPTION, "an option like retry_after=2")[:-1]
            allowed = {"timeout": "after", "429": "retry_after"}.get(kind)
            if name != allowed:
                raise self.fail(f"option {name!r} does not apply to {kind}", name_at)
            options[name] = float(self.take(_NUMBER, f"seconds after '{name}='"))
        try:
            fault = _fault_of_kind(kind, **options)
            if prob is not None:
                plan._random.append(_Random(fault, prob))
            else:
                plan._schedule(fault, at, times)
        except ConfigurationError as exc:
            raise self.fail(str(exc), start) from exc
