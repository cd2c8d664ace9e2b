"""The benchmark command: run the modules in one process, print one table, write the report.

``python -m benchmarks`` (or ``scripts/bench``) first makes sure it runs inside its own
virtualenv (:mod:`benchmarks._env`), then lands here. Each module of the package exposes
``async def run(ctx) -> list[Row]``; a module that fails (a server down, a peer missing)
leaves one "not measured" row saying why, and the others still run.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import shlex
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from benchmarks.context import Context, Settings, services
from benchmarks.report import Row, failed, format_table, machine, write_markdown

__all__ = ["MODULES", "main", "standalone"]

#: The modules in the order they run; ``--only`` picks among them.
MODULES = (
    "verify",
    "middleware",
    "fastapi_peers",
    "wsgi_flask",
    "cache",
    "redis_verify",
    "postgres_verify",
    "migration",
    "http_matrix",
)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The command line (``--no-setup`` is read earlier, by the bootstrap, and ignored here)."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="authmw beside its peers, side by side in one run, interleaved rounds.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer, shorter rounds: checks that everything runs (< 2 min)",
    )
    parser.add_argument(
        "--markdown",
        type=Path,
        metavar="PATH",
        help="also write the table, machine and command to this Markdown file",
    )
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated modules to run (default all: {', '.join(MODULES)})",
    )
    parser.add_argument("--rounds", type=int, help="interleaved rounds per comparison")
    parser.add_argument("--seconds", type=float, help="seconds per in-process measurement")
    parser.add_argument(
        "--no-setup",
        action="store_true",
        help="run with the current interpreter, no virtualenv set-up",
    )
    args = parser.parse_args(argv)
    args.modules = [m.strip() for m in args.only.split(",") if m.strip()] or list(MODULES)
    unknown = sorted(set(args.modules) - set(MODULES))
    if unknown:
        parser.error(f"unknown module(s) {', '.join(unknown)}; known: {', '.join(MODULES)}")
    return args


async def run_modules(settings: Settings, modules: Sequence[str]) -> tuple[list[Row], Context]:
    """Every selected module's rows, in order, inside one set of throwaway namespaces."""
    rows: list[Row] = []
    async with services(settings) as ctx:
        for name in modules:
            started = time.perf_counter()
            try:
                module = importlib.import_module(f"benchmarks.{name}")
                rows += await module.run(ctx)
            except Exception as exc:  # one broken case must not hide the others' figures
                traceback.print_exc(file=sys.stderr)
                rows.append(failed(name, f"module {name}", exc))
            print(
                f"[{name} done in {time.perf_counter() - started:.0f} s]",
                file=sys.stderr,
                flush=True,
            )
    return rows, ctx


def command_line(argv: Sequence[str]) -> str:
    """How this run was started, for the report."""
    launcher = os.environ.get("AUTHMW_BENCH_LAUNCHER", "python -m benchmarks")
    return f"{launcher} {shlex.join(argv)}".strip()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks, print the table; 0 unless a module could not run at all."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    settings = Settings.for_mode(quick=args.quick, rounds=args.rounds, seconds=args.seconds)
    started = time.perf_counter()
    rows, ctx = asyncio.run(run_modules(settings, args.modules))
    wall = time.perf_counter() - started
    cores = os.cpu_count()
    load = f"load average at the end {os.getloadavg()[0]:.2f} on {cores} cores"
    print()
    print(
        f"{command_line(argv)}: {wall:.0f} s, {load}; {settings.rounds} interleaved rounds, "
        f"ratio = median of per-round ratios"
    )
    print(format_table(rows))
    if args.markdown is not None:
        write_markdown(
            args.markdown,
            rows,
            command=command_line(argv),
            machine_lines=machine(ctx.servers),
            wall_seconds=wall,
            load=load,
            notes=ctx.notes,
        )
        print(f"wrote {args.markdown}")
    return 1 if any(row.figure == "not measured" for row in rows) else 0


def standalone(module: str) -> None:
    """``python -m benchmarks.<module> [--quick ...]``: the harness with that module only."""
    raise SystemExit(main(["--only", module, *sys.argv[1:]]))
