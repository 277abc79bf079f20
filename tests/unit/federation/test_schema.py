"""The hub's envelopes: strict where the hub reads, lenient where it serves, one error shape."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from taskorch_nb.federation.schema import (
    MAX_PATTERNS_PER_PUSH,
    Problem,
    PullResult,
    PushBody,
    PushResult,
    ServedPattern,
)
from tests.hub_helpers import record, signature


def served(n: int = 1, **overrides: object) -> dict:
    strategy = {"fallback": "cached_search", "corrective_prompt": None, "applied": 1,
                "recovered": 1, "source": ["proj-a"], "trust": "approved"}
    return record(n, **({"source": ["proj-a", "proj-b"], "trust": "approved",
                         "strategies": [strategy]} | overrides))


def test_a_push_body_of_valid_records_parses_and_is_frozen() -> None:
    body = PushBody.model_validate({"patterns": [record(1), record(2)]})
    assert [p.signature for p in body.patterns] == [signature(1), signature(2)]
    with pytest.raises(ValidationError, match="frozen"):
        body.patterns = []  # type: ignore[misc]


@pytest.mark.parametrize(("body", "problem"), [
    ({"patterns": [record(1)], "project": "x"}, "extra_forbidden"),
    ({}, "missing"),
    ({"patterns": [record(1, occurrences="3")]}, "int_type"),  # strict: no coercion
    ({"patterns": [record(1, occurrences=True)]}, "int_type"),
    ({"patterns": ({"a": 1},)}, "list_type"),
])
def test_a_push_body_is_strict(body: dict, problem: str) -> None:
    with pytest.raises(ValidationError) as info:
        PushBody.model_validate(body)
    assert problem in {e["type"] for e in info.value.errors()}


def test_a_push_has_a_size_limit() -> None:
    PushBody.model_validate({"patterns": [record(1)] * MAX_PATTERNS_PER_PUSH})
    with pytest.raises(ValidationError, match="at most 500 items"):
        PushBody.model_validate({"patterns": [record(1)] * (MAX_PATTERNS_PER_PUSH + 1)})


def test_a_served_pattern_sums_past_the_per_project_cap_and_reads_json_leniently() -> None:
    pattern = ServedPattern.model_validate(served(occurrences=10**12))
    assert pattern.occurrences == 10**12
    assert pattern.strategies[0].source == ["proj-a"]
    page = PullResult.model_validate_json(
        PullResult(patterns=[pattern], cursor="c1", has_more=False).model_dump_json())
    assert page.patterns[0] == pattern
    assert ServedPattern.model_validate(served(occurrences="7")).occurrences == 7


@pytest.mark.parametrize("trust", ["quarantined", "trusted"])
def test_only_approved_or_confirmed_strategies_are_served(trust: str) -> None:
    with pytest.raises(ValidationError, match="trust"):
        ServedPattern.model_validate(served(trust=trust))


def test_a_served_pattern_refuses_unknown_keys_and_negative_counts() -> None:
    with pytest.raises(ValidationError, match="extra"):
        ServedPattern.model_validate(served(secret="x"))
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        ServedPattern.model_validate(served(applied=-1, recovered=0))


def test_push_result_and_problem_defaults() -> None:
    assert PushResult(accepted=2, changed=1).quarantined == []
    problem = Problem.model_validate({"detail": "invalid body", "reason": "occurrences: int",
                                      "errors": [{"loc": ["patterns", 0, "occurrences"],
                                                  "msg": "Input should be a valid integer",
                                                  "type": "int_type"}]})
    assert problem.errors[0].loc == ["patterns", 0, "occurrences"]
    assert Problem(detail="d", reason="r").errors == []
