"""Merge rules for federated patterns, as pure functions over wire-format dicts.

Why pure: the hub and the client must agree on them, and order-independence is
easiest to trust when it is visible. Each rule is a join (commutative,
associative, idempotent): a project's row for a (signature, strategy) keeps the
max of every count, the earliest `first_seen` and the latest `last_seen`; the
served aggregate sums those rows over projects. So any order or repetition of
pushes yields the same store.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from fractions import Fraction
from typing import Any

from taskorch_nb.core.pattern_record import COUNTS, DESCRIPTIVE

Record = Mapping[str, Any]
#: Decides the trust of a strategy of a signature: (signature, fallback, prompt) -> trust.
TrustOf = Callable[[str, "str | None", "str | None"], str]


def strategy_key(fallback: str | None, corrective_prompt: str | None) -> str:
    """A stable id for a strategy (a fallback tool and/or a corrective prompt)."""
    blob = json.dumps([fallback, corrective_prompt], ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def prompt_key(corrective_prompt: str) -> str:
    """A stable id for a prompt text (distinct projects pushing it confirm it)."""
    return hashlib.sha256(corrective_prompt.encode()).hexdigest()


def recovery_rate(applied: int, recovered: int) -> Fraction:
    """recovered / applied, exact (0 when never applied) so ties are real ties."""
    return Fraction(recovered, applied) if applied else Fraction(0)


def _describe_key(record: Record) -> tuple[Any, ...]:
    # A total order on the descriptive fields: the join keeps the greatest.
    status = record.get("status")
    return (
        record["last_seen"],
        record["name"],
        record["tool"],
        record["category"],
        -1 if status is None else status,
        record.get("message", ""),
    )


def merge_contribution(current: Record | None, incoming: Record) -> dict[str, Any]:
    """Join two records of one project for one (signature, strategy).

    Counts take the max (a push carries the project's current totals, so a
    repeated or reordered push never counts twice); `recovered <= applied` holds
    because it held for both sides.
    """
    if current is None:
        return dict(incoming)
    if (current["signature"], current.get("fallback"), current.get("corrective_prompt")) != (
        incoming["signature"],
        incoming.get("fallback"),
        incoming.get("corrective_prompt"),
    ):
        raise ValueError("merge_contribution joins records of one signature and strategy only")
    merged = dict(current)
    newer = max(current, incoming, key=_describe_key)
    for name in DESCRIPTIVE:
        merged[name] = newer.get(name)
    for name in COUNTS:
        merged[name] = max(current.get(name, 0), incoming.get(name, 0))
    merged["first_seen"] = min(current["first_seen"], incoming["first_seen"])
    merged["last_seen"] = max(current["last_seen"], incoming["last_seen"])
    return merged


def merge_records(records: Iterable[Record]) -> list[dict[str, Any]]:
    """Join a batch of one project's records, one per (signature, strategy)."""
    joined: dict[tuple[str, str], dict[str, Any]] = {}
    for record in records:
        key = (record["signature"], strategy_key(record.get("fallback"),
                                                 record.get("corrective_prompt")))
        joined[key] = merge_contribution(joined.get(key), record)
    return [joined[key] for key in sorted(joined)]


def has_strategy(record: Record) -> bool:
    return record.get("fallback") is not None or record.get("corrective_prompt") is not None


def strategy_rank(strategy: Record) -> tuple[Any, ...]:
    """Sort key, best first: recovery rate, then more recoveries, then lexical."""
    rate = recovery_rate(strategy.get("applied", 0), strategy.get("recovered", 0))
    return (
        not has_strategy(strategy),
        -rate,
        -strategy.get("recovered", 0),
        strategy.get("fallback") or "",
        strategy.get("corrective_prompt") or "",
    )


def pick_winner(strategies: Iterable[Record]) -> Record | None:
    """The strategy with the best recovery rate; ties: more recovered, then lexical."""
    return min(strategies, key=strategy_rank, default=None)


def aggregate(
    signature: str, rows: Iterable[Record], trust_of: TrustOf
) -> dict[str, Any] | None:
    """The served pattern of a signature from its per-project rows (each has `project`).

    A row whose prompt is quarantined is served without it: its structured part
    (fallback, counts) is data, its text is withheld (a row left with no strategy
    is dropped); `None` when nothing servable is left.
    Occurrences add over projects (a project's rows all carry its current total, so
    its max counts once).
    """
    servable: list[tuple[Record, str]] = []
    for row in rows:
        trust = trust_of(signature, row.get("fallback"), row.get("corrective_prompt"))
        if trust == "quarantined":
            if row.get("fallback") is None:
                continue
            row = {**row, "corrective_prompt": None}
            trust = trust_of(signature, row.get("fallback"), None)
        servable.append((row, trust))
    if not servable:
        return None
    occurrences: dict[str, int] = {}
    groups: dict[tuple[str | None, str | None], dict[str, Any]] = {}
    for row, trust in servable:
        project = row["project"]
        occurrences[project] = max(occurrences.get(project, 0), row.get("occurrences", 0))
        key = (row.get("fallback"), row.get("corrective_prompt"))
        group = groups.setdefault(key, {
            "fallback": key[0], "corrective_prompt": key[1], "applied": 0, "recovered": 0,
            "source": set(), "trust": trust,
        })
        group["applied"] += row.get("applied", 0)
        group["recovered"] += row.get("recovered", 0)
        group["source"].add(project)
    strategies = sorted(groups.values(), key=strategy_rank)
    for strategy in strategies:
        strategy["source"] = sorted(strategy["source"])
    winner = strategies[0]
    described = max((row for row, _ in servable), key=_describe_key)
    return {
        "signature": signature,
        **{name: described.get(name) for name in DESCRIPTIVE},
        "fallback": winner["fallback"],
        "corrective_prompt": winner["corrective_prompt"],
        "occurrences": sum(occurrences.values()),
        "applied": winner["applied"],
        "recovered": winner["recovered"],
        "first_seen": min(row["first_seen"] for row, _ in servable),
        "last_seen": max(row["last_seen"] for row, _ in servable),
        "source": sorted(occurrences),
        "trust": winner["trust"],
        "strategies": strategies,
    }
