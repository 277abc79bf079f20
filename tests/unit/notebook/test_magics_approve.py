"""`%orchestrate patterns --approve NAME`: a person lets a federated text reach the model."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError

from taskorch_nb.notebook.buttons import PatternReview
from taskorch_nb.notebook.magics import current_orchestrator

TEXT = "Use the cached_search tool instead; it takes the same arguments."


def test_approve_shows_in_the_patterns_frame(shell, capsys) -> None:
    orch = current_orchestrator(shell)
    orch.immune.merge_federated([{
        "signature": "ab" * 16, "name": "search_api_timeout", "tool": "search_api",
        "category": "timeout", "fallback": "cached_search", "corrective_prompt": TEXT,
        "recovered": 1, "applied": 1, "source": ["project-a"], "trust": "approved"}])
    assert orch.immune.patterns_df().loc[0, "approval"] == "pending"
    after = shell.run_line_magic("orchestrate", "patterns --approve search_api_timeout")
    assert "approved the corrective prompt of search_api_timeout" in capsys.readouterr().out
    assert after.loc[0, "approval"] == "approved"
    assert after.loc[0, "approved_by"]  # who decided is recorded
    assert orch.immune.get("ab" * 16).usable_prompt == TEXT  # type: ignore[union-attr]


@pytest.mark.parametrize(("line", "message"), [
    ("patterns --approve nope", "'nope' is not a pattern"),
    ("status --approve x", "--approve goes with `patterns`"),
])
def test_bad_approvals_are_one_line_usage_errors(shell, line: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        shell.run_line_magic("orchestrate", line)
    with pytest.raises(UsageError, match="not with a task cell"):
        shell.run_cell_magic("orchestrate", "--approve x", "Write a haiku")


def test_patterns_waiting_for_a_person_come_with_approve_and_reject(shell) -> None:
    orch = current_orchestrator(shell)
    orch.immune.merge_federated([{
        "signature": "cd" * 16, "name": "search_api_timeout", "tool": "search_api",
        "category": "timeout", "fallback": "cached_search", "corrective_prompt": TEXT,
        "recovered": 1, "applied": 1, "source": ["project-a"], "trust": "approved"}])
    seen: list = []
    orch.subscribe(seen.append)
    review = shell.run_line_magic("orchestrate", "patterns")
    assert isinstance(review, PatternReview)
    assert review.pending == ["search_api_timeout"]
    review.controls.actor = "ada"
    _heading, row = review.widget.children
    _text, approve, reject = row.children
    assert (approve.layout.display, reject.layout.display) == ("", "")
    approve.click()
    assert review.pending == []
    assert [(e.type, e.actor) for e in seen if e.actor] == [("pattern.approved", "ada")]
    assert approve.layout.display == "none"  # decided: the row keeps the decision
    assert "approved by ada" in row.children[0].value
    frame = shell.run_line_magic("orchestrate", "patterns")  # nothing waits: the table
    assert frame.loc[0, "approval"] == "approved"
    assert frame.loc[0, "approved_by"] == "ada"
