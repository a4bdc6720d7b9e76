"""``python -m callsbot feed --once``: poll Cielo once and print the buys it would score.

It deduplicates in a private in-memory store, never in the configured one: claiming
``tx:<hash>`` in a shared Redis would hide those buys from the running scorers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import TextIO

import aiohttp

from callsbot.clock import Clock, SystemClock
from callsbot.config import Settings
from callsbot.errors import EXIT_CONFIG
from callsbot.metrics import Metrics
from callsbot.sources.cielo import API_KEY_ENV, CieloAuthError, CieloFeed
from callsbot.store.memory import MemoryStore

EXIT_OK = 0
EXIT_FAILED = 1


async def feed_command(
    settings: Settings,
    out: TextIO,
    err: TextIO,
    *,
    clock: Clock,
    metrics: Metrics,
    session: aiohttp.ClientSession | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> int:
    """Poll the feed once; one JSON line per kept buy on ``out``, a summary on ``err``.

    Args:
        settings: all settings (``[cielo]`` is used).
        out: receives ``{"tx_hash","wallet","token","symbol","usd","ts","dex"}`` lines.
        err: receives the skipped-by-reason summary and any error.
        clock: "now".
        metrics: where feed metrics go.
        session: an aiohttp session (the command opens its own when ``None``).
        sleep: the retry pause (tests pass a no-op).

    Returns:
        0 when the poll worked (also when the feed is still ``pending``), 1 when it failed
        (rejected key, rate limit, server errors, unreadable page), 2 when the key is not set.
    """
    if not settings.cielo.api_key:
        print(f"feed: the Cielo API key is not set; set {API_KEY_ENV}", file=err)
        return EXIT_CONFIG
    store = MemoryStore(window=settings.store.window_seconds, clock=clock)
    feed = CieloFeed(
        settings.cielo, store, clock=clock, metrics=metrics, session=session, sleep=sleep
    )
    try:
        result = await feed.poll()
    except CieloAuthError as exc:
        print(f"feed: {exc}", file=err)
        return EXIT_FAILED
    finally:
        await feed.aclose()
    for buy in result.buys:
        line = {
            "tx_hash": buy.tx_hash,
            "wallet": buy.wallet,
            "token": buy.token,
            "symbol": buy.symbol,
            "usd": buy.usd,
            "ts": buy.ts,
            "dex": buy.dex,
        }
        print(json.dumps(line, ensure_ascii=False), file=out)
    skipped = ", ".join(f"{k}={v}" for k, v in sorted(result.skipped.items())) or "none"
    print(
        f"feed: {result.outcome}, {result.pages} page(s), {len(result.buys)} buy(s) kept; "
        f"skipped: {skipped}",
        file=err,
    )
    if result.outcome in ("ok", "pending"):
        return EXIT_OK
    if result.retry_after is not None:
        print(f"feed: rate limited; retry in {result.retry_after:.0f}s", file=err)
    return EXIT_FAILED


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare ``feed``."""
    p = sub.add_parser("feed", help="poll the Cielo feed and print the buys kept")
    p.add_argument("--once", action="store_true", required=True, help="poll once and exit")


def main(args: argparse.Namespace, settings: Settings) -> int:
    """Poll once; JSON lines on stdout, the summary on stderr."""
    return asyncio.run(
        feed_command(
            settings, sys.stdout, sys.stderr, clock=SystemClock(), metrics=Metrics.create()
        )
    )
