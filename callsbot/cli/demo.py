"""``python -m callsbot demo``: replay the bundled recorded session (no network, no keys)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from callsbot.config import Settings


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare ``demo``."""
    p = sub.add_parser("demo", help="replay the bundled recorded session (no network)")
    p.add_argument("--quiet", action="store_true", help="only the summary")
    p.add_argument("--verbose", action="store_true", help="also every log line")


def main(args: argparse.Namespace, settings: Settings) -> int:
    """Play the session and print the alerts and a summary."""
    from callsbot.demo import demo_command

    if not args.verbose:
        logging.getLogger().setLevel(logging.WARNING)
    return asyncio.run(demo_command(settings, out=sys.stdout, quiet=args.quiet))
