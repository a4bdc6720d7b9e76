"""``python -m callsbot outcome MINT --pool POOL --at TIME [--latency SECONDS]``."""

from __future__ import annotations

import argparse
import asyncio
import sys

from callsbot.config import Settings
from callsbot.outcomes.command import outcome_command, parse_time


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare ``outcome``."""
    p = sub.add_parser("outcome", help="what happened after a call: one JSON line of outcomes")
    p.add_argument("mint", metavar="MINT", help="the token's address")
    p.add_argument("--pool", required=True, help="the pool address (the market snapshot's pair)")
    p.add_argument("--at", required=True, type=parse_time, help="the call's time: unix s or ISO")
    p.add_argument(
        "--latency", type=int, default=None, help="seconds to act (default: [outcomes] 60)"
    )


def main(args: argparse.Namespace, settings: Settings) -> int:
    """One JSON line on stdout."""
    return asyncio.run(
        outcome_command(
            settings,
            args.mint,
            pool=args.pool,
            at=args.at,
            latency=args.latency,
            out=sys.stdout,
            err=sys.stderr,
        )
    )
