"""Redis store: lets the aggregator and the scorer run as separate processes."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from callsbot.clock import Clock
from callsbot.store import keys
from callsbot.store.base import SignalStore, StoreError

#: Most mentions written in one MULTI/EXEC; bounds the size of one round trip.
_MAX_BATCH = 512

_ADVANCE_CURSOR = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if (not cur) or tonumber(cur) < tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return tonumber(ARGV[2])
end
return tonumber(cur)
"""

_Pending = tuple[str, str, int, "asyncio.Future[int]"]


def build_client(
    url: str,
    *,
    connect_timeout: float,
    socket_timeout: float,
    retries: int,
    health_check_interval: int,
) -> aioredis.Redis:
    """A redis-py client with explicit timeouts, jittered retries and health checks.

    ``from_url`` alone retries nothing and waits on a dead peer for the OS default, which is
    how a store outage turns into a silent hang; every limit is set here instead.
    """
    client: aioredis.Redis = aioredis.Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=connect_timeout,
        socket_timeout=socket_timeout,
        retry=Retry(ExponentialWithJitterBackoff(cap=1.0, base=0.05), retries),
        retry_on_error=[RedisConnectionError, RedisTimeoutError, ConnectionResetError],
        health_check_interval=health_check_interval,
    )
    return client


class RedisStore(SignalStore):
    """A :class:`SignalStore` in Redis (layout in :mod:`callsbot.store.keys`).

    Concurrent :meth:`record` calls are coalesced: whatever arrives while one write is in flight
    goes out together in the next MULTI/EXEC. Each mention is still written atomically and in
    one round trip, and each caller gets its own count back.

    Args:
        client: a redis.asyncio client with ``decode_responses=True`` (see :func:`build_client`).
        window: sliding-window length in seconds.
        clock: where "now" comes from; every score and cutoff is computed from it.
    """

    def __init__(self, client: aioredis.Redis, *, window: int, clock: Clock) -> None:
        super().__init__(window=window, clock=clock)
        self._redis = client
        self._pending: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None
        self._advance = client.register_script(_ADVANCE_CURSOR)
        self._closed = False

    @property
    def client(self) -> aioredis.Redis:
        """The underlying client (tests and tooling only)."""
        return self._redis

    # -- mentions ------------------------------------------------------------------------------

    async def record(self, token: str, group: str, ts: float) -> int:
        if self._closed:
            raise StoreError("store is closed")
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append((token, group, self._clamp(ts), fut))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name="redis-store-flush")
        return await fut

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch = self._pending[:_MAX_BATCH]
                del self._pending[:_MAX_BATCH]
                try:
                    results = await self._write(batch)
                except StoreError as exc:
                    for *_, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                for (*_, fut), count in zip(batch, results, strict=True):
                    if not fut.done():
                        fut.set_result(count)
        finally:
            self._flusher = None

    async def _write(self, batch: list[_Pending]) -> list[int]:
        now = self.now()
        cutoff = now - self.window
        pipe = self._redis.pipeline(transaction=True)
        for token, group, stamp, _ in batch:
            key = keys.token(token)
            pipe.zadd(key, {group: stamp}, gt=True)
            pipe.zremrangebyscore(key, "-inf", cutoff)
            pipe.expire(key, self.window)
            pipe.zcard(key)
            pipe.zadd(keys.ACTIVE, {token: stamp}, gt=True)
        pipe.zremrangebyscore(keys.ACTIVE, "-inf", cutoff)
        pipe.expire(keys.ACTIVE, self.window)
        replies = await self._run(pipe.execute(), "record")
        return [int(replies[i * 5 + 3]) for i in range(len(batch))]

    async def groups(self, token: str) -> dict[str, int]:
        cutoff = self.now() - self.window
        rows = await self._run(
            self._redis.zrangebyscore(keys.token(token), f"({cutoff}", "+inf", withscores=True),
            "groups",
        )
        return {str(member): int(score) for member, score in rows}

    async def counts(self, tokens: Sequence[str]) -> dict[str, int]:
        if not tokens:
            return {}
        cutoff = f"({self.now() - self.window}"
        pipe = self._redis.pipeline(transaction=False)
        for token in tokens:
            pipe.zcount(keys.token(token), cutoff, "+inf")
        replies = await self._run(pipe.execute(), "counts")
        return {token: int(n) for token, n in zip(tokens, replies, strict=True)}

    async def active_tokens(self) -> list[str]:
        cutoff = self.now() - self.window
        rows = await self._run(
            self._redis.zrevrangebyscore(keys.ACTIVE, "+inf", f"({cutoff}"), "active_tokens"
        )
        return [str(t) for t in rows]

    async def snapshot(self) -> dict[str, dict[str, int]]:
        tokens = await self.active_tokens()
        if not tokens:
            return {}
        cutoff = f"({self.now() - self.window}"
        pipe = self._redis.pipeline(transaction=False)
        for token in tokens:
            pipe.zrangebyscore(keys.token(token), cutoff, "+inf", withscores=True)
        replies = await self._run(pipe.execute(), "snapshot")
        return {
            token: {str(m): int(s) for m, s in rows}
            for token, rows in zip(tokens, replies, strict=True)
            if rows
        }

    # -- liveness ------------------------------------------------------------------------------

    async def beat(self, role: str, ttl: float) -> None:
        await self._run(
            self._redis.set(keys.heartbeat(role), self.now(), ex=max(1, math.ceil(ttl))), "beat"
        )

    async def heartbeat_age(self, role: str) -> float | None:
        value = await self._run(self._redis.get(keys.heartbeat(role)), "heartbeat_age")
        if value is None:
            return None
        return max(0.0, self.clock.time() - int(value))

    # -- idempotency and cursors ---------------------------------------------------------------

    async def claim(self, key: str, ttl: int) -> bool:
        won = await self._run(self._redis.set(keys.claim(key), 1, nx=True, ex=ttl), "claim")
        return bool(won)

    async def release(self, key: str) -> None:
        await self._run(self._redis.delete(keys.claim(key)), "release")

    async def advance_cursor(self, name: str, value: int) -> int:
        result = await self._run(
            self._advance(keys=[keys.CURSORS], args=[name, int(value)]), "advance_cursor"
        )
        return int(result)

    async def get_cursor(self, name: str) -> int | None:
        value = await self._run(self._redis.hget(keys.CURSORS, name), "get_cursor")
        return None if value is None else int(value)

    # -- lifecycle -----------------------------------------------------------------------------

    async def ping(self) -> None:
        await self._run(self._redis.ping(), "ping")

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        await self._redis.aclose()

    @staticmethod
    async def _run(awaitable: Any, op: str) -> Any:
        try:
            return await awaitable
        except (TimeoutError, RedisError, OSError) as exc:
            raise StoreError(f"redis {op} failed: {exc.__class__.__name__}: {exc}") from exc
