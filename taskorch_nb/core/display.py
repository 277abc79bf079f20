"""The seam between result objects and the notebook: objects give text, notebook/ gives HTML.

`Run`, `CostReport` and `Pattern` know their data and a plain-text view; the
HTML view is built in `taskorch_nb.notebook.display`, which registers one
renderer per class here when `taskorch_nb` is imported. The layers below the
front ends never import it, so without a renderer a result shows as text only.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

HtmlRenderer = Callable[[Any], str]
"""Builds the `text/html` view of one object."""

_renderers: dict[type, HtmlRenderer] = {}


def register_html(kind: type, render: HtmlRenderer) -> None:
    """Show instances of `kind` (and its subclasses) as HTML with `render`."""
    _renderers[kind] = render


def html_renderer(kind: type) -> HtmlRenderer | None:
    """The renderer registered for `kind` or its nearest base class, if any."""
    for klass in kind.__mro__:
        render = _renderers.get(klass)
        if render is not None:
            return render
    return None


def wanted(mime: str, include: Collection[str] | None, exclude: Collection[str] | None) -> bool:
    """Whether a front end asked for `mime` (IPython passes `include`/`exclude` sets)."""
    return (not include or mime in include) and not (exclude and mime in exclude)


def mimebundle(
    obj: Any,
    text: str,
    include: Collection[str] | None = None,
    exclude: Collection[str] | None = None,
) -> dict[str, str]:
    """`_repr_mimebundle_` of a result object: `text`, and HTML when a renderer is registered.

    A type left out by `include`/`exclude` is not built at all.
    """
    bundle = {"text/plain": text} if wanted("text/plain", include, exclude) else {}
    render = html_renderer(type(obj))
    if render is not None and wanted("text/html", include, exclude):
        bundle["text/html"] = render(obj)
    return bundle


__all__ = ["HtmlRenderer", "html_renderer", "mimebundle", "register_html", "wanted"]
