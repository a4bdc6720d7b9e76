"""The outcome tracker on the fake clock against the local GeckoTerminal."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from callsbot.clock import FakeClock
from callsbot.config import OutcomesSettings
from callsbot.outcomes.path import OutcomeStatus
from callsbot.outcomes.report import EventKind
from callsbot.testing.geckoterminal import FakeGeckoTerminal
from tests.outcomes.rig import (
    AFTER,
    DAY,
    MINT,
    NEW_POOL,
    OTHER,
    POOL,
    T,
    alert,
    day_of_candles,
    level,
    mention,
    open_rig,
    same,
    scored,
    sqlite_url,
    truth,
    verdict,
)


async def test_newest_first_rows_with_gaps_and_a_duplicated_candle(
    clock: FakeClock, gecko: FakeGeckoTerminal, tmp_path: Path
) -> None:
    candles = day_of_candles(skip=(70, 71, 72, 400, 401, 900))
    gecko.add_pool(POOL, base=MINT, candles=candles)
    gecko.duplicate_in_progress = True
    rig = await open_rig(clock, gecko, sqlite_url(tmp_path))
    try:
        await rig.feed(
            verdict(),
            mention("@a", T - 300),
            level(1, T - 300, group="@a"),
            mention("@b", T),
            level(2, T, group="@b"),
            scored(T + 30.0, ("@a", "@b")),
            alert(T + 31.0, ("@a", "@b")),
        )
        await rig.advance(AFTER)
        records = {(r.kind, r.level): r for r in await rig.records()}
    finally:
        await rig.close()
    assert set(records) == {
        (EventKind.LEVEL_REACHED, 1),
        (EventKind.LEVEL_REACHED, 2),
        (EventKind.SCORED, 2),
        (EventKind.ALERT, 2),
    }
    for (_kind, _level), record in records.items():
        assert record.outcome.status is OutcomeStatus.RESOLVED
        assert same(record.outcome, truth(record.event_ts, candles)), record.kind
    assert records[(EventKind.LEVEL_REACHED, 2)].groups == ("@a", "@b")
    assert len(gecko.requests_of("ohlcv")) == 4
    assert gecko.requests_of("pools") == []


async def test_a_quote_side_pool_is_priced_for_the_mint(
    clock: FakeClock, gecko: FakeGeckoTerminal, tmp_path: Path
) -> None:
    candles = day_of_candles()
    sol_prices = [attrs.evolve(c, open=150.0, high=151.0, low=149.0, close=150.0) for c in candles]
    gecko.add_pool(POOL, base=OTHER, quote=MINT, candles=sol_prices, quote_candles=candles)
    rig = await open_rig(clock, gecko, sqlite_url(tmp_path))
    try:
        await rig.feed(alert(T + 0.0, ("@a", "@b"), pool=POOL))
        await rig.advance(AFTER)
        (record,) = await rig.records()
    finally:
        await rig.close()
    assert same(record.outcome, truth(T, candles))
    assert record.outcome.entry == pytest.approx(1.2)
    assert {r.param("token") for r in gecko.requests_of("ohlcv")} == {MINT}


async def test_a_404_finds_the_pool_again_and_follows_it(
    clock: FakeClock, gecko: FakeGeckoTerminal, tmp_path: Path
) -> None:
    candles = day_of_candles()
    gecko.add_pool(POOL, base=MINT, candles=candles)
    gecko.add_pool(NEW_POOL, base=MINT, candles=candles, reserve_usd=90_000.0)
    rig = await open_rig(clock, gecko, sqlite_url(tmp_path))
    try:
        await rig.feed(verdict(), mention("@a", T), level(1, T, group="@a"))
        await rig.advance(T + 20 * 60)  # the first fetch, on the old pool
        gecko.retire_pool(POOL)  # graduated: the old pool is gone
        await rig.advance(AFTER)
        (record,) = await rig.records()
        view = await rig.ledger.view(1)
    finally:
        await rig.close()
    assert same(record.outcome, truth(T, candles))
    assert view.schedule.pool == NEW_POOL
    assert view.schedule.pool_source == "lookup"
    assert len(gecko.requests_of("pools")) == 1  # looked up once, then followed
    ohlcv = gecko.requests_of("ohlcv")
    assert [r.pool for r in ohlcv] == [POOL, POOL, NEW_POOL, NEW_POOL, NEW_POOL]
    assert [r.status for r in ohlcv].count(404) == 1


async def test_a_429_storm_delays_but_loses_nothing(
    clock: FakeClock, gecko: FakeGeckoTerminal, tmp_path: Path
) -> None:
    candles = day_of_candles()
    gecko.add_pool(POOL, base=MINT, candles=candles)
    rig = await open_rig(clock, gecko, sqlite_url(tmp_path))
    try:
        await rig.feed(
            verdict(), mention("@a", T), level(1, T, group="@a"), alert(T + 5.0, ("@a",))
        )
        await rig.advance(T + 20 * 60)
        # Both body shapes, with and without a (useless) retry-after: longer than one fetch's
        # time budget, so the tracker has to come back for it.
        gecko.rate_limit_next(times=12, shape="coingecko", retry_after="0")
        gecko.rate_limit_next(times=12, shape="jsonapi")
        await rig.advance(AFTER)
        records = await rig.records()
        delayed = rig.metrics.registry.get_sample_value(
            "callsbot_tracker_fetches_total", {"outcome": "rate_limited"}
        )
    finally:
        await rig.close()
    assert len(records) == 2
    for record in records:
        assert same(record.outcome, truth(record.event_ts, candles))
    assert delayed
    assert delayed >= 1
    ohlcv = gecko.requests_of("ohlcv")
    assert [r.status for r in ohlcv].count(200) == 4
    assert [r.status for r in ohlcv].count(429) == 24
    assert gecko.max_in_window(60) <= 20
    assert gecko.max_in_window(9) <= 3


async def test_a_restart_between_two_checkpoints_resumes_from_the_history(
    clock: FakeClock, gecko: FakeGeckoTerminal, tmp_path: Path
) -> None:
    candles = day_of_candles()
    gecko.add_pool(POOL, base=MINT, candles=candles)
    url = sqlite_url(tmp_path)
    first = await open_rig(clock, gecko, url)
    try:
        await first.feed(verdict(), mention("@a", T), level(1, T, group="@a"))
        await first.advance(T + 2 * 3600)  # +17 min and +62 min fetched
        (before,) = await first.records()
    finally:
        await first.close()  # the process ends; a new one starts with a new engine
    assert before.outcome.status is OutcomeStatus.TRACKING
    assert before.outcome.p_1h is not None
    assert before.outcome.p_4h is None
    assert len(gecko.requests_of("ohlcv")) == 2
    second = await open_rig(clock, gecko, url)
    try:
        assert second.tracker.scheduled == 2  # + 4 h 02 and + 24 h 02, read back
        await second.advance(AFTER)
        (after,) = await second.records()
    finally:
        await second.close()
    assert same(after.outcome, truth(T, candles))
    befores = [int(r.param("before_timestamp") or 0) - T for r in gecko.requests_of("ohlcv")]
    assert befores == [17 * 60, 62 * 60, 4 * 3600 + 120, 24 * 3600 + 120]  # none twice


async def test_groups_that_call_after_an_event_never_change_it(
    clock: FakeClock, gecko: FakeGeckoTerminal, tmp_path: Path
) -> None:
    candles = day_of_candles()
    gecko.add_pool(POOL, base=MINT, candles=candles)
    early = [verdict(), mention("@a", T - 600), level(1, T - 600, group="@a")]
    early += [mention("@b", T), level(2, T, group="@b")]
    later = [mention("@c", T + 300), level(3, T + 300, group="@c")]
    later += [mention("@d", T + 900), level(4, T + 900, group="@d")]
    later += [scored(T + 950.0, ("@a", "@b", "@c", "@d"))]
    results = []
    for n, events in enumerate((early, early + later)):
        rig = await open_rig(clock, gecko, sqlite_url(tmp_path / str(n)))
        clock.set(float(T))
        try:
            await rig.feed(*events)
            await rig.advance(AFTER)
            results.append({(r.kind, r.level): r for r in await rig.records()})
        finally:
            await rig.close()
        clock.set(float(T))
    alone, with_later = results
    key = (EventKind.LEVEL_REACHED, 2)
    assert with_later[key].groups == alone[key].groups == ("@a", "@b")
    # Every field the same; only as_of (how far the shared fetches reached) may differ.
    assert same(with_later[key].outcome, alone[key].outcome)
    first = (EventKind.LEVEL_REACHED, 1)
    assert with_later[first].groups == alone[first].groups == ("@a",)
    assert same(with_later[first].outcome, alone[first].outcome)
    assert with_later[(EventKind.LEVEL_REACHED, 4)].groups == ("@a", "@b", "@c", "@d")


async def test_a_pool_nobody_trades_is_dead_not_dropped(
    clock: FakeClock, gecko: FakeGeckoTerminal, tmp_path: Path
) -> None:
    candles = [c for c in day_of_candles() if c.ts < T - 120]  # the last trade before the call
    gecko.add_pool(POOL, base=MINT, candles=candles)
    rig = await open_rig(clock, gecko, sqlite_url(tmp_path))
    try:
        await rig.feed(verdict(), mention("@a", T), level(1, T, group="@a"))
        await rig.advance(AFTER)
        (record,) = await rig.records()
    finally:
        await rig.close()
    o = record.outcome
    assert o.status is OutcomeStatus.DEAD
    assert (o.entry, o.peak, o.win, o.win_before_stop) == (1.0, 1.0, False, False)


async def test_no_pool_anywhere_is_unresolved_with_its_error_count(
    clock: FakeClock, gecko: FakeGeckoTerminal, tmp_path: Path
) -> None:
    settings = OutcomesSettings(catch_up_seconds=0, max_fetch_errors=3, retry_seconds=60.0)
    rig = await open_rig(clock, gecko, sqlite_url(tmp_path), settings=settings)
    try:
        # No verdict, nothing in the history, and GeckoTerminal knows no pool of the token.
        await rig.feed(mention("@a", T), level(1, T, group="@a"))
        await rig.advance(AFTER + DAY)
        (record,) = await rig.records()
        (schedule,) = [(await rig.ledger.view(1)).schedule]
    finally:
        await rig.close()
    o = record.outcome
    assert o.status is OutcomeStatus.UNRESOLVED
    assert o.errors == schedule.errors >= 3
    assert "no pool" in o.detail
    assert gecko.requests_of("ohlcv") == []


async def test_another_chain_is_unresolved_at_once(
    clock: FakeClock, gecko: FakeGeckoTerminal, tmp_path: Path
) -> None:
    rig = await open_rig(clock, gecko, sqlite_url(tmp_path))
    try:
        await rig.feed(level(1, T, chain="bsc", token="0x" + "ab" * 20))
        await rig.advance(AFTER)
        (record,) = await rig.records()
    finally:
        await rig.close()
    assert record.outcome.status is OutcomeStatus.UNRESOLVED
    assert "chain 'bsc'" in record.outcome.detail
    assert gecko.requests == []


async def test_a_late_entry_gets_one_more_five_minute_fetch(
    clock: FakeClock, gecko: FakeGeckoTerminal, tmp_path: Path
) -> None:
    quiet_until = T + 5 * 3600  # nobody trades between the call and 5 h later
    candles = [c for c in day_of_candles(minutes=32 * 60) if not T - 60 < c.ts < quiet_until]
    gecko.add_pool(POOL, base=MINT, candles=candles)
    rig = await open_rig(clock, gecko, sqlite_url(tmp_path))
    try:
        await rig.feed(verdict(), mention("@a", T), level(1, T, group="@a"))
        await rig.advance(AFTER + 8 * 3600)
        (record,) = await rig.records()
    finally:
        await rig.close()
    o = record.outcome
    assert o.status is OutcomeStatus.RESOLVED
    # The first 5-minute candle holding a trade after the quiet hours.
    assert o.entry_ts == (quiet_until + 299) // 300 * 300 - 300
    stages = [int(r.param("aggregate") or 0) for r in gecko.requests_of("ohlcv")]
    assert stages == [1, 1, 1, 5, 5]


async def test_only_the_first_score_of_a_window_is_an_event(
    clock: FakeClock, gecko: FakeGeckoTerminal, tmp_path: Path
) -> None:
    gecko.add_pool(POOL, base=MINT, candles=day_of_candles())
    rig = await open_rig(clock, gecko, sqlite_url(tmp_path))
    try:
        await rig.feed(
            verdict(),
            scored(T + 0.0),  # solo: level 0
            scored(T + 60.0, rescore=True),
            scored(T + 600.0, ("@a",)),  # the same window: not a first score
            scored(T + 700.0, ("@a", "@b"), degraded=True),
            scored(T + 4000.0, ("@a",)),  # a new window
        )
        records = await rig.records()
    finally:
        await rig.close()
    assert [(r.kind, r.level, r.event_ts - T) for r in records] == [
        (EventKind.SCORED, 0, 0),
        (EventKind.SCORED, 1, 4000),
    ]


async def test_queue_length_and_the_oldest_due_delay_are_on_metrics(
    clock: FakeClock, gecko: FakeGeckoTerminal, tmp_path: Path
) -> None:
    gecko.add_pool(POOL, base=MINT, candles=day_of_candles())
    rig = await open_rig(clock, gecko, sqlite_url(tmp_path))
    try:
        await rig.feed(verdict(), level(1, T), alert(T + 4000.0, ()))
        text = rig.metrics.render().decode()
        assert "callsbot_tracker_queue 0.0" in text
        assert "callsbot_tracker_scheduled 8.0" in text
        clock.set(T + 17 * 60 + 95.0)  # the first fetch is 95 s late
        text = rig.metrics.render().decode()
        assert "callsbot_tracker_queue 1.0" in text
        assert "callsbot_tracker_oldest_due_seconds 95.0" in text
        await rig.tracker.run_due()
        text = rig.metrics.render().decode()
        assert "callsbot_tracker_queue 0.0" in text
        assert "callsbot_tracker_scheduled 7.0" in text
        assert "callsbot_tracker_oldest_due_seconds 0.0" in text
    finally:
        await rig.close()
