"""Events across processes: one process's events reach another's hub through the stream."""

from __future__ import annotations

import asyncio

import pytest

from callsbot.bridge import StreamPublisher, StreamReader
from callsbot.clock import FakeClock
from callsbot.events import Event, EventHub, LevelReached, MentionRecorded, decode, encode
from callsbot.metrics import Metrics
from callsbot.models import MessageRef
from callsbot.store.base import SignalStore
from callsbot.testing.redis_server import RedisServer
from tests.conftest import make_redis_store

T0 = 1_700_000_000


def mention(i: int) -> MentionRecorded:
    ref = MessageRef("live", -1001, "@a", i, T0)
    return MentionRecorded(
        at=T0, ref=ref, token=f"Tok{i}", mention_kind="mint", chain="solana", count=1
    )


class Process:
    """One process's side of the bridge: its hub, its publisher, its reader, what it saw."""

    def __init__(self, store: SignalStore, clock: FakeClock, name: str) -> None:
        self.metrics = Metrics.create()
        self.hub = EventHub(metrics=self.metrics, clock=clock)
        self.seen: list[Event] = []
        self.publisher = StreamPublisher(
            store, origin=name, maxlen=10_000, buffer=1000, metrics=self.metrics, hub=self.hub
        )
        self.hub.subscribe("stream", self.publisher)
        self.hub.subscribe("seen", self.keep)
        self.reader = self.new_reader(store, clock, name)

    def new_reader(self, store: SignalStore, clock: FakeClock, name: str) -> StreamReader:
        return StreamReader(
            store,
            self.hub,
            reader=name,
            origin=name,
            block=0,
            metrics=self.metrics,
            clock=clock,
        )

    async def keep(self, event: Event) -> None:
        self.seen.append(event)

    async def publish(self, *events: Event) -> None:
        for event in events:
            self.hub.publish(event)
        await self.hub.drain()
        assert await self.publisher.flush()

    async def read(self) -> list[Event]:
        await self.reader.read_once()
        await self.hub.drain()
        return [e for e in self.seen if self.hub.is_remote(e)]


def test_every_event_kind_survives_the_codec() -> None:
    event = mention(3)
    assert decode(*encode(event)) == event
    with pytest.raises(ValueError, match="unknown event kind"):
        decode("no_such_kind", "{}")
    with pytest.raises(ValueError, match="malformed mention_recorded"):
        decode("mention_recorded", '{"at": 1}')


async def test_one_process_events_reach_the_other_and_not_back(
    store: SignalStore, clock: FakeClock
) -> None:
    aggregator, scorer = Process(store, clock, "aggregator"), Process(store, clock, "scorer")
    await scorer.read()  # starts at the stream's end: nothing old is replayed
    level = LevelReached(at=T0, token="Tok1", chain="solana", level=2, ts=T0, ref=mention(1).ref)
    await aggregator.publish(mention(1), mention(2), level)
    assert await scorer.read() == [mention(1), mention(2), level]
    # What the scorer received is not put back on the stream by its own publisher ...
    await scorer.hub.drain()
    assert await scorer.publisher.flush()
    assert await aggregator.read() == []
    # ... and what it publishes itself reaches the aggregator, once.
    await scorer.publish(mention(9))
    assert await aggregator.read() == [mention(9)]
    assert await scorer.read() == [mention(1), mention(2), level]  # its own entry skipped


async def test_a_restarted_reader_resumes_after_its_last_entry(
    store: SignalStore, clock: FakeClock
) -> None:
    aggregator, scorer = Process(store, clock, "aggregator"), Process(store, clock, "scorer")
    await scorer.read()
    await aggregator.publish(mention(1), mention(2))
    assert await scorer.read() == [mention(1), mention(2)]
    # The scorer process restarts: a new reader (and hub) under the same reader name.
    await aggregator.publish(mention(3), mention(4))
    restarted = Process(store, clock, "scorer")
    assert await restarted.read() == [mention(3), mention(4)]
    assert await restarted.read() == [mention(3), mention(4)]  # nothing twice


async def test_a_redis_outage_loses_no_event(clock: FakeClock) -> None:
    server = RedisServer()
    server.start()
    try:
        async with (
            make_redis_store(server.url, clock) as a,
            make_redis_store(server.url, clock) as b,
        ):
            aggregator, scorer = Process(a, clock, "aggregator"), Process(b, clock, "scorer")
            await scorer.read()
            await aggregator.publish(mention(1))
            assert await scorer.read() == [mention(1)]
            server.stop()
            for i in (2, 3, 4):
                aggregator.hub.publish(mention(i))
            await aggregator.hub.drain()
            assert not await aggregator.publisher.flush()  # kept, not lost
            assert aggregator.publisher.health()[0].startswith(
                "event stream unavailable: 3 events waiting"
            )
            server.start()  # a new, empty server on the same port
            assert await aggregator.publisher.flush()
            assert aggregator.publisher.health() == []
            assert await scorer.read() == [mention(i) for i in (1, 2, 3, 4)]
    finally:
        server.stop()


async def test_the_publisher_service_appends_as_events_arrive(
    store: SignalStore, clock: FakeClock
) -> None:
    aggregator, scorer = Process(store, clock, "aggregator"), Process(store, clock, "scorer")
    await scorer.read()
    stop = asyncio.Event()
    hub_stop = asyncio.Event()
    services = [
        asyncio.create_task(aggregator.publisher.run(stop)),
        asyncio.create_task(aggregator.hub.run(hub_stop)),
    ]
    for i in range(5):
        aggregator.hub.publish(mention(i))
    scorer.reader = StreamReader(
        store,
        scorer.hub,
        reader="scorer",
        origin="scorer",
        block=0.2,  # waits on the stream, not on a clock
        metrics=scorer.metrics,
        clock=clock,
    )
    async with asyncio.timeout(10):
        while len(await scorer.read()) < 5:
            pass
    stop.set()
    hub_stop.set()
    await asyncio.gather(*services)
    assert await scorer.read() == [mention(i) for i in range(5)]
