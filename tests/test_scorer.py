"""The scorer role end to end: a fake Cielo and a fake Bot API over HTTP, a real CieloFeed,
the real scorer and a real store (memory and redis-server), market data from a fixed table."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest

from callsbot.clock import FakeClock
from callsbot.config import AlertsSettings, CieloSettings, ScoringSettings, Settings, TgBotSettings
from callsbot.errors import StoreError
from callsbot.events import AlertSent, Event, MentionRecorded
from callsbot.metrics import Metrics
from callsbot.models import Buy, MarketSnapshot, MessageRef, Reason, Status, Verdict
from callsbot.net.retry import RetryPolicy
from callsbot.runtime.roles import build_feed, build_scorer, build_sinks, make_parts
from callsbot.scorer import Scorer
from callsbot.sinks.base import AlertSink
from callsbot.sinks.jsonl import JsonlSink
from callsbot.sinks.log import LogSink
from callsbot.sinks.telegram_bot import TelegramBotSink, retry_policy
from callsbot.sources.cielo import CieloAuthError, CieloFeed
from callsbot.store import keys
from callsbot.store.base import SignalStore
from callsbot.store.memory import MemoryStore
from callsbot.testing.cielo import API_KEY, CREDITS, FakeCielo, Reply, sell, swap, transfer
from callsbot.testing.redis_server import RedisServer, free_port
from callsbot.testing.telegram_bot import CHAT_ID, FAKE_TOKEN, FakeTelegramBot, server_error
from tests.conftest import make_redis_store
from tests.tg import mint

NOW = 1_700_000_000.0
TOKEN = "9BB6NFEcjBCtnNLFko2FqVQBq8HHM13kCyYcdQbgpump"
OTHER = "7GCihgDB8fe6KNjn2MYtkzZcRjQy3t9GHdC8uHYmW2hr"
HOSTILE = "<b>x</b>&<script>"


def snapshot(token: str = TOKEN, **kw: Any) -> MarketSnapshot:
    """Market data worth a base score of exactly 6 with a $2,500 buy (docs/scoring.md):
    2 base + 1 size + 1 liquidity + 1 volume + 0 turnover + 1 market cap + 0 age/changes."""
    base: dict[str, Any] = {
        "chain": "solana",
        "token": token,
        "pair_address": "Gz3K8xkFPXg3bsJx4m9V5zJbGpXj5r7Ck3m1b1a2c3d4",
        "dex": "raydium",
        "name": "Moon Dog",
        "symbol": "MDOG",
        "price_usd": 0.00042,
        "liquidity_usd": 50_000.0,
        "volume_h24": 120_000.0,
        "volume_h1": 5_000.0,
        "market_cap": 1_000_000.0,
        "fdv": 1_000_000.0,
        "pair_created_at": NOW - 3 * 86400,
        "price_change_h1": 5.0,
        "price_change_h24": 20.0,
    }
    return MarketSnapshot(**(base | kw))


def valid(snap: MarketSnapshot) -> Verdict:
    return Verdict(snap.token, Status.VALID, Reason.OK, snap)


class FixedMarket:
    """MarketData from a table; tokens not in it have no pairs."""

    def __init__(self, table: Mapping[str, Verdict] | None = None) -> None:
        self.table: dict[str, Verdict] = dict(table or {})
        self.calls: list[tuple[tuple[str, ...], str]] = []
        self.fail = False

    async def verdicts(
        self, tokens: Sequence[str], *, chain: str = "solana"
    ) -> Mapping[str, Verdict]:
        self.calls.append((tuple(tokens), chain))
        if self.fail:
            raise RuntimeError("market down")
        unknown = {t: Verdict(t, Status.INVALID, Reason.NO_PAIRS) for t in tokens}
        return {t: self.table.get(t, unknown[t]) for t in tokens}

    async def resolve_pairs(
        self, pairs: Sequence[str], *, chain: str = "solana"
    ) -> Mapping[str, str | None]:
        return dict.fromkeys(pairs)


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


class CountingStore(MemoryStore):
    """A MemoryStore that remembers how often counts() was asked (round trips)."""

    def __init__(self, *, window: int, clock: FakeClock) -> None:
        super().__init__(window=window, clock=clock)
        self.count_calls: list[tuple[str, ...]] = []

    async def counts(self, tokens: Sequence[str]) -> dict[str, int]:
        self.count_calls.append(tuple(tokens))
        return await super().counts(tokens)


class DownStore(MemoryStore):
    """A memory store whose every read and claim fails, like an unreachable backend."""

    async def groups(self, token: str) -> dict[str, int]:
        raise StoreError("down")

    async def counts(self, tokens: Sequence[str]) -> dict[str, int]:
        raise StoreError("down")

    async def heartbeat_age(self, role: str) -> float | None:
        raise StoreError("down")

    async def claim(self, key: str, ttl: int) -> bool:
        raise StoreError("down")

    async def release(self, key: str) -> None:
        raise StoreError("down")

    async def lease(self, key: str, owner: str, ttl: float) -> bool:
        raise StoreError("down")

    async def unlease(self, key: str, owner: str) -> None:
        raise StoreError("down")

    async def is_claimed(self, key: str) -> bool:
        raise StoreError("down")

    async def put_row(self, table: str, key: str, value: str) -> None:
        raise StoreError("down")

    async def drop_row(self, table: str, key: str) -> None:
        raise StoreError("down")

    async def rows(self, table: str) -> dict[str, str]:
        raise StoreError("down")


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
async def cielo() -> AsyncIterator[FakeCielo]:
    server = await FakeCielo().start()
    yield server
    await server.close()


@pytest.fixture
async def bot() -> AsyncIterator[FakeTelegramBot]:
    server = await FakeTelegramBot().start()
    yield server
    await server.close()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics.create()


@attrs.define
class Rig:
    scorer: Scorer
    feed: CieloFeed
    store: SignalStore
    market: FixedMarket
    sinks: list[AlertSink]
    jsonl: Path

    async def close(self) -> None:
        await self.scorer.aclose()


def make_settings(
    cielo: FakeCielo, bot: FakeTelegramBot, tmp_path: Path, **scoring: Any
) -> Settings:
    return Settings(
        cielo=CieloSettings(url=cielo.url, api_key=API_KEY),
        scoring=ScoringSettings(**scoring),
        tg_bot=TgBotSettings(token=FAKE_TOKEN, api_url=bot.url, chat_id=CHAT_ID),
        alerts=AlertsSettings(jsonl_path=str(tmp_path / "alerts.jsonl")),
    )


def no_wait(bot: TgBotSettings) -> RetryPolicy:
    """The sink's retry policy without backoff waits."""
    return attrs.evolve(retry_policy(bot), wait_initial=0.0, wait_jitter=0.0)


def make_rig(
    cielo: FakeCielo,
    bot: FakeTelegramBot,
    store: SignalStore,
    clock: FakeClock,
    metrics: Metrics,
    tmp_path: Path,
    market: FixedMarket | None = None,
    **scoring: Any,
) -> Rig:
    settings = make_settings(cielo, bot, tmp_path, **scoring)
    sleeps = Sleeps()
    market = market or FixedMarket({TOKEN: valid(snapshot())})
    parts = make_parts(
        settings, clock=clock, metrics=metrics, store=store, market=market, sleep=sleeps
    )
    feed = build_feed(parts)
    sinks: list[AlertSink] = [
        TelegramBotSink(settings.tg_bot, clock=clock, sleep=sleeps, retry=no_wait(settings.tg_bot)),
        JsonlSink(tmp_path / "alerts.jsonl"),
        LogSink(),
    ]
    scorer = build_scorer(parts, feed=feed, sinks=sinks)
    return Rig(scorer, feed, store, market, sinks, tmp_path / "alerts.jsonl")


async def call(store: SignalStore, token: str, *groups: str) -> None:
    for g in groups:
        await store.record(token, g, store.clock.time())


async def beat(store: SignalStore) -> None:
    await store.beat("aggregator", 60)


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(f"callsbot_{name}_total", labels)
    return 0.0 if value is None else value


# -- consensus tiers through the real scorer and store ----------------------------------------


@pytest.mark.parametrize(
    ("n", "points", "alerted"),
    [(0, -1, False), (1, 0, False), (2, 1, True), (3, 2, True), (5, 2, True)],
)
async def test_consensus_tiers(
    cielo: FakeCielo,
    bot: FakeTelegramBot,
    store: SignalStore,
    clock: FakeClock,
    metrics: Metrics,
    tmp_path: Path,
    n: int,
    points: int,
    alerted: bool,
) -> None:
    groups = [f"@group{i}" for i in range(n)]
    await call(store, TOKEN, *groups)
    await beat(store)
    cielo.serve([swap("tx1", TOKEN, usd=2500)])
    rig = make_rig(cielo, bot, store, clock, metrics, tmp_path)
    [result] = await rig.scorer.poll_once()
    await rig.close()
    assert result.card is not None
    assert result.card.base == 6
    assert result.card.consensus.points == points
    assert not result.card.degraded
    assert result.card.total == 6 + points
    assert result.outcome == ("alerted" if alerted else "watching")
    assert len(bot.sent) == (1 if alerted else 0)
    if alerted:
        text = bot.sent[0]["visible"]
        assert f"MULTI-BOT CONSENSUS: +{points} ({n} groups: {', '.join(groups)})" in text
        assert sample(metrics, "alerts", sink="telegram", outcome="sent") == 1
        assert sample(metrics, "alerts", sink="jsonl", outcome="sent") == 1
        assert len(rig.jsonl.read_text().splitlines()) == 1
    else:
        assert rig.scorer.watching == (TOKEN,)


async def test_solo_signal_line_is_shown(
    cielo: FakeCielo,
    bot: FakeTelegramBot,
    store: SignalStore,
    clock: FakeClock,
    metrics: Metrics,
    tmp_path: Path,
) -> None:
    await beat(store)
    cielo.serve([swap("tx1", TOKEN, usd=9000, label="Top Trader")])
    rig = make_rig(cielo, bot, store, clock, metrics, tmp_path)
    [result] = await rig.scorer.poll_once()  # base 6 + 1 (large buy) + 1 (label) - 1 = 7
    await rig.close()
    assert (result.outcome, result.card and result.card.total) == ("alerted", 7)
    assert "⚠️ SOLO SIGNAL: -1 (no other groups)" in bot.sent[0]["visible"]


# -- degraded consensus -----------------------------------------------------------------------


async def test_stale_heartbeat_is_zero_and_degraded(
    cielo: FakeCielo,
    bot: FakeTelegramBot,
    store: SignalStore,
    clock: FakeClock,
    metrics: Metrics,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await beat(store)
    clock.advance(31)  # heartbeat_stale_seconds = 30
    cielo.serve([swap("tx1", TOKEN)])
    rig = make_rig(cielo, bot, store, clock, metrics, tmp_path)
    with caplog.at_level(logging.WARNING, logger="callsbot.scorer"):
        [result] = await rig.scorer.poll_once()
    await rig.close()
    assert result.card is not None
    assert (result.card.consensus.points, result.card.degraded) == (0, True)
    assert result.card.total == 6
    assert "degraded" in caplog.text


async def test_missing_heartbeat_is_zero_and_degraded(
    cielo: FakeCielo,
    bot: FakeTelegramBot,
    store: SignalStore,
    clock: FakeClock,
    metrics: Metrics,
    tmp_path: Path,
) -> None:
    cielo.serve([swap("tx1", TOKEN)])
    rig = make_rig(cielo, bot, store, clock, metrics, tmp_path)
    [result] = await rig.scorer.poll_once()
    await rig.close()
    assert result.card is not None
    assert (result.card.consensus.points, result.card.degraded) == (0, True)
    assert "no heartbeat" in result.card.consensus.reason


async def test_a_window_being_rebuilt_is_named_as_such_not_as_a_store_outage(
    cielo: FakeCielo,
    bot: FakeTelegramBot,
    store: SignalStore,
    clock: FakeClock,
    metrics: Metrics,
    tmp_path: Path,
) -> None:
    await beat(store)
    await store.begin_rebuild("after-a-restart")  # the keeper refills the window from history
    cielo.serve([swap("tx1", TOKEN, usd=9000, label="Whale")])
    rig = make_rig(cielo, bot, store, clock, metrics, tmp_path)
    [result] = await rig.scorer.poll_once()
    await rig.close()
    assert result.card is not None
    assert (result.card.consensus.points, result.card.degraded) == (0, True)
    assert result.card.consensus.reason == "⚠️ CONSENSUS UNKNOWN: 0 (window being rebuilt)"
    assert "CONSENSUS UNKNOWN: 0 (window being rebuilt)" in bot.sent[0]["visible"]


async def test_a_lost_window_is_named_as_such(
    cielo: FakeCielo,
    bot: FakeTelegramBot,
    redis_server: RedisServer,
    redis_url: str,
    clock: FakeClock,
    metrics: Metrics,
    tmp_path: Path,
) -> None:
    store = make_redis_store(redis_url, clock)
    await beat(store)
    redis_server.command("DEL", keys.WINDOW)  # redis-server restarted without its data
    cielo.serve([swap("tx1", TOKEN)])
    rig = make_rig(cielo, bot, store, clock, metrics, tmp_path)
    [result] = await rig.scorer.poll_once()
    await rig.close()
    await store.aclose()
    assert result.card is not None
    assert result.card.consensus.reason == "⚠️ CONSENSUS UNKNOWN: 0 (window lost, not rebuilt yet)"


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_store_down_is_zero_and_degraded_and_still_alerts(
    cielo: FakeCielo,
    bot: FakeTelegramBot,
    clock: FakeClock,
    metrics: Metrics,
    tmp_path: Path,
    backend: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    down: SignalStore
    if backend == "redis":
        down = make_redis_store(f"redis://127.0.0.1:{free_port()}/0", clock)
    else:
        down = DownStore(window=3600, clock=clock)
    cielo.serve([swap("low", OTHER), swap("high", TOKEN, usd=9000, label="Whale")])
    market = FixedMarket({TOKEN: valid(snapshot()), OTHER: valid(snapshot(OTHER))})
    rig = make_rig(cielo, bot, down, clock, metrics, tmp_path, market=market)
    with caplog.at_level(logging.WARNING):
        results = {r.buy.token: r for r in await rig.scorer.poll_once()}
        again = await rig.scorer.poll_once()  # same page: deduplicated in memory
        ticked = await rig.scorer.tick()  # counts() fails: logged, nothing crashes
    await rig.close()
    await down.aclose()
    low, high = results[OTHER], results[TOKEN]
    assert low.card is not None
    assert high.card is not None
    assert (low.card.consensus.points, low.card.degraded, low.card.total) == (0, True, 6)
    assert low.outcome == "watching"
    # 6 + 1 (large buy) + 1 (label) = 8 even without consensus: alerted, marked degraded.
    assert (high.outcome, high.card.total, high.card.degraded) == ("alerted", 8, True)
    assert "(degraded)" in bot.sent[0]["visible"]
    assert "CONSENSUS UNKNOWN: 0 (signal store unreachable)" in bot.sent[0]["visible"]
    assert again == []
    assert ticked == []
    assert sample(metrics, "store_errors", op="consensus") >= 2
    assert sample(metrics, "store_errors", op="counts") == 1
    assert "store unreachable" in caplog.text


# -- late consensus ---------------------------------------------------------------------------


async def test_late_consensus_alerts(
    cielo: FakeCielo,
    bot: FakeTelegramBot,
    store: SignalStore,
    clock: FakeClock,
    metrics: Metrics,
    tmp_path: Path,
) -> None:
    await beat(store)
    await call(store, TOKEN, "@early")
    cielo.serve([swap("tx1", TOKEN)])
    rig = make_rig(cielo, bot, store, clock, metrics, tmp_path)
    [first] = await rig.scorer.poll_once()
    assert (first.outcome, first.card and first.card.total) == ("watching", 6)

    clock.advance(30)
    await beat(store)
    assert await rig.scorer.tick() == []  # nothing changed: nothing re-scored

    clock.advance(30)
    await beat(store)
    await call(store, TOKEN, "@late")
    [late] = await rig.scorer.tick()
    assert (late.outcome, late.card and late.card.total) == ("alerted", 7)
    assert rig.scorer.watching == ()
    [sent] = bot.sent
    assert "MULTI-BOT CONSENSUS: +1 (2 groups: @early, @late)" in sent["visible"]

    clock.advance(30)
    await beat(store)
    await call(store, TOKEN, "@later")
    assert await rig.scorer.tick() == []  # off the watch list once alerted
    await rig.close()


def recorded_event(token: str, group: str, count: int, ts: float) -> MentionRecorded:
    ref = MessageRef("live", -1001, group, 1, int(ts))
    return MentionRecorded(
        at=ts, ref=ref, token=token, mention_kind="mint", chain="solana", count=count
    )


async def test_a_mention_of_a_watched_token_is_re_scored_at_once(
    cielo: FakeCielo,
    bot: FakeTelegramBot,
    store: SignalStore,
    clock: FakeClock,
    metrics: Metrics,
    tmp_path: Path,
) -> None:
    await beat(store)
    await call(store, TOKEN, "@early")
    cielo.serve([swap("tx1", TOKEN)])
    rig = make_rig(cielo, bot, store, clock, metrics, tmp_path)
    [first] = await rig.scorer.poll_once()
    assert first.outcome == "watching"
    # A mention of a token nobody watches wakes nothing.
    await rig.scorer.notice(recorded_event(OTHER, "@x", 1, clock.time()))
    assert await rig.scorer.react() == []

    await call(store, TOKEN, "@late")
    await rig.scorer.notice(recorded_event(TOKEN, "@late", 2, clock.time()))
    [late] = await rig.scorer.react()  # no tick, no clock movement
    assert (late.outcome, late.card and late.card.total) == ("alerted", 7)
    assert sample(metrics, "scorer_reactions") == 1
    await rig.close()


async def test_the_loop_wakes_for_a_deciding_mention_without_waiting_for_its_tick(
    cielo: FakeCielo,
    bot: FakeTelegramBot,
    store: SignalStore,
    clock: FakeClock,
    metrics: Metrics,
    tmp_path: Path,
) -> None:
    await beat(store)
    await call(store, TOKEN, "@early")
    cielo.serve([swap("tx1", TOKEN)])
    rig = make_rig(cielo, bot, store, clock, metrics, tmp_path)
    [first] = await rig.scorer.poll_once()
    assert first.outcome == "watching"
    never, parked = asyncio.Event(), asyncio.Event()

    async def sleep_until_woken(seconds: float) -> None:
        parked.set()
        await never.wait()  # the clock never moves: only the mention can wake the loop

    rig.scorer._sleep = sleep_until_woken
    loop = asyncio.create_task(rig.scorer.loop())
    await parked.wait()  # first poll, tick and beat done; the next tick is 30 s away
    assert bot.sent == []
    await call(store, TOKEN, "@late")
    await rig.scorer.notice(recorded_event(TOKEN, "@late", 2, clock.time()))
    async with asyncio.timeout(10):
        while not bot.sent:
            assert not loop.done()
            await asyncio.wait({loop}, timeout=0.05)  # the Bot API fake answers over real HTTP
    loop.cancel()
    await asyncio.gather(loop, return_exceptions=True)
    [sent] = bot.sent
    assert "MULTI-BOT CONSENSUS: +1 (2 groups: @early, @late)" in sent["visible"]
    await rig.close()


async def test_watch_list_is_read_in_one_round_trip(
    cielo: FakeCielo,
    bot: FakeTelegramBot,
    clock: FakeClock,
    metrics: Metrics,
    tmp_path: Path,
) -> None:
    store = CountingStore(window=3600, clock=clock)
    await beat(store)
    tokens = [mint(i) for i in range(12)]
    market = FixedMarket({t: valid(snapshot(t)) for t in tokens})
    cielo.serve([swap(f"tx{i}", t) for i, t in enumerate(tokens)])
    rig = make_rig(cielo, bot, store, clock, metrics, tmp_path, market=market)
    await rig.scorer.poll_once()
    assert len(rig.scorer.watching) == 12
    await rig.scorer.tick()
    await rig.close()
    assert len(store.count_calls) == 1
    assert sorted(store.count_calls[0]) == sorted(tokens)


async def test_watch_entry_expires_after_one_window(
    cielo: FakeCielo,
    bot: FakeTelegramBot,
    store: SignalStore,
    clock: FakeClock,
    metrics: Metrics,
    tmp_path: Path,
) -> None:
    await beat(store)
    cielo.serve([swap("tx1", TOKEN)])
    rig = make_rig(cielo, bot, store, clock, metrics, tmp_path)
    await rig.scorer.poll_once()
    clock.advance(3599)
    await rig.scorer.tick()
    assert rig.scorer.watching == (TOKEN,)
    clock.advance(1)
    await rig.scorer.tick()
    await rig.close()
    assert not rig.scorer.watching


async def test_recovered_aggregator_rescores_degraded_tokens(
    cielo: FakeCielo,
    bot: FakeTelegramBot,
    store: SignalStore,
    clock: FakeClock,
    metrics: Metrics,
    tmp_path: Path,
) -> None:
    await call(store, TOKEN, "@a", "@b")  # known groups, but no aggregator heartbeat yet
    cielo.serve([swap("tx1", TOKEN)])
    rig = make_rig(cielo, bot, store, clock, metrics, tmp_path)
    [first] = await rig.scorer.poll_once()
    assert first.card is not None
    assert first.card.degraded
    await beat(store)
    [again] = await rig.scorer.tick()
    await rig.close()
    assert (again.outcome, again.card and again.card.total) == ("alerted", 7)


# -- alert once -------------------------------------------------------------------------------


async def test_two_scorers_over_one_redis_send_one_alert(
    bot: FakeTelegramBot,
    redis_url: str,
    clock: FakeClock,
    metrics: Metrics,
    tmp_path: Path,
) -> None:
    feeds = [await FakeCielo().start(), await FakeCielo().start()]
    feeds[0].serve([swap("tx-a", TOKEN), swap("shared", OTHER)])
    feeds[1].serve([swap("tx-b", TOKEN), swap("shared", OTHER)])
    stores = [make_redis_store(redis_url, clock), make_redis_store(redis_url, clock)]
    await beat(stores[0])
    await call(stores[0], TOKEN, "@a", "@b", "@c")
    market = FixedMarket({TOKEN: valid(snapshot()), OTHER: valid(snapshot(OTHER))})
    rigs = [
        make_rig(f, bot, s, clock, metrics, tmp_path / str(i), market=market)
        for i, (f, s) in enumerate(zip(feeds, stores, strict=True))
    ]
    for i in range(2):
        (tmp_path / str(i)).mkdir()
    results = await asyncio.gather(*(r.scorer.poll_once() for r in rigs))
    # A scorer that found the other one sending keeps the token and asks again next tick: by
    # then the alert went out, and the cooldown says so.
    ticks = await asyncio.gather(*(r.scorer.tick() for r in rigs))
    for r in rigs:
        await r.close()
    for s in stores:
        await s.aclose()
    for f in feeds:
        await f.close()
    outcomes = sorted(x.outcome for batch in results for x in batch if x.buy.token == TOKEN)
    if outcomes == ["alert_busy", "alerted"]:
        assert [x.outcome for batch in ticks for x in batch] == ["cooldown"]
    else:  # the first had finished sending before the second asked
        assert outcomes == ["alerted", "cooldown"]
    assert len([x for batch in results for x in batch if x.buy.token == OTHER]) == 1
    assert len([m for m in bot.sent if TOKEN in m["visible"]]) == 1
    assert sample(metrics, "alerts", sink="all", outcome="cooldown") == 1


async def test_alerted_token_is_not_alerted_again_within_cooldown(
    cielo: FakeCielo,
    bot: FakeTelegramBot,
    store: SignalStore,
    clock: FakeClock,
    metrics: Metrics,
    tmp_path: Path,
) -> None:
    await beat(store)
    await call(store, TOKEN, "@a", "@b", "@c")
    cielo.serve([swap("tx1", TOKEN)])
    rig = make_rig(cielo, bot, store, clock, metrics, tmp_path)
    await rig.scorer.poll_once()
    cielo.serve([swap("tx2", TOKEN), swap("tx1", TOKEN)])
    [second] = await rig.scorer.poll_once()
    await rig.close()
    assert second.outcome == "cooldown"
    assert len(bot.sent) == 1


async def test_every_sink_failing_releases_the_claim_for_a_retry(
    cielo: FakeCielo,
    bot: FakeTelegramBot,
    store: SignalStore,
    clock: FakeClock,
    metrics: Metrics,
    tmp_path: Path,
) -> None:
    await beat(store)
    await call(store, TOKEN, "@a", "@b", "@c")
    cielo.serve([swap("tx1", TOKEN)])
    settings = make_settings(cielo, bot, tmp_path)
    feed = CieloFeed(settings.cielo, store, clock=clock, metrics=metrics, sleep=Sleeps())
    telegram = TelegramBotSink(
        settings.tg_bot, clock=clock, sleep=Sleeps(), retry=no_wait(settings.tg_bot)
    )
    scorer = Scorer(
        settings,
        store,
        FixedMarket({TOKEN: valid(snapshot())}),
        feed,
        [telegram],
        clock=clock,
        metrics=metrics,
        sleep=Sleeps(),
    )
    bot.script = [server_error()] * 3
    [failed] = await scorer.poll_once()
    assert failed.outcome == "alert_failed"
    assert sample(metrics, "alerts", sink="telegram", outcome="failed") == 1
    assert scorer.watching == (TOKEN,)
    assert await store.claim(f"alert:{TOKEN}", 1) is True  # released...
    await store.release(f"alert:{TOKEN}")  # ...(give it back for the scorer)
    [retried] = await scorer.tick()
    await scorer.aclose()
    assert retried.outcome == "alerted"
    assert len(bot.sent) == 1


async def test_one_failing_sink_does_not_stop_the_others(
    cielo: FakeCielo,
    bot: FakeTelegramBot,
    store: SignalStore,
    clock: FakeClock,
    metrics: Metrics,
    tmp_path: Path,
) -> None:
    await beat(store)
    await call(store, TOKEN, "@a", "@b", "@c")
    cielo.serve([swap("tx1", TOKEN)])
    rig = make_rig(cielo, bot, store, clock, metrics, tmp_path / "nope")  # JSONL dir missing
    [result] = await rig.scorer.poll_once()
    await rig.close()
    assert result.outcome == "alerted"
    assert len(bot.sent) == 1
    assert sample(metrics, "alerts", sink="jsonl", outcome="failed") == 1
    assert await store.claim(f"alert:{TOKEN}", 60) is False  # the claim was kept


async def test_hostile_token_name_is_escaped_end_to_end(
    cielo: FakeCielo,
    bot: FakeTelegramBot,
    store: SignalStore,
    clock: FakeClock,
    metrics: Metrics,
    tmp_path: Path,
) -> None:
    await beat(store)
    await call(store, TOKEN, "@a", "@b", "@c")
    cielo.serve([swap("tx1", TOKEN, name=HOSTILE, symbol="<i>&")])
    market = FixedMarket({TOKEN: valid(snapshot(name=HOSTILE, symbol="<i>&"))})
    rig = make_rig(cielo, bot, store, clock, metrics, tmp_path, market=market)
    [result] = await rig.scorer.poll_once()
    await rig.close()
    assert result.outcome == "alerted"
    [sent] = bot.sent  # the fake rejects HTML Telegram would reject
    assert "&lt;b&gt;x&lt;/b&gt;&amp;&lt;script&gt;" in sent["text"]
    assert "<script>" not in sent["text"]
    assert f"{HOSTILE} ($<i>&)" in sent["visible"]
    assert json.loads(rig.jsonl.read_text())["name"] == HOSTILE


# -- feed and market edge cases ---------------------------------------------------------------


async def test_sells_transfers_and_unknown_tokens(
    cielo: FakeCielo,
    bot: FakeTelegramBot,
    store: SignalStore,
    clock: FakeClock,
    metrics: Metrics,
    tmp_path: Path,
) -> None:
    await beat(store)
    cielo.serve([sell("s1", TOKEN), transfer("t1", TOKEN), swap("b1", OTHER)])
    rig = make_rig(cielo, bot, store, clock, metrics, tmp_path)  # OTHER has no pairs
    results = await rig.scorer.poll_once()
    await rig.close()
    assert [(r.buy.token, r.outcome) for r in results] == [(OTHER, "market_invalid")]
    assert sample(metrics, "feed_items", outcome="market_invalid") == 1
    assert sample(metrics, "feed_items", outcome="sell") == 1
    assert sample(metrics, "feed_items", outcome="transfer") == 1


async def test_unknown_market_data_is_retried_later(
    cielo: FakeCielo,
    bot: FakeTelegramBot,
    store: SignalStore,
    clock: FakeClock,
    metrics: Metrics,
    tmp_path: Path,
) -> None:
    await beat(store)
    await call(store, TOKEN, "@a", "@b", "@c")
    market = FixedMarket({TOKEN: Verdict(TOKEN, Status.UNKNOWN, Reason.UNKNOWN_NOW)})
    cielo.serve([swap("tx1", TOKEN)])
    rig = make_rig(cielo, bot, store, clock, metrics, tmp_path, market=market)
    [first] = await rig.scorer.poll_once()
    assert first.outcome == "market_unknown"
    assert rig.scorer.pending == (TOKEN,)
    market.fail = True  # an exception from market data is "unknown" too
    [still] = await rig.scorer.tick()
    assert still.outcome == "market_unknown"
    market.fail = False
    market.table[TOKEN] = valid(snapshot())
    [scored] = await rig.scorer.tick()
    await rig.close()
    assert scored.outcome == "alerted"
    assert not rig.scorer.pending
    assert sample(metrics, "feed_items", outcome="market_unknown") == 1


async def test_pending_buys_are_dropped_after_their_max_age(
    cielo: FakeCielo,
    bot: FakeTelegramBot,
    store: SignalStore,
    clock: FakeClock,
    metrics: Metrics,
    tmp_path: Path,
) -> None:
    market = FixedMarket({TOKEN: Verdict(TOKEN, Status.UNKNOWN, Reason.UNKNOWN_NOW)})
    cielo.serve([swap("tx1", TOKEN)])
    rig = make_rig(
        cielo, bot, store, clock, metrics, tmp_path, market=market, pending_max_age_seconds=60
    )
    await rig.scorer.poll_once()
    clock.advance(60)
    assert await rig.scorer.tick() == []
    await rig.close()
    assert rig.scorer.pending == ()
    assert sample(metrics, "feed_items", outcome="market_unknown_expired") == 1


async def test_one_score_per_token_per_poll_using_the_largest_buy(
    cielo: FakeCielo,
    bot: FakeTelegramBot,
    store: SignalStore,
    clock: FakeClock,
    metrics: Metrics,
    tmp_path: Path,
) -> None:
    await beat(store)
    cielo.serve([swap("small", TOKEN, usd=100), swap("big", TOKEN, usd=20_000)])
    rig = make_rig(cielo, bot, store, clock, metrics, tmp_path)
    [result] = await rig.scorer.poll_once()
    await rig.close()
    assert result.buy.tx_hash == "big"


# -- the loop ---------------------------------------------------------------------------------


class Stop(Exception):
    pass


class ClockSleep:
    """Moves the fake clock instead of waiting (the aggregator keeps beating meanwhile);
    stops the loop after ``limit`` sleeps."""

    def __init__(self, clock: FakeClock, store: SignalStore, limit: int) -> None:
        self.clock = clock
        self.store = store
        self.limit = limit
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        if len(self.calls) >= self.limit:
            raise Stop
        self.clock.advance(seconds)
        await beat(self.store)


async def test_run_survives_bad_pages_and_honours_retry_after(
    cielo: FakeCielo,
    bot: FakeTelegramBot,
    store: SignalStore,
    clock: FakeClock,
    metrics: Metrics,
    tmp_path: Path,
) -> None:
    await beat(store)
    await call(store, TOKEN, "@a", "@b", "@c")
    cielo.script = [
        Reply(500, "x"),
        Reply(500, "x"),
        Reply(500, "x"),  # one poll's three attempts
        Reply(200, b'{"status":"ok","data":{"items":[{'),  # truncated
        Reply(429, CREDITS, {"Retry-After": "120"}),
        Reply(200, {"status": "pending", "message": "indexing"}),
    ]
    cielo.serve([swap("tx1", TOKEN)])
    cielo.clock = clock
    rig = make_rig(cielo, bot, store, clock, metrics, tmp_path, watch_tick_seconds=30)
    sleep = ClockSleep(clock, store, limit=80)
    rig.scorer._sleep = sleep
    with pytest.raises(Stop):
        await rig.scorer.loop()
    await rig.close()
    assert len(bot.sent) == 1
    for outcome in ("error", "malformed", "rate_limited", "pending", "ok"):
        assert sample(metrics, "feed_polls", outcome=outcome) >= 1, outcome
    assert rig.scorer.last_poll_at is not None
    at = [r.at for r in cielo.requests]
    assert at[0] == at[1] == at[2]  # one poll's retries; the injected sleep returns at once
    assert [(t or 0) - NOW for t in at[3:7]] == [30, 60, 180, 210]  # 429 → Retry-After 120 honoured
    assert set(sleep.calls) == {5.0}  # store.heartbeat_interval: the scorer beats that often
    age = await store.heartbeat_age("scorer")
    assert age is not None
    assert age <= 5.0


async def test_run_stops_on_a_rejected_key(
    cielo: FakeCielo,
    bot: FakeTelegramBot,
    store: SignalStore,
    clock: FakeClock,
    metrics: Metrics,
    tmp_path: Path,
) -> None:
    cielo.script = [Reply(401, {"status": "error", "message": "Unauthorized"})]
    rig = make_rig(cielo, bot, store, clock, metrics, tmp_path)
    with pytest.raises(CieloAuthError, match="CALLSBOT_CIELO_API_KEY"):
        await rig.scorer.loop()
    await rig.close()


def test_build_sinks(tmp_path: Path, clock: FakeClock) -> None:
    base = Settings(alerts=AlertsSettings(jsonl_path=str(tmp_path / "a.jsonl"), log=True))
    assert [s.name for s in build_sinks(base, clock=clock)] == ["log", "jsonl"]
    with_bot = attrs.evolve(base, tg_bot=TgBotSettings(token=FAKE_TOKEN, chat_id=CHAT_ID))
    assert [s.name for s in build_sinks(with_bot, clock=clock)] == ["log", "jsonl", "telegram"]
    none = Settings(alerts=AlertsSettings(jsonl_path=None, log=False))
    assert build_sinks(none, clock=clock) == []


class FlakyStore(MemoryStore):
    """A memory store that can be switched off and on, like a Redis that restarts."""

    down = False

    def _check(self) -> None:
        if self.down:
            raise StoreError("down")

    async def claim(self, key: str, ttl: int) -> bool:
        self._check()
        return await super().claim(key, ttl)

    async def groups(self, token: str) -> dict[str, int]:
        self._check()
        return await super().groups(token)

    async def lease(self, key: str, owner: str, ttl: float) -> bool:
        self._check()
        return await super().lease(key, owner, ttl)

    async def unlease(self, key: str, owner: str) -> None:
        self._check()
        await super().unlease(key, owner)

    async def is_claimed(self, key: str) -> bool:
        self._check()
        return await super().is_claimed(key)

    async def put_row(self, table: str, key: str, value: str) -> None:
        self._check()
        await super().put_row(table, key, value)

    async def drop_row(self, table: str, key: str) -> None:
        self._check()
        await super().drop_row(table, key)

    async def rows(self, table: str) -> dict[str, str]:
        self._check()
        return await super().rows(table)


async def test_an_alert_sent_while_the_store_was_away_is_not_repeated_when_it_is_back(
    cielo: FakeCielo, bot: FakeTelegramBot, clock: FakeClock, metrics: Metrics, tmp_path: Path
) -> None:
    store = FlakyStore(window=3600, clock=clock)
    rig = make_rig(cielo, bot, store, clock, metrics, tmp_path)
    store.down = True
    cielo.serve([swap("during", TOKEN, usd=9000, label="Whale")])
    [during] = await rig.scorer.poll_once()
    store.down = False
    await beat(store)
    clock.advance(60)
    cielo.serve([swap("after", TOKEN, usd=9000, label="Whale"), swap("during", TOKEN)])
    [after] = await rig.scorer.poll_once()
    await rig.close()
    assert (during.outcome, after.outcome) == ("alerted", "cooldown")
    assert len(bot.sent) == 1


async def test_the_alert_event_names_the_telegram_message_follow_ups_reply_to(
    cielo: FakeCielo, bot: FakeTelegramBot, clock: FakeClock, metrics: Metrics, tmp_path: Path
) -> None:
    store = MemoryStore(window=3600, clock=clock)
    await call(store, TOKEN, "@a", "@b", "@c")
    await beat(store)
    cielo.serve([swap("tx1", TOKEN, usd=2500)])
    settings = make_settings(cielo, bot, tmp_path)
    parts = make_parts(
        settings,
        clock=clock,
        metrics=metrics,
        store=store,
        market=FixedMarket({TOKEN: valid(snapshot())}),
    )
    sinks: list[AlertSink] = [
        JsonlSink(tmp_path / "alerts.jsonl"),
        TelegramBotSink(
            settings.tg_bot, clock=clock, sleep=Sleeps(), retry=no_wait(settings.tg_bot)
        ),
    ]
    seen: list[AlertSent] = []

    async def keep(event: Event) -> None:
        assert isinstance(event, AlertSent)
        seen.append(event)

    parts.events.subscribe("test", keep, kinds=[AlertSent])
    scorer = build_scorer(parts, feed=build_feed(parts), sinks=sinks)
    try:
        [result] = await scorer.poll_once()
        await parts.events.drain()
    finally:
        await scorer.aclose()
    assert result.outcome == "alerted"
    (event,) = seen
    assert event.deliveries == (("jsonl", None), ("telegram", "1"))


async def test_one_process_scoring_a_token_twice_at_once_sends_it_once(
    cielo: FakeCielo, bot: FakeTelegramBot, clock: FakeClock, metrics: Metrics, tmp_path: Path
) -> None:
    """The WebSocket path scores buys concurrently with the loop: the process's own lease must
    not let it in twice."""
    store = MemoryStore(window=3600, clock=clock)
    await beat(store)
    await call(store, TOKEN, "@a", "@b", "@c")
    rig = make_rig(cielo, bot, store, clock, metrics, tmp_path)
    first, second = a_buy(clock, tx="tx1"), a_buy(clock, tx="tx2")
    results = await asyncio.gather(
        rig.scorer.handle_buys([first], path="websocket"),
        rig.scorer.handle_buys([second], path="websocket"),
    )
    await rig.close()
    assert sorted(r.outcome for batch in results for r in batch) in (
        ["alert_busy", "alerted"],
        ["alerted", "cooldown"],
    )
    assert len([m for m in bot.sent if TOKEN in m["visible"]]) == 1


def a_buy(clock: FakeClock, *, tx: str = "tx0", usd: float = 2500.0) -> Buy:
    """A buy of TOKEN now (what the feed hands the scorer)."""
    return Buy(
        tx_hash=tx,
        wallet="w",
        wallet_label=None,
        token=TOKEN,
        symbol="MDOG",
        name="Moon Dog",
        usd=usd,
        ts=clock.time(),
        dex="",
        chain="solana",
        first_interaction=False,
    )
