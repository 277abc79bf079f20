"""`taskorch-nb demo`: the seed flows offline, a printed report and an HTML page of charts."""

from __future__ import annotations

import tempfile
from pathlib import Path

from taskorch_nb.demo.flows import FLOWS, FlowResult


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
        written = _write_report(report_path, results)
        print(f"\nHTML report: {written}")
    passed = sum(r.ok for r in results)
    print(f"\n{passed} of {len(results)} flows did what the seed diagrams say.")
    return 0 if passed == len(results) else 1


def _write_report(path: str, results: list[FlowResult]) -> Path:
    from taskorch_nb.demo.figures import figures_for
    from taskorch_nb.report import write_report

    sections = [
        (f"Flow {r.number}: {r.title}", ["\n".join(r.lines), *figures_for(r)]) for r in results
    ]
    return write_report(path, sections, title="taskorch_nb demo")
