"""Market data as of the simulated clock: recorded snapshots, and the candle-volume gate."""

from __future__ import annotations

import attrs
import pytest

from callsbot.clock import FakeClock
from callsbot.config import MarketSettings
from callsbot.errors import MarketUnavailable
from callsbot.events import EventHub, VerdictMade
from callsbot.metrics import Metrics
from callsbot.models import Candle, Reason, Status
from callsbot.replay.market import CandleGate, RecordedMarket
from callsbot.replay.tape import Observation, Outage, PricePath, Resolution
from tests.replay.factory import T0, TOKENS, observation, snapshot

A, B = TOKENS[0], TOKENS[1]


async def test_the_latest_snapshot_observed_at_or_before_now_answers() -> None:
    clock = FakeClock(T0 - 1)
    market = RecordedMarket(
        [observation(T0 + 100, A, liquidity=5_000.0), observation(T0, A, liquidity=50_000.0)],
        settings=MarketSettings(),
        clock=clock,
    )
    before = (await market.verdicts([A]))[A]
    assert before.status is Status.UNKNOWN  # nothing observed yet: ask again later
    clock.set(T0)
    assert (await market.verdicts([A]))[A].valid
    clock.set(T0 + 99.9)
    assert (await market.verdicts([A]))[A].snapshot.liquidity_usd == 50_000.0
    clock.set(T0 + 100)
    late = (await market.verdicts([A]))[A]
    assert late.reason is Reason.LOW_LIQUIDITY  # the later snapshot, never earlier


async def test_snapshots_are_judged_by_the_configuration_replayed() -> None:
    clock = FakeClock(T0)
    obs = [observation(T0, A, liquidity=20_000.0, volume=8_000.0)]
    lenient = RecordedMarket(obs, settings=MarketSettings(), clock=clock)
    strict = RecordedMarket(obs, settings=MarketSettings(min_liquidity_usd=30_000.0), clock=clock)
    assert (await lenient.verdicts([A]))[A].valid
    assert (await strict.verdicts([A]))[A].reason is Reason.LOW_LIQUIDITY
    louder = RecordedMarket(obs, settings=MarketSettings(min_volume_h24_usd=10_000.0), clock=clock)
    assert (await louder.verdicts([A]))[A].reason is Reason.LOW_VOLUME


async def test_a_token_never_observed_is_unknown_or_has_no_pairs() -> None:
    clock = FakeClock(T0)
    history = RecordedMarket([], settings=MarketSettings(), clock=clock)
    assert (await history.verdicts([A]))[A].status is Status.UNKNOWN
    complete = RecordedMarket([], settings=MarketSettings(), clock=clock, absent="no_pairs")
    assert (await complete.verdicts([A]))[A].reason is Reason.NO_PAIRS
    recorded_none = RecordedMarket(
        [Observation(T0, "solana", A, None)], settings=MarketSettings(), clock=clock
    )
    assert (await recorded_none.verdicts([A]))[A].reason is Reason.NO_PAIRS


async def test_a_recorded_outage_makes_every_lookup_fail_while_it_lasts() -> None:
    clock = FakeClock(T0 + 10)
    market = RecordedMarket(
        [observation(T0, A)],
        settings=MarketSettings(),
        clock=clock,
        outages=[Outage(T0 + 10, T0 + 30)],
    )
    assert (await market.verdicts([A]))[A].status is Status.UNKNOWN
    with pytest.raises(MarketUnavailable):
        await market.resolve_pairs(["X"])
    with pytest.raises(MarketUnavailable):
        await market.locate([A])
    clock.set(T0 + 30)
    assert (await market.verdicts([A]))[A].valid


async def test_pairs_resolve_from_snapshots_and_recorded_resolutions_once_known() -> None:
    clock = FakeClock(T0)
    pair_a = snapshot(A).pair_address
    market = RecordedMarket(
        [observation(T0 + 5, A)],
        settings=MarketSettings(),
        clock=clock,
        resolutions=[Resolution(T0 + 50, "solana", "PoolOfB", B)],
    )
    assert await market.resolve_pairs([pair_a, "PoolOfB"]) == {pair_a: None, "PoolOfB": None}
    clock.set(T0 + 50)
    assert await market.resolve_pairs([pair_a, "PoolOfB"]) == {pair_a: A, "PoolOfB": B}
    assert await market.locate([A, B]) == {A: "solana", B: None}


async def test_a_verdict_is_published_once_per_observation() -> None:
    clock = FakeClock(T0)
    hub = EventHub(metrics=Metrics.create(), clock=clock)
    seen: list[VerdictMade] = []

    async def keep(event: object) -> None:
        assert isinstance(event, VerdictMade)
        seen.append(event)

    hub.subscribe("t", keep, kinds=[VerdictMade])
    market = RecordedMarket(
        [observation(T0, A), observation(T0 + 60, A)],
        settings=MarketSettings(),
        clock=clock,
        events=hub,
    )
    for t in (T0, T0 + 1, T0 + 60, T0 + 61):
        clock.set(t)
        await market.verdicts([A])
    await hub.drain()
    assert [e.at for e in seen] == [T0, T0 + 60]


def candles(start: float, volumes: list[float], price: float = 0.001) -> tuple[Candle, ...]:
    return tuple(
        Candle(int(start) + 60 * i, price, price * 1.1, price * 0.9, price, v)
        for i, v in enumerate(volumes)
    )


async def test_the_candle_gate_sums_the_volume_of_candles_closed_in_the_last_day() -> None:
    clock = FakeClock(T0)
    path = PricePath(A, "PoolA", candles(T0, [3_000.0, 3_000.0, 3_000.0]), (), T0 + 600)
    gate = CandleGate({A: path}, settings=MarketSettings(), clock=clock)
    assert (await gate.verdicts([A]))[A].reason is Reason.NO_PAIRS  # nothing closed yet
    clock.set(T0 + 60)
    first = (await gate.verdicts([A]))[A]
    assert first.reason is Reason.LOW_VOLUME
    assert first.snapshot is not None
    assert first.snapshot.volume_h24 == 3_000.0
    clock.set(T0 + 119)  # the second candle has not closed yet
    assert (await gate.verdicts([A]))[A].reason is Reason.LOW_VOLUME
    clock.set(T0 + 120)
    ok = (await gate.verdicts([A]))[A]
    assert ok.valid
    assert ok.snapshot is not None
    assert ok.snapshot.liquidity_usd is None
    assert (await gate.verdicts([B]))[B].status is Status.UNKNOWN  # no cached path
    assert await gate.resolve_pairs(["PoolA", "Other"]) == {"PoolA": A, "Other": None}
    clock.set(T0 + 2 * 86400)
    assert (await gate.verdicts([A]))[A].reason is Reason.LOW_VOLUME  # a day later: quiet


async def test_the_candle_gate_uses_five_minute_candles_before_the_first_minute_one() -> None:
    clock = FakeClock(T0 + 3600)
    five = tuple(Candle(int(T0) + 300 * i, 0.001, 0.0011, 0.0009, 0.001, 2_000.0) for i in range(6))
    minute = candles(T0 + 1800, [100.0] * 30)
    path = PricePath(A, "PoolA", minute, five, T0 + 3600)
    gate = CandleGate({A: path}, settings=MarketSettings(), clock=clock)
    verdict = (await gate.verdicts([A]))[A]
    assert verdict.snapshot is not None
    assert verdict.snapshot.volume_h24 == pytest.approx(6 * 2_000.0 + 30 * 100.0)
    assert attrs.has(type(verdict))
