"""Charts that survive export: a `go.Figure` that also draws itself in plain HTML.

In a kernel plotly 7 displays a figure as its JSON mimetype only. JupyterLab
and VS Code draw that with their own Plotly renderer, but `jupyter nbconvert
--to html` does not know the mimetype and drops the chart, and shared
post-mortems are a main use of these notebooks. So a `Chart` displays a bundle
with both: the JSON mimetype, which Lab prefers (its renderer ranks first), and
a `text/html` drawing, which nbconvert and other HTML-only readers use.

The drawing needs plotly.js, and an export must work offline (no CDN): the first
chart a kernel shows embeds plotly.js once, inline (gzipped and base64-encoded:
2.0 MB instead of 4.8 MB); later charts draw with it, once the page has loaded,
wherever in the page it landed. When
the cell that held it runs again, its old output goes, so its new one embeds
plotly.js again.
"""

from __future__ import annotations

import base64
import gzip
import json
from functools import cache
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

__all__ = ["PLOTLY_MIME", "Chart", "exportable"]

PLOTLY_MIME = "application/vnd.plotly.v1+json"

#: Marks the one output that carries plotly.js (gzip, base64: 2.0 MB instead of 4.8 MB).
LOADER_MARK = "window.taskorchPlotly = "

# plotly.js unpacked by the browser itself (DecompressionStream: Chromium 80, Firefox 113,
# Safari 16.4) and run with no AMD loader in sight, so it sets window.Plotly.
_LOADER = """<script>
window.PlotlyConfig = {MathJaxConfig: 'local'};
if (!window.Plotly && !window.taskorchPlotly) {
window.taskorchPlotly = (async function () {
  var packed = "%s";
  var bytes = Uint8Array.from(atob(packed), function (c) { return c.charCodeAt(0); });
  var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  var source = await new Response(stream).text();
  (new Function("define", "module", "exports", source)).call(window);
  return window.Plotly;
})();
}
</script>
"""

# Draws when plotly.js is there or being unpacked, else once the page has loaded (it may
# come later in the page, in the chart whose cell ran first in this kernel).
_DRAW = """<div class="taskorch-chart" style="width:100%%;height:%dpx"></div>
<script>
(function () {
var figure = %s;
var div = document.currentScript.previousElementSibling;
function draw() {
  if (div.dataset.drawn) { return; }
  div.dataset.drawn = "1";
  window.Plotly.newPlot(div, figure.data, figure.layout || {}, figure.config || {});
}
function ready() {
  if (window.Plotly) { draw(); return true; }
  if (window.taskorchPlotly) { window.taskorchPlotly.then(draw); return true; }
  return false;
}
if (!ready()) { window.addEventListener("load", ready); }
})();
</script>
"""


class Chart(go.Figure):
    """A `go.Figure` whose notebook display also carries a self-contained HTML drawing.

    Everything else is plotly's: build, update and show it like any figure.
    """

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None,
                          validate: bool = True, **kwargs: Any) -> dict[str, Any]:
        bundle = super()._repr_mimebundle_(include, exclude, validate, **kwargs)
        if PLOTLY_MIME in bundle and "text/html" not in bundle:
            bundle["text/html"] = _html(bundle[PLOTLY_MIME])
        return bundle

    def _ipython_display_(self) -> None:
        # plotly's own goes through `pio.show`, which builds the bundle without us
        import plotly.io as pio
        from IPython.display import display

        if not (pio.renderers.render_on_display and pio.renderers.default):
            print(repr(self))
            return
        bundle = self._repr_mimebundle_()
        if bundle:
            display(bundle, raw=True)
        pio._renderers.renderers._perform_external_rendering(self.to_dict())


def exportable(figure: go.Figure) -> Chart:
    """The figure as a `Chart` (itself if it is one): for figures built by hand."""
    return figure if isinstance(figure, Chart) else Chart(figure)


class _Embedded:
    """Which execution of which cell put plotly.js in its output, in this kernel."""

    def __init__(self) -> None:
        self.done = False
        self.cell: str | None = None
        self.request: str | None = None

    def needed(self, cell: str | None, request: str | None) -> bool:
        """Whether this display must embed plotly.js (and note it when so): the kernel's
        first chart, or the first of a new run of the cell whose old output held it."""
        if self.done and (cell is None or cell != self.cell or request == self.request):
            return False
        self.done, self.cell, self.request = True, cell, request
        return True


_embedded = _Embedded()


def _current_cell() -> tuple[str | None, str | None]:
    """The id of the cell being run (JupyterLab and nbclient send it) and of the request."""
    try:
        from IPython import get_ipython

        kernel = getattr(get_ipython(), "kernel", None)
        parent = kernel.get_parent("shell") if kernel is not None else {}
    except Exception:  # no kernel, or one without parents: nothing to tell cells apart
        return None, None
    parent = parent or {}
    return parent.get("metadata", {}).get("cellId"), parent.get("header", {}).get("msg_id")


@cache
def _plotlyjs() -> str:
    """plotly.min.js of the installed plotly, gzipped (mtime 0: the same bytes every time,
    so stored outputs compare equal) and base64-encoded."""
    import plotly

    source = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    packed = gzip.compress(source.read_bytes(), compresslevel=9, mtime=0)
    return base64.b64encode(packed).decode("ascii")


def _html(figure: dict[str, Any]) -> str:
    config = {"responsive": True, "displaylogo": False, **figure.get("config", {})}
    text = json.dumps({**figure, "config": config}, separators=(",", ":"))
    text = text.replace("</", "<\\/").replace("<!--", "<\\!--")
    height = int(figure.get("layout", {}).get("height") or 450)
    loader = _LOADER % _plotlyjs() if _embedded.needed(*_current_cell()) else ""
    return loader + _DRAW % (height, text)
