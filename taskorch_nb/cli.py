"""`taskorch-nb`: the offline demo, runs (run, resume, history, gc), the MCP server,
the federation hub and `guard` (your own agent script under a guard).

Exit statuses: 0 done, 1 the run failed, 2 bad input or settings (one line on
stderr, never a traceback), 3 the run PAUSED on its budget (the line says how to
resume it), 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskorch_nb.clikit import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_PAUSED,
    EXIT_USAGE,
    OneLineParser,
    one_line,
    price_pair,
    require_extra,
    say,
    seconds,
    usd,
    whole,
)
from taskorch_nb.core.money import format_usd
from taskorch_nb.errors import ConfigurationError, TaskorchError

if TYPE_CHECKING:
    from taskorch_nb.engine.orchestrator import Orchestrator
    from taskorch_nb.engine.run import Run

PROG = "taskorch-nb"
#: Variables that say a real model is wanted; the simulated provider ignores them.
_MODEL_VARIABLES = ("OPENAI_BASE_URL", "OPENAI_API_KEY", "ANTHROPIC_API_KEY")


def provider_notice(provider: str, environ: Mapping[str, str] | None = None, *,
                    hint: str = "--provider {}") -> str | None:
    """One line when a model's settings are in the environment but `provider` (as
    resolved) is the simulated one, so no model is called; else None."""
    env = os.environ if environ is None else environ
    if provider != "simulated":
        return None
    present = [name for name in _MODEL_VARIABLES if env.get(name)]
    if not present:
        return None
    wanted = "openai" if any(n.startswith("OPENAI") for n in present) else "anthropic"
    return (f"note: {' and '.join(present)} {'is' if len(present) == 1 else 'are'} set, "
            f"but the provider is simulated: no model is called ({hint.format(wanted)} uses it)")


def _notice_provider(orch: Orchestrator) -> None:
    notice = provider_notice(orch.provider.name)
    if notice:
        print(notice, file=sys.stderr, flush=True)
    for said in orch.notices:  # which provider "auto" chose, which models are free
        print(said.message, file=sys.stderr, flush=True)


# -- run, resume ------------------------------------------------------------------------


def _orchestrator(args: argparse.Namespace, store: Any) -> Orchestrator:
    from taskorch_nb.engine.orchestrator import Orchestrator

    base_url = getattr(args, "base_url", None)
    provider = args.provider or ("openai" if base_url else "simulated")
    orch = Orchestrator(provider, args.model, budget=getattr(args, "budget", None),
                        store=store, max_rounds=getattr(args, "max_rounds", 3),
                        base_url=base_url, timeout=getattr(args, "timeout", None),
                        deadline=getattr(args, "deadline", None), prices=_prices(args))
    _notice_provider(orch)
    if not args.quiet:
        from taskorch_nb.notebook.text import describe_event

        orch.subscribe(lambda event: print(describe_event(event), flush=True))
    return orch


def _prices(args: argparse.Namespace) -> dict[str, dict[str, Any]] | None:
    """`--price-per-mtok IN,OUT` or `--free`: the price of `--model`."""
    price = getattr(args, "price_per_mtok", None)
    if getattr(args, "free", False):
        if price is not None:
            raise ConfigurationError("give --free or --price-per-mtok, not both")
        price = (0, 0)
    if price is None:
        return None
    if not args.model:
        raise ConfigurationError("--price-per-mtok and --free price a model: give --model too")
    return {args.model: {"input": price[0], "output": price[1]}}


def _run(args: argparse.Namespace) -> int:
    orch = _orchestrator(args, args.store)
    try:
        run = orch.run_sync(args.task, workflow=args.workflow, archetype=args.archetype,
                            workspace=args.workspace, max_tokens=args.max_tokens,
                            max_requests=args.max_requests)
    finally:
        orch.close()
    return _report(run, args)


def _resume(args: argparse.Namespace) -> int:
    store = _existing_store(args.store)
    if store is None:
        raise ConfigurationError(f"no run {args.run_id!r}: nothing has run here yet")
    try:
        row = store.load_run(args.run_id)
        if row is None:
            raise ConfigurationError(f"no run {args.run_id!r} in {store.path} "
                                     "(taskorch-nb history lists the runs)")
        # The provider and model the run was started with, unless told otherwise.
        args.provider = args.provider or row["data"].get("provider") or "simulated"
        args.model = args.model or row["data"].get("model")
        orch = _orchestrator(args, store)
        try:
            run = orch.get_run(args.run_id).resume_sync(
                args.extra_budget, extra_tokens=args.extra_tokens,
                extra_requests=args.extra_requests)
        finally:
            orch.close()
    finally:
        store.close()
    return _report(run, args)


def _report(run: Run, args: argparse.Namespace) -> int:
    """Print the result (only the output with -q); status lines go to stderr."""
    status = run.status.value
    if args.quiet:
        if status == "COMPLETED" and run.output:
            print(run.output)
    else:
        print(f"\n{run!r}\n{run.cost}")
        if run.output:
            print(f"output: {run.output}")
        print(f"workspace: {run.workspace}")
    if status == "COMPLETED":
        return 0
    if status == "PAUSED":
        command = [PROG, "resume", run.id, *_resume_options(run)]
        if args.store:
            command += ["--store", str(args.store)]
        print(f"PAUSED: {one_line(run.error)}. Resume with: {shlex.join(command)}",
              file=sys.stderr)
        return EXIT_PAUSED
    print(f"{status}: {one_line(run.error or status.lower())}", file=sys.stderr)
    return EXIT_FAILED


def _resume_options(run: Run) -> list[str]:
    """What a paused run needs to go on: nothing once its provider is back, more tokens or
    requests when a cap paused it, else more money."""
    error = run.error or ""
    if error.startswith("provider "):
        return []
    if error.startswith("token limit"):
        return ["--extra-tokens", str(run.guard.max_tokens or 0)]
    if error.startswith("request limit"):
        return ["--extra-requests", str(run.guard.max_requests or 0)]
    return ["--extra-budget", _suggested_extra(run)]


def _suggested_extra(run: Run) -> str:
    """The budget again, at least the refused call, in whole USD: enough to go on."""
    refused = [e.amount for e in run.events if e.type == "budget.rejected"]
    wanted = max([run.guard.limit, *refused[-1:]])
    return str(math.ceil(wanted))


def _existing_store(path: str | None) -> Any:
    """The store at `path` (default `$TASKORCH_STORE`, else `$TASKORCH_HOME/taskorch.db`);
    reading commands never create one: a missing `path` is an error, a missing default
    store is None (no runs yet). A `postgresql://` URL is the shared store on that server."""
    from taskorch_nb.core.backends import STORE_ENV, open_store
    from taskorch_nb.core.store import Store, default_path

    path = path or os.environ.get(STORE_ENV) or None
    if path and "://" in path:
        return open_store(path)

    target = Path(path) if path else default_path()
    if str(target) != ":memory:" and not target.exists():
        if not path:
            return None
        raise ConfigurationError(f"no store at {target} (the default is {default_path()})")
    return Store(target)


def _no_runs_yet() -> int:
    from taskorch_nb.core.store import default_path

    print(f"no runs yet: {default_path()} does not exist")
    return 0


# -- history, gc ------------------------------------------------------------------------


def _history(args: argparse.Namespace) -> int:
    from taskorch_nb.engine.orchestrator import Orchestrator

    store = _existing_store(args.store)
    if store is None:
        return _no_runs_yet()
    try:
        with Orchestrator(store=store) as orch:
            frame = orch.history(args.limit or None)
    finally:
        store.close()
    if frame.empty:
        print(f"no runs in {store.path}")
        return 0
    rows = [("RUN", "STATUS", "SPENT / LIMIT", "STARTED", "TASK")]
    for r in frame.itertuples():
        started = datetime.fromtimestamp(r.created.timestamp()).strftime("%Y-%m-%d %H:%M")
        task = r.task if len(r.task) <= 60 else r.task[:59] + "…"
        rows.append((r.run_id, r.status, f"{format_usd(r.spent)} / {format_usd(r.limit)}", started,
                     one_line(task)))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True))
              + "  " + row[4])
    return 0


def _gc(args: argparse.Namespace) -> int:
    from taskorch_nb.agents.retention import candidates, default_keep, prune, workspaces_root

    keep = default_keep() if args.keep is None else args.keep
    store = _existing_store(args.store)
    if store is None:
        return _no_runs_yet()
    try:
        root = workspaces_root(store.path)
        if root is None:
            raise ConfigurationError("an in-memory store keeps no workspaces to collect")
        pruned = prune(root, store.run_states(p.name for p in candidates(root)), keep)
    finally:
        store.close()
    for path in pruned.removed:
        print(f"removed {path}")
    for path, reason in pruned.failed:
        say(f"{PROG} gc", f"could not remove {path}: {reason}")
    print(f"{len(pruned.removed)} removed, {len(pruned.kept)} kept (the last {keep} finished), "
          f"{len(pruned.protected)} kept for runs that may resume or are starting, in {root}")
    return EXIT_FAILED if pruned.failed else 0


# -- demo, mcp --------------------------------------------------------------------------


def _flows(text: str) -> str:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if text.strip() != "all" and (not parts or not all(p.isdigit() for p in parts)):
        raise argparse.ArgumentTypeError(f"takes 'all' or numbers like 1,7, not {text!r}")
    return text.strip() if text.strip() == "all" else ",".join(parts)


def _report_path(text: str) -> str:
    path = Path(text).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory: give a file such as "
                                         f"{path / 'taskorch-report.html'}")
    parent = next((p for p in path.absolute().parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: {parent} is a file, not a directory")
    return text


def _demo(args: argparse.Namespace) -> int:
    from taskorch_nb.demo import run_demo
    from taskorch_nb.demo.flows import FLOWS

    if args.flows != "all":
        unknown = [n for n in args.flows.split(",") if int(n) not in FLOWS]
        if unknown:
            raise ConfigurationError(f"--flows: no flow {', '.join(unknown)}; "
                                     f"the flows are {', '.join(map(str, sorted(FLOWS)))}")
    return asyncio.run(run_demo(report_path=args.report, flows=args.flows))


def _mcp(args: argparse.Namespace) -> int:
    require_extra("mcp", "mcp")
    from taskorch_nb.llm.registry import choose_auto
    from taskorch_nb.mcp.server import main as serve

    requested = (os.environ.get("TASKORCH_PROVIDER") or "simulated").strip().lower()
    notice = provider_notice(choose_auto()[0] if requested == "auto" else requested,
                             hint="TASKORCH_PROVIDER={}")
    if notice:  # stderr: stdout is the MCP conversation
        print(notice, file=sys.stderr, flush=True)
    return serve()


# -- the parser -------------------------------------------------------------------------


def _store_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", metavar="PATH",
                        help="SQLite file of the runs, or a postgresql:// URL shared by many "
                        "processes (default $TASKORCH_STORE, else $TASKORCH_HOME/taskorch.db)")


def _run_options(parser: argparse.ArgumentParser, *, provider_default: str | None) -> None:
    default = provider_default or "the run's"
    if parser.prog.endswith(" run"):
        default = "simulated; openai with --base-url"
    parser.add_argument("--provider", default=provider_default,
                        help=f"simulated | openai | anthropic | auto (default {default})")
    parser.add_argument("--model", help="model name (default: the provider's)")
    parser.add_argument("--base-url", metavar="URL",
                        help="an OpenAI-compatible server, e.g. http://localhost:11434/v1 "
                        "(default $OPENAI_BASE_URL); the key comes from $OPENAI_API_KEY")
    parser.add_argument("--timeout", type=seconds, metavar="S",
                        help="seconds one model request may take (default 25)")
    parser.add_argument("--deadline", type=seconds, metavar="S",
                        help="seconds one model call may take, retries included (default 90)")
    parser.add_argument("--price-per-mtok", type=price_pair, metavar="IN,OUT",
                        help="USD per million input and output tokens of --model")
    parser.add_argument("--free", action="store_true",
                        help="--model costs nothing (a model on a local address is free "
                        "already)")
    _store_option(parser)
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="print only the result (status lines still go to stderr)")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=PROG, description="Safe, visible LLM agents: breakers, retries, budgets, "
        "failure patterns.", epilog="Exit: 0 done, 1 failed, 2 bad input, 3 paused on budget.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = sub.add_parser("demo", help="run the seed flows offline and print a report")
    demo.add_argument("--report", type=_report_path, default="taskorch-report.html",
                      help="where to write the HTML report (default: %(default)s)")
    demo.add_argument("--flows", type=_flows, default="all",
                      help="comma-separated flow numbers to run, e.g. 1,7 (default: all)")
    demo.set_defaults(func=_demo)

    run = sub.add_parser("run", help="run one task and print its events and cost")
    run.add_argument("task", help="what the agents should do")
    run.add_argument("--budget", type=usd, default=5.0, help="USD (default 5.00)")
    run.add_argument("--workflow", default="full", help="full | single (default full)")
    run.add_argument("--archetype", help="the archetype of a single workflow")
    run.add_argument("--max-rounds", type=whole(1), default=3, help="QC fix rounds (default 3)")
    run.add_argument("--max-tokens", type=whole(1), metavar="N",
                     help="cap the run's model tokens (input + output), e.g. for a free model")
    run.add_argument("--max-requests", type=whole(1), metavar="N",
                     help="cap the run's model requests")
    run.add_argument("--workspace", help="folder the agents work in "
                     "(default: workspaces/RUN_ID next to the store)")
    _run_options(run, provider_default=None)
    run.set_defaults(func=_run)

    resume = sub.add_parser("resume", help="continue a PAUSED or INTERRUPTED run")
    resume.add_argument("run_id", metavar="RUN_ID", help="as `run` or `history` printed it")
    resume.add_argument("--extra-budget", type=usd, metavar="USD",
                        help="USD added to the run's budget")
    resume.add_argument("--extra-tokens", type=whole(1), metavar="N",
                        help="tokens added to the run's token cap")
    resume.add_argument("--extra-requests", type=whole(1), metavar="N",
                        help="requests added to the run's request cap")
    _run_options(resume, provider_default=None)
    resume.set_defaults(func=_resume)

    history = sub.add_parser("history", help="list past runs, newest first")
    history.add_argument("--limit", type=whole(0), default=20,
                         help="how many runs (default %(default)s; 0: all)")
    _store_option(history)
    history.set_defaults(func=_history)

    gc = sub.add_parser("gc", help="remove old run workspaces (paused runs' are kept)")
    gc.add_argument("--keep", type=whole(0), metavar="N",
                    help="workspaces of finished runs to keep, newest first "
                    "(default $TASKORCH_KEEP_WORKSPACES or 50)")
    _store_option(gc)
    gc.set_defaults(func=_gc)

    mcp = sub.add_parser("mcp", help="serve the MCP tools on stdio")
    mcp.set_defaults(func=_mcp)

    from taskorch_nb.federation.hubcli import register
    from taskorch_nb.guardcli import register as register_guard

    register(sub)
    register_guard(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a bad option already said in one line
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    prog = f"{PROG} {args.command}"
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        say(prog, "interrupted")
        return EXIT_INTERRUPTED
    except TaskorchError as exc:  # bad settings, or e.g. resuming a run that is not paused
        say(prog, exc)
        return EXIT_USAGE


if __name__ == "__main__":
    raise SystemExit(main())
