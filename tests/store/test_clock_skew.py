"""Processes whose clocks disagree by minutes agree on the window and the heartbeats, because
both measure against Redis ``TIME`` (issue 17, item 5)."""

from __future__ import annotations

import pytest

from callsbot.cli.check import check
from callsbot.clock import FakeClock
from callsbot.config import Settings, StoreSettings
from callsbot.metrics import Metrics
from callsbot.runtime.probes import StoreProbe
from callsbot.store.redis import RedisStore
from tests.conftest import make_redis_store
from tests.store_faults import ConsensusProbe
from tests.tg import mint

TOKEN = mint(1)


async def redis_time(store: RedisStore) -> float:
    seconds, micros = await store.client.time()
    return int(seconds) + int(micros) / 1e6


@pytest.mark.parametrize("skew", [120.0, -120.0])
async def test_aggregator_and_scorer_120s_apart_agree_on_consensus(
    redis_url: str, skew: float
) -> None:
    async with make_redis_store(redis_url, FakeClock(0)) as timer:
        real = await redis_time(timer)
    # The aggregator's host runs ``skew`` ahead, the scorer's as much behind (then the reverse).
    aggregator_clock, scorer_clock = FakeClock(real + skew), FakeClock(real - skew)
    async with (
        make_redis_store(redis_url, aggregator_clock) as aggregator,
        make_redis_store(redis_url, scorer_clock) as scorer,
    ):
        assert abs(await aggregator.sync_clock() - skew) < 1
        assert abs(await scorer.sync_clock() + skew) < 1
        # Message dates are Telegram's (true time); one call is close to the window's edge.
        assert await aggregator.record(TOKEN, "@alpha", real - 3500) == 1
        assert await aggregator.record(TOKEN, "@bravo", real - 60) == 2
        assert await aggregator.record(TOKEN, "@charlie", real - 5) == 3
        await aggregator.beat("aggregator", 15)
        age = await scorer.heartbeat_age("aggregator")
        assert age is not None
        assert age < 5
        cons = await ConsensusProbe.over(scorer, scorer_clock).ask(TOKEN)
        assert (cons.points, cons.degraded) == (2, False)
        assert set(cons.groups) == {"@alpha", "@bravo", "@charlie"}
        # The window's edge is the same for both: the aggregator sees what the scorer sees.
        assert await aggregator.groups(TOKEN) == await scorer.groups(TOKEN)


async def test_a_skew_over_the_limit_is_reported_not_adopted(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async with make_redis_store(redis_url, FakeClock(0)) as timer:
        real = await redis_time(timer)
    clock = FakeClock(real + 600)
    settings = StoreSettings(url=redis_url, max_clock_skew_seconds=300)
    metrics = Metrics.create()
    async with make_redis_store(redis_url, clock) as store:
        probe = StoreProbe(store, clock=clock, metrics=metrics, interval=1, settings=settings)
        await probe.probe()
        assert store.now() == int(real + 600)  # this host's clock stays in use
        [reason] = probe.health()
        assert reason.startswith("clock skew (skew): this process's clock is 600s ahead")
        skew = metrics.registry.get_sample_value("callsbot_store_clock_skew_seconds")
        assert skew is not None
        assert abs(skew - 600) < 1
        assert metrics.registry.get_sample_value("callsbot_store_state", {"state": "skew"}) == 1
        assert metrics.registry.get_sample_value("callsbot_store_state", {"state": "ok"}) == 0
    assert await check(Settings(store=settings), clock=clock) == 1
    out = capsys.readouterr().out
    assert "clock: SKEWED — clock skew (skew): this process's clock is 600s ahead" in out


async def test_a_skew_within_the_limit_is_adopted_and_shown(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async with make_redis_store(redis_url, FakeClock(0)) as timer:
        real = await redis_time(timer)
    clock = FakeClock(real - 200)
    async with make_redis_store(redis_url, clock) as store:
        probe = StoreProbe(store, clock=clock, metrics=Metrics.create(), interval=1)
        await probe.probe()
        assert probe.health() == []
        assert abs(store.now() - real) <= 1
    await check(Settings(store=StoreSettings(url=redis_url)), clock=clock)
    assert "clock: -200" in capsys.readouterr().out
