"""Guard any agent: the official SDKs' model calls under the orchestrator's money path.

`orch.guard(budget=..., name=...)` returns a `Guard`; see `session` for what it does,
`intercept` for what it sees, and docs/guard.md for the whole story.
"""

from __future__ import annotations

from taskorch_nb.guard.refusal import HEADER
from taskorch_nb.guard.report import GuardReport, ModelUse
from taskorch_nb.guard.session import Guard, GuardHost

__all__ = ["HEADER", "Guard", "GuardHost", "GuardReport", "ModelUse"]
