"""Redis store: lets the aggregator and the scorer run as separate processes."""

from __future__ import annotations

import asyncio
import json
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
from callsbot.errors import StoreError
from callsbot.reputation.independence import AtOnceVote
from callsbot.reputation.snapshot import Reputation
from callsbot.store import keys
from callsbot.store.base import SignalStore, StreamEntry

#: Most mentions written in one script call; bounds the size of one round trip.
_MAX_BATCH = 512
#: Batches in flight at once (each on its own connection). With two, a mention that arrives
#: while a batch is on the wire goes out at once instead of waiting for that batch's reply.
_IN_FLIGHT = 2

_ADVANCE_CURSOR = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if (not cur) or tonumber(cur) < tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return tonumber(ARGV[2])
end
return tonumber(cur)
"""

# One batch of mentions in one command. Per mention: claim it (when asked), add the group (the
# timestamp only moves forward), trim the window, refresh the TTL, count, and index the token.
# These are the commands a MULTI/EXEC per batch used to carry, run server-side: the client packs
# a few arguments per mention instead of five commands and parses one reply instead of five,
# which is where a busy aggregator spent its time. KEYS: the active index, then per mention its
# token key and its claim key (its token key again when there is no claim). ARGV: cutoff,
# window, then per mention token, group, stamp and the claim's TTL (0: no claim). Reply: per
# mention the group count, or -1 when the claim was already taken.
_RECORD_BATCH = """
local cutoff, window = ARGV[1], tonumber(ARGV[2])
local out = {}
for i = 0, (#KEYS - 1) / 2 - 1 do
  local key, claim, a = KEYS[2 + 2 * i], KEYS[3 + 2 * i], 3 + 4 * i
  local ttl = tonumber(ARGV[a + 3])
  local won = ttl == 0 or redis.call('SET', claim, 1, 'NX', 'EX', ttl)
  redis.call('ZADD', key, 'GT', ARGV[a + 2], ARGV[a + 1])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', cutoff)
  redis.call('EXPIRE', key, window)
  local card = redis.call('ZCARD', key)
  redis.call('ZADD', KEYS[1], 'GT', ARGV[a + 2], ARGV[a])
  out[i + 1] = won and card or -1
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', cutoff)
redis.call('EXPIRE', KEYS[1], window)
return out
"""

#: Take a lease when free, renew it when its owner asks again.
_LEASE = """
local cur = redis.call('GET', KEYS[1])
if (not cur) or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""

#: Drop a lease only when its owner asks.
_UNLEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

#: token, group, clamped ts, optional (claim key, ttl), the caller's future.
_Pending = tuple[str, str, int, "tuple[str, int] | None", "asyncio.Future[int | None]"]


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

    Concurrent :meth:`record` and :meth:`record_once` calls are coalesced: whatever arrives while
    one write is in flight goes out together in the next batch, one script call run atomically
    by the server. Each mention (with its claim) is still written atomically and in one round
    trip, and each caller gets its own answer back.

    Args:
        client: a redis.asyncio client with ``decode_responses=True`` (see :func:`build_client`).
        window: sliding-window length in seconds.
        clock: where "now" comes from; every score and cutoff is computed from it.
    """

    def __init__(self, client: aioredis.Redis, *, window: int, clock: Clock) -> None:
        super().__init__(window=window, clock=clock)
        self._redis = client
        self._pending: list[_Pending] = []
        self._flushers: set[asyncio.Task[None]] = set()
        self._advance = client.register_script(_ADVANCE_CURSOR)
        self._record_batch = client.register_script(_RECORD_BATCH)
        self._lease = client.register_script(_LEASE)
        self._unlease = client.register_script(_UNLEASE)
        self._closed = False

    @property
    def client(self) -> aioredis.Redis:
        """The underlying client (tests and tooling only)."""
        return self._redis

    # -- mentions ------------------------------------------------------------------------------

    async def record(self, token: str, group: str, ts: float) -> int:
        count = await self._enqueue(token, group, ts, None)
        assert count is not None  # only a claim can answer None
        return count

    async def record_once(
        self, token: str, group: str, ts: float, *, claim: str, ttl: int
    ) -> int | None:
        return await self._enqueue(token, group, ts, (claim, ttl))

    async def _enqueue(
        self, token: str, group: str, ts: float, claim: tuple[str, int] | None
    ) -> int | None:
        if self._closed:
            raise StoreError("store is closed")
        fut: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._pending.append((token, group, self._clamp(ts), claim, fut))
        if len(self._flushers) < _IN_FLIGHT:
            self._flushers.add(asyncio.create_task(self._flush(), name="redis-store-flush"))
        return await fut

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch = self._pending[:_MAX_BATCH]
                del self._pending[:_MAX_BATCH]
                try:
                    results = await self._write(batch)
                except Exception as exc:
                    # Whatever went wrong, every waiting caller must hear of it: a future left
                    # pending would hang its mention for ever.
                    error = exc if isinstance(exc, StoreError) else StoreError(repr(exc))
                    for *_, fut in batch:
                        if not fut.done():
                            fut.set_exception(error)
                    continue
                for (*_, fut), count in zip(batch, results, strict=True):
                    if not fut.done():
                        fut.set_result(count)
        finally:
            # Synchronously with the loop's last check of _pending: a mention queued after it
            # must find a free flusher slot.
            task = asyncio.current_task()
            if task is not None:
                self._flushers.discard(task)

    async def _write(self, batch: list[_Pending]) -> list[int | None]:
        now = self.now()
        key_args: list[str] = [keys.ACTIVE]
        argv: list[str | int] = [now - self.window, self.window]
        for token, group, stamp, claim, _ in batch:
            key = keys.token(token)
            if claim is None:
                key_args += (key, key)
                argv += (token, group, stamp, 0)
            else:
                key_args += (key, keys.claim(claim[0]))
                argv += (token, group, stamp, max(1, claim[1]))
        replies = await self._run(self._record_batch(keys=key_args, args=argv), "record")
        return [None if n < 0 else int(n) for n in replies]

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

    async def lease(self, key: str, owner: str, ttl: float) -> bool:
        ms = max(1, math.ceil(ttl * 1000))
        won = await self._run(self._lease(keys=[keys.claim(key)], args=[owner, ms]), "lease")
        return bool(won)

    async def unlease(self, key: str, owner: str) -> None:
        await self._run(self._unlease(keys=[keys.claim(key)], args=[owner]), "unlease")

    async def is_claimed(self, key: str) -> bool:
        return bool(await self._run(self._redis.exists(keys.claim(key)), "is_claimed"))

    async def advance_cursor(self, name: str, value: int) -> int:
        result = await self._run(
            self._advance(keys=[keys.CURSORS], args=[name, int(value)]), "advance_cursor"
        )
        return int(result)

    async def get_cursor(self, name: str) -> int | None:
        value = await self._run(self._redis.hget(keys.CURSORS, name), "get_cursor")
        return None if value is None else int(value)

    # -- tables --------------------------------------------------------------------------------

    async def put_row(self, table: str, key: str, value: str) -> None:
        await self._run(self._redis.hset(keys.table(table), key, value), "put_row")

    async def drop_row(self, table: str, key: str) -> None:
        await self._run(self._redis.hdel(keys.table(table), key), "drop_row")

    async def rows(self, table: str) -> dict[str, str]:
        found = await self._run(self._redis.hgetall(keys.table(table)), "rows")
        return {str(k): str(v) for k, v in found.items()}

    # -- event stream --------------------------------------------------------------------------

    async def append(
        self, entries: Sequence[tuple[str, str]], *, origin: str, maxlen: int
    ) -> list[str]:
        pipe = self._redis.pipeline(transaction=False)
        for kind, payload in entries:
            fields: dict[Any, Any] = {"o": origin, "k": kind, "p": payload}
            pipe.xadd(keys.EVENTS, fields, maxlen=maxlen, approximate=True)
        ids = await self._run(pipe.execute(), "append")
        return [str(i) for i in ids]

    async def read_after(self, last_id: str, *, count: int, block: float) -> list[StreamEntry]:
        block_ms = max(0, int(block * 1000)) or None
        reply = await self._run(
            self._redis.xread({keys.EVENTS: last_id}, count=count, block=block_ms), "read_after"
        )
        out: list[StreamEntry] = []
        for _stream, rows in reply or []:
            for entry_id, fields in rows:
                origin, kind = str(fields.get("o", "")), str(fields.get("k", ""))
                out.append(StreamEntry(str(entry_id), origin, kind, str(fields.get("p", ""))))
        return out

    async def last_id(self) -> str:
        rows = await self._run(self._redis.xrevrange(keys.EVENTS, count=1), "last_id")
        return str(rows[0][0]) if rows else "0-0"

    async def position(self, reader: str) -> str | None:
        value = await self._run(self._redis.hget(keys.EVENT_READERS, reader), "position")
        return None if value is None else str(value)

    async def save_position(self, reader: str, entry_id: str) -> None:
        await self._run(self._redis.hset(keys.EVENT_READERS, reader, entry_id), "save_position")

    # -- reputation ----------------------------------------------------------------------------

    async def publish_reputation(self, reputation: Reputation) -> None:
        await self._run(
            self._redis.set(keys.REPUTATION, reputation.to_json()), "publish_reputation"
        )

    async def reputation(self) -> Reputation | None:
        text = await self._run(self._redis.get(keys.REPUTATION), "reputation")
        if text is None:
            return None
        try:
            return Reputation.from_json(str(text))
        except ValueError as exc:
            raise StoreError(f"redis reputation unreadable: {exc}") from exc

    async def put_vote(self, token: str, group: str, vote: AtOnceVote) -> None:
        key = keys.votes(token)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(key, group, json.dumps(vote.to_json(), ensure_ascii=False))
        pipe.expire(key, self.window)
        await self._run(pipe.execute(), "put_vote")

    async def votes(self, token: str) -> dict[str, AtOnceVote]:
        raw = await self._run(self._redis.hgetall(keys.votes(token)), "votes")
        return self._decode_votes(raw)

    async def groups_and_votes(self, token: str) -> tuple[dict[str, int], dict[str, AtOnceVote]]:
        cutoff = self.now() - self.window
        pipe = self._redis.pipeline(transaction=False)
        pipe.zrangebyscore(keys.token(token), f"({cutoff}", "+inf", withscores=True)
        pipe.hgetall(keys.votes(token))
        rows, raw = await self._run(pipe.execute(), "groups_and_votes")
        return {str(m): int(score) for m, score in rows}, self._decode_votes(raw)

    @staticmethod
    def _decode_votes(raw: dict[str, str]) -> dict[str, AtOnceVote]:
        out: dict[str, AtOnceVote] = {}
        for group, text in raw.items():
            try:
                out[str(group)] = AtOnceVote.from_json(json.loads(text))
            except (ValueError, TypeError, AttributeError):
                # One unreadable entry must not hide the others: that group counts as its own.
                continue
        return out

    # -- lifecycle -----------------------------------------------------------------------------

    async def ping(self) -> None:
        await self._run(self._redis.ping(), "ping")

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._flushers:
            await asyncio.gather(*self._flushers, return_exceptions=True)
        await self._redis.aclose()

    @staticmethod
    async def _run(awaitable: Any, op: str) -> Any:
        try:
            return await awaitable
        except (TimeoutError, RedisError, OSError) as exc:
            raise StoreError(f"redis {op} failed: {exc.__class__.__name__}: {exc}") from exc
