"""`taskorch-nb hub`: serve the federation hub, and manage its tokens and quarantine.

    taskorch-nb hub --db PATH_OR_URL [--host 127.0.0.1] [--port 8765]   serve
    taskorch-nb hub token PROJECT --db PATH_OR_URL                      print a new token
    taskorch-nb hub revoke PROJECT --db PATH_OR_URL                     revoke its tokens
    taskorch-nb hub quarantine --db PATH_OR_URL                         list held prompts
    taskorch-nb hub approve ID --db PATH_OR_URL                         release one

The hub's heavy dependencies (FastAPI, SQLAlchemy, uvicorn) load only here.
"""

from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import Sequence
from typing import Any

from taskorch_nb.errors import ConfigurationError

DEFAULT_PORT = 8765


def _db_option(parser: argparse.ArgumentParser, *, default: Any) -> None:
    parser.add_argument("--db", default=default, metavar="PATH_OR_URL",
                        help="a SQLite file path, or a postgresql:// URL")


def configure(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the hub's options and admin subcommands to `parser` (serving is the default)."""
    _db_option(parser, default=None)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help="port (default %(default)s; 0 picks a free one)")
    parser.add_argument("--max-body", type=int, default=None, metavar="BYTES",
                        help="largest request body (default 256 KiB)")
    parser.add_argument("--rate", type=float, default=20.0, metavar="PER_S",
                        help="requests per second per token (default %(default)s)")
    parser.add_argument("--burst", type=int, default=60,
                        help="requests a token may make at once (default %(default)s)")
    parser.add_argument("--confirm-threshold", type=int, default=2, metavar="N",
                        help="distinct projects that release a suspicious prompt (default 2)")
    commands = parser.add_subparsers(dest="hub_command", metavar="COMMAND")
    # SUPPRESS: a --db given before the subcommand is not reset by the subparser's default.
    token = commands.add_parser("token", help="print a new bearer token for a project")
    token.add_argument("project")
    revoke = commands.add_parser("revoke", help="revoke every token of a project")
    revoke.add_argument("project")
    approve = commands.add_parser("approve", help="release a quarantined corrective prompt")
    approve.add_argument("id", type=int)
    listing = commands.add_parser("quarantine", help="list corrective prompts held for review")
    for sub in (token, revoke, approve, listing):
        _db_option(sub, default=argparse.SUPPRESS)
    parser.set_defaults(func=run)
    return parser


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add `hub` to the main CLI's subparsers; the parsed args carry `func=run`."""
    parser = subparsers.add_parser(
        "hub", help="federation hub (serve, token, revoke, quarantine, approve)",
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    return configure(parser)


def run(args: argparse.Namespace) -> int:
    """Carry out a parsed `hub` command; returns the exit status."""
    if not args.db:
        print("taskorch-nb hub: --db PATH_OR_URL is required", file=sys.stderr)
        return 2
    command = getattr(args, "hub_command", None)
    if command is None:
        return _serve(args)
    from taskorch_nb.federation.hubstore import HubStore

    store = HubStore(args.db, confirm_threshold=args.confirm_threshold)
    try:
        if command == "token":
            print(store.issue_token(args.project))
            return 0
        if command == "revoke":
            n = store.revoke(args.project)
            print(f"revoked {n} token(s) of {args.project}")
            return 0 if n else 1
        if command == "approve":
            row = store.approve(args.id)
            if row is None:
                print(f"no quarantined prompt with id {args.id}", file=sys.stderr)
                return 1
            print(f"approved {row['id']} (signature {row['signature']})")
            return 0
        for row in store.quarantined():
            preview = row["prompt"][:80].replace("\n", " ")
            print(f"{row['id']}\t{row['signature']}\t{','.join(row['projects'])}\t"
                  f"{'; '.join(row['reasons'])}\t{preview}")
        return 0
    finally:
        store.close()


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from taskorch_nb.federation.hub import RateLimit, create_app
    from taskorch_nb.federation.schema import MAX_BODY_BYTES

    app = create_app(args.db, max_body=args.max_body or MAX_BODY_BYTES,
                     rate_limit=RateLimit(per_second=args.rate, burst=args.burst),
                     confirm_threshold=args.confirm_threshold)
    # Bind first so `--port 0` can report the port it got. IPPROTO_TCP explicitly: asyncio
    # sets TCP_NODELAY only on such sockets (else small responses wait ~40 ms for ACKs).
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"taskorch-nb hub listening on http://{shown}:{port}", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    server.run(sockets=[sock])
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m taskorch_nb.federation.hubcli ...` (the arguments after `hub`)."""
    parser = configure(argparse.ArgumentParser(prog="taskorch-nb hub", description=__doc__,
                                               formatter_class=argparse.RawDescriptionHelpFormatter))
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        return args.func(args)
    except ConfigurationError as exc:
        print(f"taskorch-nb hub: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
