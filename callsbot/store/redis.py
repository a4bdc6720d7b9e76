"""Redis store: lets the aggregator and the scorer run as separate processes.

Time: every score, cutoff and heartbeat is on the store's clock (Redis ``TIME``), measured by
:meth:`RedisStore.sync_clock` (the readiness probe calls it), so processes on hosts whose
clocks disagree by minutes still agree on window edges and heartbeat ages.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import ssl
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import (
    AuthenticationError,
    AuthenticationWrongNumberOfArgsError,
    AuthorizationError,
    NoPermissionError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from callsbot.clock import Clock
from callsbot.errors import StoreError, StoreFault
from callsbot.reputation.independence import AtOnceVote
from callsbot.reputation.snapshot import Reputation
from callsbot.store import keys
from callsbot.store.base import SignalStore, StreamEntry, WindowState

log = logging.getLogger("callsbot.store")

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

#: Counts one keeper check when the marker names the caller's generation; returns the marker.
_WINDOW_STATE = """
if ARGV[1] ~= '' and redis.call('HGET', KEYS[1], 'generation') == ARGV[1] then
  redis.call('HINCRBY', KEYS[1], 'checks', 1)
end
return redis.call('HGETALL', KEYS[1])
"""

_FINISH_REBUILD = """
if redis.call('HGET', KEYS[1], 'generation') == ARGV[1]
   and redis.call('HGET', KEYS[1], 'state') == 'rebuilding' then
  redis.call('HSET', KEYS[1], 'state', 'ready', 'since', ARGV[2])
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

#: The readiness probe's write: loading and running it needs what every write of ours needs.
_PROBE = """
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""

#: Seconds a probe key lives.
_PROBE_TTL = 60
#: Seconds :meth:`RedisStore.diagnose` waits for a plain-text answer.
_DIAGNOSE_TIMEOUT = 0.5

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
        clock: this process's clock; "now" is this clock plus the offset to Redis ``TIME``
            that :meth:`sync_clock` measured (none until it is called).
        max_clock_skew: the largest offset adopted; a larger one is reported, not adopted.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        window: int,
        clock: Clock,
        max_clock_skew: float = 300.0,
    ) -> None:
        super().__init__(window=window, clock=clock)
        self._redis = client
        self._pending: list[_Pending] = []
        self._flushers: set[asyncio.Task[None]] = set()
        self._advance = client.register_script(_ADVANCE_CURSOR)
        self._record_batch = client.register_script(_RECORD_BATCH)
        self._lease = client.register_script(_LEASE)
        self._unlease = client.register_script(_UNLEASE)
        self._window_state = client.register_script(_WINDOW_STATE)
        self._finish = client.register_script(_FINISH_REBUILD)
        self._probe = client.register_script(_PROBE)
        self._max_skew = max_clock_skew
        self._offset = 0.0
        self._skew_reported = False
        self._closed = False

    # -- time ----------------------------------------------------------------------------------

    def now(self) -> int:
        """The store's clock, integer unix seconds (this clock plus the measured offset)."""
        return int(self._time())

    def _time(self) -> float:
        return self.clock.time() + self._offset

    async def sync_clock(self) -> float:
        before = self.clock.time()
        seconds, micros = await self._run(self._redis.time(), "time")
        after = self.clock.time()
        skew = (before + after) / 2 - (int(seconds) + int(micros) / 1e6)
        if abs(skew) <= self._max_skew:
            self._offset = -skew
            if self._skew_reported:
                log.info("clock skew back within the limit: %.1fs", skew)
                self._skew_reported = False
        else:
            self._offset = 0.0
            if not self._skew_reported:
                log.error(
                    "CLOCK SKEW: this process's clock is %.0fs %s Redis TIME, over the %.0fs "
                    "limit; using this process's clock (fix NTP on this host or on Redis's)",
                    abs(skew),
                    "ahead of" if skew > 0 else "behind",
                    self._max_skew,
                )
                self._skew_reported = True
        return skew

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

    def _guarded(self) -> Any:
        """A pipeline whose first reply is the marker's state (see :meth:`_whole`)."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.hmget(keys.WINDOW, "generation", "state")
        return pipe

    @staticmethod
    def _whole(marker: list[str | None]) -> None:
        generation, state = marker
        refusal = WindowState(generation, state == "ready").refusal()
        if refusal is not None:
            raise refusal

    async def groups(self, token: str) -> dict[str, int]:
        cutoff = self.now() - self.window
        pipe = self._guarded()
        pipe.zrangebyscore(keys.token(token), f"({cutoff}", "+inf", withscores=True)
        marker, rows = await self._run(pipe.execute(), "groups")
        self._whole(marker)
        return {str(member): int(score) for member, score in rows}

    async def counts(self, tokens: Sequence[str]) -> dict[str, int]:
        if not tokens:
            return {}
        cutoff = f"({self.now() - self.window}"
        pipe = self._guarded()
        for token in tokens:
            pipe.zcount(keys.token(token), cutoff, "+inf")
        marker, *replies = await self._run(pipe.execute(), "counts")
        self._whole(marker)
        return {token: int(n) for token, n in zip(tokens, replies, strict=True)}

    async def active_tokens(self) -> list[str]:
        cutoff = self.now() - self.window
        pipe = self._guarded()
        pipe.zrevrangebyscore(keys.ACTIVE, "+inf", f"({cutoff}")
        marker, rows = await self._run(pipe.execute(), "active_tokens")
        self._whole(marker)
        return [str(t) for t in rows]

    async def snapshot(self) -> dict[str, dict[str, int]]:
        tokens = await self.active_tokens()
        if not tokens:
            return {}
        cutoff = f"({self.now() - self.window}"
        pipe = self._guarded()
        for token in tokens:
            pipe.zrangebyscore(keys.token(token), cutoff, "+inf", withscores=True)
        marker, *replies = await self._run(pipe.execute(), "snapshot")
        self._whole(marker)
        return {
            token: {str(m): int(s) for m, s in rows}
            for token, rows in zip(tokens, replies, strict=True)
            if rows
        }

    # -- the generation marker -----------------------------------------------------------------

    async def window_state(self, *, check: str | None = None) -> WindowState:
        flat = await self._run(
            self._window_state(keys=[keys.WINDOW], args=[check or ""]), "window_state"
        )
        fields = dict(zip(flat[::2], flat[1::2], strict=True))
        generation = fields.get("generation")
        since = fields.get("since")
        return WindowState(
            generation=None if generation is None else str(generation),
            ready=fields.get("state") == "ready",
            checks=int(fields.get("checks") or 0),
            since=None if since is None else float(since),
        )

    async def begin_rebuild(self, generation: str) -> None:
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(keys.WINDOW)
        pipe.hset(
            keys.WINDOW,
            mapping={
                "generation": generation,
                "state": "rebuilding",
                "since": self._time(),
                "checks": 0,
            },
        )
        await self._run(pipe.execute(), "begin_rebuild")

    async def finish_rebuild(self, generation: str) -> bool:
        done = await self._run(
            self._finish(keys=[keys.WINDOW], args=[generation, self._time()]), "finish_rebuild"
        )
        return bool(done)

    # -- liveness ------------------------------------------------------------------------------

    async def beat(self, role: str, ttl: float) -> None:
        await self._run(
            self._redis.set(keys.heartbeat(role), self.now(), ex=max(1, math.ceil(ttl))), "beat"
        )

    async def heartbeat_age(self, role: str) -> float | None:
        value = await self._run(self._redis.get(keys.heartbeat(role)), "heartbeat_age")
        if value is None:
            return None
        return max(0.0, self._time() - int(value))

    async def probe_write(self, name: str) -> None:
        # SCRIPT LOAD every time: a user may lose the right, and a SCRIPT FLUSH drops the
        # script; either would otherwise show only on the next cursor write.
        await self._run(self._redis.script_load(_PROBE), "probe_write")
        await self._run(
            self._probe(keys=[keys.probe(name)], args=[self.now(), _PROBE_TTL]), "probe_write"
        )

    async def diagnose(self, error: StoreError) -> StoreError:
        pool = self._redis.connection_pool
        if error.fault not in (StoreFault.TIMEOUT, StoreFault.CONNECTION) or not issubclass(
            pool.connection_class, SSLConnection
        ):
            return error
        host = str(pool.connection_kwargs.get("host", "localhost"))
        port = int(pool.connection_kwargs.get("port", 6379))
        # A plain server never answers a TLS ClientHello (it waits for a line end), so the
        # handshake only times out. Asking in plain text tells the two apart.
        if await _speaks_plain_resp(host, port, within=_DIAGNOSE_TIMEOUT):
            return StoreError(
                f"rediss:// (TLS) but the server at {host}:{port} answers in plain text: "
                "use redis:// or enable TLS on the server",
                fault=StoreFault.TLS,
            )
        return error

    async def eviction_policy(self) -> str | None:
        reply = await self._run(self._redis.config_get("maxmemory-policy"), "eviction_policy")
        value = reply.get("maxmemory-policy") if isinstance(reply, dict) else None
        return None if value is None else str(value)

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
            raise StoreError(
                f"redis {op} failed: {exc.__class__.__name__}: {exc}", fault=fault_of(exc)
            ) from exc


async def _speaks_plain_resp(host: str, port: int, *, within: float) -> bool:
    """Whether ``host:port`` answers a plain-text PING in the Redis protocol."""
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(within):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(b"PING\r\n")
            await writer.drain()
            first = await reader.read(1)
    except (OSError, TimeoutError):
        return False
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    return first in (b"+", b"-")


def fault_of(exc: BaseException) -> StoreFault:
    """What kind of failure a redis-py (or socket) exception is."""
    text = str(exc)
    if isinstance(exc, OutOfMemoryError) or "command not allowed when used memory" in text:
        return StoreFault.OOM
    # Inside a script Redis 7.0 words a missing right without the NOPERM code.
    if isinstance(exc, NoPermissionError) or "NOPERM" in text or "can't run this command" in text:
        return StoreFault.NOPERM
    if isinstance(exc, ReadOnlyError) or "READONLY" in text:
        return StoreFault.READONLY
    if (
        isinstance(
            exc, AuthenticationError | AuthorizationError | AuthenticationWrongNumberOfArgsError
        )
        or "WRONGPASS" in text
        or "NOAUTH" in text
    ):
        return StoreFault.AUTH
    if _caused_by_tls(exc):
        return StoreFault.TLS
    # The builtin TimeoutError is an OSError: it must be told apart before connection errors.
    if isinstance(exc, TimeoutError | RedisTimeoutError):
        return StoreFault.TIMEOUT
    if isinstance(exc, RedisConnectionError | OSError):
        return StoreFault.CONNECTION
    return StoreFault.ERROR


def _caused_by_tls(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        # redis-py re-raises a handshake failure as its ConnectionError, OpenSSL's words kept.
        if isinstance(current, ssl.SSLError) or "[SSL" in str(current):
            return True
        current = current.__cause__ or current.__context__
    return False
