"""The dashboard in a real browser: a notebook executed with its widget state stored,
rendered to HTML with the widget manager and plotly.js served from 127.0.0.1 (no CDN),
opened in headless Debian Chromium through playwright; the DOM must show the gauge, the
circuit panel and a Plotly chart. With TASKORCH_SCREENSHOTS=1 (never in CI) the page's
picture goes to docs/img/dashboard-export.png; the README's picture comes from JupyterLab
(test_jupyterlab.py).

Chromium and the widget manager come from `scripts/system-deps.sh` (apt-get, npm). The
test is skipped only when Chromium is absent and that script cannot install it.
"""

from __future__ import annotations

import functools
import html
import json
import os
import shutil
import subprocess
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "04_multi_agent.ipynb"
MANAGER = ROOT / ".cache" / "js" / "html-manager" / "dist"
SCREENSHOT = ROOT / "docs" / "img" / "dashboard-export.png"
SCREENSHOTS = os.environ.get("TASKORCH_SCREENSHOTS") == "1" and not os.environ.get("CI")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
PLOTLY = "application/vnd.plotly.v1+json"

pytestmark = pytest.mark.browser


def chromium() -> str | None:
    for candidate in (os.environ.get("TASKORCH_CHROMIUM"), "/usr/bin/chromium",
                      "/usr/bin/chromium-browser"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="module")
def browser_path() -> str:
    """Chromium, installed by scripts/system-deps.sh when it is missing and that can."""
    if chromium() is None or not (MANAGER / "embed.js").exists():
        done = subprocess.run(["bash", str(ROOT / "scripts" / "system-deps.sh")], cwd=ROOT,
                              capture_output=True, text=True, timeout=900)
        if chromium() is None:
            pytest.skip("Chromium is not installed and scripts/system-deps.sh could not "
                        f"install it: {done.stderr.strip()[-400:]}")
        assert (MANAGER / "embed.js").exists(), (
            f"the widget manager did not install (needs npm): {done.stderr[-800:]}")
    path = chromium()
    assert path is not None
    return path


def execute(notebook: Path, workdir: Path) -> nbformat.NotebookNode:
    """Run the notebook in a fresh kernel, keeping the widgets' state in its metadata."""
    from nbclient import NotebookClient

    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(nb, timeout=120, kernel_name="python3", store_widget_state=True,
                            resources={"metadata": {"path": str(workdir)}})
    client.execute(env=os.environ | {"TASKORCH_HOME": str(workdir)})
    return nb


def render(nb: nbformat.NotebookNode) -> str:
    """A static page of the notebook's outputs: widget views for the html-manager to render
    from the stored state, Plotly figures drawn by the local plotly.js."""
    state = nb.metadata["widgets"][WIDGET_STATE]
    parts: list[str] = []
    figures = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        parts.append(f'<pre class="input">{html.escape(cell.source)}</pre>')
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET_VIEW in data:
                parts.append(f'<script type="{WIDGET_VIEW}">{json.dumps(data[WIDGET_VIEW])}'
                             "</script>")
            elif PLOTLY in data:
                figures += 1
                figure = json.dumps(data[PLOTLY]).replace("</", "<\\/")
                parts.append(f'<div class="figure" id="figure-{figures}"></div><script>'
                             f"(function(f){{Plotly.newPlot('figure-{figures}', f.data, f.layout)"
                             f"}})({figure});</script>")
            elif "text/html" in data:
                parts.append(f'<div class="html">{data["text/html"]}</div>')
            elif "text/plain" in data:
                parts.append(f'<pre>{html.escape(data["text/plain"])}</pre>')
            elif output.get("output_type") == "stream":
                parts.append(f'<pre>{html.escape(output["text"])}</pre>')
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>taskorch_nb dashboard</title>"
        "<style>body{font-family:sans-serif;margin:16px;max-width:1200px}"
        "pre.input{background:#f4f4f4;padding:6px;font-size:12px}</style>"
        '<script src="plotly.min.js"></script>'
        '<script src="manager/embed.js"></script>'
        f'<script type="{WIDGET_STATE}">{json.dumps(state)}</script></head><body>'
        + "\n".join(parts) + "</body></html>"
    )


@pytest.fixture
def site(tmp_path):
    """The rendered notebook and its scripts, served on 127.0.0.1 (port 0)."""
    import plotly

    nb = execute(NOTEBOOK, tmp_path)
    root = tmp_path / "site"
    root.mkdir()
    (root / "index.html").write_text(render(nb), encoding="utf-8")
    shutil.copy(Path(plotly.__file__).parent / "package_data" / "plotly.min.js", root)
    shutil.copytree(MANAGER, root / "manager")

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    server.shutdown()
    server.server_close()


def test_dashboard_gauge_circuits_and_chart_render_offline(browser_path, site, tmp_path) -> None:
    from playwright.sync_api import sync_playwright

    blocked: list[str] = []

    def offline(route) -> None:  # everything must come from the loopback server
        if urlparse(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    with sync_playwright() as p:
        # playwright gives the browser a fresh temporary profile itself
        browser = p.chromium.launch(executable_path=browser_path, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.route("**/*", offline)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(site, wait_until="load")
            page.wait_for_selector(".taskorch-dashboard", state="visible", timeout=20_000)
            page.wait_for_selector(".js-plotly-plot .main-svg", state="visible", timeout=20_000)

            dashboard = page.locator(".taskorch-dashboard").first
            gauge = dashboard.locator(".taskorch-gauge")
            assert gauge.is_visible()
            assert "$3.00" in gauge.inner_text()
            assert dashboard.locator(".taskorch-gauge .progress-bar-success, "
                                     ".taskorch-gauge .widget-progress").count() >= 1
            circuits = dashboard.locator(".taskorch-circuits")
            assert circuits.is_visible()
            rows = circuits.locator(".taskorch-circuit")
            assert rows.count() >= 2
            assert "simulated:sim-small" in circuits.inner_text()
            assert rows.first.get_attribute("data-state") == "CLOSED"
            stepper = dashboard.locator(".taskorch-stepper")
            assert "completed" in stepper.inner_text()
            assert dashboard.locator('.taskorch-step[data-state="done"]').count() == 4
            chart = page.locator(".js-plotly-plot").first
            assert chart.is_visible()
            assert chart.locator(".bars, .trace.bars").count() >= 1
            assert errors == []

            # the picture for the docs: the dashboard and the first chart, nothing between
            page.evaluate("""() => {
                document.querySelectorAll('body > pre, body > .html').forEach(
                    e => { e.style.display = 'none'; });
                document.querySelectorAll('body > .figure').forEach(
                    (e, i) => { if (i > 0) e.style.display = 'none'; });
            }""")
            shot = tmp_path / "page.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
    if SCREENSHOTS:
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)
    # the page needed nothing beyond 127.0.0.1 (what was asked for was refused, and it rendered)
    assert all("plotly" not in url and "jupyter-widgets" not in url for url in blocked), blocked
