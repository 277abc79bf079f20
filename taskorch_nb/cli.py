"""`taskorch-nb`: the offline demo, runs, the MCP server and the federation hub."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from decimal import Decimal


def _demo(args: argparse.Namespace) -> int:
    from taskorch_nb.demo import run_demo

    return asyncio.run(run_demo(report_path=args.report, flows=args.flows))


def _run(args: argparse.Namespace) -> int:
    from taskorch_nb.engine.orchestrator import Orchestrator
    from taskorch_nb.errors import ConfigurationError
    from taskorch_nb.notebook.text import describe_event

    try:
        orch = Orchestrator(args.provider, args.model, budget=args.budget, store=args.store,
                            max_rounds=args.max_rounds)
    except ConfigurationError as exc:
        print(f"taskorch-nb run: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        orch.subscribe(lambda event: print(describe_event(event), flush=True))
    try:
        run = orch.run_sync(args.task, workflow=args.workflow, archetype=args.archetype,
                            workspace=args.workspace)
    except ConfigurationError as exc:
        print(f"taskorch-nb run: {exc}", file=sys.stderr)
        return 2
    finally:
        orch.close()
    print(f"\n{run!r}\n{run.cost}")
    if run.output:
        print(f"output: {run.output}")
    if run.error:
        print(f"error: {run.error}", file=sys.stderr)
    print(f"workspace: {run.workspace}")
    return {"COMPLETED": 0, "PAUSED": 3}.get(run.status.value, 1)


def _mcp(args: argparse.Namespace) -> int:
    from taskorch_nb.mcp.server import main as serve

    return serve()


def _budget(text: str) -> Decimal:
    from taskorch_nb.core.money import parse_usd

    try:
        return parse_usd(text, "--budget")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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

    run = sub.add_parser("run", help="run one task and print its events and cost")
    run.add_argument("task", help="what the agents should do")
    run.add_argument("--budget", type=_budget, default=Decimal("5.00"),
                     help="USD (default 5.00)")
    run.add_argument("--workflow", default="full", help="full | single (default full)")
    run.add_argument("--archetype", help="the archetype of a single workflow")
    run.add_argument("--provider", default="simulated",
                     help="simulated | openai | anthropic | auto (default simulated)")
    run.add_argument("--model", help="model name (default: the provider's)")
    run.add_argument("--max-rounds", type=int, default=3, help="QC fix rounds (default 3)")
    run.add_argument("--workspace", help="folder the agents work in (default: a temp dir)")
    run.add_argument("--store", help="SQLite file (default $TASKORCH_HOME/taskorch.db)")
    run.add_argument("-q", "--quiet", action="store_true", help="print only the result")
    run.set_defaults(func=_run)

    mcp = sub.add_parser("mcp", help="serve the MCP tools on stdio")
    mcp.set_defaults(func=_mcp)

    from taskorch_nb.federation.hubcli import register

    register(sub)
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
