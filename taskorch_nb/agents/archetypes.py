"""Archetypes as data: who an agent is, what it may use, what it must return.

An archetype is a system prompt, the tools it may call, a typed output
(pydantic), a temperature and optionally its own model. Register your own with
`register_archetype`; the workflows look archetypes up by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel, Field

from taskorch_nb.errors import ConfigurationError


class ContextReport(BaseModel):
    """What the Researcher found: the context the Architect designs against."""

    summary: str
    findings: list[str] = Field(default_factory=list)
    relevant_files: list[str] = Field(default_factory=list)


class FileSpec(BaseModel):
    path: str
    purpose: str


class PlannedTest(BaseModel):
    name: str
    description: str


class DesignSpec(BaseModel):
    """The Architect's design spec and test plan: the Builder's contract."""

    summary: str
    module: str
    """The module the Builder implements (a path in the workspace)."""
    test_file: str
    """Where the Builder writes the tests first."""
    files: list[FileSpec] = Field(default_factory=list)
    decisions: list[str] = Field(default_factory=list)
    test_plan: list[PlannedTest] = Field(default_factory=list)


class BuildReport(BaseModel):
    """What the Builder wrote."""

    files_written: list[str] = Field(default_factory=list)
    notes: str = ""


class AgentAnswer(BaseModel):
    """The output of an archetype without a more specific one."""

    answer: str


@dataclass(frozen=True)
class Archetype:
    """One kind of agent; `tools` are the names it may call (user tools included)."""

    name: str
    system_prompt: str
    tools: tuple[str, ...] = ()
    output: type[BaseModel] = AgentAnswer
    temperature: float = 0.2
    model: str | None = None
    max_steps: int = 12
    max_tokens: int = 1024
    description: str = ""
    extra: dict[str, str] = field(default_factory=dict)


FILE_READ = ("list_files", "read_file", "search_files")
FILE_WRITE = ("list_files", "read_file", "write_file", "search_files")

RESEARCHER = Archetype(
    name="researcher",
    description="gathers context: searches the workspace and the tools it is given",
    system_prompt=(
        "You are the Researcher. Gather the context needed for the task: search the "
        "workspace, read what is relevant, and report findings. Do not write files. "
        "Answer with JSON matching the ContextReport schema."
    ),
    tools=FILE_READ,
    output=ContextReport,
)

ARCHITECT = Archetype(
    name="architect",
    description="designs the change: a spec and a test plan",
    system_prompt=(
        "You are the Architect. From the task and the research, design the change: the "
        "module to write, the test file, the decisions and trade-offs, and a test plan. "
        "Answer with JSON matching the DesignSpec schema."
    ),
    tools=FILE_READ,
    output=DesignSpec,
)

BUILDER = Archetype(
    name="builder",
    description="implements the spec: tests first (RED), then code (GREEN)",
    system_prompt=(
        "You are the Builder. Implement the design spec in the workspace with the file "
        "tools. Work test-first: when asked for tests, write only the test file; when asked "
        "for code, write the module so the tests pass. Finish with JSON matching the "
        "BuildReport schema."
    ),
    tools=FILE_WRITE,
    output=BuildReport,
    max_tokens=4096,
)

QC = Archetype(
    name="qc",
    description="validates: runs the tests for real, audits security, checks performance",
    system_prompt=(
        "You are QC. Validate the implementation: run the test suite, audit security, "
        "check performance, and give a verdict with evidence."
    ),
    tools=FILE_READ,
    output=AgentAnswer,
)

_ARCHETYPES: dict[str, Archetype] = {a.name: a for a in (RESEARCHER, ARCHITECT, BUILDER, QC)}


def register_archetype(archetype: Archetype) -> Archetype:
    """Make an archetype available to workflows by its name (replaces one of that name)."""
    if not archetype.name or not archetype.name.replace("_", "").isalnum():
        raise ConfigurationError(f"archetype name {archetype.name!r} must be a word (a-z, _)")
    _ARCHETYPES[archetype.name] = archetype
    return archetype


def get_archetype(name: str) -> Archetype:
    try:
        return _ARCHETYPES[name]
    except KeyError:
        known = ", ".join(sorted(_ARCHETYPES))
        raise ConfigurationError(f"unknown archetype {name!r}; known: {known}") from None


def archetype_names() -> list[str]:
    return sorted(_ARCHETYPES)
