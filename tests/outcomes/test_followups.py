"""Alert follow-ups: a reply to the alert at +1 h and +24 h, never twice per checkpoint."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from callsbot.clock import FakeClock
from callsbot.config import OutcomesSettings, TgBotSettings
from callsbot.errors import SinkError
from callsbot.outcomes.followup import checkpoint_label, followup_text
from callsbot.outcomes.path import Outcome, OutcomeStatus, compute_outcome
from callsbot.sinks.telegram_bot import TelegramBotSink
from callsbot.store.memory import MemoryStore
from callsbot.testing.dexscreener import ClockSleep
from callsbot.testing.geckoterminal import FakeGeckoTerminal
from callsbot.testing.telegram_bot import CHAT_ID, FAKE_TOKEN, FakeTelegramBot
from tests.outcomes.rig import (
    AFTER,
    MINT,
    POOL,
    T,
    alert,
    day_of_candles,
    flat,
    open_rig,
    sqlite_url,
)


@pytest.fixture
async def bot() -> AsyncIterator[FakeTelegramBot]:
    server = await FakeTelegramBot().start()
    yield server
    await server.close()


def test_the_reply_reads_like_the_issue_says() -> None:
    t = 1_700_000_000
    outcome = Outcome(
        event_ts=t,
        latency=60,
        status=OutcomeStatus.TRACKING,
        entry=1.0,
        entry_ts=t + 60,
        p_1h=1.42,
        peak=2.31,
        t_peak=t + 38 * 60,
        max_drawdown=-0.18,
    )
    assert followup_text(outcome, 3600) == "📈 +1h 1.42× · peak 2.31× at 38 min · drawdown −18 %"
    down = Outcome(
        event_ts=t,
        latency=60,
        status=OutcomeStatus.RESOLVED,
        entry=2.0,
        entry_ts=t + 60,
        p_24h=1.0,
        peak=1.1,
        t_peak=t + 3 * 3600 + 300,
        max_drawdown=-0.504,
    )
    assert followup_text(down, 86400) == "📉 +24h 0.50× · peak 1.10× at 3 h 05 · drawdown −50 %"
    quiet = compute_outcome(t, [flat(t - 300, 1.0)], as_of=t + 3600)
    assert followup_text(quiet, 3600) == "💤 +1h no trade since the alert"
    unresolved = Outcome(event_ts=t, latency=60, status=OutcomeStatus.UNRESOLVED, errors=3)
    assert followup_text(unresolved, 3600) is None
    assert [checkpoint_label(s) for s in (300, 900, 3600, 86400)] == ["+5m", "+15m", "+1h", "+24h"]


async def test_follow_ups_reply_to_the_alert_once_per_checkpoint(
    clock: FakeClock, gecko: FakeGeckoTerminal, bot: FakeTelegramBot, tmp_path: Path
) -> None:
    gecko.add_pool(POOL, base=MINT, candles=day_of_candles())
    settings = TgBotSettings(token=FAKE_TOKEN, api_url=bot.url, chat_id=CHAT_ID)
    sink = TelegramBotSink(settings, clock=clock, sleep=ClockSleep(clock))
    store = MemoryStore(window=3600, clock=clock)
    message_id = await sink.send_text("<b>ALERT</b> MOON")  # the alert the scorer sent
    assert message_id == "1"
    url = sqlite_url(tmp_path)
    try:
        rig = await open_rig(clock, gecko, url, claims=store, repliers={"telegram": sink})
        try:
            await rig.feed(alert(T + 0.0, ("@a", "@b"), message_id=message_id))
            await rig.advance(T + 2 * 3600)
            assert [m["visible"] for m in bot.replies_to(1)] == [
                "📈 +1h 1.00× · peak 2.08× at 41 min · drawdown −33 %"
            ]
            await rig.tracker.recompute(1)  # recomputing never repeats a reply
            await rig.advance(AFTER)
        finally:
            await rig.close()
        replies = bot.replies_to(1)
        assert [m["visible"] for m in replies] == [
            "📈 +1h 1.00× · peak 2.08× at 41 min · drawdown −33 %",
            "📉 +24h 0.33× · peak 5.00× at 5 h 00 · drawdown −67 %",
        ]
        assert all(m["chat_id"] == CHAT_ID for m in replies)
        # Another process on the same history and store: every reply is already claimed.
        again = await open_rig(clock, gecko, url, claims=store, repliers={"telegram": sink})
        try:
            await again.tracker.recompute(1)
        finally:
            await again.close()
        # Another history (a restored backup), the same store: the claims still hold.
        other = await open_rig(
            clock, gecko, sqlite_url(tmp_path / "x"), claims=store, repliers={"telegram": sink}
        )
        try:
            await other.feed(alert(T + 0.0, ("@a", "@b"), message_id=message_id))
            await other.advance(AFTER + 600)
        finally:
            await other.close()
    finally:
        await sink.aclose()
    assert len(bot.replies_to(1)) == 2


async def test_a_follow_up_that_fails_is_released_and_counted(
    clock: FakeClock, gecko: FakeGeckoTerminal, tmp_path: Path
) -> None:
    gecko.add_pool(POOL, base=MINT, candles=day_of_candles())

    class Broken:
        name = "telegram"
        calls = 0

        async def reply(self, text: str, *, reply_to: str) -> str | None:
            self.calls += 1
            raise SinkError("telegram: HTTP 400: Bad Request")

    broken = Broken()
    store = MemoryStore(window=3600, clock=clock)
    rig = await open_rig(
        clock,
        gecko,
        sqlite_url(tmp_path),
        claims=store,
        repliers={"telegram": broken},
        settings=OutcomesSettings(catch_up_seconds=0, followups=(3600,)),
    )
    try:
        await rig.feed(alert(T + 0.0, ("@a",)))
        await rig.advance(T + 2 * 3600)
        failed = rig.metrics.registry.get_sample_value(
            "callsbot_tracker_followups_total", {"outcome": "failed"}
        )
    finally:
        await rig.close()
    assert broken.calls == 1
    assert failed == 1
    assert await store.claim("followup:" + MINT + f":{T}:3600", 60)  # released for a retry


async def test_a_late_checkpoint_is_not_replied_to_days_later(
    clock: FakeClock, gecko: FakeGeckoTerminal, bot: FakeTelegramBot, tmp_path: Path
) -> None:
    gecko.add_pool(POOL, base=MINT, candles=day_of_candles())
    settings = TgBotSettings(token=FAKE_TOKEN, api_url=bot.url, chat_id=CHAT_ID)
    sink = TelegramBotSink(settings, clock=clock, sleep=ClockSleep(clock))
    await sink.send_text("ALERT")
    rig = await open_rig(clock, gecko, sqlite_url(tmp_path), repliers={"telegram": sink})
    try:
        clock.set(float(AFTER))  # the alert is only learnt of a day later (a catch-up)
        await rig.feed(alert(T + 0.0, ("@a",)))
        await rig.advance(AFTER + 3600)
        (record,) = await rig.records()
    finally:
        await rig.close()
        await sink.aclose()
    assert record.outcome.status is OutcomeStatus.RESOLVED
    assert bot.replies_to(1) == []
