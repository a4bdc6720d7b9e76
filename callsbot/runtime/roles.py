"""The one place that builds callsbot's running pieces from settings.

``run``, ``backfill``, ``demo``, the benchmarks and the test rigs all build through here, so a
new part (a subscriber, a sink, a service) is wired once. Nothing here decides anything: it
only connects what the other modules define.

- :func:`open_parts` opens what every role shares: the window store, market data and the event
  hub (with the standard subscribers: metrics and the consensus log line).
- ``build_*`` make one piece each from the parts.
- :func:`role_services` lists the services of a role (``aggregator``, ``scorer``), ready for
  :mod:`callsbot.runtime.app` to supervise. In weighted consensus mode the aggregator also
  tracks at-once votes; the scorer runs the reputation job when a mention log is configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path

import aiohttp
import attrs

from callsbot.aggregator import Aggregator
from callsbot.clock import Clock
from callsbot.config import Settings
from callsbot.errors import ConfigError
from callsbot.events import EventHub, MentionRecorded
from callsbot.market.gate import open_market
from callsbot.market.models import MarketData
from callsbot.metrics import Metrics
from callsbot.reputation.inputs import Labels, MentionLog
from callsbot.reputation_job import ReputationJob
from callsbot.runtime.probes import StoreProbe
from callsbot.runtime.service import Service
from callsbot.scorer import FeedSource, Scorer
from callsbot.sinks.base import AlertSink
from callsbot.sinks.jsonl import JsonlSink
from callsbot.sinks.log import LogSink
from callsbot.sinks.telegram_bot import TelegramBotSink
from callsbot.sources.cielo import CieloFeed
from callsbot.sources.telegram import MessageIntake, TelegramGateway, TelegramListener
from callsbot.store import SignalStore, open_store
from callsbot.subscribers import VoteTracker, subscribe_standard
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
        mention_log: where the reputation job reads first mentions (the history store when it
            is configured); ``None``: no reputation job, every weight stays 1.
        labels: where it reads hit labels (the outcome tracker); ``None``: no labels yet.
    """

    settings: Settings
    clock: Clock
    metrics: Metrics
    store: SignalStore
    market: MarketData | None
    events: EventHub
    sleep: Sleep = asyncio.sleep
    mention_log: MentionLog | None = None
    labels: Labels | None = None


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
    mention_log: MentionLog | None = None,
    labels: Labels | None = None,
) -> Parts:
    """Parts over a store and market data the caller owns (tests, replays), with a new hub."""
    events = EventHub(metrics=metrics, clock=clock)
    subscribe_standard(events, window=store, clock=clock, metrics=metrics)
    return Parts(settings, clock, metrics, store, market, events, sleep, mention_log, labels)


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


def build_sinks(
    settings: Settings,
    *,
    session: aiohttp.ClientSession | None = None,
    sleep: Sleep = asyncio.sleep,
) -> list[AlertSink]:
    """The sinks ``settings`` configure: log (``alerts.log``), JSONL (``alerts.jsonl_path``)
    and the Telegram bot (when both ``tg_bot.token`` and ``tg_bot.chat_id`` are set)."""
    sinks: list[AlertSink] = []
    if settings.alerts.log:
        sinks.append(LogSink())
    if settings.alerts.jsonl_path:
        sinks.append(JsonlSink(settings.alerts.jsonl_path))
    bot = settings.tg_bot
    if bot.token and bot.chat_id:
        sinks.append(TelegramBotSink(bot, session=session, sleep=sleep))
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
    return Scorer(
        parts.settings,
        parts.store,
        parts.market,
        feed if feed is not None else build_feed(parts),
        sinks if sinks is not None else build_sinks(parts.settings, sleep=parts.sleep),
        clock=parts.clock,
        metrics=parts.metrics,
        events=parts.events,
        sleep=parts.sleep,
    )


def build_reputation_job(parts: Parts) -> ReputationJob | None:
    """The periodic reputation job, or ``None`` when no mention log is configured."""
    if parts.mention_log is None:
        return None
    return ReputationJob(
        mentions=parts.mention_log,
        labels=parts.labels,
        board=parts.store,
        claims=parts.store,
        settings=parts.settings.consensus,
        clock=parts.clock,
    )


def subscribe_vote_tracker(
    parts: Parts, *, monitored: Callable[[], Mapping[int, str]] | None = None
) -> VoteTracker | None:
    """In weighted mode, the at-once vote tracker on the hub (``None`` in count mode)."""
    if not parts.settings.consensus.weighted:
        return None
    tracker = VoteTracker(parts.store, metrics=parts.metrics, monitored=monitored)
    parts.events.subscribe("votes", tracker, kinds=[MentionRecorded])
    return tracker


def build_store_probe(parts: Parts) -> StoreProbe:
    """The store's readiness probe (cached; refreshed every heartbeat interval)."""
    return StoreProbe(
        parts.store,
        clock=parts.clock,
        metrics=parts.metrics,
        interval=parts.settings.store.heartbeat_interval,
    )


def build_web(parts: Parts, services: Sequence[Service]) -> WebServer:
    """The HTTP server whose readiness asks ``services``."""
    ctx = WebContext(
        services=list(services), window=parts.store, clock=parts.clock, metrics=parts.metrics
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
            listener = build_listener(parts, gateway, pipeline)
            subscribe_vote_tracker(
                parts, monitored=lambda: {c: g.name for c, g in listener.groups.items()}
            )
            yield [pipeline, listener]
        return
    if role == "scorer":
        scorer = build_scorer(parts)
        job = build_reputation_job(parts)
        try:
            yield [scorer] if job is None else [scorer, job]
        finally:
            await scorer.aclose()  # its sinks and its feed
        return
    raise ValueError(f"unknown role {role!r}")
