"""`taskorch-nb`: the offline demo, runs, the MCP server and the federation hub."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence


def _demo(args: argparse.Namespace) -> int:
    from taskorch_nb.demo import run_demo

    return asyncio.run(run_demo(report_path=args.report, flows=args.flows))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="taskorch-nb",
        description="Safe, visible LLM agents: breakers, retries, budgets, failure patterns.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = sub.add_parser("demo", help="run the seed flows offline and print a report")
    demo.add_argument("--report", default="taskorch-report.html",
                      help="where to write the HTML report (default: %(default)s)")
    demo.add_argument("--flows", default="all",
                      help="comma-separated flow numbers to run, e.g. 1,7 (default: all)")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
