"""Process assembly: build the shared parts once, run the chosen roles in one event loop."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Coroutine
from typing import Any

from callsbot.clock import Clock
from callsbot.config import Settings
from callsbot.metrics import Metrics
from callsbot.store import SignalStore, open_store

log = logging.getLogger("callsbot")

ROLES = ("all", "aggregator", "scorer")

RoleFn = Callable[[Settings, SignalStore, Clock, Metrics, asyncio.Event], Coroutine[Any, Any, None]]


async def _placeholder(name: str, stop: asyncio.Event) -> None:
    log.warning("role %s is not built yet; it idles until stopped", name)
    await stop.wait()


async def _aggregator(
    settings: Settings, store: SignalStore, clock: Clock, metrics: Metrics, stop: asyncio.Event
) -> None:
    await _placeholder("aggregator", stop)


async def _scorer(
    settings: Settings, store: SignalStore, clock: Clock, metrics: Metrics, stop: asyncio.Event
) -> None:
    await _placeholder("scorer", stop)


ROLE_FNS: dict[str, RoleFn] = {"aggregator": _aggregator, "scorer": _scorer}


def install_stop_signals(stop: asyncio.Event) -> None:
    """SIGINT and SIGTERM set ``stop`` instead of killing the loop mid-write."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


async def run(
    settings: Settings, *, role: str, clock: Clock, metrics: Metrics, stop: asyncio.Event
) -> int:
    """Run ``role`` (or every role) until ``stop`` is set; return the exit status."""
    names = list(ROLE_FNS) if role == "all" else [role]
    async with open_store(settings.store, clock=clock) as store:
        log.info("callsbot starting: roles=%s store=%s", ",".join(names), _safe_url(settings))
        async with asyncio.TaskGroup() as tg:
            for name in names:
                tg.create_task(ROLE_FNS[name](settings, store, clock, metrics, stop), name=name)
    log.info("callsbot stopped")
    return 0


def _safe_url(settings: Settings) -> str:
    """The store URL without a password."""
    url = settings.store.url
    if "@" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url
