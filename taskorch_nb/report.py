"""A self-contained HTML report of charts and notes (what `taskorch-nb demo` writes).

One file, no network: plotly.js is inlined once in the page head and every
figure after it refers to it, so the report opens offline, from an e-mail or a
CI artifact. A section is a title with figures and/or paragraphs of text.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

Section = tuple[str, "Sequence[Any] | str"]
"""`(title, content)`: content is a str (plain text, paragraphs split on blank lines) or a
list mixing Plotly figures, str paragraphs and run dashboards (`Dashboard.replay(run)`:
its text, and its controls shown disabled, as no kernel runs behind the page)."""

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 1100px; color: #222; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.25rem; border-bottom: 1px solid #ddd; padding-bottom: 0.2rem;
     margin-top: 2.2rem; }
p.meta { color: #777; margin-top: 0; }
pre { background: #f6f8fa; padding: 0.6rem; overflow-x: auto; font-size: 0.85rem; }
nav ol { columns: 2; }
.figure { margin: 1rem 0; }
"""


def _paragraphs(text: str) -> str:
    blocks = [b.strip("\n") for b in text.split("\n\n") if b.strip()]
    out = []
    for block in blocks:
        lines = block.splitlines()
        # indented or multi-line blocks are logs and tables: keep their layout
        if len(lines) > 1 or block.startswith((" ", "\t")):
            out.append(f"<pre>{html.escape(block)}</pre>")
        else:
            out.append(f"<p>{html.escape(block)}</p>")
    return "\n".join(out)


def _figure_html(figure: Any, index: int) -> str:
    body = figure.to_html(full_html=False, include_plotlyjs=False, div_id=f"figure-{index}",
                          config={"displaylogo": False, "responsive": True})
    return f'<div class="figure">{body}</div>'


def write_report(path: str | os.PathLike[str], sections: Sequence[Section], *,
                 title: str = "taskorch_nb report") -> Path:
    """Write `sections` to one offline HTML file at `path` and return its path.

    Each section is `(title, content)` where content is a str or a list of
    Plotly figures and str paragraphs (in order). Raises `TypeError` for other
    content, before anything is written. A report of text alone needs no plotly.
    """
    parts: list[str] = []
    figures = 0
    for number, (heading, content) in enumerate(sections, 1):
        items = [content] if isinstance(content, str) else list(content)
        rendered = []
        for item in items:
            if isinstance(item, str):
                rendered.append(_paragraphs(item))
            elif callable(getattr(item, "static_controls", None)):  # a run's dashboard
                rendered.append(f"<pre>{html.escape(item.text())}</pre>"
                                f"{item.static_controls()}")
            elif hasattr(item, "to_html") and hasattr(item, "to_plotly_json"):
                figures += 1
                rendered.append(_figure_html(item, figures))
            else:
                raise TypeError(f"section {heading!r}: expected a Plotly figure, a str or a "
                                "dashboard, "
                                f"got {type(item).__name__}")
        parts.append(f'<section id="s{number}"><h2>{html.escape(heading)}</h2>\n'
                     + "\n".join(rendered) + "</section>")
    toc = "".join(f'<li><a href="#s{i}">{html.escape(h)}</a></li>'
                  for i, (h, _) in enumerate(sections, 1))
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    script = ""
    if figures:  # plotly.js once, in the head: every figure div below uses the same Plotly
        from plotly.offline import get_plotlyjs

        script = f"<script type='text/javascript'>{get_plotlyjs()}</script>"
    page = (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style>{script}</head><body>"
        f"<h1>{html.escape(title)}</h1><p class='meta'>{stamp} &middot; {len(sections)} "
        f"section(s), {figures} chart(s)</p><nav><ol>{toc}</ol></nav>"
        + "\n".join(parts) + "</body></html>\n"
    )
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(page, encoding="utf-8")
    return target
