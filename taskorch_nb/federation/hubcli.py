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
import errno
import socket
import sys
from collections.abc import Sequence
from typing import Any

from taskorch_nb.clikit import EXIT_USAGE, OneLineParser, rate, require_extra, say, whole
from taskorch_nb.errors import ConfigurationError

DEFAULT_PORT = 8765
PROG = "taskorch-nb hub"


def _db_option(parser: argparse.ArgumentParser, *, default: Any) -> None:
    parser.add_argument("--db", default=default, metavar="PATH_OR_URL",
                        help="a SQLite file path, or a postgresql:// URL")


def _project(text: str) -> str:
    from taskorch_nb.federation.hubstore import PROJECT_RE

    if not PROJECT_RE.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a project name: "
                                         "use 1-100 of A-Z a-z 0-9 _ . -")
    return text


def configure(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the hub's options and admin subcommands to `parser` (serving is the default)."""
    _db_option(parser, default=None)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    parser.add_argument("--port", type=whole(0, 65535), default=DEFAULT_PORT,
                        help="port (default %(default)s; 0 picks a free one)")
    parser.add_argument("--max-body", type=whole(1), default=None, metavar="BYTES",
                        help="largest request body (default 256 KiB)")
    parser.add_argument("--rate", type=rate, default=20.0, metavar="PER_S",
                        help="requests per second per token (default %(default)s)")
    parser.add_argument("--burst", type=whole(1), default=60,
                        help="requests a token may make at once (default %(default)s)")
    parser.add_argument("--confirm-threshold", type=whole(1), default=2, metavar="N",
                        help="distinct projects that release a suspicious prompt (default 2)")
    commands = parser.add_subparsers(dest="hub_command", metavar="COMMAND",
                                     parser_class=OneLineParser)
    # SUPPRESS: a --db given before the subcommand is not reset by the subparser's default.
    token = commands.add_parser("token", help="print a new bearer token for a project")
    token.add_argument("project", type=_project)
    revoke = commands.add_parser("revoke", help="revoke every token of a project")
    revoke.add_argument("project", type=_project)
    approve = commands.add_parser("approve", help="release a quarantined corrective prompt")
    approve.add_argument("id", type=whole(1))
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
    """Carry out a parsed `hub` command; returns the exit status (2 with one line on stderr
    for bad input, an unusable database or an address it cannot listen on)."""
    try:
        return _run(args)
    except ConfigurationError as exc:
        say(PROG, exc)
        return EXIT_USAGE


def _run(args: argparse.Namespace) -> int:
    if not args.db:
        raise ConfigurationError("--db PATH_OR_URL is required")
    command = getattr(args, "hub_command", None)
    require_extra("hub", "sqlalchemy", *(["psycopg"] if "://" in args.db else []),
                  *(["fastapi", "uvicorn"] if command is None else []))
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
                say(PROG, f"no quarantined prompt with id {args.id}")
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

    # Bind first so `--port 0` can report the port it got, and a taken port fails before
    # the database is touched. IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on
    # such sockets (else small responses wait ~40 ms for ACKs).
    sock = _listen(args.host, args.port)
    try:
        app = create_app(args.db, max_body=args.max_body or MAX_BODY_BYTES,
                         rate_limit=RateLimit(per_second=args.rate, burst=args.burst),
                         confirm_threshold=args.confirm_threshold)
    except BaseException:
        sock.close()
        raise
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"taskorch-nb hub listening on http://{shown}:{port}", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    server.run(sockets=[sock])
    return 0


def _listen(host: str, port: int) -> socket.socket:
    """A bound TCP socket, or a `ConfigurationError` saying why not (taken, unknown host)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        if exc.errno == errno.EADDRINUSE:
            reason += ": another process listens there; pick another --port (0: any free one)"
        raise ConfigurationError(f"cannot listen on {host}:{port}: {reason}") from None
    return sock


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m taskorch_nb.federation.hubcli ...` (the arguments after `hub`)."""
    parser = configure(OneLineParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter))
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # --help, or a bad option already said in one line
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
