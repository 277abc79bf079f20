"""Archetypes as data: the four built-ins, their contracts, and the registry by name."""

from __future__ import annotations

import dataclasses

import pytest
from pydantic import ValidationError

from taskorch_nb.agents import archetypes
from taskorch_nb.agents.archetypes import (
    ARCHITECT,
    BUILDER,
    QC,
    RESEARCHER,
    AgentAnswer,
    Archetype,
    BuildReport,
    ContextReport,
    DesignSpec,
    archetype_names,
    get_archetype,
    register_archetype,
)
from taskorch_nb.errors import ConfigurationError


@pytest.fixture(autouse=True)
def own_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    # Registering replaces by name for the whole process (other tests register their own):
    # each test starts from the built-ins alone.
    monkeypatch.setattr(archetypes, "_ARCHETYPES",
                        {a.name: a for a in (RESEARCHER, ARCHITECT, BUILDER, QC)})


def test_the_built_ins_are_registered_by_name() -> None:
    assert archetype_names() == ["architect", "builder", "qc", "researcher"]
    for archetype in (RESEARCHER, ARCHITECT, BUILDER, QC):
        assert get_archetype(archetype.name) is archetype


def test_only_the_builder_may_write() -> None:
    writers = [a.name for a in (RESEARCHER, ARCHITECT, BUILDER, QC) if "write_file" in a.tools]
    assert writers == ["builder"]
    assert BUILDER.max_tokens > RESEARCHER.max_tokens  # it writes whole files


@pytest.mark.parametrize(("archetype", "output"), [
    (RESEARCHER, ContextReport), (ARCHITECT, DesignSpec), (BUILDER, BuildReport),
    (QC, AgentAnswer),
])
def test_each_prompt_names_the_schema_its_output_is(archetype: Archetype, output: type) -> None:
    assert archetype.output is output
    if output is not AgentAnswer:
        assert output.__name__ in archetype.system_prompt


def test_outputs_parse_json_with_defaults_and_refuse_missing_fields() -> None:
    spec = DesignSpec.model_validate_json(
        '{"summary": "s", "module": "calc.py", "test_file": "tests/test_calc.py",'
        ' "test_plan": [{"name": "adds", "description": "1 + 1 == 2"}]}'
    )
    assert (spec.module, spec.files, spec.test_plan[0].name) == ("calc.py", [], "adds")
    assert ContextReport(summary="x").relevant_files == []
    with pytest.raises(ValidationError, match="test_file"):
        DesignSpec.model_validate({"summary": "s", "module": "calc.py"})


def test_archetypes_are_frozen_and_each_has_its_own_extra() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        RESEARCHER.temperature = 1.0  # type: ignore[misc]
    one = Archetype(name="one", system_prompt="p")
    two = Archetype(name="two", system_prompt="p")
    one.extra["k"] = "v"
    assert two.extra == {}


def test_register_adds_and_replaces_by_name() -> None:
    reviewer = Archetype(name="code_reviewer", system_prompt="Review.", tools=("read_file",))
    assert register_archetype(reviewer) is reviewer
    assert get_archetype("code_reviewer") is reviewer
    assert "code_reviewer" in archetype_names()
    cheaper = dataclasses.replace(QC, model="small-model")
    register_archetype(cheaper)
    assert get_archetype("qc").model == "small-model"
    assert len(archetype_names()) == 5


@pytest.mark.parametrize("name", ["", "code reviewer", "qc!", "../x"])
def test_a_name_that_is_not_a_word_is_refused(name: str) -> None:
    with pytest.raises(ConfigurationError, match="must be a word"):
        register_archetype(Archetype(name=name, system_prompt="p"))
    assert archetype_names() == ["architect", "builder", "qc", "researcher"]


def test_an_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ConfigurationError,
                       match=r"^unknown archetype 'tester'; known: architect, builder, qc, "
                             r"researcher$"):
        get_archetype("tester")
