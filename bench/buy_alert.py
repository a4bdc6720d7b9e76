"""Case 8, "buy → alert": a smart-money buy pushed by the Cielo WebSocket until the alert reaches
the Telegram Bot API, against the old design (the REST feed polled every ``poll_seconds``).

Everything is real but the peers: the WebSocket service and the REST feed client, the scorer
with its market data (DexScreener fake, cache warmed), a memory store where each token already
has three groups and a fresh aggregator heartbeat, and the Telegram sink posting to the local
Bot API fake. One trial: the fake socket sends a ``tx`` event for a new token; the clock stops
when the fake Bot API receives ``sendMessage`` for that token.

The old design cannot be waited for 200 times at 30 s a poll, so it is measured in two parts:
the poll itself (the buy is on the REST feed, the scorer's ``poll_once`` runs, until
``sendMessage``) is timed for real in the same run, and the wait for the next poll is the poll
phase, drawn uniformly from ``[0, poll_seconds)`` (a buy lands at a random moment between two
polls). Old latency = phase + measured poll.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import attrs
from aiohttp import web

from bench.messages import random_address
from bench.report import Row, Target
from bench.timing import percentile
from callsbot.clock import SystemClock
from callsbot.config import Settings
from callsbot.market.gate import open_market
from callsbot.metrics import Metrics
from callsbot.runtime.roles import build_cielo_ws, build_feed, build_scorer, make_parts
from callsbot.scorer import Scorer
from callsbot.store.memory import MemoryStore
from callsbot.testing.cielo import API_KEY, FakeCielo, swap
from callsbot.testing.cielo_ws import FakeCieloWs
from callsbot.testing.dexscreener import FakeDexScreener
from callsbot.testing.telegram_bot import CHAT_ID, FAKE_TOKEN, FakeTelegramBot

WINDOW = 3600
GROUPS = ("@calls_alpha", "@calls_beta", "@calls_gamma")
WARMUP = 20


class TimedBot(FakeTelegramBot):
    """The Bot API fake, resolving a future when a message naming an awaited token arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.awaited: dict[str, asyncio.Future[float]] = {}

    def expect(self, token: str) -> asyncio.Future[float]:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.awaited[token] = future
        return future

    async def _send_message(self, request: web.Request) -> web.Response:
        response = await super()._send_message(request)
        arrived = time.perf_counter()
        if response.status == 200 and self.sent:
            text = str(self.sent[-1].get("text", ""))
            for token, future in list(self.awaited.items()):
                if token in text and not future.done():
                    future.set_result(arrived)
                    del self.awaited[token]
        return response


def _settings(
    rest: FakeCielo, socket: FakeCieloWs, dex: FakeDexScreener, bot: TimedBot
) -> Settings:
    s = Settings()
    return attrs.evolve(
        s,
        dexscreener=attrs.evolve(s.dexscreener, url=dex.url),
        cielo=attrs.evolve(
            s.cielo, url=rest.url, ws_url=socket.url, api_key=API_KEY, mode="websocket"
        ),
        tg_bot=attrs.evolve(
            s.tg_bot,
            token=FAKE_TOKEN,
            chat_id=CHAT_ID,
            api_url=bot.url,
            messages_per_minute=1_000_000,
        ),
        alerts=attrs.evolve(s.alerts, jsonl_path=None, log=False),
    )


async def _prepare(store: MemoryStore, tokens: list[str]) -> None:
    now = int(time.time())
    for token in tokens:
        for group in GROUPS:
            await store.record(token, group, now)


async def _trial(bot: TimedBot, token: str, send: Any) -> float:
    arrived = bot.expect(token)
    start = time.perf_counter()
    await send()
    async with asyncio.timeout(10):
        end = await arrived
    return end - start


async def case_buy_to_alert(trials: int = 300, seed: int = 20241125) -> list[Row]:
    """Rows: p50 and p99 of buy → ``sendMessage``, WebSocket vs the old poll."""
    rng = random.Random(seed + 8)
    tokens = [random_address(rng) for _ in range(2 * (trials + WARMUP))]
    ws_tokens, poll_tokens = tokens[: trials + WARMUP], tokens[trials + WARMUP :]
    async with FakeDexScreener() as dex:
        rest = await FakeCielo().start()
        socket = await FakeCieloWs(rest=rest).start()
        bot = TimedBot()
        await bot.start()
        try:
            return await _run(rng, dex, rest, socket, bot, ws_tokens, poll_tokens, trials)
        finally:
            await bot.close()
            await socket.close()
            await rest.close()


async def _run(
    rng: random.Random,
    dex: FakeDexScreener,
    rest: FakeCielo,
    socket: FakeCieloWs,
    bot: TimedBot,
    ws_tokens: list[str],
    poll_tokens: list[str],
    trials: int,
) -> list[Row]:
    for token in ws_tokens + poll_tokens:
        dex.add_token(token)
    settings = _settings(rest, socket, dex, bot)
    clock = SystemClock()
    metrics = Metrics.create()
    client, validator = await open_market(settings, clock=clock, metrics=metrics)
    store = MemoryStore(window=WINDOW, clock=clock)
    stop = asyncio.Event()
    runner: asyncio.Task[None] | None = None
    scorer: Scorer | None = None
    try:
        await validator.verdicts(ws_tokens + poll_tokens)  # "cached market data"
        await _prepare(store, ws_tokens + poll_tokens)  # consensus already at 3 groups
        parts = make_parts(settings, clock=clock, metrics=metrics, store=store, market=validator)
        feed = build_feed(parts)
        scorer = build_scorer(parts, feed=feed)
        service = build_cielo_ws(parts, feed, scorer)
        runner = asyncio.create_task(service.run(stop))
        await socket.wait_subscribed()

        # The new design: the socket pushes the buy.
        ws_lat: list[float] = []
        for i, token in enumerate(ws_tokens):
            await store.beat("aggregator", 60)
            item = swap(f"ws-{i}", token, ts=int(time.time()))
            ws_lat.append(await _trial(bot, token, lambda item=item: socket.publish(item)))

        # The old design: the same buy found by the next poll of the REST feed.
        polling = attrs.evolve(settings, cielo=attrs.evolve(settings.cielo, mode="poll"))
        poll_parts = make_parts(
            polling, clock=clock, metrics=metrics, store=store, market=validator
        )
        poll_feed = build_feed(poll_parts)
        poller = build_scorer(poll_parts, feed=poll_feed)
        poll_lat: list[float] = []
        for i, token in enumerate(poll_tokens):
            await store.beat("aggregator", 60)
            rest.add(swap(f"poll-{i}", token, ts=int(time.time())))
            poll_lat.append(await _trial(bot, token, poller.poll_once))
        await poller.aclose()  # its sinks and its feed
    finally:
        stop.set()
        if runner is not None:
            await runner
        if scorer is not None:
            await scorer.aclose()
        await validator.aclose()
        await client.aclose()
    ws_lat = sorted(ws_lat[WARMUP:])
    measured = sorted(poll_lat[WARMUP:])
    period = settings.cielo.poll_seconds
    old = sorted(rng.uniform(0.0, period) + t for t in measured)
    n = len(ws_lat)
    p50_poll, p99_poll = percentile(measured, 50) * 1e3, percentile(measured, 99) * 1e3
    note = (
        f"{n} trials each after {WARMUP} warm-up; old = REST poll every {period:g} s: poll phase "
        f"U[0,{period:g}) + measured poll→sendMessage (p50 {p50_poll:.1f} ms, p99 "
        f"{p99_poll:.1f} ms); websocket max {ws_lat[-1] * 1e3:.1f} ms"
    )
    return [
        Row(
            "8",
            "buy → alert, Cielo WebSocket: p50",
            percentile(ws_lat, 50) * 1e3,
            "ms",
            percentile(old, 50) * 1e3,
            "ms (old)",
            note="baseline = the old design's figure, same run",
        ),
        Row(
            "8",
            "buy → alert, Cielo WebSocket: p99",
            percentile(ws_lat, 99) * 1e3,
            "ms",
            percentile(old, 99) * 1e3,
            "ms (old)",
            target=Target("<=", 250.0, on="value", label="p99 (ms)"),
            note=note,
        ),
    ]
