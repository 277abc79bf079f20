"""taskorch_nb over the Model Context Protocol: `taskorch-nb mcp` serves stdio.

`build_server(orch_factory=None)` makes the `MCPServer` (tests use it
in-process with their own Orchestrator); `main()` serves it on stdio. The names
load lazily so `python -m taskorch_nb.mcp.server` does not import the module
twice and `import taskorch_nb.mcp` stays cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_server", "main"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from taskorch_nb.mcp import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
