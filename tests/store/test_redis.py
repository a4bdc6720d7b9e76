"""What only the Redis backend has: the key layout, TTLs, other processes, outages."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from callsbot.clock import FakeClock
from callsbot.config import StoreSettings
from callsbot.errors import StoreError
from callsbot.store import WindowUnavailable, open_store
from callsbot.store.redis import RedisStore
from callsbot.testing.redis_server import RedisServer, free_port
from tests.conftest import make_redis_store, mark_window_whole

T0 = 1_700_000_000
DEPLOY_DOC = (Path(__file__).resolve().parents[2] / "docs" / "deploy.md").read_text()


async def test_token_key_is_the_deployed_layout(redis_store: RedisStore, redis_url: str) -> None:
    await redis_store.record("Mint111", "@alpha", T0 - 5)
    await redis_store.record("Mint111", "-1001234", T0)
    raw = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert await raw.type("signal_aggregator:token:Mint111") == "zset"
        assert await raw.zrange("signal_aggregator:token:Mint111", 0, -1, withscores=True) == [
            ("@alpha", T0 - 5),
            ("-1001234", T0),
        ]
        ttl = await raw.ttl("signal_aggregator:token:Mint111")
        assert 3590 < ttl <= 3600
        assert await raw.zscore("signal_aggregator:active", "Mint111") == T0
    finally:
        await raw.aclose()


async def test_heartbeat_claim_and_cursor_keys(redis_store: RedisStore, redis_url: str) -> None:
    await redis_store.beat("aggregator", ttl=15)
    await redis_store.claim("alert:Mint111", 600)
    await redis_store.advance_cursor("msg:-100", 7)
    raw = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert await raw.get("signal_aggregator:heartbeat:aggregator") == str(T0)
        assert 0 < await raw.ttl("signal_aggregator:heartbeat:aggregator") <= 15
        assert 590 < await raw.ttl("signal_aggregator:claim:alert:Mint111") <= 600
        assert await raw.hget("signal_aggregator:cursors", "msg:-100") == "7"
    finally:
        await raw.aclose()


async def test_two_connections_see_each_others_writes(redis_url: str, clock: FakeClock) -> None:
    # Two stores with their own clients stand in for the aggregator and scorer processes.
    async with (
        make_redis_store(redis_url, clock) as aggregator,
        make_redis_store(redis_url, clock) as scorer,
    ):
        await aggregator.record("Mint111", "@a", T0)
        await aggregator.record("Mint111", "@b", T0)
        await aggregator.beat("aggregator", ttl=15)
        assert await scorer.counts(["Mint111"]) == {"Mint111": 2}
        assert await scorer.heartbeat_age("aggregator") == 0
        assert await scorer.claim("alert:Mint111", 60) is True
        assert await aggregator.claim("alert:Mint111", 60) is False


async def test_unreachable_redis_raises_never_answers_zero(clock: FakeClock) -> None:
    store = make_redis_store(f"redis://127.0.0.1:{free_port()}/0", clock)
    async with store:
        for call in (
            store.record("Mint111", "@a", T0),
            store.counts(["Mint111"]),
            store.groups("Mint111"),
            store.active_tokens(),
            store.heartbeat_age("aggregator"),
            store.claim("k", 5),
            store.ping(),
            store.reputation(),
            store.votes("Mint111"),
        ):
            with pytest.raises(StoreError):
                await call


async def test_killed_server_then_back_on_the_same_port(clock: FakeClock) -> None:
    server = RedisServer()
    server.start()
    mark_window_whole(server)
    try:
        async with make_redis_store(server.url, clock) as store:
            assert await store.record("Mint111", "@a", T0) == 1
            server.stop()
            with pytest.raises(StoreError):
                await store.record("Mint111", "@b", T0)
            with pytest.raises(StoreError):
                await store.counts(["Mint111"])
            server.start()  # a new, empty server on the same port
            assert await store.record("Mint111", "@b", T0) == 1
            # It lost its data: the window refuses to be read until it is rebuilt.
            with pytest.raises(WindowUnavailable):
                await store.counts(["Mint111"])
            mark_window_whole(server)
            assert await store.counts(["Mint111"]) == {"Mint111": 1}
    finally:
        server.stop()


async def test_concurrent_records_share_round_trips(redis_store: RedisStore) -> None:
    calls = 0
    original = redis_store._write

    async def counting(batch):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        return await original(batch)

    redis_store._write = counting  # type: ignore[method-assign]
    results = await asyncio.gather(*(redis_store.record(f"T{i}", "@g", T0) for i in range(300)))
    assert results == [1] * 300
    assert calls < 10


async def test_a_mention_does_not_wait_for_the_batch_already_in_flight(
    redis_store: RedisStore,
) -> None:
    gate, sent = asyncio.Event(), asyncio.Event()
    original = redis_store._write

    async def first_one_held(batch):  # type: ignore[no-untyped-def]
        if not sent.is_set():
            sent.set()
            await gate.wait()
        return await original(batch)

    redis_store._write = first_one_held  # type: ignore[method-assign]
    first = asyncio.create_task(redis_store.record("TokA", "@g", T0))
    await sent.wait()  # the first batch is on its way
    try:
        # A second flusher takes it: written while the first batch still waits for its reply.
        assert await asyncio.wait_for(redis_store.record("TokB", "@g", T0), timeout=5) == 1
        assert not first.done()
    finally:
        gate.set()
    assert await first == 1


def test_open_store_picks_backend_by_scheme(clock: FakeClock) -> None:
    assert type(open_store(StoreSettings(url="memory://"), clock=clock)).__name__ == "MemoryStore"
    redis_store = open_store(StoreSettings(url="redis://127.0.0.1:1/0"), clock=clock)
    assert isinstance(redis_store, RedisStore)


async def test_reputation_and_vote_keys(redis_store: RedisStore, redis_url: str) -> None:
    from callsbot.reputation.independence import FORWARD, AtOnceVote
    from callsbot.reputation.snapshot import Reputation

    await redis_store.publish_reputation(Reputation(T0, weights={"@a": 1.5}))
    await redis_store.put_vote("Mint111", "@d", AtOnceVote(FORWARD, "@a", "@a"))
    raw = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert await raw.type("signal_aggregator:reputation") == "string"
        assert await raw.ttl("signal_aggregator:reputation") == -1  # replaced, never expires
        assert '"weights":{"@a":1.5}' in await raw.get("signal_aggregator:reputation")
        assert await raw.hgetall("signal_aggregator:votes:Mint111") == {
            "@d": '{"kind": "forward", "voter": "@a", "of": "@a"}'
        }
        assert 3590 < await raw.ttl("signal_aggregator:votes:Mint111") <= 3600
        # An unreadable vote hides nothing else; an unreadable reputation is a StoreError.
        await raw.hset("signal_aggregator:votes:Mint111", "@x", "not json")
        assert set(await redis_store.votes("Mint111")) == {"@d"}
        await raw.set("signal_aggregator:reputation", '{"format": 99}')
        with pytest.raises(StoreError, match="unreadable"):
            await redis_store.reputation()
    finally:
        await raw.aclose()


async def test_the_acl_in_the_deploy_docs_is_enough_for_the_whole_store(
    redis_url: str, clock: FakeClock
) -> None:
    from urllib.parse import quote

    [acl] = [ln for ln in DEPLOY_DOC.splitlines() if ln.startswith("ACL SETUSER callsbot ")]
    words = acl.split()
    password = next(w[1:] for w in words if w.startswith(">"))
    assert any(c in password for c in "@:/")  # the docs' example needs percent-encoding
    admin = aioredis.Redis.from_url(redis_url, decode_responses=True)
    await admin.execute_command(*words)
    host_port = redis_url.split("://", 1)[1].split("/", 1)[0]
    url = f"redis://callsbot:{quote(password, safe='')}@{host_port}/0"
    store = open_store(StoreSettings(url=url), clock=clock)
    try:
        await store.ping()
        assert await store.record_once("Mint111", "@a", T0, claim="msg:1:1:Mint111", ttl=60) == 1
        assert await store.record("Mint111", "@b", T0) == 2
        assert await store.counts(["Mint111", "Other"]) == {"Mint111": 2, "Other": 0}
        assert set(await store.groups("Mint111")) == {"@a", "@b"}
        assert await store.active_tokens() == ["Mint111"]
        await store.beat("aggregator", ttl=15)
        assert await store.heartbeat_age("aggregator") == 0
        assert await store.claim("alert:Mint111", 60) is True
        await store.release("alert:Mint111")
        await store.advance_cursor("msg:-100", 7)
        assert await store.get_cursor("msg:-100") == 7
        # ...and nothing beyond its prefix.
        with pytest.raises(redis.exceptions.NoPermissionError):
            await store.client.set("elsewhere", 1)  # type: ignore[attr-defined]
    finally:
        await store.aclose()
        await admin.execute_command("ACL", "DELUSER", "callsbot")
        await admin.aclose()
