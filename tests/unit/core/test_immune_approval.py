"""A federated pattern's text reaches no model until a person here approved it; its
fallback applies at once; the decision is saved and survives a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from taskorch_nb import FakeClock, Orchestrator, RetryPolicy
from taskorch_nb.errors import ConfigurationError
from taskorch_nb.testing import FlakyTool

SIG_OF: dict[str, str] = {}
TEXT = "The tool `search_api` is failing. Use the `cached_search` tool instead."


async def learned_signature() -> str:
    """The signature another project learns for `search_api`'s 504 (what the hub serves)."""
    orch, _ = project(":memory:")
    await orch.call_tool("search_api", query="q")
    [pattern] = orch.immune.patterns()
    orch.close()
    return pattern.signature


def served(**overrides: Any) -> dict[str, Any]:
    """A pattern as a pull serves it (the trust policy's marks included)."""
    base = {"signature": SIG_OF["sig"], "name": "search_api_timeout", "tool": "search_api",
            "category": "timeout", "status": 504, "message": "", "fallback": "cached_search",
            "corrective_prompt": TEXT, "occurrences": 4, "applied": 2, "recovered": 2,
            "first_seen": 1.0, "last_seen": 2.0, "source": ["project-a"], "trust": "approved",
            "apply_fallback": True}
    base.update(overrides)
    return base


def project(store: str | Path, federation: Any = None) -> tuple[Orchestrator, FlakyTool]:
    """An orchestrator whose `search_api` always times out and falls back (also used by
    the federation's tests, with a `FederationClient`)."""
    orch = Orchestrator(store=store, clock=FakeClock(), retry=RetryPolicy(jitter=0.0),
                        federation=federation)
    broken = FlakyTool(always=504)
    orch.tool(broken, name="search_api", fallback="cached_search")
    orch.tool(lambda query: f"cached {query}", name="cached_search")
    return orch, broken


async def failing_call(orch: Orchestrator) -> list[str]:
    """One call to the failing tool; the corrective prompts handed to the model."""
    prompts: list[str] = []
    assert await orch.tools.call("search_api", {"query": "q"}, guard=None,
                                 prompts=prompts) == "cached q"
    return prompts


@pytest.fixture(autouse=True)
async def _signature() -> None:
    SIG_OF["sig"] = await learned_signature()


async def test_text_waits_for_approval_and_the_fallback_does_not(tmp_path: Path) -> None:
    SIG = SIG_OF["sig"]
    orch, broken = project(tmp_path / "runs.db")
    assert orch.immune.merge_federated([served()]) == 1
    assert await failing_call(orch) == []  # fallback taken, text withheld
    assert len(broken.calls) == 1
    assert [p.approval for p in orch.immune.pending()] == ["pending"]
    frame = orch.immune.patterns_df()
    assert (frame.loc[0, "approval"], frame.loc[0, "corrective_prompt"]) == ("pending", TEXT)

    orch.immune.approve("search_api_timeout", by="ada")
    assert await failing_call(orch) == [TEXT]
    frame = orch.immune.patterns_df()
    assert (frame.loc[0, "approval"], frame.loc[0, "approved_by"]) == ("approved", "ada")
    orch.close()

    again, _ = project(tmp_path / "runs.db")  # the decision is in the store
    assert again.immune.get(SIG).approval == "approved"  # type: ignore[union-attr]
    assert await failing_call(again) == [TEXT]
    again.close()


async def test_a_new_text_from_the_hub_waits_again_and_a_rejection_stands() -> None:
    SIG = SIG_OF["sig"]
    orch, _ = project(":memory:")
    orch.immune.merge_federated([served()])
    orch.immune.approve(SIG, by="ada")
    orch.immune.merge_federated([served()])  # same text again: still approved
    assert await failing_call(orch) == [TEXT]
    orch.immune.merge_federated([served(corrective_prompt="Now do something else.")])
    assert orch.immune.get(SIG).approval == "pending"  # type: ignore[union-attr]
    assert await failing_call(orch) == []
    orch.immune.reject(SIG, by="bob")
    orch.immune.merge_federated([served(corrective_prompt="Now do something else.")])
    assert orch.immune.get(SIG).approval == "rejected"  # type: ignore[union-attr]
    assert await failing_call(orch) == []
    orch.close()


async def test_own_patterns_need_no_approval_and_bad_names_are_refused() -> None:
    orch, _ = project(":memory:")
    await failing_call(orch)  # learned here: our own text applies at once next time
    [own] = orch.immune.patterns()
    assert own.approval is None
    assert own.usable_prompt == own.corrective_prompt
    with pytest.raises(ConfigurationError, match="has no federated text"):
        orch.immune.approve(own.name)
    with pytest.raises(ConfigurationError, match="is not a pattern"):
        orch.immune.approve("nope")
    orch.close()


def test_two_patterns_of_one_name_need_a_signature() -> None:
    orch, _ = project(":memory:")
    orch.immune.merge_federated([served(), served(signature="cd" * 16)])
    with pytest.raises(ConfigurationError, match="pass one signature"):
        orch.immune.approve("search_api_timeout")
    assert orch.immune.approve("cd" * 16).approval == "approved"
    orch.close()
