"""Signal stores, picked by URL scheme in :func:`open_store`."""

from __future__ import annotations

from callsbot.clock import Clock
from callsbot.config import StoreSettings
from callsbot.store.base import SignalStore, WindowState, WindowUnavailable
from callsbot.store.memory import MemoryStore

__all__ = ["MemoryStore", "SignalStore", "WindowState", "WindowUnavailable", "open_store"]


def open_store(settings: StoreSettings, *, clock: Clock) -> SignalStore:
    """Build the store that ``settings.url`` names (``memory://``, ``redis://``, ``rediss://``).

    Nothing is contacted yet: call :meth:`SignalStore.ping` to check reachability.
    """
    scheme = settings.url.split("://", 1)[0]
    if scheme == "memory":
        return MemoryStore(window=settings.window_seconds, clock=clock)
    if scheme in ("redis", "rediss"):
        from callsbot.store.redis import RedisStore, build_client

        client = build_client(
            settings.url,
            connect_timeout=settings.connect_timeout,
            socket_timeout=settings.socket_timeout,
            retries=settings.retries,
            health_check_interval=settings.health_check_interval,
        )
        return RedisStore(
            client,
            window=settings.window_seconds,
            clock=clock,
            max_clock_skew=settings.max_clock_skew_seconds,
        )
    raise ValueError(f"unknown store scheme: {settings.url!r}")  # config validation prevents it
