"""``python -m callsbot check``: config valid, store reachable, heartbeats fresh (exit 0/1)."""

from __future__ import annotations

import argparse
import asyncio

from callsbot.clock import SystemClock
from callsbot.config import Settings
from callsbot.errors import StoreError
from callsbot.store import open_store


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare ``check``."""
    sub.add_parser("check", help="config valid, store reachable, heartbeats fresh")


def main(args: argparse.Namespace, settings: Settings) -> int:
    """Print what holds and what does not; 0 when everything does."""
    return asyncio.run(check(settings))


async def check(settings: Settings) -> int:
    """The check itself (printing to stdout)."""
    ok = True
    print("config: ok")
    async with open_store(settings.store, clock=SystemClock()) as store:
        try:
            await store.ping()
            print(f"store: reachable ({settings.store.url.split('://', 1)[0]}://)")
        except StoreError as exc:
            print(f"store: UNREACHABLE — {exc}")
            return 1
        limit = settings.consensus.heartbeat_stale_seconds
        for role in ("aggregator", "scorer"):
            age = await store.heartbeat_age(role)
            if age is None:
                print(f"heartbeat {role}: none")
                ok = False
            elif age > limit:
                print(f"heartbeat {role}: STALE ({age:.0f}s > {limit:.0f}s)")
                ok = False
            else:
                print(f"heartbeat {role}: fresh ({age:.0f}s ago)")
    return 0 if ok else 1
