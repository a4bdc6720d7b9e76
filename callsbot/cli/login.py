"""``python -m callsbot login``: create the Telegram session interactively (mode 0600)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from callsbot.config import Settings
from callsbot.errors import SessionError


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare ``login``."""
    sub.add_parser("login", help="create the Telegram session interactively (mode 0600)")


def main(args: argparse.Namespace, settings: Settings) -> int:
    """Log in (phone, code, 2FA); 1 with the reason when the session cannot be made."""
    return asyncio.run(_login(settings))


async def _login(settings: Settings) -> int:
    from callsbot.sources.telethon_client import login

    try:
        await login(settings)
    except SessionError as exc:
        print(f"callsbot: {exc}", file=sys.stderr)
        return 1
    return 0
