"""Case 11: what the outcome tracker asks of GeckoTerminal.

- Requests per tracked token over the demo's tokens: the recorded session played through the
  real pieces (``open_demo``), then the tracker run through the day after against the local
  GeckoTerminal serving the recorded answers; OHLCV requests the fake received per token and
  window (a token's events within one store window share four fetches; target ≤ 4) and pool
  lookups per token (target ≤ 1).
- Sustained requests per minute under a burst: 500 level-reached events on 500 tokens at once
  (no sharing: the worst case), the tracker run until every fetch of every event is made, on a
  FakeClock its limiter's waits move; the most requests the fake received in any 60 s (target
  ≤ the configured 20) and in any 9 s (the burst limit, 3), the sustained rate over the whole
  run, and how late the oldest due fetch got (the queue the limiter builds).
"""

from __future__ import annotations

import asyncio
import collections
import io
import tempfile
import time
from pathlib import Path

import attrs
import sqlalchemy as sa

from bench.report import Row, Target
from callsbot.clock import FakeClock
from callsbot.config import GeckoTerminalSettings, OutcomesSettings, Settings
from callsbot.demo import load_session, open_demo
from callsbot.events import LevelReached, VerdictMade
from callsbot.history import schema
from callsbot.history.sql import SQLHistory
from callsbot.market.prices import GeckoTerminalClient
from callsbot.metrics import Metrics
from callsbot.models import Candle, MarketSnapshot, MessageRef, Reason, Status, Verdict
from callsbot.outcomes.ledger import OutcomeLedger
from callsbot.outcomes.tracker import OutcomeTracker
from callsbot.testing.geckoterminal import FakeGeckoTerminal

BURST = 500
T0 = 1_795_003_223


async def demo_requests() -> list[Row]:
    """Requests per tracked token-window and pool lookups per token over the demo's tokens."""
    with tempfile.TemporaryDirectory(prefix="callsbot-bench-tracker-") as tmp:
        async with open_demo(
            Settings(), out=io.StringIO(), quiet=True, history_path=Path(tmp) / "demo.sqlite3"
        ) as demo:
            while await demo.step():
                pass
            await demo.finish()
            await demo.follow_through()
            assert demo.gecko is not None
            assert demo.tracker is not None
            gecko, history = demo.gecko, demo.tracker.ledger.history
            s = schema.outcome_schedules
            async with history.engine.connect() as conn:
                rows = await conn.execute(sa.select(s.c.token, sa.func.count()).group_by(s.c.token))
                windows = {token: int(n) for token, n in rows}
    pairs = load_session()["dexscreener"]["pairs"]
    token_of = {p["pairAddress"]: p["baseToken"]["address"] for p in pairs}
    symbol = {p["baseToken"]["address"]: p["baseToken"]["symbol"] for p in pairs}
    requests = collections.Counter(token_of[r.pool or ""] for r in gecko.requests_of("ohlcv"))
    lookups = collections.Counter(r.token for r in gecko.requests_of("pools"))
    per_window = {t: n / windows[t] for t, n in requests.items()}
    detail = ", ".join(
        f"{symbol[t]} {n}" + (f" in {windows[t]} windows" if windows[t] > 1 else "")
        for t, n in requests.items()
    )
    return [
        Row(
            "11",
            "tracker: GeckoTerminal requests per tracked token and window (demo's tokens)",
            max(per_window.values()),
            "req",
            target=Target("<=", 4, on="value", label="req/token"),
            note=f"{len(requests)} tokens, {sum(windows.values())} token-windows, "
            f"{sum(requests.values())} OHLCV requests: {detail}",
        ),
        Row(
            "11",
            "tracker: pool lookups per tracked token (demo's tokens)",
            float(max(lookups.values(), default=0)),
            "lookups",
            target=Target("<=", 1, on="value", label="lookups/token"),
            note="each pool came with the market snapshot (verdict or alert)",
        ),
    ]


@attrs.define
class WatchingSleep:
    """The tracker's sleep: moves the FakeClock and notes the queue each time it waits."""

    clock: FakeClock
    tracker: OutcomeTracker | None = None
    worst_delay: float = 0.0
    worst_queue: int = 0

    async def __call__(self, seconds: float) -> None:
        if self.tracker is not None:
            self.worst_delay = max(self.worst_delay, self.tracker.oldest_due_delay())
            self.worst_queue = max(self.worst_queue, self.tracker.queue_length)
        self.clock.advance(max(seconds, 0.0))
        await asyncio.sleep(0)


async def burst(events: int = BURST) -> list[Row]:
    """``events`` level events at once; the tracker run until everything is fetched."""
    clock = FakeClock(float(T0))
    sleep = WatchingSleep(clock)
    limits = GeckoTerminalSettings()
    with tempfile.TemporaryDirectory(prefix="callsbot-bench-burst-") as tmp:
        async with FakeGeckoTerminal(clock=clock) as gecko:
            start = T0 // 60 * 60 - 600
            candles = [
                Candle(start + 60 * m, 1.0, 1.1, 0.9, 1.0 + (m % 7) / 100, 50.0)
                for m in range(0, 26 * 60, 3)
            ]
            tokens = [f"Mint{i:040d}" for i in range(events)]
            for i, token in enumerate(tokens):
                gecko.add_pool(f"Pool{i:040d}", base=token, candles=candles)
            history = SQLHistory(f"sqlite:///{Path(tmp) / 'burst.sqlite3'}")
            client = GeckoTerminalClient(
                attrs.evolve(limits, url=gecko.url), clock=clock, sleep=sleep
            )
            tracker = OutcomeTracker(
                OutcomeLedger(history),
                client,
                settings=OutcomesSettings(catch_up_seconds=0, followups=()),
                window=3600,
                network="solana",
                clock=clock,
                metrics=Metrics.create(),
                sleep=sleep,
            )
            sleep.tracker = tracker
            try:
                await tracker.start()
                for i, token in enumerate(tokens):
                    ref = MessageRef("live", -1, "@g", i, T0, T0 + 1.0)
                    pool = f"Pool{i:040d}"
                    await tracker.accept(verdict(token, pool))
                    await tracker.accept(
                        LevelReached(
                            at=T0 + 1.0, token=token, chain="solana", level=1, ts=T0, ref=ref
                        )
                    )
                started = time.perf_counter()
                await tracker.ingest()
                while (due := tracker.next_due()) is not None:
                    clock.set(max(clock.time(), due))
                    await tracker.run_due()
                wall = time.perf_counter() - started
                decided = sum(
                    r.outcome.decided for r in await tracker.ledger.records(window=3600, latency=60)
                )
            finally:
                await client.aclose()
                await history.aclose()
            times = sorted(r.clock_at for r in gecko.requests_of("ohlcv"))
            in_60, in_9 = gecko.max_in_window(60), gecko.max_in_window(9)
    busy_minutes = len({int(t // 60) for t in times})
    note = (
        f"{len(times)} requests for {events} events, {decided} outcomes decided, over "
        f"{(times[-1] - times[0]) / 3600:.1f} simulated hours ({wall:.0f} s of wall time)"
    )
    return [
        Row(
            "11",
            f"tracker, burst of {events} events: most requests in any 60 s",
            float(in_60),
            "req",
            target=Target("<=", limits.requests_per_minute, on="value", label="req/min"),
            note=note,
        ),
        Row(
            "11",
            f"tracker, burst of {events} events: most requests in any 9 s",
            float(in_9),
            "req",
            target=Target("<=", limits.burst, on="value", label="burst"),
        ),
        Row(
            "11",
            f"tracker, burst of {events} events: sustained rate while busy",
            len(times) / max(1, busy_minutes),
            "req/min",
            note=f"{len(times)} requests over the {busy_minutes} minutes that had one",
        ),
        Row(
            "11",
            f"tracker, burst of {events} events: oldest due fetch, worst delay",
            sleep.worst_delay / 60,
            "min",
            note=f"the queue of due fetches peaked at {sleep.worst_queue}; none lost",
        ),
    ]


def verdict(token: str, pool: str) -> VerdictMade:
    """The market verdict that named ``token``'s pool (so no lookup is needed)."""
    snapshot = MarketSnapshot(
        chain="solana", token=token, pair_address=pool, dex="raydium", name="T", symbol="T",
        price_usd=1.0, liquidity_usd=50_000.0, volume_h24=1e5, volume_h1=1e4, market_cap=1e6,
        fdv=None, pair_created_at=None, price_change_h1=None, price_change_h24=None,
    )  # fmt: skip
    return VerdictMade(
        at=T0 - 1.0, chain="solana", verdict=Verdict(token, Status.VALID, Reason.OK, snapshot)
    )


async def case_tracker(_cfg: object) -> list[Row]:
    """Case 11."""
    return [*await demo_requests(), *await burst()]
