"""``python -m callsbot report [--since] [--until] [--by level|alerted|group]
[--format table|json|csv] [--plot FILE.png]``."""

from __future__ import annotations

import argparse
import asyncio
import sys

from callsbot.config import Settings
from callsbot.outcomes.command import parse_time


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare ``report``."""
    p = sub.add_parser(
        "report", help="win rates by consensus level with intervals, and the deployed targets"
    )
    p.add_argument("--since", type=parse_time, help="first event time: ISO or unix s (inclusive)")
    p.add_argument("--until", type=parse_time, help="last event time: ISO or unix s (exclusive)")
    p.add_argument(
        "--by", choices=("level", "alerted", "group"), default="level", help="the buckets"
    )
    p.add_argument(
        "--format", choices=("table", "json", "csv"), default="table", help="output format"
    )
    p.add_argument("--plot", metavar="FILE.png", help="also draw win rate by bucket (PNG)")
    p.add_argument("--seed", type=int, default=0, help="the bootstrap's seed (default 0)")


def main(args: argparse.Namespace, settings: Settings) -> int:
    """The report on stdout; 1 when the history cannot be read, 2 on configuration."""
    from callsbot.outcomes.reporting import report_command

    if args.since is not None and args.until is not None and args.since >= args.until:
        print("callsbot report: --since must be before --until", file=sys.stderr)
        return 2
    return asyncio.run(
        report_command(
            settings,
            out=sys.stdout,
            err=sys.stderr,
            since=args.since,
            until=args.until,
            by=args.by,
            fmt=args.format,
            plot=args.plot,
            seed=args.seed,
        )
    )
