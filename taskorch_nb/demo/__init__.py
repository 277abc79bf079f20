"""`taskorch-nb demo`: the seed flows offline, a printed report and an HTML page of charts."""

from __future__ import annotations

import tempfile
from pathlib import Path

from taskorch_nb.demo.flows import FLOWS, FlowResult, missing


async def run_demo(*, report_path: str | None = None, flows: str = "all") -> int:
    """Run the chosen flows, print the report, write the HTML report; exit 0 when every
    flow did what its seed diagram says."""
    try:
        chosen = sorted(FLOWS) if flows == "all" else [int(n) for n in flows.split(",") if n]
    except ValueError:
        print(f"--flows takes numbers like 1,7; available: {sorted(FLOWS)}")
        return 2
    unknown = [n for n in chosen if n not in FLOWS]
    if unknown:
        print(f"unknown flow(s) {unknown}; available: {sorted(FLOWS)}")
        return 2
    results: list[FlowResult] = []
    with tempfile.TemporaryDirectory(prefix="taskorch-demo-") as tmp:
        for number in chosen:
            result = await FLOWS[number](Path(tmp))
            results.append(result)
            mark = "ok " if result.ok else "FAIL"
            print(f"\n[{mark}] Flow {number}: {result.title}", flush=True)
            for line in result.lines:
                print(line)
    if report_path:
        charts = not missing("plotly")
        written = _write_report(report_path, results, charts=charts)
        note = "" if charts else (
            " (text only: the charts need the [notebook] extra, pip install "
            "'taskorch-nb[notebook]')")
        print(f"\nHTML report: {written}{note}")
    passed = sum(r.ok for r in results)
    print(f"\n{passed} of {len(results)} flows did what the seed diagrams say.")
    return 0 if passed == len(results) else 1


def _write_report(path: str, results: list[FlowResult], *, charts: bool) -> Path:
    from taskorch_nb.report import write_report

    sections: list[tuple[str, list[object]]] = [
        (f"Flow {r.number}: {r.title}", ["\n".join(r.lines)]) for r in results
    ]
    if charts:  # plotly: the [notebook] extra
        from taskorch_nb.demo.figures import figures_for
        from taskorch_nb.notebook.widgets import Dashboard

        for (_, content), result in zip(sections, results, strict=True):
            content.extend(figures_for(result))
            # each run's dashboard, its controls disabled: no kernel runs behind the page
            content.extend(Dashboard.replay(run) for run in result.runs)
    return write_report(path, sections, title="taskorch_nb demo")
