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
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import aiohttp
import attrs

from callsbot.aggregator import Aggregator
from callsbot.bridge import StreamPublisher, StreamReader, process_origin
from callsbot.clock import Clock
from callsbot.config import Settings
from callsbot.dashboard.service import Dashboard, Timing
from callsbot.dashboard.sources import (
    HORIZONS,
    AlertKey,
    DashboardSources,
    Interval,
    ScoreboardRow,
)
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
from callsbot.history.mention_log import HistoryMentionLog
from callsbot.history.recorder import HistoryRecorder
from callsbot.history.sql import SQLHistory, open_history
from callsbot.market.gate import open_market
from callsbot.market.models import MarketData
from callsbot.market.prices import GeckoTerminalClient
from callsbot.metrics import Metrics
from callsbot.outcomes.labels import HistoryLabels
from callsbot.outcomes.ledger import OutcomeLedger
from callsbot.outcomes.report import EventKind, build_report
from callsbot.outcomes.tracker import OutcomeTracker, Replier
from callsbot.reputation.inputs import Labels, MentionLog
from callsbot.reputation_job import ReputationJob
from callsbot.runtime.keeper import WindowKeeper
from callsbot.runtime.probes import StoreProbe
from callsbot.runtime.service import Service
from callsbot.runtime.thread import Handoff, ThreadHost
from callsbot.scorer import FeedSource, Scorer
from callsbot.sinks.base import AlertSink
from callsbot.sinks.jsonl import JsonlSink
from callsbot.sinks.log import LogSink
from callsbot.sinks.telegram_bot import TelegramBotSink
from callsbot.sources.cielo import CieloFeed
from callsbot.sources.cielo_ws import CieloWebSocket
from callsbot.sources.telegram import MessageIntake, TelegramGateway, TelegramListener
from callsbot.store import SignalStore, keys, open_store
from callsbot.subscribers import VoteTracker, subscribe_standard
from callsbot.tasks import Home
from callsbot.web import WebContext, WebServer

log = logging.getLogger("callsbot")

Sleep = Callable[[float], Awaitable[None]]
T = TypeVar("T")

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


def build_feed(parts: Parts, *, owner: str | None = None) -> CieloFeed:
    """The Cielo feed client (leases each tx in the store under ``owner``)."""
    return CieloFeed(
        parts.settings.cielo,
        parts.store,
        clock=parts.clock,
        metrics=parts.metrics,
        sleep=parts.sleep,
        owner=owner,
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
    history: HistoryStore | None = None,
    owner: str | None = None,
) -> Scorer:
    """The scorer over ``feed`` (default: Cielo) sending to ``sinks`` (default: configured);
    it learns the recent alerts from ``history`` and holds its leases under ``owner``."""
    if parts.market is None:
        raise ValueError("the scorer needs market data")
    owner = owner if owner is not None else keys.lease_owner("scorer")
    scorer = Scorer(
        parts.settings,
        parts.store,
        parts.market,
        feed if feed is not None else build_feed(parts, owner=owner),
        sinks
        if sinks is not None
        else build_sinks(parts.settings, clock=parts.clock, sleep=parts.sleep),
        clock=parts.clock,
        metrics=parts.metrics,
        events=parts.events,
        sleep=parts.sleep,
        history=history,
        owner=owner,
    )
    if parts.settings.scoring.react_to_mentions:
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
async def open_history_store(settings: Settings) -> AsyncIterator[SQLHistory | None]:
    """The configured history database (``None`` when ``[history]`` is off), closed on exit.

    One per process: the recorder writes through it; the scorer (recent alerts), the outcome
    tracker and the reputation job (mentions, labels) read it."""
    if not settings.history.enabled:
        yield None
        return
    store = open_history(settings.history)
    try:
        yield store
    finally:
        await store.aclose()


def build_recorder(
    parts: Parts, history: HistoryStore | None, *, spool: Path | None = None
) -> HistoryRecorder | None:
    """The history recorder subscribed to ``parts.events`` (``None`` without a history).

    The caller owns ``history`` (:func:`open_history_store`, or the demo's own database).
    """
    if history is None:
        return None
    s = parts.settings.history
    return HistoryRecorder(
        history,
        settings=s,
        clock=parts.clock,
        metrics=parts.metrics,
        hub=parts.events,
        spool=spool if spool is not None else Path(s.spool_path),
    )


def use_history_for_reputation(parts: Parts, history: SQLHistory | None) -> None:
    """In weighted mode, the history becomes the reputation job's mention log and (unless
    labels were given) the tracker's outcomes its hit labels."""
    if parts.settings.consensus.mode != "weighted" or history is None:
        return
    if parts.labels is None:
        parts.labels = HistoryLabels(history)
    parts.mention_log = HistoryMentionLog(history)


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


@contextlib.asynccontextmanager
async def open_tracker(
    parts: Parts,
    *,
    history: SQLHistory | None,
    repliers: Mapping[str, Replier] | None = None,
    session: aiohttp.ClientSession | None = None,
) -> AsyncIterator[OutcomeTracker | None]:
    """The outcome tracker subscribed to ``parts.events`` (``None`` when ``[outcomes] tracker``
    or the history is off).

    It writes into ``history`` (shared with the recorder; not closed here), fetches from
    GeckoTerminal with its own client, claims follow-ups in the window store and replies
    through ``repliers`` (default: the Telegram bot when ``[tg_bot]`` is configured).
    """
    s = parts.settings
    if history is None or not s.outcomes.tracker:
        yield None
        return
    async with contextlib.AsyncExitStack() as stack:
        gecko = GeckoTerminalClient(
            s.geckoterminal, clock=parts.clock, sleep=parts.sleep, session=session
        )
        stack.push_async_callback(gecko.aclose)
        if repliers is None:
            repliers = {}
            bot = s.tg_bot
            if bot.token and bot.chat_id and s.outcomes.followups:
                sink = TelegramBotSink(bot, clock=parts.clock, session=session, sleep=parts.sleep)
                stack.push_async_callback(sink.aclose)
                repliers = {sink.name: sink}
        yield OutcomeTracker(
            OutcomeLedger(history),
            gecko,
            settings=s.outcomes,
            window=s.store.window_seconds,
            network=s.geckoterminal.network,
            clock=parts.clock,
            metrics=parts.metrics,
            sleep=parts.sleep,
            hub=parts.events,
            claims=parts.store,
            repliers=repliers,
            queue_size=s.events.subscriber_queue,
            buffer_size=s.history.buffer_size,
        )


def outcome_sources(
    tracker: OutcomeTracker, settings: Settings, *, clock: Clock
) -> DashboardSources:
    """The dashboard's outcome cells and scoreboard, read from the tracker's tables.

    Cells are ``p_X ÷ entry`` of each alert's latest outcome; the scoreboard is the report's
    ``scored`` buckets (level 0 = solo … 3+), recomputed at most once a minute. Both are empty
    until the tracker has started (its tables may not exist before).
    """
    ledger = tracker.ledger
    window, latency = settings.store.window_seconds, settings.outcomes.latency_seconds
    cached: list[tuple[float, tuple[ScoreboardRow, ...]]] = []

    async def outcomes(keys: Sequence[AlertKey]) -> dict[AlertKey, dict[str, float | None]]:
        if not tracker.started:
            return {}
        found = await ledger.alert_outcomes([(k.token, k.at) for k in keys])
        cells: dict[AlertKey, dict[str, float | None]] = {}
        for key in keys:
            outcome = found.get((key.token, key.at))
            if outcome is None:
                continue
            cells[key] = {}
            for horizon in HORIZONS:
                change = outcome.close_return(f"p_{horizon}")
                cells[key][horizon] = None if change is None else 1.0 + change
        return cells

    async def scoreboard() -> tuple[ScoreboardRow, ...]:
        if not tracker.started:
            return ()
        now = clock.time()
        if cached and now - cached[0][0] < 60:
            return cached[0][1]
        records = await ledger.records(window=window, latency=latency)
        report = build_report(records, split="level", resamples=1)
        rows = tuple(
            ScoreboardRow(
                b.bucket,
                Interval(b.wins.rate, b.wins.interval.low, b.wins.interval.high, b.n),
            )
            for b in report.buckets
            if b.kind is EventKind.SCORED
        )
        cached[:] = [(now, rows)]
        return rows

    return DashboardSources(outcomes=outcomes, scoreboard=scoreboard)


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


#: The events the dashboard shows.
DASHBOARD_EVENTS = (MentionRecorded, BuyScored, AlertSent, VerdictMade)


def build_dashboard(
    parts: Parts,
    services: Sequence[Service],
    *,
    sources: DashboardSources | None = None,
    rate: float = 1.0,
    sleep: Sleep = asyncio.sleep,
    home: Home | None = None,
    subscribe: bool = True,
) -> Dashboard:
    """The dashboard, subscribed to the hub; its health panel asks ``services``.

    ``sources`` plugs in the optional panels' providers (outcomes, scoreboard, groups, weights);
    readiness defaults to ``services``. ``rate`` is simulated seconds per wall second (the
    demo's speed). ``sleep`` paces its refresh loop on the wall clock: browsers are real time.
    ``home`` and ``subscribe=False``: it runs on another loop (see :func:`build_served`).
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
        home=home,
    )
    if subscribe:
        parts.events.subscribe("dashboard", dashboard.handle, kinds=DASHBOARD_EVENTS)
    return dashboard


def build_web(
    parts: Parts,
    services: Sequence[Service],
    *,
    dashboard: Dashboard | None = None,
    home: Home | None = None,
) -> WebServer:
    """The HTTP server whose readiness asks ``services``, with ``dashboard``'s views if given
    (``home``: the services' loop, when the server runs on another)."""
    ctx = WebContext(
        services=list(services),
        window=parts.store,
        clock=parts.clock,
        metrics=parts.metrics,
        token=parts.settings.web.token,
        extensions=[dashboard_views(dashboard)] if dashboard is not None else [],
        home=home if home is not None else Home(),
    )
    return WebServer(ctx, host=parts.settings.web.host, port=parts.settings.web.port)


@attrs.frozen
class Served:
    """The web server and the dashboard on a thread and loop of their own.

    Attributes:
        host: the service to run (on the home loop); it runs the two on theirs.
        web: the server.
        dashboard: the dashboard, when served.
    """

    host: ThreadHost
    web: WebServer
    dashboard: Dashboard | None
    handoff: Handoff | None = None

    async def listening(self) -> int:
        """The server's port once it listens."""
        return await self.host.hosted(self.web.listening)

    async def on_dashboard(self, fn: Callable[[Dashboard], T]) -> T:
        """``fn(dashboard)`` on the dashboard's loop, after every event handed over so far
        (the hub's queue drained first) is applied: the dashboard is not to be touched from
        the home loop."""
        dashboard, handoff = self.dashboard, self.handoff
        if dashboard is None or handoff is None:
            raise RuntimeError("no dashboard is served")

        async def run() -> T:
            handoff.drain()
            return fn(dashboard)

        return await self.host.hosted(run)


def build_served(
    parts: Parts,
    services: Sequence[Service],
    *,
    dashboard: bool,
    sources: DashboardSources | None = None,
    rate: float = 1.0,
    grace_seconds: float = 8.0,
) -> Served:
    """The web server (with the dashboard when ``dashboard``) off the home loop
    (``grace_seconds``: how long they get to stop; less than the process's own grace).

    Why: writing to the browsers (one ``send()`` per client and batch) on the pipeline's loop
    delayed mentions (bench case 10); on their own loop the writes run beside it. They reach
    the window, the providers and readiness through a :class:`~callsbot.tasks.Home`, and the
    hub's events through a :class:`~callsbot.runtime.thread.Handoff`.
    """
    home = Home()
    dash = None
    if dashboard:
        dash = build_dashboard(
            parts, services, sources=sources, rate=rate, home=home, subscribe=False
        )
    web = build_web(parts, services, dashboard=dash, home=home)
    hosted: list[Service] = [web] if dash is None else [dash, web]
    host = ThreadHost("web", hosted, home=home, grace_seconds=grace_seconds)
    handoff = None
    if dash is not None:
        handoff = Handoff(
            "dashboard",
            dash.take,
            host=host,
            metrics=parts.metrics,
            maxsize=parts.settings.events.subscriber_queue,
        )
        parts.events.subscribe(
            "dashboard",
            handoff,
            kinds=DASHBOARD_EVENTS,
            maxsize=parts.settings.events.subscriber_queue,
        )
    return Served(host, web, dash, handoff)


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

    async with connected_gateway(settings, clock=clock) as real:
        yield real


@contextlib.asynccontextmanager
async def role_services(
    parts: Parts,
    role: str,
    *,
    stop: asyncio.Event,
    replay: Path | None = None,
    history: HistoryStore | None = None,
) -> AsyncIterator[list[Service]]:
    """The services of ``role`` (``aggregator`` or ``scorer``), closed on exit (``history``:
    where the scorer learns the recent alerts at start)."""
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
        owner = keys.lease_owner("scorer")
        feed = build_feed(parts, owner=owner)
        scorer = build_scorer(parts, feed=feed, history=history, owner=owner)
        services: list[Service] = [scorer]
        if parts.settings.cielo.mode == "websocket":
            services.append(build_cielo_ws(parts, feed, scorer))
        job = build_reputation_job(parts)
        if job is not None:
            services.append(job)
        try:
            yield services
        finally:
            await scorer.aclose()  # its sinks and its feed
        return
    raise ValueError(f"unknown role {role!r}")
