"""Session fixtures: a real redis-server on a free port, an injectable clock."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from callsbot.clock import FakeClock
from callsbot.store import MemoryStore, SignalStore, keys
from callsbot.store.redis import RedisStore, build_client
from callsbot.testing.redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the whole session (tests that kill it use their own)."""
    server = RedisServer()
    server.start()
    yield server
    server.stop()


def mark_window_whole(server: RedisServer) -> None:
    """Write the generation marker, as the aggregator's keeper does once the window is whole.

    A store without it refuses to read its window (the data may have been lost); an emptied
    test server holds the whole (empty) window.
    """
    server.command("HSET", keys.WINDOW, "generation", "test", "state", "ready", "checks", "0")


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """URL of the session's redis-server, emptied before each test (its window marked whole)."""
    redis_server.flushall()
    mark_window_whole(redis_server)
    return redis_server.url


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_700_000_000.0)


def make_redis_store(url: str, clock: FakeClock, *, window: int = 3600) -> RedisStore:
    client = build_client(
        url, connect_timeout=1.0, socket_timeout=1.0, retries=2, health_check_interval=0
    )
    return RedisStore(client, window=window, clock=clock)


@pytest.fixture
async def redis_store(redis_url: str, clock: FakeClock) -> AsyncIterator[RedisStore]:
    store = make_redis_store(redis_url, clock)
    yield store
    await store.aclose()


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[SignalStore]:
    """Each backend in turn: a one-hour MemoryStore, then a RedisStore on the tests' server."""
    if request.param == "memory":
        yield MemoryStore(window=3600, clock=clock)
        return
    redis = make_redis_store(request.getfixturevalue("redis_url"), clock)
    yield redis
    await redis.aclose()


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every socket connection attempt fails the test (and is listed)."""
    tried: list[Any] = []

    def refuse(self: socket.socket, address: Any) -> None:
        tried.append(address)
        raise AssertionError(f"tried to connect to {address!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return tried
