"""The tracker as a service: wired by roles, run on the injected sleep, stopped after the hub."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from callsbot.clock import FakeClock
from callsbot.config import GeckoTerminalSettings, OutcomesSettings, Settings
from callsbot.dashboard.sources import AlertKey
from callsbot.errors import HistoryUnavailable
from callsbot.history.sql import SQLHistory
from callsbot.market.prices import GeckoTerminalClient
from callsbot.metrics import Metrics
from callsbot.outcomes.ledger import NewEvent, OutcomeLedger, TrackedEvent
from callsbot.outcomes.path import OutcomeStatus
from callsbot.outcomes.tracker import OutcomeTracker
from callsbot.runtime import roles
from callsbot.store.memory import MemoryStore
from callsbot.testing.dexscreener import ClockSleep
from callsbot.testing.geckoterminal import FakeGeckoTerminal
from tests.outcomes.rig import MINT, POOL, T, alert, day_of_candles, level, mention, verdict


def parts_for(settings: Settings, clock: FakeClock) -> roles.Parts:
    store = MemoryStore(window=3600, clock=clock)
    return roles.make_parts(
        settings,
        clock=clock,
        metrics=Metrics.create(),
        store=store,
        market=None,
        sleep=ClockSleep(clock),
    )


async def test_roles_build_it_only_with_a_history_and_the_setting_on(
    clock: FakeClock, tmp_path: Path
) -> None:
    history = SQLHistory(f"sqlite:///{tmp_path / 'h.sqlite3'}")
    try:
        parts = parts_for(Settings(), clock)
        async with roles.open_tracker(parts, history=None) as none:
            assert none is None
        off = Settings(outcomes=OutcomesSettings(tracker=False))
        async with roles.open_tracker(parts_for(off, clock), history=history) as none:
            assert none is None
        async with roles.open_tracker(parts, history=history) as tracker:
            assert tracker is not None
            assert "tracker" in parts.events.subscribers
            assert tracker.drains_events
            assert tracker.health() == []
    finally:
        await history.aclose()


async def test_it_runs_on_the_injected_sleep_and_feeds_the_dashboard(
    clock: FakeClock, gecko: FakeGeckoTerminal, tmp_path: Path
) -> None:
    gecko.add_pool(POOL, base=MINT, candles=day_of_candles())
    settings = Settings(
        geckoterminal=GeckoTerminalSettings(url=gecko.url),
        outcomes=OutcomesSettings(catch_up_seconds=0),
    )
    parts = parts_for(settings, clock)
    history = SQLHistory(f"sqlite:///{tmp_path / 'h.sqlite3'}")
    stop, hub_stop = asyncio.Event(), asyncio.Event()
    try:
        async with roles.open_tracker(parts, history=history) as tracker:
            assert tracker is not None
            sources = roles.outcome_sources(tracker, settings, clock=clock)
            assert sources.outcomes is not None
            assert sources.scoreboard is not None
            key = AlertKey(MINT, T + 4.5)
            assert await sources.outcomes([key]) == {}  # not started: no tables read yet
            hub = asyncio.create_task(parts.events.run(hub_stop))
            task = asyncio.create_task(tracker.run(stop))
            for event in (verdict(), mention("@a", T), level(1, T), alert(T + 5.0, ("@a",))):
                parts.events.publish(event)
            records = []
            for _ in range(100_000):
                await asyncio.sleep(0)
                if not tracker.started:
                    continue
                records = await tracker.ledger.records(window=3600, latency=60)
                if len(records) == 2 and all(r.outcome.decided for r in records):
                    break
            hub_stop.set()
            await hub
            stop.set()
            await task
            cells = await sources.outcomes([key])
            rows = await sources.scoreboard()
    finally:
        await history.aclose()
    assert {r.outcome.status for r in records} == {OutcomeStatus.RESOLVED}
    assert clock.time() >= T + 24 * 3600  # the loop slept from due time to due time
    assert cells[key]["1h"] == pytest.approx(1.0)
    assert cells[key]["24h"] == pytest.approx(0.4 / 1.2)
    assert rows == ()  # no first score was tracked: no scored buckets
    assert len(gecko.requests_of("ohlcv")) == 4


class FlakyLedger(OutcomeLedger):
    """The tracker's tables on a database that is away until ``down`` is cleared."""

    down = True

    async def register(self, event: NewEvent, *, window: int, now: float) -> TrackedEvent | None:
        if self.down:
            raise HistoryUnavailable("history register: OperationalError: disk I/O error")
        return await super().register(event, window=window, now=now)


async def test_events_taken_while_the_history_is_away_are_stored_once_it_is_back(
    clock: FakeClock, gecko: FakeGeckoTerminal, tmp_path: Path
) -> None:
    history = SQLHistory(f"sqlite:///{tmp_path / 'h.sqlite3'}")
    ledger = FlakyLedger(history)
    sleep = ClockSleep(clock)
    client = GeckoTerminalClient(GeckoTerminalSettings(url=gecko.url), clock=clock, sleep=sleep)
    tracker = OutcomeTracker(
        ledger,
        client,
        settings=OutcomesSettings(catch_up_seconds=0),
        window=3600,
        network="solana",
        clock=clock,
        metrics=Metrics.create(),
        sleep=sleep,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(tracker.run(stop))
    try:
        await tracker.accept(level(1, T))
        for _ in range(100_000):
            await asyncio.sleep(0)
            if tracker.health():
                break
        (reason,) = tracker.health()
        assert reason.startswith("outcome tracker: history unavailable for")
        assert reason.endswith(
            "(history register: OperationalError: disk I/O error); 1 events waiting"
        )
        assert tracker.pending == 1
        ledger.down = False
        for _ in range(100_000):
            await asyncio.sleep(0)
            if not tracker.pending and not tracker.health():
                break
        assert tracker.health() == []
        assert tracker.scheduled == 4
    finally:
        stop.set()
        await task
        await client.aclose()
        await history.aclose()
