"""One pattern-record schema: the immune system writes it, the client pushes it, the hub
validates, stores (columns from its fields) and serves it, and another project's immune
system takes it back."""

from __future__ import annotations

from dataclasses import fields

import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from taskorch_nb.core.immune import ImmuneSystem, Pattern
from taskorch_nb.core.pattern_record import (
    COUNTS,
    DESCRIPTIVE,
    RECORD_FIELDS,
    SEEN,
    STRATEGY,
    PatternRecord,
    record_values,
)
from taskorch_nb.core.retry import classify
from taskorch_nb.federation import FederationClient
from taskorch_nb.federation.schema import PushBody, ServedPattern
from taskorch_nb.testing import FakeClock, http_error
from tests.hub_helpers import RunningHub, record


def test_the_roles_cover_every_field_once() -> None:
    roles = ("signature", *DESCRIPTIVE, *STRATEGY, *COUNTS, *SEEN)
    assert sorted(roles) == sorted(RECORD_FIELDS)
    assert len(set(roles)) == len(roles)


def test_the_immune_pattern_carries_the_record_fields_first() -> None:
    names = [f.name for f in fields(Pattern)]
    assert tuple(names[: len(RECORD_FIELDS)]) == RECORD_FIELDS


def test_the_wire_body_and_the_served_pattern_are_the_record() -> None:
    assert PushBody.model_fields["patterns"].annotation == list[PatternRecord]
    assert issubclass(ServedPattern, PatternRecord)
    assert set(ServedPattern.model_fields) == {*RECORD_FIELDS, "source", "trust", "strategies"}


def test_record_values_cut_descriptive_texts_and_never_the_strategy() -> None:
    long_tool = "t" * 150
    prompt = "p" * 2500
    values = record_values({**record(tool=long_tool, message="m" * 900,
                                     corrective_prompt=prompt), "source": "local"})
    assert (len(values["tool"]), len(values["message"])) == (100, 500)
    assert values["corrective_prompt"] == prompt  # its text is its identity at the hub
    assert "source" not in values
    with pytest.raises(ValidationError, match="corrective_prompt"):
        PatternRecord.model_validate(values)  # so the hub refuses it, with a reason
    PatternRecord.model_validate({**values, "corrective_prompt": None})


def client(hub: RunningHub, project: str, immune: ImmuneSystem) -> FederationClient:
    fed = FederationClient(hub.url, token=hub.token_for(project), project=project)
    return fed.bind(immune, tools=["search_api", "cached_search"])


def stored_rows(hub: RunningHub) -> list[dict]:
    store = hub.app.state.store
    c = store.t.contributions
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(c).order_by(c.c.project)).mappings()
        return [dict(row) for row in rows]


async def test_round_trip_immune_hub_client_immune(hub: RunningHub) -> None:
    failure = classify(http_error(504), FakeClock())
    alpha = ImmuneSystem(clock=FakeClock(start=60.0))
    learned = alpha.analyze("search_api", failure, fallback="cached_search")
    alpha.applied(learned)
    alpha.outcome(learned, recovered=True)
    [mine] = alpha.export()
    assert PatternRecord.model_validate(mine).model_dump() == mine  # a valid record as is

    beta = ImmuneSystem(clock=FakeClock(start=120.0))
    async with client(hub, "alpha", alpha) as a, client(hub, "beta", beta) as b:
        assert (await a.push())["changed"] == 1
        # The hub stores the record's fields unchanged, in columns named after them.
        [row] = stored_rows(hub)
        assert {k: row[k] for k in RECORD_FIELDS} == mine
        assert row["project"] == "alpha"

        assert await b.pull() == 1
        taken = beta.get(learned.signature)
        assert taken is not None
        for name in ("signature", *DESCRIPTIVE, *SEEN, "fallback"):
            assert getattr(taken, name) == mine[name], name
        assert {k: taken.remote[k] for k in COUNTS} == {k: mine[k] for k in COUNTS}
        assert (taken.source, taken.trust, taken.remote["projects"]) == (
            "federation", "approved", ["alpha"])
        assert beta.match("search_api", failure) is taken  # known at the first failure
        assert Pattern.from_record(taken.to_record()) == taken  # the local store's round trip

        # Beta meets it once itself: its own record crosses back, and the hub adds them up.
        beta.seen_again(taken)
        [theirs] = beta.export()
        assert PatternRecord.model_validate(theirs).occurrences == 1
        await b.push()
        await a.pull()
        back = alpha.get(learned.signature)
        assert back is learned
        assert back.remote["occurrences"] == mine["occurrences"] + 1
        assert back.remote["projects"] == ["alpha", "beta"]
