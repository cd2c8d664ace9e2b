"""The ``authmw`` command line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .errors import AuthmwError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="authmw",
        description="authmw: authentication middleware and storage tools.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    demo = sub.add_parser(
        "demo", help="serve the demo app (login page + bearer API)",
        description="Serve the demo app on the given storage (in-memory by default): a page "
                    "with a session login and a bearer-token API. With --walkthrough, run "
                    "every core flow once and print what happens instead.",
    )
    demo.add_argument(
        "url", nargs="?", default=os.environ.get("AUTHMW_STORAGE_URL", "memory://"),
        help="storage URL (default: $AUTHMW_STORAGE_URL or memory://)",
    )
    demo.add_argument("--host", default="127.0.0.1", help="address to listen on")
    demo.add_argument("--port", type=int, default=8000, help="port to listen on")
    demo.add_argument("--walkthrough", action="store_true",
                      help="print a narrated register/login/verify/refresh/revoke run and exit")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            if args.walkthrough:
                from ._demo import main as walkthrough

                return walkthrough(args.url)
            from ._demo_app import serve

            return serve(args.url, args.host, args.port)
    except AuthmwError as exc:
        print(f"authmw {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 2  # pragma: no cover - argparse rejects unknown commands first


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
