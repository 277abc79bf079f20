"""End to end through a real hub on 127.0.0.1, for each disguise of issue 15: the hub
quarantines the text and keeps it only normalised; the receiving project takes the
structured fallback at the first failure, but the text reaches its model only after a
person there approved it (a hub approval is not enough)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from taskorch_nb import Orchestrator
from taskorch_nb.federation import FederationClient
from taskorch_nb.federation.hub import create_app
from taskorch_nb.federation.screening import clean
from taskorch_nb.testing import FlakyTool
from tests.hub_helpers import DISGUISES, RunningHub
from tests.unit.core.test_immune_approval import failing_call
from tests.unit.core.test_immune_approval import project as failing_project


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[RunningHub]:
    with RunningHub(create_app(str(tmp_path / "hub.db"), rate_limit=None)) as running:
        yield running


def project(hub: RunningHub, name: str) -> tuple[Orchestrator, FlakyTool]:
    return failing_project(":memory:", FederationClient(hub.url, token=hub.token_for(name),
                                                        project=name))


async def hostile_push(orch: Orchestrator, text: str) -> str:
    """The project learns the failure, then its pattern's text is swapped for `text` (a
    compromised project); it pushes. Returns the signature."""
    await failing_call(orch)
    [pattern] = orch.immune.patterns()
    pattern.corrective_prompt = text
    assert orch.federation is not None
    pushed = await orch.federation.push()
    assert pushed["quarantined"] == [pattern.signature]
    return pattern.signature


@pytest.mark.parametrize("disguise", sorted(DISGUISES))
async def test_disguised_text_waits_for_a_person_here_and_the_fallback_does_not(
        hub: RunningHub, disguise: str) -> None:
    text, reason = DISGUISES[disguise]
    a, _ = project(hub, "project-a")
    b, b_tool = project(hub, "project-b")
    store = hub.app.state.store
    signature = await hostile_push(a, text)

    # The hub holds the text, normalised (no invisible or tag characters), with its reason.
    [held] = store.quarantined()
    assert held["prompt"] == clean(text)
    assert reason in held["reasons"]
    assert all(not 0xE0000 <= ord(c) <= 0xE007F and c != "\u200b" for c in held["prompt"])

    # B pulls the structured strategy only, and recovers at the first failure with it.
    assert b.federation is not None
    await b.federation.sync()
    [pattern] = b.immune.patterns()
    assert (pattern.signature, pattern.fallback, pattern.corrective_prompt) == (
        signature, "cached_search", None)
    assert await failing_call(b) == []
    assert len(b_tool.calls) == 1  # no retries: the federated fallback applied at once

    # The hub's admin releases it: B now has the (normalised) text, but pending.
    store.approve(held["id"])
    await b.federation.pull()
    assert (pattern.corrective_prompt, pattern.approval) == (clean(text), "pending")
    assert await failing_call(b) == []  # not applied until a person here approves

    b.immune.approve(pattern.name, by="reviewer")
    assert await failing_call(b) == [clean(text)]  # applied after approval
    assert len(b_tool.calls) == 3  # and each time through the fallback, at the first failure
    for orch in (a, b):
        await orch.federation.aclose()  # type: ignore[union-attr]
        orch.close()


async def test_two_projects_pushing_the_same_text_do_not_release_it(hub: RunningHub) -> None:
    text, _ = DISGUISES["pay-no-attention"]
    a, _ = project(hub, "project-a")
    c, _ = project(hub, "project-c")
    b, _ = project(hub, "project-b")
    await hostile_push(a, text)
    await hostile_push(c, text)
    await b.federation.sync()  # type: ignore[union-attr]
    [pattern] = b.immune.patterns()
    assert pattern.corrective_prompt is None
    assert pattern.remote["projects"] == ["project-a", "project-c"]
    assert await failing_call(b) == []
    for orch in (a, b, c):
        await orch.federation.aclose()  # type: ignore[union-attr]
        orch.close()


async def test_clean_text_from_the_hub_still_needs_a_person_here(hub: RunningHub) -> None:
    a, _ = project(hub, "project-a")
    b, _ = project(hub, "project-b")
    await failing_call(a)
    [own] = a.immune.patterns()
    assert (await a.federation.push())["quarantined"] == []  # type: ignore[union-attr]
    await b.federation.sync()  # type: ignore[union-attr]
    [pattern] = b.immune.patterns()
    assert (pattern.trust, pattern.approval) == ("approved", "pending")
    assert pattern.corrective_prompt == own.corrective_prompt
    assert await failing_call(b) == []
    b.immune.approve(pattern.signature)
    assert await failing_call(b) == [own.corrective_prompt]
    for orch in (a, b):
        await orch.federation.aclose()  # type: ignore[union-attr]
        orch.close()
