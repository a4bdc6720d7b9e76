"""The store probe answers readiness from its last result, never by waiting on the store."""

from __future__ import annotations

import asyncio

from callsbot.clock import FakeClock
from callsbot.metrics import Metrics
from callsbot.runtime.probes import StoreProbe
from callsbot.store.base import Liveness
from callsbot.store.memory import MemoryStore


class FrozenStore(Liveness):
    """A store that accepts the connection and never answers (a frozen Redis)."""

    def __init__(self) -> None:
        self.never = asyncio.Event()

    async def beat(self, role: str, ttl: float) -> None:
        await self.never.wait()

    async def heartbeat_age(self, role: str) -> float | None:
        await self.never.wait()
        return None

    async def ping(self) -> None:
        await self.never.wait()

    async def probe_write(self, name: str) -> None:
        await self.never.wait()

    async def sync_clock(self) -> float:
        await self.never.wait()
        return 0.0

    async def eviction_policy(self) -> str | None:
        await self.never.wait()
        return None


async def test_a_frozen_store_is_reported_after_the_probe_timeout() -> None:
    probe = StoreProbe(
        FrozenStore(), clock=FakeClock(0), metrics=Metrics.create(), interval=5, timeout=0.05
    )
    assert probe.health() == ["store not probed yet"]
    await probe.probe()
    assert probe.health() == ["store unreachable (timeout): no answer within 0.1s"]


async def test_health_is_the_cached_result_and_heartbeat_gauges_follow(clock: FakeClock) -> None:
    store = MemoryStore(window=3600, clock=clock)
    metrics = Metrics.create()
    probe = StoreProbe(store, clock=clock, metrics=metrics, interval=5)
    await store.beat("aggregator", ttl=60)
    clock.advance(7)
    await probe.probe()
    assert probe.health() == []
    age = metrics.registry.get_sample_value(
        "callsbot_heartbeat_age_seconds", {"role": "aggregator"}
    )
    assert age == 7
