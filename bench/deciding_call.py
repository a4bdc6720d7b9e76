"""Case 13: "deciding call → alert" — how long the mention that lifts a token over the alert
threshold takes to become a ``sendMessage`` at the Bot API.

A token has one group's call and a smart-money buy already scored below the threshold (it is on
the scorer's watch list). The trial submits the second group's message to the real pipeline and
times until the local Bot API fake accepts the alert.

- **one process**: pipeline, event hub and scorer in one event loop over the memory store;
- **two processes**: the pipeline here, the scorer as ``python -m callsbot run --role scorer``
  over a real redis-server; the mention crosses on the Redis Stream bridge.

Beside each, the old design measured in the same run: no reaction to mentions, only the watch
tick. It runs with a 0.25 s tick so that it fits in a benchmark; at the default 30 s tick every
one of its figures is 120 times larger.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import base58

from bench.report import Row, Target
from callsbot.clock import SystemClock
from callsbot.config import (
    AlertsSettings,
    CieloSettings,
    DexScreenerSettings,
    HistorySettings,
    ScoringSettings,
    Settings,
    StoreSettings,
    TgBotSettings,
    WebSettings,
)
from callsbot.events import BuyScored, Event
from callsbot.metrics import Metrics
from callsbot.models import IncomingMessage
from callsbot.runtime import roles
from callsbot.store.memory import MemoryStore
from callsbot.tasks import wait_stop
from callsbot.testing.cielo import API_KEY, FakeCielo, swap
from callsbot.testing.dexscreener import FakeDexScreener, make_pair
from callsbot.testing.telegram_bot import CHAT_ID, FAKE_TOKEN, FakeTelegramBot

TRIALS = 200
OLD_TRIALS = 100
WARMUP = 10
OLD_TICK = 0.25
TARGET_P99_MS = 250.0


def _mint(tag: str, i: int) -> str:
    return base58.b58encode(hashlib.sha256(f"bench-deciding-{tag}-{i}".encode()).digest()).decode()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Peers:
    """The local DexScreener, Cielo and Bot API fakes, and arrival times of alerts by token."""

    def __init__(self, dex: FakeDexScreener, cielo: FakeCielo, bot: FakeTelegramBot) -> None:
        self.dex, self.cielo, self.bot = dex, cielo, bot
        self.arrived: dict[str, asyncio.Future[float]] = {}
        bot.listeners.append(self._arrival)

    def expect(self, token: str) -> asyncio.Future[float]:
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.arrived[token] = fut
        return fut

    def _arrival(self, body: dict[str, Any]) -> None:
        now = time.perf_counter()
        text = str(body.get("text", ""))
        for token, fut in self.arrived.items():
            if token in text and not fut.done():
                fut.set_result(now)


@contextlib.asynccontextmanager
async def peers(tokens: list[str]) -> AsyncIterator[Peers]:
    async with FakeDexScreener(clock=SystemClock()) as dex:
        cielo = await FakeCielo().start()
        bot = await FakeTelegramBot().start()
        try:
            for token in tokens:
                dex.add_pair(make_pair(token))
            yield Peers(dex, cielo, bot)
        finally:
            await cielo.close()
            await bot.close()


def settings_for(
    p: Peers, *, store_url: str, threshold: float, react: bool, tick: float
) -> Settings:
    return Settings(
        store=StoreSettings(url=store_url, heartbeat_interval=1.0),
        dexscreener=DexScreenerSettings(url=p.dex.url, requests_per_minute=60_000),
        cielo=CieloSettings(url=p.cielo.url, api_key=API_KEY, poll_seconds=3600.0),
        # Telegram's own per-chat pacing (20/min) would measure the limiter, not the path.
        tg_bot=TgBotSettings(
            token=FAKE_TOKEN, api_url=p.bot.url, chat_id=CHAT_ID, messages_per_minute=1_000_000
        ),
        alerts=AlertsSettings(log=False),
        scoring=ScoringSettings(
            alert_threshold=threshold, watch_tick_seconds=tick, react_to_mentions=react
        ),
        history=HistorySettings(enabled=False),
        web=WebSettings(enabled=False),
    )


def _message(i: int, token: str) -> IncomingMessage:
    return IncomingMessage(
        chat_id=-1002, group="@second", message_id=i + 1, ts=int(time.time()), text=f"CA: {token}"
    )


async def one_process(tag: str, *, react: bool, tick: float, trials: int) -> list[float]:
    """Latencies (s) with the pipeline and the scorer in this event loop."""
    tokens = [_mint(tag, i) for i in range(trials + WARMUP + 1)]
    async with peers(tokens) as p:
        base = await _base_score(p, tokens[-1])
        metrics = Metrics.create()
        clock = SystemClock()
        settings = settings_for(
            p, store_url="memory://", threshold=base + 0.5, react=react, tick=tick
        )
        store = MemoryStore(window=3600, clock=clock)
        async with roles.open_parts(settings, clock=clock, metrics=metrics, store=store) as parts:
            assert parts.market is not None
            await parts.market.verdicts(tokens)  # cached: the trial measures no market lookup
            pipeline = roles.build_pipeline(parts)
            scorer = roles.build_scorer(parts)
            stop = asyncio.Event()
            tasks = [
                asyncio.create_task(parts.events.run(stop)),
                asyncio.create_task(pipeline.run(stop)),
                asyncio.create_task(scorer.run(stop)),
            ]
            latencies: list[float] = []
            try:
                for i, token in enumerate(tokens[:-1]):
                    await store.beat("aggregator", 3600)
                    await store.record(token, "@first", time.time())
                    p.cielo.serve([swap(f"tx-{tag}-{i}", token)])
                    [scored] = await scorer.poll_once()
                    assert scored.outcome == "watching", scored
                    arrived = p.expect(token)
                    started = time.perf_counter()
                    await pipeline.submit(_message(i, token))
                    done = await asyncio.wait_for(arrived, timeout=30)
                    if i >= WARMUP:
                        latencies.append(done - started)
            finally:
                stop.set()
                await asyncio.gather(*tasks, return_exceptions=True)
                await scorer.aclose()
        return latencies


async def _base_score(p: Peers, token: str) -> float:
    """The score of a buy of ``token`` with one group: the threshold sits half a point above."""
    clock = SystemClock()
    settings = settings_for(p, store_url="memory://", threshold=100.0, react=False, tick=3600)
    store = MemoryStore(window=3600, clock=clock)
    async with roles.open_parts(
        settings, clock=clock, metrics=Metrics.create(), store=store
    ) as parts:
        scorer = roles.build_scorer(parts)
        await store.beat("aggregator", 3600)
        await store.record(token, "@first", time.time())
        p.cielo.serve([swap("tx-calibrate", token)])
        [scored] = await scorer.poll_once()
        await scorer.aclose()
        assert scored.card is not None
        return scored.card.total


async def two_processes(
    tag: str, redis_url: str, *, react: bool, tick: float, trials: int
) -> list[float]:
    """Latencies (s) with the pipeline here and the scorer in a child process over Redis."""
    tokens = [_mint(tag, i) for i in range(trials + WARMUP + 1)]
    async with peers(tokens) as p:
        base = await _base_score(p, tokens[-1])
        metrics = Metrics.create()
        clock = SystemClock()
        settings = settings_for(
            p, store_url=redis_url, threshold=base + 0.5, react=react, tick=tick
        )
        env = _child_env(settings, poll_seconds=0.1)
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "callsbot", "run", "--role", "scorer",
            env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=_child_log(),
        )  # fmt: skip
        scored: dict[str, asyncio.Future[str]] = {}

        async def watch(event: Event) -> None:
            if isinstance(event, BuyScored) and event.buy.token in scored:
                fut = scored[event.buy.token]
                if not fut.done():
                    fut.set_result(event.outcome)

        try:
            async with roles.open_parts(settings, clock=clock, metrics=metrics) as parts:
                pipeline = roles.build_pipeline(parts)
                bridge = roles.build_bridge(parts, "aggregator")
                from callsbot.bridge import StreamReader, process_origin

                reader = StreamReader(
                    parts.store,
                    parts.events,
                    reader="bench",
                    origin=process_origin("aggregator"),
                    block=0.2,
                    metrics=metrics,
                    clock=clock,
                    kinds=frozenset({BuyScored.kind}),
                )
                parts.events.subscribe("bench", watch, kinds=[BuyScored])
                stop = asyncio.Event()
                tasks = [
                    asyncio.create_task(parts.events.run(stop)),
                    asyncio.create_task(pipeline.run(stop)),
                    asyncio.create_task(reader.run(stop)),
                    *(asyncio.create_task(s.run(stop)) for s in bridge),
                    asyncio.create_task(_beat(parts.store, stop)),
                ]
                latencies: list[float] = []
                try:
                    for i, token in enumerate(tokens[:-1]):
                        await parts.store.record(token, "@first", time.time())
                        scored[token] = asyncio.get_running_loop().create_future()
                        p.cielo.serve([swap(f"tx-{tag}-{i}", token)])
                        outcome = await asyncio.wait_for(scored[token], timeout=30)
                        assert outcome == "watching", outcome
                        arrived = p.expect(token)
                        started = time.perf_counter()
                        await pipeline.submit(_message(i, token))
                        done = await asyncio.wait_for(arrived, timeout=30)
                        if i >= WARMUP:
                            latencies.append(done - started)
                finally:
                    stop.set()
                    await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            child.terminate()
            await child.wait()
        return latencies


async def _beat(store: Any, stop: asyncio.Event) -> None:
    while not stop.is_set():
        await store.beat("aggregator", 30)
        await wait_stop(stop, 1.0)


def _child_env(s: Settings, *, poll_seconds: float) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLSBOT_")}
    env.update(
        {
            "CALLSBOT_STORE_URL": s.store.url,
            "CALLSBOT_STORE_HEARTBEAT_INTERVAL": "1.0",
            "CALLSBOT_DEXSCREENER_URL": s.dexscreener.url,
            "CALLSBOT_DEXSCREENER_REQUESTS_PER_MINUTE": "60000",
            "CALLSBOT_CIELO_URL": s.cielo.url,
            "CALLSBOT_CIELO_API_KEY": s.cielo.api_key or "",
            "CALLSBOT_CIELO_POLL_SECONDS": str(poll_seconds),
            "CALLSBOT_TG_BOT_TOKEN": s.tg_bot.token or "",
            "CALLSBOT_TG_BOT_API_URL": s.tg_bot.api_url,
            "CALLSBOT_TG_BOT_CHAT_ID": s.tg_bot.chat_id or "",
            "CALLSBOT_TG_BOT_MESSAGES_PER_MINUTE": str(s.tg_bot.messages_per_minute),
            "CALLSBOT_ALERTS_LOG": "false",
            "CALLSBOT_SCORING_ALERT_THRESHOLD": str(s.scoring.alert_threshold),
            "CALLSBOT_SCORING_WATCH_TICK_SECONDS": str(s.scoring.watch_tick_seconds),
            "CALLSBOT_SCORING_REACT_TO_MENTIONS": str(s.scoring.react_to_mentions).lower(),
            "CALLSBOT_HISTORY_ENABLED": "false",
            "CALLSBOT_WEB_ENABLED": "false",
            "CALLSBOT_ENV_FILE": os.devnull,
        }
    )
    return env


def _rows(name: str, new: list[float], old: list[float]) -> list[Row]:
    ms = [x * 1000 for x in new]
    old_ms = [x * 1000 for x in old]
    note = (
        f"{len(ms)} trials: p50 {statistics.median(ms):.1f} ms; old design (watch tick only, "
        f"{OLD_TICK:g} s tick, {len(old_ms)} trials): p50 {statistics.median(old_ms):.0f} ms, "
        f"p99 {_pct(old_ms, 0.99):.0f} ms — at the default 30 s tick ×{30 / OLD_TICK:.0f}"
    )
    return [
        Row(
            "13",
            f"deciding call → alert, {name}: p99",
            _pct(ms, 0.99),
            "ms",
            baseline=_pct(old_ms, 0.99),
            target=Target("<=", TARGET_P99_MS, on="value", label="p99 (ms)"),
            note=note,
        )
    ]


async def case_deciding_call(redis_url: str) -> list[Row]:
    """Case 13 (``make bench``): both modes, each beside the old design in the same run."""
    single = await one_process("one", react=True, tick=30.0, trials=TRIALS)
    single_old = await one_process("one-old", react=False, tick=OLD_TICK, trials=OLD_TRIALS)
    split = await two_processes("two", redis_url, react=True, tick=30.0, trials=TRIALS)
    split_old = await two_processes(
        "two-old", redis_url, react=False, tick=OLD_TICK, trials=OLD_TRIALS
    )
    return [
        *_rows("one process, memory store", single, single_old),
        *_rows("two processes over Redis", split, split_old),
    ]


def _child_log() -> Any:
    """Where the child scorer's log goes: ``$BENCH_CHILD_LOG``, else nowhere."""
    path = os.environ.get("BENCH_CHILD_LOG")
    return open(path, "ab") if path else asyncio.subprocess.DEVNULL
