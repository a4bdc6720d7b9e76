"""The one place that builds callsbot's running pieces from settings.

``run``, ``backfill``, ``demo``, the benchmarks and the test rigs all build through here, so a
new part (a subscriber, a sink, a service) is wired once. Nothing here decides anything: it
only connects what the other modules define.

- :func:`open_parts` opens what every role shares: the window store, market data and the event
  hub (with the standard subscribers: metrics and the consensus log line).
- ``build_*`` make one piece each from the parts.
- :func:`role_services` lists the services of a role (``aggregator``, ``scorer``), ready for
  :mod:`callsbot.runtime.app` to supervise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

import aiohttp
import attrs

from callsbot.aggregator import Aggregator
from callsbot.bridge import StreamPublisher, StreamReader, process_origin
from callsbot.clock import Clock
from callsbot.config import Settings
from callsbot.dashboard.service import Dashboard, Timing
from callsbot.dashboard.sources import DashboardSources
from callsbot.dashboard.state import DashboardState
from callsbot.dashboard.stream import Broadcaster
from callsbot.dashboard.views import extension as dashboard_views
from callsbot.errors import ConfigError
from callsbot.events import (
    AlertSent,
    BuyScored,
    EventHub,
    LevelReached,
    MentionRecorded,
    VerdictMade,
)
from callsbot.history.base import HistoryStore
from callsbot.history.recorder import HistoryRecorder
from callsbot.history.sql import open_history
from callsbot.market.gate import open_market
from callsbot.market.models import MarketData
from callsbot.metrics import Metrics
from callsbot.runtime.keeper import WindowKeeper
from callsbot.runtime.probes import StoreProbe
from callsbot.runtime.service import Service
from callsbot.scorer import FeedSource, Scorer
from callsbot.sinks.base import AlertSink
from callsbot.sinks.jsonl import JsonlSink
from callsbot.sinks.log import LogSink
from callsbot.sinks.telegram_bot import TelegramBotSink
from callsbot.sources.cielo import CieloFeed
from callsbot.sources.cielo_ws import CieloWebSocket
from callsbot.sources.telegram import MessageIntake, TelegramGateway, TelegramListener
from callsbot.store import SignalStore, open_store
from callsbot.subscribers import subscribe_standard
from callsbot.web import WebContext, WebServer

log = logging.getLogger("callsbot")

Sleep = Callable[[float], Awaitable[None]]

ROLES = ("all", "aggregator", "scorer")


@attrs.define(eq=False)
class Parts:
    """What every role of one process shares.

    Attributes:
        settings: all settings.
        clock: "now" for everything built from these parts.
        metrics: the process's metrics.
        store: the window store (every capability; pieces take the ones they use).
        market: market data (the batched, cached validator in production); ``None`` only for
            a pipeline that validates nothing (tests, ``backfill --no-validate`` dry runs).
        events: the process's event hub.
        sleep: the pause every loop uses (a fake-clock sleep in replays and tests).
    """

    settings: Settings
    clock: Clock
    metrics: Metrics
    store: SignalStore
    market: MarketData | None
    events: EventHub
    sleep: Sleep = asyncio.sleep


@contextlib.asynccontextmanager
async def open_parts(
    settings: Settings,
    *,
    clock: Clock,
    metrics: Metrics,
    store: SignalStore | None = None,
    market: MarketData | None = None,
    sleep: Sleep = asyncio.sleep,
    session: aiohttp.ClientSession | None = None,
) -> AsyncIterator[Parts]:
    """Open the store, market data and the event hub; close what was opened here on exit.

    ``store`` and ``market`` may be handed in (tests, dry runs); they are then not closed here.
    """
    async with contextlib.AsyncExitStack() as stack:
        if store is None:
            store = await stack.enter_async_context(open_store(settings.store, clock=clock))
        events = EventHub(metrics=metrics, clock=clock)
        subscribe_standard(events, window=store, clock=clock, metrics=metrics)
        if market is None:
            client, validator = await open_market(
                settings, clock=clock, metrics=metrics, sleep=sleep, session=session, events=events
            )
            stack.push_async_callback(client.aclose)
            stack.push_async_callback(validator.aclose)
            market = validator
        yield Parts(settings, clock, metrics, store, market, events, sleep)


def make_parts(
    settings: Settings,
    *,
    clock: Clock,
    metrics: Metrics,
    store: SignalStore,
    market: MarketData | None,
    sleep: Sleep = asyncio.sleep,
) -> Parts:
    """Parts over a store and market data the caller owns (tests, replays), with a new hub."""
    events = EventHub(metrics=metrics, clock=clock)
    subscribe_standard(events, window=store, clock=clock, metrics=metrics)
    return Parts(settings, clock, metrics, store, market, events, sleep)


def build_pipeline(parts: Parts, *, validate: bool = True, spool: Path | None = None) -> Aggregator:
    """The aggregator pipeline (extract → resolve → validate → record → publish)."""
    return Aggregator(
        settings=parts.settings,
        store=parts.store,
        market=parts.market,
        clock=parts.clock,
        metrics=parts.metrics,
        events=parts.events,
        validate=validate,
        spool=spool,
        sleep=parts.sleep,
    )


def build_listener(
    parts: Parts, gateway: TelegramGateway, intake: MessageIntake
) -> TelegramListener:
    """The Telegram listener over ``gateway``, handing messages to ``intake``."""
    return TelegramListener(
        gateway=gateway,
        intake=intake,
        store=parts.store,
        settings=parts.settings,
        clock=parts.clock,
        metrics=parts.metrics,
        sleep=parts.sleep,
    )


def build_feed(parts: Parts) -> CieloFeed:
    """The Cielo feed client (claims each tx in the store)."""
    return CieloFeed(
        parts.settings.cielo,
        parts.store,
        clock=parts.clock,
        metrics=parts.metrics,
        sleep=parts.sleep,
    )


def build_cielo_ws(parts: Parts, feed: CieloFeed, scorer: Scorer) -> CieloWebSocket:
    """The Cielo WebSocket consumer (``cielo.mode = "websocket"``): buys to ``scorer``,
    claims, gap fills and fallback polls through ``feed`` (the scorer's own)."""
    return CieloWebSocket(
        parts.settings.cielo,
        feed,
        scorer.handle_buys,
        clock=parts.clock,
        metrics=parts.metrics,
        sleep=parts.sleep,
    )


def build_sinks(
    settings: Settings,
    *,
    clock: Clock,
    session: aiohttp.ClientSession | None = None,
    sleep: Sleep = asyncio.sleep,
) -> list[AlertSink]:
    """The sinks ``settings`` configure: log (``alerts.log``), JSONL (``alerts.jsonl_path``)
    and the Telegram bot (when both ``tg_bot.token`` and ``tg_bot.chat_id`` are set; ``clock``
    runs its retries)."""
    sinks: list[AlertSink] = []
    if settings.alerts.log:
        sinks.append(LogSink())
    if settings.alerts.jsonl_path:
        sinks.append(JsonlSink(settings.alerts.jsonl_path))
    bot = settings.tg_bot
    if bot.token and bot.chat_id:
        sinks.append(TelegramBotSink(bot, clock=clock, session=session, sleep=sleep))
    elif bot.token or bot.chat_id:
        log.warning("tg_bot: both CALLSBOT_TG_BOT_TOKEN and tg_bot.chat_id are needed; not sending")
    return sinks


def build_scorer(
    parts: Parts,
    *,
    feed: FeedSource | None = None,
    sinks: Sequence[AlertSink] | None = None,
) -> Scorer:
    """The scorer over ``feed`` (default: Cielo) sending to ``sinks`` (default: configured)."""
    if parts.market is None:
        raise ValueError("the scorer needs market data")
    scorer = Scorer(
        parts.settings,
        parts.store,
        parts.market,
        feed if feed is not None else build_feed(parts),
        sinks
        if sinks is not None
        else build_sinks(parts.settings, clock=parts.clock, sleep=parts.sleep),
        clock=parts.clock,
        metrics=parts.metrics,
        events=parts.events,
        sleep=parts.sleep,
    )
    parts.events.subscribe(
        "scorer",
        scorer.notice,
        kinds=[MentionRecorded],
        maxsize=parts.settings.events.subscriber_queue,
    )
    return scorer


#: What each role of a split deployment reads off the shared stream (None: everything).
STREAM_READS: dict[str, frozenset[str] | None] = {
    "aggregator": frozenset(),
    "scorer": frozenset({MentionRecorded.kind, LevelReached.kind}),
}


def build_bridge(parts: Parts, role: str) -> list[Service]:
    """Split mode: put this process's events on the shared stream and read what ``role`` needs.

    Returns the publisher (also subscribed to every event of ``parts.events``) and, when the
    role reads anything, the reader.
    """
    s = parts.settings.events
    origin = process_origin(role)
    publisher = StreamPublisher(
        parts.store,
        origin=origin,
        maxlen=s.stream_maxlen,
        buffer=s.publish_buffer,
        metrics=parts.metrics,
        hub=parts.events,
    )
    parts.events.subscribe("stream", publisher, maxsize=s.subscriber_queue)
    kinds = STREAM_READS.get(role)
    if kinds is not None and not kinds:
        return [publisher]
    reader = StreamReader(
        parts.store,
        parts.events,
        reader=role,
        origin=origin,
        block=min(s.stream_block_seconds, parts.settings.store.socket_timeout / 2),
        metrics=parts.metrics,
        clock=parts.clock,
        kinds=kinds,
    )
    return [publisher, reader]


@contextlib.asynccontextmanager
async def open_recorder(
    parts: Parts, *, history: HistoryStore | None = None, spool: Path | None = None
) -> AsyncIterator[HistoryRecorder | None]:
    """The history recorder subscribed to ``parts.events`` (``None`` when ``[history]`` is off).

    ``history`` may be handed in (the demo's own database); it is closed on exit either way.
    """
    s = parts.settings.history
    if history is None and not s.enabled:
        yield None
        return
    store = history if history is not None else open_history(s)
    try:
        yield HistoryRecorder(
            store,
            settings=s,
            clock=parts.clock,
            metrics=parts.metrics,
            hub=parts.events,
            spool=spool if spool is not None else Path(s.spool_path),
        )
    finally:
        await store.aclose()


def build_store_probe(parts: Parts, *, name: str = "process") -> StoreProbe:
    """The store's readiness probe (cached; a write every ``store.probe_interval_seconds``).

    ``name`` names this process's probe key (``bridge.process_origin(role)`` in ``run``).
    """
    s = parts.settings.store
    return StoreProbe(
        parts.store,
        clock=parts.clock,
        metrics=parts.metrics,
        interval=s.probe_interval_seconds,
        timeout=s.probe_timeout_seconds,
        settings=s,
        name=name,
    )


def build_keeper(parts: Parts, recorder: HistoryRecorder | None) -> WindowKeeper:
    """The window keeper of the aggregator's process: rebuilds the window from ``recorder``'s
    history (and its unwritten events) when the store lost it; without a recorder it can only
    wait a window out."""
    return WindowKeeper(
        parts.store,
        recorder.history if recorder is not None else None,
        settings=parts.settings,
        clock=parts.clock,
        metrics=parts.metrics,
        unwritten=recorder.unwritten if recorder is not None else None,
    )


def build_dashboard(
    parts: Parts,
    services: Sequence[Service],
    *,
    sources: DashboardSources | None = None,
    rate: float = 1.0,
    sleep: Sleep = asyncio.sleep,
) -> Dashboard:
    """The dashboard, subscribed to the hub; its health panel asks ``services``.

    ``sources`` plugs in the optional panels' providers (outcomes, scoreboard, groups, weights);
    readiness defaults to ``services``. ``rate`` is simulated seconds per wall second (the
    demo's speed). ``sleep`` paces its refresh loop on the wall clock: browsers are real time.
    """
    s = parts.settings
    checked = list(services)
    sources = sources if sources is not None else DashboardSources()
    if sources.health is None:
        sources = attrs.evolve(
            sources, health=lambda: [reason for svc in checked for reason in svc.health()]
        )
    dashboard = Dashboard(
        state=DashboardState(
            window=parts.store.window,
            tiers=s.consensus.tiers,
            threshold=s.scoring.alert_threshold,
            weights=sources.weights,
        ),
        broadcaster=Broadcaster(
            buffer=s.web.sse_buffer,
            max_clients=s.web.sse_max_clients,
            client_queue=s.web.sse_client_queue,
            metrics=parts.metrics,
            # Ids keep increasing across restarts, so a browser holding an id from the last
            # process is told to reload instead of resuming into the wrong stream.
            first_id=time.time_ns() // 1000,
        ),
        clock=parts.clock,
        sources=sources,
        window=parts.store,
        timing=Timing(keepalive_seconds=s.web.sse_keepalive_seconds, retry_ms=s.web.sse_retry_ms),
        rate=rate,
        sleep=sleep,
    )
    parts.events.subscribe(
        "dashboard",
        dashboard.handle,
        kinds=[MentionRecorded, BuyScored, AlertSent, VerdictMade],
    )
    return dashboard


def build_web(
    parts: Parts, services: Sequence[Service], *, dashboard: Dashboard | None = None
) -> WebServer:
    """The HTTP server whose readiness asks ``services``, with ``dashboard``'s views if given."""
    ctx = WebContext(
        services=list(services),
        window=parts.store,
        clock=parts.clock,
        metrics=parts.metrics,
        token=parts.settings.web.token,
        extensions=[dashboard_views(dashboard)] if dashboard is not None else [],
    )
    return WebServer(ctx, host=parts.settings.web.host, port=parts.settings.web.port)


@contextlib.asynccontextmanager
async def telegram_gateway(
    settings: Settings, *, clock: Clock, stop: asyncio.Event, replay: Path | None = None
) -> AsyncIterator[TelegramGateway]:
    """The real Telethon session, or the recording ``replay`` names (``run --replay``)."""
    if replay is not None:
        from callsbot.sources.replay import Recording, ReplayGateway

        try:
            recording = Recording.load(replay)
        except (OSError, ValueError) as exc:
            raise ConfigError("--replay", str(exc)) from None
        gateway = ReplayGateway(recording, clock=clock, stop=stop)
        try:
            yield gateway
        finally:
            await gateway.aclose()
        return
    from callsbot.sources.telethon_client import connected_gateway

    async with connected_gateway(settings) as real:
        yield real


@contextlib.asynccontextmanager
async def role_services(
    parts: Parts, role: str, *, stop: asyncio.Event, replay: Path | None = None
) -> AsyncIterator[list[Service]]:
    """The services of ``role`` (``aggregator`` or ``scorer``), closed on exit."""
    if role == "aggregator":
        spool = Path(parts.settings.telegram.spool_path)
        pipeline = build_pipeline(parts, spool=spool)
        async with telegram_gateway(
            parts.settings, clock=parts.clock, stop=stop, replay=replay
        ) as gateway:
            yield [pipeline, build_listener(parts, gateway, pipeline)]
        return
    if role == "scorer":
        feed = build_feed(parts)
        scorer = build_scorer(parts, feed=feed)
        services: list[Service] = [scorer]
        if parts.settings.cielo.mode == "websocket":
            services.append(build_cielo_ws(parts, feed, scorer))
        try:
            yield services
        finally:
            await scorer.aclose()  # its sinks and its feed
        return
    raise ValueError(f"unknown role {role!r}")
