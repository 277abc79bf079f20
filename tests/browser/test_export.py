"""A shared post-mortem: notebooks/06_postmortem.ipynb executed, exported with `jupyter
nbconvert --to html`, and opened offline in headless Debian Chromium; every chart output
must be drawn by the page itself (plotly.js embedded once, no CDN).

Chromium comes from `scripts/system-deps.sh` (apt-get); the test is skipped only when
Chromium is absent and that script cannot install it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from taskorch_nb.chart import LOADER_MARK
from tests.browser.test_dashboard_browser import CHROMIUM_ARGS, chromium

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "06_postmortem.ipynb"
PLOTLY = "application/vnd.plotly.v1+json"

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser_path() -> str:
    if chromium() is None:
        done = subprocess.run(["bash", str(ROOT / "scripts" / "system-deps.sh")], cwd=ROOT,
                              capture_output=True, text=True, timeout=900)
        if chromium() is None:
            pytest.skip("Chromium is not installed and scripts/system-deps.sh could not "
                        f"install it: {done.stderr.strip()[-400:]}")
    path = chromium()
    assert path is not None
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, int]:
    """The notebook run in a fresh kernel, then `jupyter nbconvert --to html`: the page and
    how many chart outputs the notebook holds."""
    from nbclient import NotebookClient

    workdir = tmp_path_factory.mktemp("export")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=180, kernel_name="python3",
                   resources={"metadata": {"path": str(workdir)}}).execute(
        env=os.environ | {"TASKORCH_HOME": str(workdir)})
    executed = workdir / "06_postmortem.ipynb"
    nbformat.write(nb, executed)
    charts = sum(PLOTLY in output.get("data", {})
                 for cell in nb.cells if cell.cell_type == "code"
                 for output in cell.get("outputs", []))
    done = subprocess.run(
        [sys.executable, "-m", "nbconvert", "--to", "html", str(executed)],
        cwd=workdir, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return workdir / "06_postmortem.html", charts


def test_every_chart_of_the_exported_post_mortem_is_drawn_offline(browser_path,
                                                                  exported) -> None:
    from playwright.sync_api import sync_playwright

    page_path, charts = exported
    assert charts >= 3  # the notebook shows the timeline, the breakers and the burn
    text = page_path.read_text(encoding="utf-8")
    assert text.count(LOADER_MARK) == 1  # plotly.js embedded once
    requested: list[str] = []

    def offline(route) -> None:  # the page alone: a CDN script must not be what draws
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            requested.append(route.request.url)
            route.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.route("**/*", offline)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(page_path.as_uri(), wait_until="load")
            page.wait_for_function(
                f"document.querySelectorAll('.taskorch-chart .main-svg').length >= {charts}",
                timeout=30_000)
            divs = page.locator(".taskorch-chart")
            assert divs.count() == charts
            drawn = [divs.nth(i).locator(".plotly .main-svg").count() > 0
                     for i in range(charts)]
            assert all(drawn), drawn
            # each one has its data, not an empty frame: bars, lines or a tree
            marks = [divs.nth(i).locator(".bars, .scatterlayer .trace, .icicle, .sunburst, "
                                         "g.slice").count() for i in range(charts)]
            assert all(n > 0 for n in marks), marks
            assert errors == [], errors
        finally:
            browser.close()
    assert not any("plotly" in url for url in requested), requested
