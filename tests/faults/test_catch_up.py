"""Issue 17, items 1, 7 and 10 at the listener: the catch-up cursor never passes an unfinished
message, a FloodWait postpones one group and nothing else, and a silent group is noticed.

The real listener and pipeline over the fake Telegram boundary of tests/tg.py (which keeps a
history, as Telegram does), real stores, market data from the local DexScreener where it
matters; time is a FakeClock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import attrs
import pytest
from telethon import errors as tg_errors

from callsbot.aggregator import Aggregator
from callsbot.clock import FakeClock
from callsbot.config import DexScreenerSettings, Settings, StoreSettings, TelegramSettings
from callsbot.metrics import Metrics
from callsbot.runtime.roles import build_listener, build_pipeline, make_parts, open_parts
from callsbot.sources import telegram
from callsbot.sources.telegram import ResolvedGroup, TelegramListener
from callsbot.sources.telethon_client import TelethonGateway
from callsbot.store import MemoryStore, SignalStore, keys
from callsbot.testing.dexscreener import ClockSleep, FakeDexScreener, make_pair
from callsbot.testing.redis_server import RedisServer
from tests.conftest import make_redis_store, mark_window_whole
from tests.tg import FakeGateway, channel_peer_id, mint, tg_message

T0 = 1_700_000_000.0
GROUPS = {"@alpha": (111, "alpha"), "@beta": (222, "beta")}
ALPHA, BETA = channel_peer_id(111), channel_peer_id(222)


def settings(**telegram: Any) -> Settings:
    base: dict[str, Any] = {"groups": ("@alpha", "@beta"), "workers": 2}
    return Settings(
        telegram=TelegramSettings(**(base | telegram)),
        store=StoreSettings(heartbeat_interval=5.0),
    )


@attrs.define
class Rig:
    gateway: FakeGateway
    listener: TelegramListener
    aggregator: Aggregator
    store: SignalStore
    metrics: Metrics

    def sample(self, name: str, **labels: str) -> float | None:
        return self.metrics.registry.get_sample_value(name, labels)

    async def cursor(self, chat_id: int) -> int | None:
        return await self.store.get_cursor(keys.chat_cursor(chat_id))


@contextlib.asynccontextmanager
async def rig(
    store: SignalStore, clock: FakeClock, gateway: FakeGateway, s: Settings
) -> AsyncIterator[Rig]:
    """The listener and a running pipeline that records without asking market data."""
    metrics = Metrics.create()
    parts = make_parts(s, clock=clock, metrics=metrics, store=store, market=None)
    aggregator = build_pipeline(parts, validate=False)
    listener = build_listener(parts, gateway, aggregator)
    stop = asyncio.Event()
    task = asyncio.create_task(aggregator.run(stop))
    try:
        yield Rig(gateway, listener, aggregator, store, metrics)
    finally:
        await listener.aclose()
        stop.set()
        await task


class StuckGateway(FakeGateway):
    """Telegram that makes one group's history wait (a gateway sitting out a FloodWait)."""

    def __init__(self, known: dict[str, tuple[int, str | None]], stuck: int) -> None:
        super().__init__(known)
        self.stuck = stuck
        self.unstick = asyncio.Event()
        self.waiting = asyncio.Event()

    async def history(self, group: ResolvedGroup, *, min_id: int) -> Any:
        if group.chat_id == self.stuck:
            self.waiting.set()
            await self.unstick.wait()
        async for message in super().history(group, min_id=min_id):
            yield message


class FloodedGateway(FakeGateway):
    """Telegram that answers one group's history with a FloodWait longer than the cap."""

    def __init__(self, known: dict[str, tuple[int, str | None]], flooded: int) -> None:
        super().__init__(known)
        self.flooded = flooded
        self.seconds = 900.0

    async def history(self, group: ResolvedGroup, *, min_id: int) -> Any:
        if group.chat_id == self.flooded and self.seconds:
            raise telegram.FloodWaited(self.seconds, f"catching up {group.name}")
        async for message in super().history(group, min_id=min_id):
            yield message


# -- item 7: FloodWait ---------------------------------------------------------------------------


async def test_a_flood_wait_on_one_group_never_stops_the_others_or_the_heartbeat(
    clock: FakeClock,
) -> None:
    store = MemoryStore(window=3600, clock=clock)
    gateway = StuckGateway(GROUPS, stuck=ALPHA)
    for i in (1, 2):  # posted while the process was down
        gateway.post(tg_message(111, i, f"CA: {mint(i)}", T0 - 100 + i))
        gateway.post(tg_message(222, i, f"CA: {mint(10 + i)}", T0 - 100 + i))
    async with rig(store, clock, gateway, settings()) as r:
        await r.listener.start()
        async with asyncio.timeout(2):  # the tick never waits for a catch-up
            await r.listener.tick()
            await gateway.waiting.wait()
        assert await store.heartbeat_age("aggregator") == 0
        running = r.listener.start_catch_up([r.listener.groups[BETA]])  # the one running
        async with asyncio.timeout(5):  # beta caught up while alpha still waits
            await asyncio.gather(*running)
        await r.aggregator.drain()
        assert await store.counts([mint(11), mint(12)]) == {mint(11): 1, mint(12): 1}
        assert r.listener.catching_up == (ALPHA,)
        # Live messages of alpha finish meanwhile: its cursor must not pass the unread history.
        await gateway.deliver(tg_message(111, 3, f"CA: {mint(3)}", T0))
        await r.aggregator.drain()
        assert await r.cursor(ALPHA) is None
        assert await r.cursor(BETA) == 2
        clock.advance(5)
        async with asyncio.timeout(2):
            await r.listener.tick()  # the next heartbeat, alpha still waiting
        assert await store.heartbeat_age("aggregator") == 0

        gateway.unstick.set()
        await r.listener.wait_caught_up()
        await r.aggregator.drain()
        assert await store.counts([mint(1), mint(2), mint(3)]) == {
            m: 1 for m in map(mint, (1, 2, 3))
        }
        assert await r.cursor(ALPHA) == 3


async def test_a_long_flood_wait_postpones_only_that_group_and_is_reported(
    clock: FakeClock,
) -> None:
    store = MemoryStore(window=3600, clock=clock)
    gateway = FloodedGateway(GROUPS, flooded=ALPHA)
    gateway.post(tg_message(111, 1, f"CA: {mint(1)}", T0 - 50))
    gateway.post(tg_message(222, 1, f"CA: {mint(11)}", T0 - 50))
    async with rig(store, clock, gateway, settings()) as r:
        await r.listener.start()
        await r.listener.tick()
        await r.listener.wait_caught_up()
        await r.aggregator.drain()
        assert await store.counts([mint(1), mint(11)]) == {mint(1): 0, mint(11): 1}
        assert r.sample("callsbot_telegram_flood_wait_seconds", group="@alpha") == 900
        assert r.sample("callsbot_telegram_flood_waits_total", group="@alpha") == 1
        assert r.sample("callsbot_telegram_flood_wait_seconds", group="@beta") is None
        assert r.listener.health() == ["catch-up of @alpha waits out a FloodWait (900s left)"]
        assert await store.heartbeat_age("aggregator") == 0

        clock.advance(600)  # not over yet: nothing is asked of Telegram for alpha
        await r.listener.tick()
        assert r.listener.catching_up == ()
        gateway.seconds = 0
        clock.advance(301)
        await r.listener.tick()
        await r.listener.wait_caught_up()
        await r.aggregator.drain()
        assert await store.counts([mint(1)]) == {mint(1): 1}
        assert r.sample("callsbot_telegram_flood_wait_seconds", group="@alpha") == 0
        assert r.listener.health() == []
        assert await r.cursor(ALPHA) == 1


class FakeTelethon:
    """The two calls of a TelegramClient the gateway makes, with scripted FloodWaits."""

    def __init__(self, messages: Sequence[Any], floods: list[int]) -> None:
        self.messages = sorted(messages, key=lambda m: -m.id)
        self.floods = floods
        self.calls: list[tuple[int, int]] = []

    async def get_messages(self, entity: Any, *, limit: int, min_id: int, max_id: int) -> Any:
        self.calls.append((min_id, max_id))
        if self.floods:
            raise tg_errors.FloodWaitError(request=None, capture=self.floods.pop(0))
        return [m for m in self.messages if m.id > min_id and (max_id == 0 or m.id < max_id)][
            :limit
        ]

    async def get_entity(self, target: Any) -> Any:
        if self.floods:
            raise tg_errors.FloodWaitError(request=None, capture=self.floods.pop(0))
        raise ValueError(f"no such chat {target}")


async def test_the_telethon_gateway_waits_out_short_flood_waits_on_the_injected_clock(
    clock: FakeClock,
) -> None:
    messages = [tg_message(111, i, f"m{i}", T0) for i in range(1, 251)]
    client = FakeTelethon(messages, floods=[35, 20])
    sleep = ClockSleep(clock)
    gateway = TelethonGateway(client, clock=clock, sleep=sleep, max_flood_wait=120)  # type: ignore[arg-type]
    group = ResolvedGroup("@alpha", ALPHA, "@alpha")
    async with asyncio.timeout(2):
        got = [m.id async for m in gateway.history(group, min_id=5)]
    assert got == list(range(250, 5, -1))  # newest first, every one once
    assert sleep.calls == [35, 20]  # Telegram's own wait, on the injected sleep
    assert client.calls[:3] == [(5, 0)] * 3  # the page that was flood-limited, asked again
    assert client.calls[3:] == [(5, 151), (5, 51)]  # then page by page below the last one


async def test_the_telethon_gateway_raises_a_long_flood_wait_at_once(clock: FakeClock) -> None:
    sleep = ClockSleep(clock)
    client = FakeTelethon([tg_message(111, 1, "m", T0)], floods=[900])
    gateway = TelethonGateway(client, clock=clock, sleep=sleep, max_flood_wait=120)  # type: ignore[arg-type]
    group = ResolvedGroup("@alpha", ALPHA, "@alpha")
    async with asyncio.timeout(2):
        with pytest.raises(telegram.FloodWaited) as caught:
            _ = [m async for m in gateway.history(group, min_id=0)]
    assert caught.value.seconds == 900
    assert sleep.calls == []
    # Resolving: the same cap, reported as the group being unavailable for now.
    client.floods = [900]
    with pytest.raises(Exception, match="flood wait of 900s"):
        await gateway.resolve("@alpha")
    assert sleep.calls == []


# -- item 1: the cursor ----------------------------------------------------------------------


async def test_the_cursor_never_passes_a_message_in_flight_or_waiting_for_market_data(
    clock: FakeClock,
) -> None:
    store = MemoryStore(window=3600, clock=clock)
    metrics = Metrics.create()
    cursor = keys.chat_cursor(ALPHA)
    async with FakeDexScreener(clock=clock) as dex:
        for i in range(1, 7):
            dex.add_pair(make_pair(mint(i)))
        s = attrs.evolve(settings(), dexscreener=DexScreenerSettings(url=dex.url, max_attempts=1))
        async with open_parts(
            s, clock=clock, metrics=metrics, store=store, sleep=ClockSleep(clock)
        ) as parts:
            aggregator = build_pipeline(parts)
            gateway = FakeGateway(GROUPS)
            listener = build_listener(parts, gateway, aggregator)
            stop = asyncio.Event()
            running = asyncio.create_task(aggregator.run(stop))
            await listener.start()
            await listener.catch_up()  # nothing to read: the chats are caught up

            # In flight: message 1's lookup hangs while messages 2 and 3 are done.
            dex.slow_next()
            await gateway.deliver(tg_message(111, 1, f"CA: {mint(1)}", T0 - 9))
            await dex.wait_for_requests(1)
            for i in (2, 3):
                await gateway.deliver(tg_message(111, i, f"CA: {mint(i)}", T0 - 10 + i))
            await dex.wait_for_requests(3)
            await aggregator.flush_cursors()
            assert await store.get_cursor(cursor) is None
            dex.release()
            await aggregator.drain()
            assert await store.get_cursor(cursor) == 3

            # Waiting for market data: message 4's token is unknown to the cache and DexScreener
            # fails; 5 and 6 were judged before (cached) and are recorded meanwhile.
            judged = listener.to_incoming(
                tg_message(111, 99, f"{mint(5)} {mint(6)}", T0), source="backfill"
            )
            assert judged is not None
            await aggregator.process(judged)  # a backfill: it moves no cursor
            dex.fail_next(503, times=1000)
            for i in (4, 5, 6):
                await gateway.deliver(tg_message(111, i, f"CA: {mint(i)}", T0 - 10 + i))
                await aggregator.drain()
            await aggregator.flush_cursors()
            assert await store.counts([mint(4), mint(5), mint(6)]) == {
                mint(4): 0,
                mint(5): 1,
                mint(6): 1,
            }
            assert await store.get_cursor(cursor) == 3
            dex.heal()
            for _ in range(200):  # the retry loop may hold it right now: poll, bounded
                await aggregator.retry_deferred()
                if await store.counts([mint(4)]) == {mint(4): 1}:
                    break
                await asyncio.sleep(0.01)
            await aggregator.flush_cursors()
            assert await store.get_cursor(cursor) == 6
            stop.set()
            await running


async def test_mentions_dropped_by_a_full_buffer_are_read_again_when_the_store_is_back(
    clock: FakeClock,
) -> None:
    server = RedisServer(persistent=True)
    server.start()
    mark_window_whole(server)  # what the aggregator's keeper does once the window is whole
    try:
        async with make_redis_store(server.url, clock) as store:
            gateway = FakeGateway(GROUPS)
            async with rig(store, clock, gateway, settings(buffer_size=2)) as r:
                await r.listener.start()
                await r.listener.tick()
                await r.listener.wait_caught_up()
                server.stop()
                for i in range(1, 7):  # the store is away: 2 are kept, 4 dropped
                    await gateway.deliver(tg_message(111, i, f"CA: {mint(i)}", T0 - 100 + i))
                await r.aggregator.drain()
                assert r.aggregator.buffered == 2
                assert r.sample("callsbot_buffer_overflow_total") == 4
                server.start()
                await r.aggregator.flush_buffer()
                await r.listener.tick()  # cursors, then the dropped messages read again
                await r.listener.wait_caught_up()
                await r.aggregator.drain()
                wanted = [mint(i) for i in range(1, 7)]
                assert await store.counts(wanted) == dict.fromkeys(wanted, 1)
                assert await store.groups(mint(6)) == {"@alpha": int(T0 - 94)}
                await r.listener.tick()
                assert await r.cursor(ALPHA) == 6
    finally:
        server.stop()


# -- item 10: silent groups -------------------------------------------------------------------


async def test_a_group_silent_for_too_long_while_connected_is_reported(clock: FakeClock) -> None:
    store = MemoryStore(window=3600, clock=clock)
    gateway = FakeGateway(GROUPS)
    async with rig(store, clock, gateway, settings(stale_after_seconds=600)) as r:
        await r.listener.start()
        await r.listener.tick()
        await r.listener.wait_caught_up()
        assert r.sample("callsbot_group_last_message_age_seconds", group="@beta") == 0
        for minute in range(1, 12):  # alpha talks every minute, beta never
            clock.advance(60)
            await gateway.deliver(tg_message(111, minute, f"gm {minute}", clock.time()))
            await r.listener.tick()
        assert r.sample("callsbot_group_last_message_age_seconds", group="@alpha") == 0
        assert r.sample("callsbot_group_last_message_age_seconds", group="@beta") == 660
        assert r.sample("callsbot_group_stale", group="@beta") == 1
        assert r.sample("callsbot_group_stale", group="@alpha") == 0
        assert r.listener.health() == ["group @beta silent for 660s (stale after 600s)"]

        gateway.connected = False  # silence while disconnected is that, not a stale group
        await r.listener.tick()
        assert r.sample("callsbot_group_stale", group="@beta") == 0
        gateway.connected = True
        await r.listener.tick()
        await r.listener.wait_caught_up()
        assert r.sample("callsbot_group_stale", group="@beta") == 1

        await gateway.deliver(tg_message(222, 1, "back", clock.time()))
        await r.listener.tick()
        assert r.sample("callsbot_group_stale", group="@beta") == 0
        assert r.sample("callsbot_group_last_message_age_seconds", group="@beta") == 0
        assert r.listener.health() == []
