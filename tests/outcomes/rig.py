"""The outcome tracker on a FakeClock, a SQLite (or PostgreSQL) history and the local
GeckoTerminal: events in, due fetches made by moving the clock, outcomes read back."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import attrs

from callsbot.alert import Alert
from callsbot.clock import FakeClock
from callsbot.config import GeckoTerminalSettings, OutcomesSettings
from callsbot.events import AlertSent, BuyScored, LevelReached, MentionRecorded, VerdictMade
from callsbot.history.sql import SQLHistory
from callsbot.market.prices import GeckoTerminalClient
from callsbot.metrics import Metrics
from callsbot.models import Buy, Candle, MarketSnapshot, MessageRef, Reason, Status, Verdict
from callsbot.outcomes.ledger import OutcomeLedger
from callsbot.outcomes.path import Outcome, compute_outcome
from callsbot.outcomes.report import OutcomeRecord
from callsbot.outcomes.tracker import OutcomeTracker, Replier
from callsbot.scoring import Consensus, ScoreCard, ScoreLine
from callsbot.store.base import Claims
from callsbot.testing.dexscreener import ClockSleep
from callsbot.testing.geckoterminal import FakeGeckoTerminal, aggregate

MINT = "7GCihgDB8fe6KNjn2MYtkzZcRjQy3t9GHdC8uHYmW2hr"
OTHER = "DezXAZ8z7PnrnRJjz3wXBoRgixCaB1yy6tdBvHNMDi3o"
POOL = "Pool1111111111111111111111111111111111111111"
NEW_POOL = "Pool2222222222222222222222222222222222222222"
#: The first event: a whole minute, 23 s past it (events are never on a boundary).
T = 1_700_000_000 // 300 * 300 + 23
WINDOW = 3600
DAY = 86_400
#: When every section-2 fetch of an event at T is over (+ 24 h 02, + a margin).
AFTER = T + DAY + 3 * 3600


def flat(
    ts: int,
    price: float,
    *,
    high: float | None = None,
    low: float | None = None,
    close: float | None = None,
) -> Candle:
    return Candle(ts, price, high or price, low or price, close or price, 100.0)


def day_of_candles(
    *, start: int = T - 3600, minutes: int = 27 * 60, skip: Sequence[int] = ()
) -> list[Candle]:
    """1-minute candles from ``start``: flat 1.0 before T; 1.2 after; a 2.5× wick at T + 40 min,
    a dip to 0.8 at T + 20 min; 6× high closing 5.0 at T + 5 h for 5 min, then 0.4; minutes
    (offsets from ``start``) in ``skip`` have no candle."""
    base = start // 60 * 60
    out = []
    for i in range(minutes):
        ts = base + 60 * i
        if i in skip:
            continue
        after = ts - T
        if after < 60:
            out.append(flat(ts, 1.0))
        elif 40 * 60 <= after < 41 * 60:
            out.append(flat(ts, 1.2, high=2.5))
        elif 20 * 60 <= after < 21 * 60:
            out.append(flat(ts, 1.2, low=0.8))
        elif 5 * 3600 <= after < 5 * 3600 + 60:
            out.append(flat(ts, 1.2, high=6.0, close=5.0))
        elif 5 * 3600 + 60 <= after < 5 * 3600 + 300:
            out.append(flat(ts, 5.0))
        elif after >= 5 * 3600 + 300:
            out.append(flat(ts, 0.4))
        else:
            out.append(flat(ts, 1.2))
    return out


def truth(event_ts: int, candles: Sequence[Candle], *, latency: int = 60) -> Outcome:
    """The outcome computed from every candle at once (what the tracker must arrive at)."""
    return compute_outcome(
        event_ts,
        candles,
        aggregate(candles, 300),
        as_of=event_ts + DAY + 2 * 3600,
        latency=latency,
    )


def same(a: Outcome, b: Outcome) -> bool:
    """Equal in every field but ``as_of`` (how far the candles reached past the horizon)."""
    return attrs.evolve(a, as_of=None) == attrs.evolve(b, as_of=None)


def ref(group: str, ts: int, message_id: int = 1) -> MessageRef:
    return MessageRef("live", -1_000 - len(group), group, message_id, ts, ts + 1.0)


def mention(group: str, ts: int, *, token: str = MINT, count: int = 1) -> MentionRecorded:
    return MentionRecorded(
        at=ts + 1.0,
        ref=ref(group, ts),
        token=token,
        mention_kind="mint",
        chain="solana",
        count=count,
    )


def level(
    n: int, ts: int, *, token: str = MINT, chain: str = "solana", group: str = "@g"
) -> LevelReached:
    return LevelReached(at=ts + 1.0, token=token, chain=chain, level=n, ts=ts, ref=ref(group, ts))


def snapshot(*, token: str = MINT, pool: str = POOL, side: str = "base") -> MarketSnapshot:
    return MarketSnapshot(
        chain="solana",
        token=token,
        pair_address=pool,
        dex="raydium",
        name="Moon",
        symbol="MOON",
        price_usd=1.0,
        liquidity_usd=50_000.0,
        volume_h24=100_000.0,
        volume_h1=5_000.0,
        market_cap=1e6,
        fdv=None,
        pair_created_at=T - 86_400.0,
        price_change_h1=1.0,
        price_change_h24=2.0,
        side=side,
    )


def verdict(*, token: str = MINT, pool: str = POOL, at: float = T - 5.0) -> VerdictMade:
    snap = snapshot(token=token, pool=pool)
    return VerdictMade(at=at, chain="solana", verdict=Verdict(token, Status.VALID, Reason.OK, snap))


def buy(*, token: str = MINT, ts: float = T) -> Buy:
    return Buy(
        tx_hash=f"tx-{token[:6]}-{ts}",
        wallet="W1",
        wallet_label=None,
        token=token,
        symbol="MOON",
        name="Moon",
        usd=2_000.0,
        ts=ts,
        dex="raydium",
        chain="solana",
        first_interaction=False,
    )


def card(groups: tuple[str, ...], *, degraded: bool = False) -> ScoreCard:
    return ScoreCard(
        lines=(ScoreLine(2.0, "tracked wallet bought"),),
        base=2.0,
        consensus=Consensus(len(groups) - 1 if groups else -1, groups, degraded, "consensus"),
        total=4.0,
    )


def scored(
    at: float,
    groups: tuple[str, ...] = (),
    *,
    token: str = MINT,
    rescore: bool = False,
    degraded: bool = False,
) -> BuyScored:
    return BuyScored(
        at=at,
        buy=buy(token=token, ts=at - 30),
        card=card(groups, degraded=degraded),
        outcome="watching",
        rescore=rescore,
    )


def alert(
    at: float,
    groups: tuple[str, ...],
    *,
    token: str = MINT,
    pool: str = POOL,
    message_id: str | None = "1",
    sink: str = "telegram",
) -> AlertSent:
    a = Alert(
        buy(token=token, ts=at - 30), snapshot(token=token, pool=pool), card(groups), at - 0.5
    )
    return AlertSent(at=at, alert=a, deliveries=((sink, message_id), ("jsonl", None)))


@attrs.define
class Rig:
    """One tracker ``process``: its history engine, client and tracker."""

    clock: FakeClock
    gecko: FakeGeckoTerminal
    history: SQLHistory
    client: GeckoTerminalClient
    tracker: OutcomeTracker
    metrics: Metrics

    @property
    def ledger(self) -> OutcomeLedger:
        return self.tracker.ledger

    async def feed(self, *events: object) -> None:
        for event in events:
            await self.tracker.accept(event)  # type: ignore[arg-type]
        await self.tracker.ingest()

    async def advance(self, until: float) -> int:
        """Move the clock from due time to due time up to ``until``, making the fetches."""
        made = 0
        while True:
            await self.tracker.refresh()
            due = self.tracker.next_due()
            if due is None or due > until:
                break
            self.clock.set(max(self.clock.time(), due))
            made += await self.tracker.run_due()
        self.clock.set(max(self.clock.time(), until))
        return made

    async def records(self) -> list[OutcomeRecord]:
        return await self.ledger.records(window=WINDOW, latency=60)

    async def close(self) -> None:
        await self.client.aclose()
        await self.history.aclose()


async def open_rig(
    clock: FakeClock,
    gecko: FakeGeckoTerminal,
    url: str,
    *,
    settings: OutcomesSettings | None = None,
    claims: Claims | None = None,
    repliers: Mapping[str, Replier] | None = None,
    gecko_settings: GeckoTerminalSettings | None = None,
) -> Rig:
    history = SQLHistory(url)
    metrics = Metrics.create()
    sleep = ClockSleep(clock)
    client = GeckoTerminalClient(
        gecko_settings or GeckoTerminalSettings(url=gecko.url), clock=clock, sleep=sleep
    )
    tracker = OutcomeTracker(
        OutcomeLedger(history),
        client,
        settings=settings or OutcomesSettings(catch_up_seconds=0),
        window=WINDOW,
        network="solana",
        clock=clock,
        metrics=metrics,
        sleep=sleep,
        claims=claims,
        repliers=repliers,
    )
    await tracker.start()
    return Rig(clock, gecko, history, client, tracker, metrics)


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'history.sqlite3'}"
