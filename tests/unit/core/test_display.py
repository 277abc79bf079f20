"""The display seam: text from the object, HTML only from a registered renderer."""

from __future__ import annotations

from decimal import Decimal

import pytest

from taskorch_nb.core import display
from taskorch_nb.core.budget import BudgetGuard, CostReport
from taskorch_nb.core.display import html_renderer, mimebundle, register_html


class Result:
    def __init__(self, value: str) -> None:
        self.value = value

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, str]:
        return mimebundle(self, f"Result {self.value}", include, exclude)


class SpecialResult(Result):
    pass


@pytest.fixture
def rendered(monkeypatch: pytest.MonkeyPatch) -> list[Result]:
    """Registers an HTML renderer for `Result` (removed after the test); lists what it drew."""
    drawn: list[Result] = []

    def render(obj: Result) -> str:
        drawn.append(obj)
        return f"<b>{obj.value}</b>"

    monkeypatch.setattr(display, "_renderers", dict(display._renderers))
    register_html(Result, render)
    return drawn


def test_without_a_renderer_the_bundle_is_text_only() -> None:
    assert html_renderer(Result) is None
    assert Result("a")._repr_mimebundle_() == {"text/plain": "Result a"}


def test_a_core_object_without_its_renderer_is_text_only(monkeypatch: pytest.MonkeyPatch) -> None:
    guard = BudgetGuard(5)
    guard.commit(guard.reserve(1), Decimal("0.5"))
    report = guard.report()
    assert set(report._repr_mimebundle_()) == {"text/plain", "text/html"}  # the facade's
    monkeypatch.delitem(display._renderers, CostReport)
    assert report._repr_mimebundle_() == {"text/plain": str(report)}


def test_a_registered_renderer_adds_html(rendered: list[Result]) -> None:
    obj = Result("a")
    assert obj._repr_mimebundle_() == {"text/plain": "Result a", "text/html": "<b>a</b>"}
    assert rendered == [obj]


def test_a_subclass_uses_its_base_class_renderer(rendered: list[Result]) -> None:
    assert SpecialResult("s")._repr_mimebundle_()["text/html"] == "<b>s</b>"


@pytest.mark.parametrize(
    ("include", "exclude", "types"),
    [
        (None, None, {"text/plain", "text/html"}),
        ({"text/plain"}, None, {"text/plain"}),
        ({"text/html"}, None, {"text/html"}),
        (None, {"text/html"}, {"text/plain"}),
        (None, {"text/plain"}, {"text/html"}),
        ({"text/html"}, {"text/html"}, set()),
        ({"image/png"}, None, set()),
    ],
)
def test_include_and_exclude_as_rich_honours_them(
    rendered: list[Result], include: set[str] | None, exclude: set[str] | None, types: set[str]
) -> None:
    bundle = Result("a")._repr_mimebundle_(include=include, exclude=exclude)
    assert set(bundle) == types
    assert len(rendered) == ("text/html" in types)  # HTML nobody asked for is never built
