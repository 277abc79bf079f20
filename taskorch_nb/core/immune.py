"""The immune system: a memory of failure patterns and of what cures them.

A failure's *signature* hashes (tool, category, HTTP status, message with
numbers, ids, urls and quoted values masked), so the same outage gives the same
signature in every project. A pattern keeps how often it occurred and one
strategy (a fallback tool and a corrective prompt) with its record. A pattern
is *known* once its strategy recovered at least once; a known pattern is
applied at the first matching failure, with no backoff. A strategy that stops
working is demoted and the pattern goes back to learning.

Trust: a federated pattern's structured strategy (its fallback tool) may apply
automatically, but its free text is another project's words: it reaches no model
until a person here approved that very text (`approve`); a new text from the hub
waits for approval again. Screening at the hub is only the second line.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from taskorch_nb.core.clock import Clock, RealClock
from taskorch_nb.core.display import mimebundle
from taskorch_nb.core.events import Event, PatternEvent, person
from taskorch_nb.core.pattern_record import (
    COUNTS,
    DESCRIPTIVE,
    RECORD_FIELDS,
    SEEN,
    record_values,
)
from taskorch_nb.core.retry import Failure
from taskorch_nb.errors import ConfigurationError

_MASKS = [
    (re.compile(r"https?://\S+"), "<url>"),
    (re.compile(r"'[^']*'|\"[^\"]*\""), "<str>"),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I), "<id>"),
    (re.compile(r"\b(?=[0-9a-f]*\d)[0-9a-f]{12,}\b", re.I), "<id>"),
    (re.compile(r"\d+(\.\d+)?"), "<n>"),
]

#: A strategy applied this often that recovered less than half the time is demoted.
DEMOTE_AFTER = 3


def mask_message(message: str) -> str:
    """The error text with everything that varies between occurrences masked."""
    for pattern, replacement in _MASKS:
        message = pattern.sub(replacement, message)
    return " ".join(message.split())[:500]


def failure_signature(tool: str, failure: Failure) -> str:
    """A stable id for a failure: the same outage gives the same signature anywhere."""
    text = "\x1f".join(
        [tool, failure.category, str(failure.status or ""), mask_message(failure.message)]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def pattern_name(tool: str, category: str) -> str:
    """`search_api_timeout`: lower case, `[a-z0-9_]`, as the federation hub requires."""
    name = re.sub(r"[^a-z0-9]+", "_", f"{tool}_{category}".lower()).strip("_")
    return name[:120] or "pattern"


def corrective_prompt(tool: str, failure: Failure, fallback: str | None) -> str:
    what = failure.category.replace("_", " ")
    status = f" (HTTP {failure.status})" if failure.status else ""
    advice = (
        f"Use the `{fallback}` tool instead; it takes the same arguments."
        if fallback
        else "Continue without it, or report that the information is unavailable."
    )
    return f"The tool `{tool}` is failing with a {what}{status}. Do not call it again now. {advice}"


@dataclass(slots=True)
class Pattern:
    """A learned (or federated) failure pattern and its strategy's record.

    Its first fields are those of `PatternRecord` (what crosses to the hub);
    `source`, `trust`, `remote`, `approval` and `approved_by` are this project's view.
    """

    signature: str
    name: str
    tool: str
    category: str
    status: int | None = None
    message: str = ""
    fallback: str | None = None
    corrective_prompt: str | None = None
    occurrences: int = 0
    applied: int = 0
    recovered: int = 0
    first_seen: float = 0.0
    last_seen: float = 0.0
    source: str = "local"
    trust: str = "local"
    """local | approved | confirmed (federated patterns carry the hub's trust level)."""
    remote: dict[str, Any] = field(default_factory=dict)
    """The hub's aggregate view: occurrences, applied, recovered, projects."""
    approval: str | None = None
    """None: the text is this project's own (or there is none); else the decision on a
    federated text: pending | approved | rejected."""
    approved_by: str | None = None
    """Who decided on the federated text (approved or rejected it)."""

    @property
    def usable_prompt(self) -> str | None:
        """The corrective prompt a model may see: own text, or a federated one approved here."""
        return self.corrective_prompt if self.approval in (None, "approved") else None

    @property
    def demoted(self) -> bool:
        return self.applied >= DEMOTE_AFTER and self.recovered * 2 < self.applied

    @property
    def known(self) -> bool:
        """The strategy has worked here, or elsewhere (federated, and the local trust
        policy allows its fallback), and is not demoted."""
        if self.demoted:
            return False
        if self.recovered >= 1:
            return True
        remote = self.remote
        return int(remote.get("recovered", 0)) >= 1 and bool(remote.get("apply_fallback", True))

    def to_record(self) -> dict[str, Any]:
        """Every field, plus `known` and `demoted`: the local store's and the frames' row."""
        record = asdict(self)
        record["known"] = self.known
        record["demoted"] = self.demoted
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Pattern:
        """Back from `to_record()` (derived keys ignored)."""
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in record.items() if k in names}
        if ("approval" not in values and values.get("source", "local") != "local"
                and values.get("corrective_prompt")):
            values["approval"] = "pending"  # saved before approvals existed: ask again
        return cls(**values)

    def wire(self) -> dict[str, Any]:
        """This project's own totals as a `PatternRecord` (a dict of its fields)."""
        values = {name: getattr(self, name) for name in RECORD_FIELDS}
        values["name"] = pattern_name(self.tool, self.category)
        return record_values(values)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return mimebundle(self, repr(self), include, exclude)


class ImmuneSystem:
    """Names failures, remembers them, and hands out the strategy that cured them."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        emit: Callable[[Event], Any] | None = None,
        save: Callable[[Pattern, dict[str, int]], Mapping[str, Any] | None] | None = None,
        patterns: Iterable[Pattern] = (),
    ) -> None:
        self.clock: Clock = clock or RealClock()
        self._emit = emit or (lambda event: None)
        self._store = save or (lambda pattern, added: None)
        self._lock = threading.Lock()
        # One save at a time, and no adoption while one is out: each knows what the store
        # has already counted.
        self._save_lock = threading.Lock()
        self._patterns: dict[str, Pattern] = {p.signature: p for p in patterns}
        # Per signature, the counts the store is known to hold (from loading, saving or
        # adopting): what a pattern counts beyond them is this process's, not saved yet.
        self._stored: dict[str, tuple[int, ...]] = {
            p.signature: _counts(p) for p in self._patterns.values()}

    # -- reading -------------------------------------------------------------

    def patterns(self) -> list[Pattern]:
        with self._lock:
            return sorted(self._patterns.values(), key=lambda p: (p.tool, p.name, p.signature))

    def get(self, signature: str) -> Pattern | None:
        return self._patterns.get(signature)

    def __len__(self) -> int:
        return len(self._patterns)

    def match(self, tool: str, failure: Failure) -> Pattern | None:
        """The known pattern with a working strategy for this failure, if any."""
        pattern = self._patterns.get(failure_signature(tool, failure))
        if pattern is not None and pattern.known and pattern.fallback:
            return pattern
        return None

    def latest_for(self, tool: str) -> Pattern | None:
        """The most recently seen pattern of a tool (for calls refused by an open breaker)."""
        candidates = [p for p in self._patterns.values() if p.tool == tool and not p.demoted]
        return max(candidates, key=lambda p: p.last_seen, default=None)

    def relevant(self, tools: Iterable[str]) -> list[Pattern]:
        """Known patterns of these tools: what a safety check reports before a step."""
        wanted = set(tools)
        return [p for p in self.patterns() if p.tool in wanted and p.known]

    def patterns_df(self) -> Any:
        """Learned and federated patterns as a DataFrame (one row per pattern)."""
        from taskorch_nb.core.pattern_frame import patterns_df

        return patterns_df(p.to_record() for p in self.patterns())

    def adopt(self, pattern: Pattern) -> bool:
        """Take a pattern another process saved to the shared store: new here, or this
        one's fields brought up to the stored record (the store's last write is the
        truth for the strategy; counts not saved here yet are kept on top of the stored
        ones). Nothing is saved again. Returns whether it was new."""
        with self._save_lock, self._lock:
            known = self._patterns.get(pattern.signature)
            if known is None:
                self._patterns[pattern.signature] = pattern
                self._stored[pattern.signature] = _counts(pattern)
                return True
            self._take_stored(known, pattern)
            return False

    def _save(self, pattern: Pattern) -> None:
        """Save `pattern` with the counts added here since the store last counted it; the
        store adds them to what other processes saved, and its totals come back here."""
        with self._save_lock:
            with self._lock:
                stored = self._stored.get(pattern.signature, _NONE)
                added = {name: count - stored[i]
                         for i, (name, count) in enumerate(zip(COUNTS, _counts(pattern),
                                                               strict=True))}
            record = self._store(pattern, added)
            with self._lock:
                if record is None:  # nothing shared: what we counted is what is stored
                    self._stored[pattern.signature] = _counts(pattern)
                else:
                    # Counts made while the save was out stay on top of the new totals.
                    self._stored[pattern.signature] = tuple(
                        stored[i] + added[name] for i, name in enumerate(COUNTS))
                    self._take_stored(pattern, Pattern.from_record(record), counts_only=True)

    def _take_stored(self, known: Pattern, stored: Pattern, *, counts_only: bool = False
                     ) -> None:
        """`known` brought up to a stored record (lock held); `counts_only`: its counts and
        dates (the rest is what this process just wrote). Stored totals only grow, so per
        count the larger of two views of the store is the later one."""
        base = self._stored.get(known.signature, _NONE)
        totals = tuple(max(a, b) for a, b in zip(_counts(stored), base, strict=True))
        mine = tuple(c - b for c, b in zip(_counts(known), base, strict=True))
        firsts = [v for v in (known.first_seen, stored.first_seen) if v]
        last = max(known.last_seen, stored.last_seen)
        if not counts_only:
            for name in Pattern.__dataclass_fields__:
                setattr(known, name, getattr(stored, name))
        for i, name in enumerate(COUNTS):
            setattr(known, name, totals[i] + mine[i])
        known.first_seen = min(firsts) if firsts else 0.0
        known.last_seen = last
        self._stored[known.signature] = totals

    # -- learning ------------------------------------------------------------

    def analyze(self, tool: str, failure: Failure, *, fallback: str | None) -> Pattern:
        """Record one occurrence of a failure that beat the retries; learn it if new."""
        signature = failure_signature(tool, failure)
        now = self.clock.wall()
        with self._lock:
            pattern = self._patterns.get(signature)
            learned = pattern is None
            if pattern is None:
                pattern = Pattern(
                    signature=signature,
                    name=pattern_name(tool, failure.category),
                    tool=tool,
                    category=failure.category,
                    status=failure.status,
                    message=mask_message(failure.message),
                    first_seen=now,
                    fallback=fallback,
                    corrective_prompt=corrective_prompt(tool, failure, fallback),
                )
                self._patterns[signature] = pattern
            elif pattern.fallback is None and fallback is not None:
                pattern.fallback = fallback
                pattern.corrective_prompt = corrective_prompt(tool, failure, fallback)
                pattern.approval = pattern.approved_by = None  # our own words now
            pattern.occurrences += 1
            pattern.last_seen = max(pattern.last_seen, now)
        self._save(pattern)
        self._notify("pattern.learned" if learned else "pattern.seen", pattern)
        return pattern

    def applied(self, pattern: Pattern) -> None:
        """The strategy is being used now (corrective prompt injected, fallback taken)."""
        with self._lock:
            pattern.applied += 1
        self._notify("pattern.applied", pattern, prompt=pattern.usable_prompt)

    def outcome(self, pattern: Pattern, *, recovered: bool) -> None:
        """How the applied strategy did; demotes one that stopped working."""
        with self._lock:
            was_demoted = pattern.demoted
            if recovered:
                pattern.recovered += 1
        self._save(pattern)
        if recovered:
            self._notify("pattern.recovered", pattern)
        elif pattern.demoted and not was_demoted:
            self._notify("pattern.demoted", pattern)

    def seen_again(self, pattern: Pattern) -> None:
        """A known pattern matched a new failure."""
        with self._lock:
            pattern.occurrences += 1
            pattern.last_seen = max(pattern.last_seen, self.clock.wall())

    # -- federation ----------------------------------------------------------

    def export(self) -> list[dict[str, Any]]:
        """Local patterns in the hub's wire format (this project's own totals)."""
        return [p.wire() for p in self.patterns() if p.source == "local" or p.occurrences]

    def merge_federated(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Take the hub's aggregate view of patterns; returns how many were new here."""
        new = 0
        merged: list[Pattern] = []
        with self._lock:
            for record in records:
                signature = str(record["signature"])
                pattern = self._patterns.get(signature)
                remote = {
                    **{name: int(record.get(name, 0)) for name in COUNTS},
                    "projects": list(record.get("source") or record.get("projects") or []),
                    "apply_fallback": bool(record.get("apply_fallback", True)),
                }
                prompt = record.get("corrective_prompt")
                if pattern is None:
                    new += 1
                    # The record's description and dates; its counts stay in `remote`.
                    described = {k: record[k] for k in DESCRIPTIVE if k in record}
                    described.update({k: float(record[k]) for k in SEEN if k in record})
                    pattern = Pattern(signature=signature, **described, source="federation")
                    self._patterns[signature] = pattern
                    adopt = True
                else:
                    adopt = pattern.source == "federation" or pattern.fallback is None
                if adopt:
                    pattern.fallback = record.get("fallback")
                    _take_text(pattern, prompt if isinstance(prompt, str) else None)
                pattern.trust = str(record.get("trust", "approved"))
                pattern.remote = remote
                merged.append(pattern)
        for pattern in merged:
            self._save(pattern)
            self._notify("pattern.merged", pattern)
        return new

    # -- approval ------------------------------------------------------------

    def approve(self, name: str, *, by: str | None = None) -> Pattern:
        """Let a federated pattern's corrective prompt reach the model (a person decided).

        `name` is the pattern's name or signature. The approval is of this very text and
        is saved; a different text from the hub later waits for approval again.
        """
        return self._decide(name, "approved", by)

    def reject(self, name: str, *, by: str | None = None) -> Pattern:
        """Keep a federated pattern's corrective prompt away from the model for good
        (its fallback still applies)."""
        return self._decide(name, "rejected", by)

    def pending(self) -> list[Pattern]:
        """Federated patterns whose text waits for a person's decision."""
        return [p for p in self.patterns() if p.approval == "pending"]

    def _decide(self, name: str, decision: str, by: str | None) -> Pattern:
        with self._lock:
            found = [p for p in self._patterns.values() if name in (p.name, p.signature)]
            federated = [p for p in found if p.approval is not None]
            if not federated:
                waiting = sorted({p.name for p in self._patterns.values()
                                  if p.approval == "pending"}) or ["none"]
                what = "has no federated text to decide on" if found else "is not a pattern"
                raise ConfigurationError(f"{name!r} {what}; pending: {', '.join(waiting)}")
            if len(federated) > 1:
                sigs = ", ".join(sorted(p.signature for p in federated))
                raise ConfigurationError(
                    f"{name!r} names {len(federated)} patterns: pass one signature ({sigs})")
            pattern = federated[0]
            pattern.approval = decision
            pattern.approved_by = by or person()
        self._save(pattern)
        self._notify(f"pattern.{decision}", pattern, prompt=pattern.corrective_prompt)
        return pattern

    def _notify(self, type_: str, pattern: Pattern, *, prompt: str | None = None) -> None:
        self._emit(
            PatternEvent(
                type=type_,
                name=pattern.name,
                signature=pattern.signature,
                tool=pattern.tool,
                category=pattern.category,
                fallback=pattern.fallback,
                prompt=prompt,
                source=pattern.source,
                occurrences=pattern.occurrences,
            )
        )


_NONE = (0,) * len(COUNTS)


def _counts(pattern: Pattern) -> tuple[int, ...]:
    return tuple(getattr(pattern, name) for name in COUNTS)


def _take_text(pattern: Pattern, text: str | None) -> None:
    """Adopt the hub's text for a pattern: a new text is pending until a person decides."""
    if text == pattern.corrective_prompt:
        return  # the same text: the decision on it (or its being our own) stands
    pattern.corrective_prompt = text
    pattern.approval = "pending" if text is not None else None
    pattern.approved_by = None
