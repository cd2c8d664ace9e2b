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
        "demo", help="walk through register, login, verify, refresh and revoke",
        description="Run every core flow once on a storage (in-memory by default) and "
                    "print what happens.",
    )
    demo.add_argument(
        "url", nargs="?", default=os.environ.get("AUTHMW_STORAGE_URL", "memory://"),
        help="storage URL (default: $AUTHMW_STORAGE_URL or memory://)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            from ._demo import main as demo_main

            return demo_main(args.url)
    except AuthmwError as exc:
        print(f"authmw {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 2  # pragma: no cover - argparse rejects unknown commands first


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
