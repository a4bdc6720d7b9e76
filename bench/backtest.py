"""Case 12: a recorded day replayed through the real roles, and a 24-configuration grid.

The day is synthetic but in the real formats: a ``history export`` JSONL of 50,000 recorded
mentions from 40 call groups (CA lines, DexScreener pair links, pump.fun and GMGN links; a
token's popularity heavy-tailed), the market snapshots the live validator would have observed
(one per token per 10-minute cache lifetime while it is talked about), 2,000 scored buys, and
cached GeckoTerminal OHLCV bodies (1-minute candles to 4 h, 5-minute candles to 24 h) for every
bought token, as the tracker's schedule fetches them.

Figures: the load time of the recording; one configuration's replay (target ≤ 10 s); a
24-configuration grid (window × tiers × alert threshold) run over both cores: its wall time
beside the sum of the runs' own times (ratio ≤ 0.65 means both cores worked).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.messages import random_address
from bench.report import Row, Target
from callsbot.config import Settings
from callsbot.events import BuyScored, Event, MentionRecorded, VerdictMade
from callsbot.history import recording
from callsbot.market.prices import Timeframe
from callsbot.models import Buy, Candle, MarketSnapshot, MessageRef, Reason, Status, Verdict
from callsbot.replay.backtest import run_all, run_configuration
from callsbot.replay.candles import envelope
from callsbot.replay.exits import ExitRule
from callsbot.replay.grid import configurations
from callsbot.replay.load import load_tape
from callsbot.scoring import Consensus, ScoreCard, ScoreLine
from callsbot.testing.geckoterminal import ohlcv_body

DAY = 86400
#: A UTC midnight: the synthetic day starts here.
START = 20_834 * DAY
GROUPS = 40
TOKENS = 2_500
CACHE_TTL = 600.0
WSOL = "So11111111111111111111111111111111111111112"

#: 3 windows × 2 tier tables × 4 thresholds: 24 configurations, none of them the deployed one.
GRID = (
    "window=1800,3600,7200",
    "tiers=3:2/2:1/1:0/0:-1,2:2/1:0/0:-1",
    "threshold=6,6.5,7.5,8",
)


def _snapshot(rng: random.Random, token: str, pair: str, at: float) -> MarketSnapshot:
    liquidity = math.exp(rng.uniform(math.log(12_000), math.log(400_000)))
    return MarketSnapshot(
        chain="solana",
        token=token,
        pair_address=pair,
        dex=rng.choice(("raydium", "pumpswap", "meteora")),
        name=f"Token {token[:4]}",
        symbol=token[:5].upper(),
        price_usd=rng.uniform(1e-5, 1e-2),
        liquidity_usd=liquidity,
        volume_h24=liquidity * rng.uniform(0.3, 6.0),
        volume_h1=liquidity * rng.uniform(0.01, 0.5),
        market_cap=liquidity * rng.uniform(5, 40),
        fdv=None,
        pair_created_at=at - rng.uniform(600, 3 * DAY),
        price_change_h1=rng.uniform(-40, 120),
        price_change_h24=rng.uniform(-60, 400),
        buys_h24=rng.randint(50, 5000),
        sells_h24=rng.randint(50, 5000),
    )


def _text(rng: random.Random, token: str, pair: str) -> tuple[str, str, str | None]:
    roll = rng.random()
    if roll < 0.1:
        return f"📈 chart https://dexscreener.com/solana/{pair}", "pair", pair
    if roll < 0.3:
        return f"aping this https://pump.fun/coin/{token} 🚀", "mint", None
    if roll < 0.4:
        return f"https://gmgn.ai/sol/token/{token}", "mint", None
    return f"🔥 NEW CALL\nCA: {token}\nDYOR", "mint", None


def _walk(
    rng: random.Random, t0: int, p: float, n: int, seconds: int, drift: float
) -> list[Candle]:
    """``n`` candles of ``seconds`` from ``t0``: a random walk with a pump now and then."""
    out: list[Candle] = []
    scale = math.sqrt(seconds / 60)
    for i in range(n):
        step = drift * scale + (rng.random() - 0.5) * 0.1 * scale
        if rng.random() < 0.002 * scale:
            step += 0.3 + 0.9 * rng.random()
        close = max(p * math.exp(step), 1e-12)
        wick = 1.0 + 0.02 * rng.random()
        out.append(
            Candle(
                t0 + seconds * i,
                p,
                max(p, close) * wick,
                min(p, close) / wick,
                close,
                50 + 5000 * rng.random(),
            )
        )
        p = close
    return out


def _path(rng: random.Random, t0: int, price: float) -> tuple[list[Candle], list[Candle]]:
    """What the tracker's fetches hold: 1-minute candles from ``t0`` to 4 h 05, 5-minute
    candles from 3 h 35 to 24 h 10 (so that some calls win and some hit the stop)."""
    drift = rng.choice((-0.002, -0.001, 0.0, 0.001, 0.004))
    minute = _walk(rng, t0, price, 4 * 60 + 5, 60, drift)
    at = next(c for c in minute if c.ts >= t0 + 3 * 3600 + 35 * 60)
    five = _walk(rng, at.ts, at.open, (24 * 3600 + 600 - (at.ts - t0)) // 300, 300, drift)
    return minute, five


def synthetic_day(
    seed: int = 12, *, messages: int = 50_000, buys: int = 2_000
) -> tuple[list[Event], list[dict[str, Any]]]:
    """The events of a recorded day (time order) and the OHLCV cache envelopes."""
    rng = random.Random(seed)
    groups = [(f"@call_group_{i:02d}", -(10**12) - 1_500_000_000 - i) for i in range(GROUPS)]
    tokens = [random_address(rng) for _ in range(TOKENS)]
    pairs = {t: random_address(rng) for t in tokens}
    weights = list(itertools.accumulate(1.0 / (i + 1) ** 0.9 for i in range(TOKENS)))
    snaps: dict[str, MarketSnapshot] = {}
    observed: dict[str, float] = {}
    events: list[Event] = []

    def observe(token: str, at: float) -> None:
        if at - observed.get(token, -math.inf) < CACHE_TTL:
            return
        observed[token] = at
        if token not in snaps:
            snaps[token] = _snapshot(rng, token, pairs[token], at)
        verdict = Verdict(token, Status.VALID, Reason.OK, snaps[token], "")
        events.append(VerdictMade(at=at, chain="solana", verdict=verdict))

    next_id = dict.fromkeys((g for g, _ in groups), 1000)
    times = sorted(rng.uniform(START, START + DAY) for _ in range(messages))
    called = rng.choices(tokens, cum_weights=weights, k=messages)
    for ts, token in zip(times, called, strict=True):
        group, chat_id = rng.choice(groups)
        text, kind, pair = _text(rng, token, pairs[token])
        observe(token, ts + 0.2)
        next_id[group] += 1
        ref = MessageRef("live", chat_id, group, next_id[group], int(ts), ts + 0.05)
        events.append(
            MentionRecorded(
                at=ts + 0.3,
                ref=ref,
                token=token,
                mention_kind=kind,
                chain="solana",
                count=1,
                pair=pair,
                text=text,
            )
        )
    fresh = [random_address(rng) for _ in range(buys // 4)]
    for t in fresh:
        pairs[t] = random_address(rng)
    bought: dict[str, int] = {}
    card = ScoreCard((ScoreLine(2.0, "smart-money buy"),), 2.0, Consensus(0, (), False, ""), 2.0)
    for i, ts in enumerate(sorted(rng.uniform(START, START + DAY) for _ in range(buys))):
        token = (
            rng.choices(tokens[:600], cum_weights=weights[:600])[0] if i % 3 else rng.choice(fresh)
        )
        observe(token, ts + 0.2)
        buy = Buy(
            tx_hash=random_address(rng) + random_address(rng),
            wallet=random_address(rng),
            wallet_label=rng.choice((None, None, "Smart Money #7", "Whale")),
            token=token,
            symbol=token[:5].upper(),
            name=f"Token {token[:4]}",
            usd=rng.uniform(200, 12_000),
            ts=ts,
            dex="raydium",
            chain="solana",
            first_interaction=rng.random() < 0.5,
        )
        events.append(BuyScored(at=ts + 0.4, buy=buy, card=card, outcome="watching"))
        bought.setdefault(token, int(ts))
    events.sort(key=lambda e: e.at)
    cache: list[dict[str, Any]] = []
    for token, t0 in bought.items():
        minute, five = _path(rng, t0 - 180, snaps[token].price_usd or 1e-4)
        fetched = float(t0 + DAY + 420)
        for tf, rows in ((Timeframe.MINUTE, minute), (Timeframe.FIVE_MINUTES, five)):
            body = ohlcv_body(list(reversed(rows)), base=token, quote=WSOL)
            cache.append(envelope(pairs[token], token, tf, body, fetched_at=fetched))
    return events, cache


def write_day(directory: Path, seed: int = 12) -> tuple[Path, Path]:
    """Write the day's recording and OHLCV cache into ``directory``; their paths."""
    events, cache = synthetic_day(seed)
    day = directory / "day.jsonl"
    with day.open("w", encoding="utf-8") as fh:
        recording.write(events, fh)
    candles = directory / "ohlcv.jsonl"
    with candles.open("w", encoding="utf-8") as fh:
        for entry in cache:
            fh.write(json.dumps(entry, separators=(",", ":")) + "\n")
    return day, candles


async def case_backtest(_cfg: object = None) -> list[Row]:
    """The case's rows (see the module); the replays run off the bench's event loop."""
    return await asyncio.to_thread(_case)


def _case() -> list[Row]:
    rule = ExitRule()
    with tempfile.TemporaryDirectory(prefix="callsbot-bench-backtest-") as tmp:
        day, candles = write_day(Path(tmp))
        started = time.perf_counter()
        tape = load_tape(day, candles=candles)
        loaded = time.perf_counter() - started
    configs = configurations(Settings(), list(GRID))[1:]
    deployed = configurations(Settings(), [])[0]
    one = run_configuration(tape, deployed, rule)
    runs, wall = run_all(tape, configs, rule, jobs=2)
    total = sum(r.seconds for r in runs)
    alerts = [len(r.outcomes) for r in runs]
    note = (
        f"{one.cpu_seconds:.1f} s of processor time; "
        f"{len(tape.messages):,} messages, {len(tape.buys):,} buys, "
        f"{len(tape.observations):,} snapshots, {len(tape.paths):,} price paths; "
        f"{one.mentions:,} mentions, {one.levels:,} levels, {len(one.outcomes)} alerts"
    )
    return [
        Row("12", "backtest: load a recorded day (JSONL + OHLCV cache)", loaded, "s"),
        Row(
            "12",
            "backtest: replay one day, deployed configuration",
            one.seconds,
            "s",
            target=Target("<=", 10.0, on="value", label="seconds"),
            note=note,
        ),
        Row(
            "12",
            f"backtest: {len(configs)}-configuration grid, wall time",
            wall,
            "s",
            baseline=total,
            baseline_unit="s (sum of the runs)",
            target=Target("<=", 0.65),
            note=f"{len({r.pid for r in runs})} worker processes; alerts per configuration "
            f"{min(alerts)}–{max(alerts)}; runs {min(r.seconds for r in runs):.1f}–"
            f"{max(r.seconds for r in runs):.1f} s each "
            f"({sum(r.cpu_seconds for r in runs):.0f} s of processor time in all)",
        ),
    ]
