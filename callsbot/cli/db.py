"""``python -m callsbot db upgrade``: apply the history schema migrations."""

from __future__ import annotations

import argparse
import asyncio
import sys

from callsbot.config import Settings


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare ``db``."""
    db = sub.add_parser("db", help="the history database").add_subparsers(
        dest="db_command", required=True
    )
    db.add_parser("upgrade", help="apply the history schema migrations")


def main(args: argparse.Namespace, settings: Settings) -> int:
    """Migrate the history database to the code's schema; 2 when it is newer than the code."""
    from callsbot.history import commands

    return asyncio.run(commands.db_upgrade(settings, sys.stdout, sys.stderr))
