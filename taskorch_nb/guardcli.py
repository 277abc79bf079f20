"""`taskorch-nb guard --budget 5 -- python agent.py ARGS`: a script under a guard.

The script runs in this process (`runpy`, as `python agent.py` would run it, with its
own `sys.argv`), inside `orch.guard(...)`, so every model call its `openai` /
`anthropic` clients make is budgeted, broken and retried by the orchestrator; the
guard's report is printed when it ends.

Exit statuses as the rest of the CLI: 0 done (or the script's own exit status),
1 the script raised, 2 bad input, 3 the guard stopped the agent (budget or a cap:
the line says which), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import runpy
import sys
from pathlib import Path
from typing import Any

from taskorch_nb.clikit import EXIT_FAILED, EXIT_PAUSED, one_line, price_pair, say, usd, whole
from taskorch_nb.errors import ConfigurationError

PROG = "taskorch-nb guard"


def _target(command: list[str]) -> tuple[str, str, list[str]]:
    """("path"|"module", what, argv) from `python agent.py ...`, `agent.py ...` or
    `python -m pkg ...`."""
    if command and command[0] == "--":
        command = command[1:]
    if command and Path(command[0]).name.startswith("python"):
        command = command[1:]
    if not command:
        raise ConfigurationError("give the script to run after --, e.g. "
                                 "`taskorch-nb guard --budget 5 -- python agent.py`")
    if command[0] == "-m":
        if len(command) < 2:
            raise ConfigurationError("-m needs a module name")
        return "module", command[1], command[1:]
    if command[0].startswith("-"):
        raise ConfigurationError(f"python option {command[0]!r} is not supported: "
                                 "give a script (agent.py) or -m MODULE")
    script = Path(command[0])
    if script.suffix != ".py" or not script.is_file():
        raise ConfigurationError(f"{command[0]!r} is not a Python script: guard runs Python "
                                 "code in-process (`-- python agent.py`)")
    return "path", str(script), command


def _run(kind: str, what: str, argv: list[str]) -> int:
    saved_argv, saved_path = sys.argv[:], sys.path[:]
    sys.argv = argv
    if kind == "path":
        sys.path.insert(0, str(Path(what).resolve().parent))
    try:
        if kind == "path":
            runpy.run_path(what, run_name="__main__")
        else:
            runpy.run_module(what, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return EXIT_FAILED
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
    return 0


def _guard(args: argparse.Namespace) -> int:
    from taskorch_nb.engine.orchestrator import Orchestrator

    kind, what, argv = _target(list(args.script))
    prices = None
    if args.price_per_mtok is not None:
        if not args.model:
            raise ConfigurationError("--price-per-mtok prices a model: give --model too")
        prices = {args.model: {"input": args.price_per_mtok[0],
                               "output": args.price_per_mtok[1]}}
    orch = Orchestrator(store=args.store, prices=prices)
    status = 0
    try:
        guard = orch.guard(args.budget, name=args.name or Path(what).stem,
                           max_requests=args.max_requests, max_tokens=args.max_tokens,
                           max_tool_calls=args.max_tool_calls,
                           fallback_model=args.fallback_model)
        try:
            with guard:
                status = _run(kind, what, argv)
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            if guard.stopped is None:
                say(PROG, f"{what} raised {type(exc).__name__}: {exc}")
                status = EXIT_FAILED
        report = guard.report()
    finally:
        orch.close()
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report)
    if guard.stopped is not None:
        say(PROG, f"stopped: {one_line(guard.stopped)}")
        return EXIT_PAUSED
    return status


def register(sub: Any) -> None:
    """Add the `guard` subcommand to the CLI's subparsers."""
    parser = sub.add_parser("guard", help="run a Python agent script under a guard "
                            "(budget, breakers, retries) and print its report",
                            description="taskorch-nb guard --budget 5 -- python agent.py")
    parser.add_argument("--budget", type=usd, default=None,
                        help="USD the script's model calls may spend (default 5.00)")
    parser.add_argument("--name", help="the guard's name (default: the script's)")
    parser.add_argument("--max-requests", type=whole(1), metavar="N",
                        help="cap the model requests")
    parser.add_argument("--max-tokens", type=whole(1), metavar="N",
                        help="cap the model tokens (input + output)")
    parser.add_argument("--max-tool-calls", type=whole(1), metavar="N",
                        help="cap the tool calls the model may ask for")
    parser.add_argument("--fallback-model", metavar="MODEL",
                        help="take this model when the budget cannot cover the one asked for")
    parser.add_argument("--model", help="the model --price-per-mtok prices")
    parser.add_argument("--price-per-mtok", type=price_pair, metavar="IN,OUT",
                        help="USD per million input and output tokens of --model")
    parser.add_argument("--store", metavar="PATH",
                        help="SQLite file the events go to (default $TASKORCH_HOME/taskorch.db)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("script", nargs=argparse.REMAINDER,
                        help="-- python agent.py ARGS (or -- python -m MODULE ARGS)")
    parser.set_defaults(func=_guard)


__all__ = ["register"]
