"""The listener with real Telethon messages, a fake Telegram boundary and a real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest
import redis.asyncio as aioredis
from telethon.tl.types import (
    MessageEntityBold,
    MessageEntityCode,
    MessageEntityTextUrl,
    MessageFwdHeader,
    PeerChannel,
    PeerUser,
)

from callsbot.aggregator import Aggregator
from callsbot.clock import FakeClock
from callsbot.config import Settings, TelegramSettings
from callsbot.errors import NoGroupsResolved, SessionError
from callsbot.events import EventHub
from callsbot.logs import RedactSecrets
from callsbot.metrics import Metrics
from callsbot.models import ForwardHeader
from callsbot.runtime.roles import build_listener, build_pipeline, make_parts
from callsbot.sources.telegram import (
    SessionLock,
    TelegramListener,
    check_session_file,
    create_private_file,
    session_path,
)
from callsbot.store import SignalStore
from callsbot.testing.redis_server import RedisServer
from tests.conftest import make_redis_store, mark_window_whole
from tests.tg import FakeGateway, channel_peer_id, mint, tg_message

T0 = 1_700_000_000.0
GOOD = {"@alpha": (111, "alpha"), "@beta": (222, "beta"), "-1000000000333": (333, None)}


def settings(**telegram: object) -> Settings:
    base = {"groups": ("@alpha", "@beta", "-1000000000333"), "workers": 2}
    return Settings(telegram=TelegramSettings(**(base | telegram)))  # type: ignore[arg-type]


@attrs.define
class Rig:
    gateway: FakeGateway
    listener: TelegramListener
    aggregator: Aggregator
    store: SignalStore
    metrics: Metrics
    clock: FakeClock
    events: EventHub

    async def recorded(self) -> float:
        await self.events.drain()
        return sum(
            self.metrics.registry.get_sample_value("callsbot_mentions_recorded_total", {"kind": k})
            or 0.0
            for k in ("mint", "pair", "evm")
        )

    def rejected(self, reason: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "callsbot_mentions_rejected_total", {"reason": reason}
        )
        return value or 0.0


def build(
    store: SignalStore, clock: FakeClock, s: Settings, known: dict[str, tuple[int, str | None]]
) -> Rig:
    """The real listener and pipeline over a fake Telegram boundary (workers not started)."""
    metrics = Metrics.create()
    gateway = FakeGateway(known)
    parts = make_parts(s, clock=clock, metrics=metrics, store=store, market=None)
    aggregator = build_pipeline(parts, validate=False)
    listener = build_listener(parts, gateway, aggregator)
    return Rig(gateway, listener, aggregator, store, metrics, clock, parts.events)


@contextlib.asynccontextmanager
async def rig(
    store: SignalStore, clock: FakeClock, s: Settings, known: dict[str, tuple[int, str | None]]
) -> AsyncIterator[Rig]:
    built = build(store, clock, s, known)
    stop = asyncio.Event()
    task = asyncio.create_task(built.aggregator.run(stop))
    try:
        yield built
    finally:
        stop.set()
        await task


@pytest.fixture
async def redis(redis_url: str, clock: FakeClock) -> AsyncIterator[SignalStore]:
    async with make_redis_store(redis_url, clock) as store:
        yield store


async def zrange(url: str, token: str) -> list[tuple[str, float]]:
    raw = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        return await raw.zrange(f"signal_aggregator:token:{token}", 0, -1, withscores=True)
    finally:
        await raw.aclose()


async def test_one_unresolvable_group_never_silences_the_others(
    redis: SignalStore, clock: FakeClock, redis_url: str
) -> None:
    s = settings(groups=("@alpha", "@renamed_long_ago", "@beta", "-1000000000333"))
    async with rig(redis, clock, s, GOOD) as r:
        await r.listener.start()
        assert set(r.listener.failed) == {"@renamed_long_ago"}
        assert sorted(r.gateway.listened) == sorted(channel_peer_id(c) for c in (111, 222, 333))
        await r.gateway.deliver(tg_message(111, 1, f"CA: {mint(1)}", T0 - 60))
        await r.gateway.deliver(tg_message(222, 1, f"{mint(1)}", T0 - 30))
        await r.gateway.deliver(tg_message(333, 9, f"ape {mint(1)}", T0 - 10))
        await r.aggregator.drain()
        assert await zrange(redis_url, mint(1)) == [
            ("@alpha", T0 - 60),
            ("@beta", T0 - 30),
            ("-1000000000333", T0 - 10),
        ]
        # The failed group comes back later (e.g. the account joined it) and is picked up.
        r.gateway.known["@renamed_long_ago"] = (444, "renamed_long_ago")
        new = await r.listener.resolve_groups(list(r.listener.failed))
        assert [g.name for g in new] == ["@renamed_long_ago"]
        assert r.listener.failed == {}


async def test_no_group_resolves_is_an_error(redis: SignalStore, clock: FakeClock) -> None:
    async with rig(redis, clock, settings(groups=("@nope", "@gone")), GOOD) as r:
        with pytest.raises(NoGroupsResolved, match=r"@nope.*@gone"):
            await r.listener.start()


async def test_every_address_of_a_message_is_recorded(redis: SignalStore, clock: FakeClock) -> None:
    text = f"🔥 two today\nCA: {mint(1)}\nand {mint(2)}\nthird {mint(3)}"
    async with rig(redis, clock, settings(), GOOD) as r:
        await r.listener.start()
        await r.gateway.deliver(tg_message(111, 5, text, T0))
        await r.aggregator.drain()
        assert await redis.counts([mint(1), mint(2), mint(3)]) == {
            mint(1): 1,
            mint(2): 1,
            mint(3): 1,
        }


async def test_hidden_link_after_astral_emoji_and_code_entity(
    redis: SignalStore, clock: FakeClock
) -> None:
    # "🚀🚀 Chart | BUY" – each rocket is two UTF-16 units, so "Chart" starts at offset 5.
    text = f"🚀🚀 Chart | BUY\n{mint(4)}"
    entities = [
        MessageEntityTextUrl(offset=5, length=5, url=f"https://pump.fun/coin/{mint(5)}"),
        MessageEntityBold(offset=13, length=3),
        MessageEntityCode(offset=17, length=len(mint(4))),
    ]
    async with rig(redis, clock, settings(), GOOD) as r:
        await r.listener.start()
        await r.gateway.deliver(tg_message(111, 6, text, T0, entities=entities))
        await r.aggregator.drain()
        assert await redis.counts([mint(4), mint(5)]) == {mint(4): 1, mint(5): 1}


async def test_same_message_live_twice_catch_up_and_edit_is_recorded_once(
    redis: SignalStore, clock: FakeClock, redis_url: str
) -> None:
    message = tg_message(111, 7, f"CA: {mint(1)}", T0 - 100)
    async with rig(redis, clock, settings(), GOOD) as r:
        await r.listener.start()
        await r.gateway.deliver(message)
        await r.gateway.deliver(message)  # Telegram delivers an update twice
        await r.listener.catch_up()  # and catch-up sees it in history
        edited = tg_message(111, 7, f"CA: {mint(1)} 🚀", T0 - 100, edit_ts=T0 - 50)
        await r.gateway.deliver(edited, edited=True)
        await r.aggregator.drain()
        assert await r.recorded() == 1
        assert r.rejected("duplicate") == 3
        assert await zrange(redis_url, mint(1)) == [("@alpha", T0 - 100)]


async def test_an_edit_that_adds_an_address_records_it(
    redis: SignalStore, clock: FakeClock
) -> None:
    async with rig(redis, clock, settings(), GOOD) as r:
        await r.listener.start()
        await r.gateway.deliver(tg_message(111, 8, f"CA: {mint(1)}", T0 - 100))
        edit = tg_message(111, 8, f"CA: {mint(1)}\nnew CA: {mint(2)}", T0 - 100, edit_ts=T0)
        await r.gateway.deliver(edit, edited=True)
        await r.aggregator.drain()
        assert await r.recorded() == 2
        assert await redis.groups(mint(2)) == {"@alpha": int(T0 - 100)}


async def test_catch_up_after_disconnect_records_exactly_the_missed_messages(
    redis: SignalStore, clock: FakeClock
) -> None:
    async with rig(redis, clock, settings(), GOOD) as r:
        await r.listener.start()
        await r.listener.tick()  # connected: first catch-up (nothing yet) and a heartbeat
        await r.listener.wait_caught_up()
        for i in range(1, 4):
            await r.gateway.deliver(tg_message(111, i, f"CA: {mint(i)}", T0 - 300 + i))
        await r.aggregator.drain()
        r.gateway.connected = False
        await r.listener.tick()
        for i in range(4, 7):  # posted while we were away: never delivered live
            r.gateway.post(tg_message(111, i, f"CA: {mint(i)}", T0 - 200 + i))
        r.gateway.connected = True
        await r.listener.tick()  # starts the catch-up, does not wait for it
        await r.listener.wait_caught_up()
        await r.aggregator.drain()
        assert await r.recorded() == 6
        assert r.rejected("duplicate") == 0
        assert await redis.counts([mint(i) for i in range(1, 7)]) == {
            mint(i): 1 for i in range(1, 7)
        }
        assert await redis.get_cursor(f"msg:{channel_peer_id(111)}") == 6


async def test_catch_up_goes_no_further_back_than_one_window(
    redis: SignalStore, clock: FakeClock
) -> None:
    async with rig(redis, clock, settings(), GOOD) as r:
        await r.listener.start()
        r.gateway.post(tg_message(111, 1, f"CA: {mint(1)}", T0 - 7200))
        r.gateway.post(tg_message(111, 2, f"CA: {mint(2)}", T0 - 3000))
        assert await r.listener.catch_up() == 1
        await r.aggregator.drain()
        assert await redis.counts([mint(1), mint(2)]) == {mint(1): 0, mint(2): 1}


async def test_forwards_and_own_messages_are_skipped_when_configured(
    redis: SignalStore, clock: FakeClock
) -> None:
    s = settings(skip_forwards=True, skip_own=True)
    async with rig(redis, clock, s, GOOD) as r:
        await r.listener.start()
        await r.gateway.deliver(tg_message(111, 1, f"CA: {mint(1)}", T0, forwarded=True))
        await r.gateway.deliver(tg_message(111, 2, f"CA: {mint(2)}", T0, out=True))
        await r.gateway.deliver(tg_message(111, 3, f"CA: {mint(3)}", T0))
        await r.aggregator.drain()
        assert await redis.counts([mint(1), mint(2), mint(3)]) == {
            mint(1): 0,
            mint(2): 0,
            mint(3): 1,
        }
        assert r.rejected("forwarded") == 1
        assert r.rejected("own_message") == 1


async def test_forwards_count_by_default(redis: SignalStore, clock: FakeClock) -> None:
    async with rig(redis, clock, settings(), GOOD) as r:
        await r.listener.start()
        await r.gateway.deliver(tg_message(111, 1, f"CA: {mint(1)}", T0, forwarded=True))
        await r.aggregator.drain()
        assert await redis.counts([mint(1)]) == {mint(1): 1}


async def test_sender_and_forward_header_come_from_telethon_types(
    redis: SignalStore, clock: FakeClock
) -> None:
    async with rig(redis, clock, settings(), GOOD) as r:
        await r.listener.start()
        post = tg_message(111, 7, f"CA: {mint(1)}", T0)
        post.from_id = PeerUser(777)
        post.fwd_from = MessageFwdHeader(
            date=dt.datetime.fromtimestamp(T0 - 600, tz=dt.UTC),
            from_id=PeerChannel(4242),
            channel_post=99,
        )
        incoming = r.listener.to_incoming(post, source="live")
        assert incoming is not None
        assert incoming.sender_id == 777
        assert incoming.forward == ForwardHeader(
            origin_peer=-(10**12 + 4242), origin_message_id=99, origin_date=T0 - 600
        )
        hidden = tg_message(111, 8, "x", T0)
        hidden.fwd_from = MessageFwdHeader(
            date=dt.datetime.fromtimestamp(T0, tz=dt.UTC), from_name="Anon"
        )
        incoming = r.listener.to_incoming(hidden, source="live")
        assert incoming is not None
        assert incoming.sender_id is None
        assert incoming.forward == ForwardHeader(origin_name="Anon", origin_date=T0)


async def test_heartbeat_only_while_connected(redis: SignalStore, clock: FakeClock) -> None:
    async with rig(redis, clock, settings(), GOOD) as r:
        await r.listener.start()
        r.gateway.connected = False
        await r.listener.tick()
        assert await redis.heartbeat_age("aggregator") is None
        r.gateway.connected = True
        await r.listener.tick()
        assert await redis.heartbeat_age("aggregator") == 0


async def test_handler_waits_when_the_queue_is_full(clock: FakeClock) -> None:
    from callsbot.store.memory import MemoryStore

    store = MemoryStore(window=3600, clock=clock)
    r = build(store, clock, settings(queue_size=2), GOOD)
    gateway, aggregator = r.gateway, r.aggregator
    await r.listener.start()
    for i in range(2):
        await gateway.deliver(tg_message(111, i, f"CA: {mint(i)}", T0))
    third = asyncio.create_task(gateway.deliver(tg_message(111, 3, f"CA: {mint(3)}", T0)))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not third.done()  # back-pressure: waiting, not dropped
    assert aggregator.backlog == 2
    stop = asyncio.Event()
    runner = asyncio.create_task(aggregator.run(stop))
    await third
    await aggregator.drain()
    stop.set()
    await runner
    assert await store.counts([mint(0), mint(1), mint(3)]) == {mint(0): 1, mint(1): 1, mint(3): 1}


async def test_killed_redis_mid_stream_loses_no_mention(clock: FakeClock) -> None:
    server = RedisServer(persistent=True)
    server.start()
    mark_window_whole(server)  # persistent: the marker survives the restart with the data
    try:
        async with (
            make_redis_store(server.url, clock) as store,
            rig(store, clock, settings(), GOOD) as r,
        ):
            await r.listener.start()
            for i in range(5):
                await r.gateway.deliver(tg_message(111, i, f"CA: {mint(i)}", T0 - 100 + i))
            await r.aggregator.drain()
            server.stop()
            for i in range(5, 10):
                await r.gateway.deliver(tg_message(222, i, f"CA: {mint(i)}", T0 - 50 + i))
            await r.aggregator.drain()
            assert r.aggregator.buffered == 5
            server.start()
            await r.aggregator.flush_buffer()  # (or the retry loop got there first)
            assert r.aggregator.buffered == 0
            counts = await store.counts([mint(i) for i in range(10)])
            assert counts == {mint(i): 1 for i in range(10)}
            # Buffered mentions keep their original message dates.
            assert await store.groups(mint(7)) == {"@beta": int(T0 - 50 + 7)}
    finally:
        server.stop()


# -- the session file ----------------------------------------------------------------------------


def test_session_path_appends_the_extension(tmp_path: Path) -> None:
    assert session_path(str(tmp_path / "bot")) == tmp_path / "bot.session"
    assert session_path(str(tmp_path / "x.session")) == tmp_path / "x.session"


def test_session_file_is_created_private_and_readable_ones_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "callsbot.session"
    with pytest.raises(SessionError, match="callsbot login"):
        check_session_file(path)
    create_private_file(path)
    assert (path.stat().st_mode & 0o777) == 0o600
    check_session_file(path)
    os.chmod(path, 0o644)
    with pytest.raises(SessionError, match="chmod 600"):
        check_session_file(path)


def test_a_second_process_cannot_take_the_session(tmp_path: Path) -> None:
    path = tmp_path / "callsbot.session"
    create_private_file(path)
    with SessionLock(path):
        code = (
            "import sys; from pathlib import Path\n"
            "from callsbot.sources.telegram import SessionLock, SessionError\n"
            "try:\n    SessionLock(Path(sys.argv[1])).acquire()\n"
            "except SessionError as e:\n    print(e); sys.exit(3)\n"
        )
        other = subprocess.run(
            [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=30
        )
        assert other.returncode == 3
        assert "in use by another callsbot process" in other.stdout
    with SessionLock(path):  # released: free again
        pass


def test_secrets_never_reach_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    fake_hash = "0123456789abcdef0123456789abcdef"
    logger = logging.getLogger("callsbot.test-secrets")
    caplog.handler.addFilter(RedactSecrets([fake_hash, "12345678"]))
    with caplog.at_level(logging.INFO):
        logger.info("connecting with %s and id %s", fake_hash, 12345678)
        try:
            raise RuntimeError(f"auth failed for {fake_hash}")
        except RuntimeError:
            logger.exception("boom")
    assert fake_hash not in caplog.text
    assert "12345678" not in caplog.text
    assert "***" in caplog.text


def test_run_without_a_session_exits_non_zero_without_leaking_secrets(tmp_path: Path) -> None:
    fake_hash = "fedcba9876543210fedcba9876543210"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "CALLSBOT_TELEGRAM_API_ID": "987654",
        "CALLSBOT_TELEGRAM_API_HASH": fake_hash,
        "CALLSBOT_TELEGRAM_GROUPS": "@alpha",
        "CALLSBOT_TELEGRAM_SESSION": str(tmp_path / "missing"),
        "CALLSBOT_WEB_ENABLED": "false",
    }
    result = subprocess.run(
        [sys.executable, "-m", "callsbot", "run", "--role", "aggregator"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert result.returncode != 0
    assert "callsbot login" in result.stderr
    assert fake_hash not in result.stderr + result.stdout
    assert "987654" not in result.stderr + result.stdout
