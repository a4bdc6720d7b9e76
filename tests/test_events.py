"""The event hub: publishing never waits, subscribers are isolated, and the pipeline publishes."""

from __future__ import annotations

import asyncio

import pytest

from callsbot.clock import FakeClock
from callsbot.config import Settings, TelegramSettings
from callsbot.events import Event, EventHub, LevelReached, MentionRecorded
from callsbot.metrics import Metrics
from callsbot.models import ForwardHeader, IncomingMessage, MessageRef
from callsbot.runtime.roles import build_pipeline, make_parts
from callsbot.store.memory import MemoryStore
from tests.tg import mint

T0 = 1_700_000_000


def mention(i: int, *, at: float = T0) -> MentionRecorded:
    ref = MessageRef("live", -1001, "@a", i, T0)
    return MentionRecorded(
        at=at, ref=ref, token=mint(i), mention_kind="mint", chain="solana", count=1
    )


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def test_a_stalled_subscriber_never_blocks_publish_and_only_it_loses_events(
    clock: FakeClock,
) -> None:
    metrics = Metrics.create()
    hub = EventHub(metrics=metrics, clock=clock)
    gate = asyncio.Event()
    fast: list[Event] = []
    all_fast = asyncio.Event()

    async def stalled(event: Event) -> None:
        await gate.wait()

    async def quick(event: Event) -> None:
        fast.append(event)
        if len(fast) == 50:
            all_fast.set()

    hub.subscribe("stalled", stalled, maxsize=3)
    hub.subscribe("quick", quick, maxsize=100)
    stop = asyncio.Event()
    runner = asyncio.create_task(hub.run(stop))
    await asyncio.sleep(0)
    for i in range(50):
        hub.publish(mention(i))  # synchronous: it cannot wait for anyone
    await all_fast.wait()
    assert [e.ref.message_id for e in fast if isinstance(e, MentionRecorded)] == list(range(50))
    dropped = sample(metrics, "callsbot_events_dropped_total", subscriber="stalled")
    assert dropped >= 50 - 3 - 1  # its queue holds 3, its handler holds 1
    assert sample(metrics, "callsbot_events_dropped_total", subscriber="quick") == 0
    assert hub.health() == ["event subscriber stalled is dropping events"]
    gate.set()
    stop.set()
    await runner


async def test_a_failing_subscriber_is_counted_and_the_others_go_on(clock: FakeClock) -> None:
    metrics = Metrics.create()
    hub = EventHub(metrics=metrics, clock=clock)
    seen: list[int] = []

    async def broken(event: Event) -> None:
        raise RuntimeError("bug in a subscriber")

    async def fine(event: Event) -> None:
        assert isinstance(event, MentionRecorded)
        seen.append(event.ref.message_id)

    hub.subscribe("broken", broken)
    hub.subscribe("fine", fine, kinds=[MentionRecorded])
    hub.publish(mention(1))
    hub.publish(mention(2))
    await hub.drain()
    assert seen == [1, 2]
    assert sample(metrics, "callsbot_event_handler_errors_total", subscriber="broken") == 2
    assert sample(metrics, "callsbot_events_published_total", kind="mention_recorded") == 2


async def test_the_lag_metric_measures_event_time_to_handling(clock: FakeClock) -> None:
    metrics = Metrics.create()
    hub = EventHub(metrics=metrics, clock=clock)

    async def handler(event: Event) -> None:
        return None

    hub.subscribe("s", handler)
    clock.set(T0 + 2)
    hub.publish(mention(1, at=T0))
    await hub.drain()
    assert sample(metrics, "callsbot_event_lag_seconds_sum", subscriber="s") == pytest.approx(2)


async def test_the_pipeline_publishes_mentions_and_each_new_level_once(clock: FakeClock) -> None:
    clock.set(T0)
    settings = Settings(telegram=TelegramSettings(groups=("@a",)))
    store = MemoryStore(window=3600, clock=clock)
    metrics = Metrics.create()
    parts = make_parts(settings, clock=clock, metrics=metrics, store=store, market=None)
    got: list[Event] = []

    async def keep(event: Event) -> None:
        got.append(event)

    parts.events.subscribe("test", keep)
    pipeline = build_pipeline(parts, validate=False)
    token = mint(7)
    forward = ForwardHeader(origin_peer=-1009, origin_message_id=5, origin_date=T0 - 99)
    messages = [
        IncomingMessage(-1001, "@a", 1, T0 - 30, f"CA {token}", sender_id=11),
        IncomingMessage(-1002, "@b", 1, T0 - 20, f"{token} 🚀", forward=forward),
        IncomingMessage(-1001, "@a", 2, T0 - 10, f"again {token}"),  # same group: no new level
        IncomingMessage(-1003, "@c", 1, T0 - 5, f"ape {token}"),
    ]
    for m in messages:
        await pipeline.process(m)
    await parts.events.drain()
    mentions = [e for e in got if isinstance(e, MentionRecorded)]
    levels = [e for e in got if isinstance(e, LevelReached)]
    assert [(e.ref.group, e.count) for e in mentions] == [
        ("@a", 1),
        ("@b", 2),
        ("@a", 2),
        ("@c", 3),
    ]
    assert mentions[0].sender_id == 11
    assert mentions[1].forward == forward
    assert mentions[0].text == f"CA {token}"
    assert [(e.level, e.ts, e.ref.group) for e in levels] == [
        (1, T0 - 30, "@a"),
        (2, T0 - 20, "@b"),
        (3, T0 - 5, "@c"),
    ]
    assert sample(metrics, "callsbot_levels_reached_total", level="3") == 1
    assert sample(metrics, "callsbot_mentions_recorded_total", kind="mint") == 4


def test_a_message_survives_the_json_round_trip_of_spools_and_recordings() -> None:
    from callsbot.models import Entity, message_from_json, message_to_json

    forward = ForwardHeader(origin_peer=-1009, origin_name=None, origin_message_id=5, origin_date=1)
    m = IncomingMessage(
        -1001,
        "@a",
        3,
        T0,
        "CA x",
        entities=(Entity("text_url", 0, 2, "https://x"),),
        source="catch_up",
        sender_id=9,
        forward=forward,
        received_at=T0 + 0.5,
    )
    assert message_from_json(message_to_json(m)) == m
