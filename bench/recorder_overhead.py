"""Case 16: what the history recorder costs the hot path.

The aggregator end to end as in case 5 (memory store, market data cached, a fixed offered
rate), with the event hub and the standard subscribers running in both runs; the subject also
has the history recorder subscribed, writing every event into a SQLite history (WAL) in the same
process. Subject and baseline alternate; the figure is the mean of the subject runs' p99
submit→recorded over the mean of the baseline runs' (target ≤ 1.10: at most 10 % worse).
"""

from __future__ import annotations

import asyncio
import random
import statistics
import tempfile
from pathlib import Path

from bench.cases import (
    WINDOW,
    Config,
    LatencyProbe,
    TimedAggregator,
    TimedMemoryStore,
    _offer,
    _serve,
)
from bench.messages import Message, Universe, generate
from bench.report import Row, Target
from bench.timing import percentile
from callsbot.clock import SystemClock
from callsbot.config import DexScreenerSettings, HistorySettings, Settings
from callsbot.events import EventHub
from callsbot.history.recorder import HistoryRecorder
from callsbot.history.sql import SQLHistory
from callsbot.market.gate import open_market
from callsbot.metrics import Metrics
from callsbot.subscribers import subscribe_standard
from callsbot.testing.dexscreener import FakeDexScreener

ROUNDS = 2


async def _run(
    settings: Settings,
    universe: Universe,
    messages: list[Message],
    *,
    rate: float,
    seconds: float,
    history_url: str | None,
) -> float:
    """One run; the p99 submit→recorded in ms."""
    metrics = Metrics.create()
    clock = SystemClock()
    probe = LatencyProbe()
    store = TimedMemoryStore(window=WINDOW, clock=clock)
    store.probe = probe
    hub = EventHub(metrics=metrics, clock=clock)
    subscribe_standard(hub, window=store, clock=clock, metrics=metrics)
    history = None
    recorder = None
    if history_url is not None:
        history = SQLHistory(history_url)
        await history.upgrade()
        recorder = HistoryRecorder(
            history, settings=HistorySettings(), clock=clock, metrics=metrics, hub=hub
        )
    client, validator = await open_market(settings, clock=clock, metrics=metrics)
    await validator.verdicts(universe.tokens)
    await validator.resolve_pairs(universe.pairs)
    agg = TimedAggregator(
        settings=settings,
        store=store,
        market=validator,
        clock=clock,
        metrics=metrics,
        events=hub,
    )
    agg.probe = probe
    stop, late_stop = asyncio.Event(), asyncio.Event()
    tasks = [asyncio.create_task(agg.run(stop)), asyncio.create_task(hub.run(late_stop))]
    if recorder is not None:
        tasks.append(asyncio.create_task(recorder.run(late_stop)))
    try:
        warm, _ = await _offer(agg, probe, messages, 0, rate, 1.0)
        await agg.drain()
        probe.reset()
        await _offer(agg, probe, messages, warm, rate, seconds)
        await agg.drain()
    finally:
        stop.set()
        late_stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await validator.aclose()
        await client.aclose()
        if history is not None:
            await history.aclose()
    return percentile(sorted(probe.latencies), 99) * 1e3


async def case_recorder_overhead(cfg: Config) -> list[Row]:
    """Case 16 (``make bench``)."""
    rng = random.Random(cfg.seed + 16)
    universe = Universe.make(rng, 200, 100)
    messages = generate(rng, 10_000, universe)
    seconds = min(cfg.e2e_seconds, 10.0)
    with_recorder: list[float] = []
    without: list[float] = []
    async with FakeDexScreener() as dex:
        _serve(dex, universe)
        settings = Settings(dexscreener=DexScreenerSettings(url=dex.url))
        with tempfile.TemporaryDirectory(prefix="callsbot-bench-recorder-") as tmp:
            for r in range(ROUNDS):
                without.append(
                    await _run(
                        settings, universe, messages, rate=cfg.e2e_rate, seconds=seconds,
                        history_url=None,
                    )
                )  # fmt: skip
                url = f"sqlite:///{Path(tmp) / f'h{r}.sqlite3'}"
                with_recorder.append(
                    await _run(
                        settings, universe, messages, rate=cfg.e2e_rate, seconds=seconds,
                        history_url=url,
                    )
                )  # fmt: skip
    runs = ", ".join(f"{a:.2f}/{b:.2f}" for a, b in zip(with_recorder, without, strict=True))
    return [
        Row(
            "16",
            "end to end, memory: p99 submit→recorded with the history recorder on vs off",
            statistics.mean(with_recorder),
            "ms",
            statistics.mean(without),
            target=Target("<=", 1.10),
            note=f"{ROUNDS} alternating {seconds:g} s runs at {cfg.e2e_rate:g} msg/s; "
            f"p99 on/off per round (ms): {runs}",
        )
    ]
