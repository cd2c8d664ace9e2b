"""The ``authmw`` command line.

Every subcommand takes storage URLs (``memory://``, ``redis://...``, ``postgresql://...``); a
single-storage command falls back to ``$AUTHMW_STORAGE_URL``. Exit codes: 0 success, 1 error
(one line on stderr, never a traceback), 2 bad usage, 3 the target holds conflicting data
(``migrate``, ``restore``), 130 interrupted. ``check`` exits 0 only when the storage is healthy.
Passwords written in URLs never appear in any output.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from .._version import __version__
from ..errors import AuthmwError
from . import _output

__all__ = ["main"]

_ENV = "AUTHMW_STORAGE_URL"
_URL_HELP = f"storage URL (default: ${_ENV})"
# Commands that skip what the target already holds: after Ctrl-C, running them again finishes.
_RESUMABLE = frozenset({"migrate", "restore"})


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _progress_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--progress",
        dest="progress",
        action="store_true",
        default=None,
        help="show a progress bar on stderr (default: when stderr is a terminal)",
    )
    group.add_argument(
        "--no-progress", dest="progress", action="store_false", help="never show the progress bar"
    )


def _copy_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--batch-size",
        type=_positive,
        default=1000,
        metavar="N",
        help="records per read/write round (default: 1000)",
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="read every copied record back from the target and compare",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace target records that differ from the source's "
        "(default: leave them and report a conflict)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    _progress_flags(parser)


def _url_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", nargs="?", metavar="URL", help=_URL_HELP)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="authmw",
        description="authmw: authentication middleware and storage tools. Storage URLs: "
        "memory://, redis://[:password@]host:port/db, "
        "postgresql://user[:password]@host/db (options in the query string).",
        epilog="Exit codes: 0 ok, 1 error, 2 usage, 3 conflicting data in the target, "
        "130 interrupted. 'authmw COMMAND --help' describes each command.",
    )
    parser.add_argument("--version", action="version", version=f"authmw {__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log backend warnings (retries, schema notes) to stderr",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    demo = sub.add_parser(
        "demo",
        help="serve the demo app (login page + bearer API)",
        description="Serve the demo app on the given storage (in-memory by default): a page "
        "with a session login and a bearer-token API. With --walkthrough, run "
        "every core flow once and print what happens instead.",
    )
    demo.add_argument(
        "url",
        nargs="?",
        default=os.environ.get(_ENV, "memory://"),
        help=f"storage URL (default: ${_ENV} or memory://)",
    )
    demo.add_argument(
        "--storage",
        metavar="URL",
        help="storage URL, as the positional argument (wins over it when both are given)",
    )
    demo.add_argument("--host", default="127.0.0.1", help="address to listen on")
    demo.add_argument("--port", type=int, default=8000, help="port to listen on")
    demo.add_argument(
        "--walkthrough",
        action="store_true",
        help="print a narrated register/login/verify/refresh/revoke run and exit",
    )

    migrate = sub.add_parser(
        "migrate",
        help="copy every record from one storage to another",
        description="Copy users, tokens, sessions, key-value entries and the audit log from "
        "SRC to DST. Records DST already holds are compared, never silently "
        "replaced; running it again (after an interruption too) finishes the job "
        "and copies nothing twice. Tokens and sessions keep working (same "
        "AUTHMW_SECRET_KEY). Prints a summary table; exits 3 when DST holds "
        "conflicting records.",
    )
    migrate.add_argument("source", metavar="SRC", help="storage URL to read from")
    migrate.add_argument("target", metavar="DST", help="storage URL to write to")
    _copy_flags(migrate)
    migrate.add_argument(
        "--no-preserve-ttl",
        dest="preserve_ttl",
        action="store_false",
        help="give key-value entries the target's default TTL instead of "
        "their remaining lifetime (tokens and sessions always keep "
        "their own expiry)",
    )
    migrate.add_argument("--dry-run", action="store_true", help="compare and count, write nothing")
    migrate.add_argument(
        "--only",
        nargs="+",
        choices=("users", "tokens", "sessions", "kv", "audit"),
        metavar="KIND",
        help="migrate only these kinds: users tokens sessions kv audit",
    )

    stats = sub.add_parser(
        "stats",
        help="show record counts and sizes",
        description="Show how many live records the storage holds and what it knows of its size.",
    )
    _url_arg(stats)
    stats.add_argument("--json", action="store_true", help="print JSON")

    cleanup = sub.add_parser(
        "cleanup",
        help="remove expired records now",
        description="Reclaim expired tokens, sessions and key-value "
        "entries now (reads never see them anyway).",
    )
    _url_arg(cleanup)
    cleanup.add_argument("--json", action="store_true", help="print JSON")

    backup = sub.add_parser(
        "backup",
        help="write every record to a file",
        description="Write every record to FILE in the portable format (JSON Lines that any "
        "backend restores), or with --native PostgreSQL's own dump. The file "
        "appears only when complete (written under a temporary name, then "
        "renamed) and is readable by its owner only: it holds password hashes.",
    )
    _url_arg(backup)
    backup.add_argument("file", metavar="FILE", help="where to write the backup")
    backup.add_argument(
        "--native",
        action="store_true",
        help="PostgreSQL only: pg_dump format (pg_dump when installed)",
    )
    backup.add_argument(
        "--batch-size",
        type=_positive,
        default=1000,
        metavar="N",
        help="records per read (default: 1000)",
    )
    _progress_flags(backup)

    restore = sub.add_parser(
        "restore",
        help="load a backup file into a storage",
        description="Load FILE into the storage. A portable backup is checked whole first "
        "(a truncated or corrupt file restores nothing), then imported like a "
        "migration: expired records are skipped, records already there are "
        "compared. A PostgreSQL native backup goes through PostgreSQL's restore.",
    )
    _url_arg(restore)
    restore.add_argument("file", metavar="FILE", help="the backup file")
    _copy_flags(restore)
    restore.add_argument(
        "--replace", action="store_true", help="PostgreSQL native backups: empty the tables first"
    )

    check = sub.add_parser(
        "check",
        help="health check: connectivity, latency, schema",
        description="Connect, measure latency and (PostgreSQL) compare the schema version "
        "without changing anything. Exits 0 when healthy, 1 when not.",
    )
    _url_arg(check)
    check.add_argument(
        "--max-latency",
        type=float,
        default=250.0,
        metavar="MS",
        help="median ping above this is unhealthy (default: 250 ms)",
    )
    check.add_argument("--json", action="store_true", help="print JSON")

    create = sub.add_parser(
        "create-user",
        help="register a user",
        description="Register USER with an argon2id password hash (audited). The password is "
        "read from the terminal without echo, or from stdin with "
        "--password-stdin; never from the command line.",
    )
    _url_arg(create)
    create.add_argument("user", metavar="USER", help="the user id")
    create.add_argument(
        "--role", action="append", default=[], metavar="R", help="a role (repeatable)"
    )
    create.add_argument(
        "--permission", action="append", default=[], metavar="P", help="a permission (repeatable)"
    )
    create.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin",
    )

    revoke = sub.add_parser(
        "revoke-user",
        help="revoke every token and session of a user",
        description="Delete every token and session of USER (audited).",
    )
    _url_arg(revoke)
    revoke.add_argument("user", metavar="USER", help="the user id")
    revoke.add_argument("--json", action="store_true", help="print JSON")

    from ._users import add_parsers

    add_parsers(sub)

    schema = sub.add_parser(
        "migrate-schema",
        help="PostgreSQL: apply pending schema migrations",
        description="Apply the schema migrations the database lacks (for migration_mode="
        "manual or strict deployments). Safe while apps run.",
    )
    _url_arg(schema)
    schema.add_argument(
        "--target",
        type=_positive,
        default=None,
        metavar="VERSION",
        help="stop at this schema version (default: the latest)",
    )
    return parser


def _demo(args: argparse.Namespace) -> int:
    url = args.storage or args.url
    if args.walkthrough:
        from ._demo import main as walkthrough

        return walkthrough(url)
    from ._demo_app import serve

    return serve(url, args.host, args.port)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    args = _parser().parse_args(argv)
    urls = [getattr(args, n, None) for n in ("url", "storage", "source", "target")]
    hidden = _output.secrets_of([*urls, os.environ.get(_ENV)])
    try:
        if args.command == "demo":
            return _demo(args)
        # Backend warnings (retries) would break the one-line error promise: shown with -v.
        logging.basicConfig(
            level=logging.WARNING if args.verbose else logging.CRITICAL,
            format="authmw: %(message)s",
        )
        from ._commands import COMMANDS, CommandFailed
        from ._users import USER_COMMANDS

        run = COMMANDS.get(args.command) or USER_COMMANDS[args.command]
        try:
            code = asyncio.run(run(args))
        except CommandFailed as exc:
            code = exc.code
            print(f"authmw {args.command}: {_output.scrub(str(exc), hidden)}", file=sys.stderr)
        sys.stdout.flush()  # a closed pipe shows here, where it is handled, not at exit
        return code
    except AuthmwError as exc:
        print(f"authmw {args.command}: {_output.scrub(str(exc), hidden)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        resume = " - rerun the same command to resume" if args.command in _RESUMABLE else ""
        print(f"authmw {args.command}: interrupted{resume}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`authmw stats | head`): no traceback, and no second error
        # when Python flushes stdout at exit (the recipe of the signal module's docs).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except Exception as exc:
        if os.environ.get("AUTHMW_DEBUG"):
            raise
        # A bug, not an expected failure: still one line, with a way to see more.
        print(
            f"authmw {args.command}: unexpected {type(exc).__name__}: "
            f"{_output.scrub(str(exc), hidden)} (set AUTHMW_DEBUG=1 for a traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
