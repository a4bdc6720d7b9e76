"""``python -m callsbot history export|import``: move a span of history between databases."""

from __future__ import annotations

import argparse
import asyncio
import sys

from callsbot.config import Settings


def _time(value: str) -> float:
    from callsbot.history.commands import parse_time

    try:
        return parse_time(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO time or unix seconds: {value!r}") from None


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare ``history``."""
    history = sub.add_parser("history", help="export or import history recordings (JSONL)")
    history_sub = history.add_subparsers(dest="history_command", required=True)
    export = history_sub.add_parser("export", help="write a recording of the history to stdout")
    export.add_argument("--since", type=_time, help="ISO time or unix seconds (inclusive)")
    export.add_argument("--until", type=_time, help="ISO time or unix seconds (exclusive)")
    imp = history_sub.add_parser("import", help="write a recording into the history")
    imp.add_argument("file", metavar="FILE", help="a recording (history export's output)")


def main(args: argparse.Namespace, settings: Settings) -> int:
    """Export to stdout or import a file; 1 on unavailable or bad input, 2 on config."""
    from callsbot.history import commands

    if args.history_command == "export":
        return asyncio.run(
            commands.history_export(
                settings, sys.stdout, sys.stderr, since=args.since, until=args.until
            )
        )
    return asyncio.run(commands.history_import(settings, args.file, sys.stdout, sys.stderr))
