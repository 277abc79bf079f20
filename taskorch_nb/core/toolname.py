"""The one rule for tool names, shared by the orchestrator and the federation hub.

A name the orchestrator accepts must be one the hub accepts too, or one odd
name (`web search`) keeps a project's patterns from being shared; so both call
`check_tool_name` (Toolbox.register directly, the hub through `ToolName`).
"""

from __future__ import annotations

import re

MAX_TOOL_NAME = 100
TOOL_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.:\-]*")
TOOL_NAME_RULE = (f"1-{MAX_TOOL_NAME} characters of [A-Za-z0-9_.:-], "
                  "starting with a letter or '_'")


def tool_name_problem(name: object) -> str | None:
    """Why `name` is not a valid tool name, or None when it is."""
    if not isinstance(name, str):
        return f"a tool name must be a string, got {type(name).__name__}"
    if not name:
        return "a tool name must not be empty"
    if len(name) > MAX_TOOL_NAME:
        return f"tool name {name[:20]!r}... is {len(name)} characters; at most {MAX_TOOL_NAME}"
    if TOOL_NAME_RE.fullmatch(name) is None:
        return f"tool name {name!r}: use {TOOL_NAME_RULE}"
    return None


def check_tool_name(name: str) -> str:
    """`name` if valid, else ValueError with the reason (pydantic turns it into a 422)."""
    problem = tool_name_problem(name)
    if problem is not None:
        raise ValueError(problem)
    return name


__all__ = ["MAX_TOOL_NAME", "TOOL_NAME_RE", "TOOL_NAME_RULE", "check_tool_name",
           "tool_name_problem"]
