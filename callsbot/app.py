"""Process assembly: build the shared parts once, run the chosen roles in one event loop.

``run --role all`` runs the aggregator, the scorer and the web server over one store;
``--role aggregator`` / ``--role scorer`` run one role each (pointed at the same ``redis://``
store). The code path is the same either way: the scorer learns about mentions only through
the store.

Every long-running loop is supervised: a crash is logged, counted and the loop restarted with
backoff, while its siblings keep running. A fatal error (bad configuration, a rejected
credential, an unusable session) ends the process non-zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import attrs

from callsbot.aggregator import Aggregator
from callsbot.clock import Clock
from callsbot.config import Settings
from callsbot.errors import ConfigError, NoGroupsResolved, SessionError, StoreError
from callsbot.market.gate import MarketValidator, open_market
from callsbot.metrics import Metrics
from callsbot.scorer import Scorer, build_sinks
from callsbot.sources.cielo import CieloAuthError, CieloFeed
from callsbot.sources.replay import Recording, ReplayGateway
from callsbot.sources.telegram import TelegramGateway, TelegramListener
from callsbot.store import SignalStore, open_store

log = logging.getLogger("callsbot")

ROLES = ("all", "aggregator", "scorer")

#: Errors that no restart can fix: the process ends with :data:`EXIT_FATAL`.
FATAL = (ConfigError, SessionError, CieloAuthError, NoGroupsResolved)
EXIT_FATAL = 3

_BACKOFF_START = 1.0
_BACKOFF_MAX = 60.0
#: A loop that ran this long before crashing starts its backoff from the beginning again.
_HEALTHY_AFTER = 60.0


class FatalError(Exception):
    """Raised out of :func:`run` for an error that restarting cannot fix."""


@attrs.define
class Runtime:
    """What is running, for the web server's readiness checks and the consensus API."""

    settings: Settings
    store: SignalStore
    clock: Clock
    metrics: Metrics
    listener: TelegramListener | None = None
    scorer: Scorer | None = None
    aggregator: Aggregator | None = None


async def supervise(
    name: str,
    loop: Callable[[], Awaitable[None]],
    *,
    stop: asyncio.Event,
    clock: Clock,
    metrics: Metrics,
    backoff_start: float = _BACKOFF_START,
) -> None:
    """Run ``loop`` until ``stop``; restart it with backoff when it crashes.

    The backoff doubles from ``backoff_start`` up to a minute, and starts over once the loop
    has run for a minute without crashing. Each restart counts in ``callsbot_loop_restarts``.

    Raises:
        FatalError: ``loop`` raised one of :data:`FATAL`.
    """
    delay = backoff_start
    while not stop.is_set():
        started = clock.time()
        try:
            await loop()
            return
        except FATAL as exc:
            raise FatalError(f"{name}: {exc}") from exc
        except Exception:
            if stop.is_set():
                return
            if clock.time() - started > _HEALTHY_AFTER:
                delay = backoff_start
            metrics.loop_restarts.labels(name).inc()
            log.exception("%s crashed; restarting in %.1fs", name, delay)
            stopped = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait({stopped}, timeout=delay)
            finally:
                stopped.cancel()
            delay = min(delay * 2, _BACKOFF_MAX)


async def until_stopped(stop: asyncio.Event, coro: Awaitable[None]) -> None:
    """Run ``coro`` (a loop that only ends when cancelled) until ``stop`` is set."""
    task = asyncio.ensure_future(coro)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (task, stopper):
            t.cancel()
        # Python 3.11's asyncio.wait_for (redis-py sends every command through it) swallows a
        # cancellation that lands as its inner future completes (CPython gh-86296), and the
        # loop then runs on until the grace is over: cancel again until it ends.
        while not (await asyncio.wait({task}, timeout=0.1))[0]:
            task.cancel()
        results = await asyncio.gather(task, stopper, return_exceptions=True)
    error = results[0]
    if isinstance(error, BaseException) and not isinstance(error, asyncio.CancelledError):
        raise error


@contextlib.asynccontextmanager
async def market_data(
    settings: Settings, *, clock: Clock, metrics: Metrics
) -> AsyncIterator[MarketValidator]:
    """The DexScreener client and validator, closed on exit."""
    client, validator = await open_market(settings, clock=clock, metrics=metrics)
    try:
        yield validator
    finally:
        await validator.aclose()
        await client.aclose()


@contextlib.asynccontextmanager
async def telegram_gateway(
    settings: Settings, clock: Clock, stop: asyncio.Event | None = None
) -> AsyncIterator[TelegramGateway]:
    """The real Telethon session, or a recording when ``[telegram] replay`` is set."""
    if settings.telegram.replay:
        try:
            recording = Recording.load(settings.telegram.replay)
        except (OSError, ValueError) as exc:
            raise ConfigError("telegram.replay", str(exc)) from None
        replay = ReplayGateway(recording, clock=clock, stop=stop)
        try:
            yield replay
        finally:
            await replay.aclose()
        return
    from callsbot.sources.telethon_client import connected_gateway

    async with connected_gateway(settings) as gateway:
        yield gateway


async def run_aggregator(rt: Runtime, market: MarketValidator, stop: asyncio.Event) -> None:
    """The aggregator role: Telegram → pipeline → store, plus the heartbeat."""
    s = rt.settings
    aggregator = Aggregator(
        settings=s,
        store=rt.store,
        market=market,
        clock=rt.clock,
        metrics=rt.metrics,
        spool=Path(s.telegram.spool_path),
    )
    rt.aggregator = aggregator
    async with telegram_gateway(s, rt.clock, stop) as gateway, asyncio.TaskGroup() as tg:
        listener = TelegramListener(
            gateway=gateway,
            aggregator=aggregator,
            store=rt.store,
            settings=s,
            clock=rt.clock,
            metrics=rt.metrics,
        )
        rt.listener = listener
        for name, loop in (
            ("pipeline", lambda: aggregator.run(stop)),
            ("telegram", lambda: listener.run(stop)),
        ):
            tg.create_task(
                supervise(name, loop, stop=stop, clock=rt.clock, metrics=rt.metrics), name=name
            )


async def run_scorer(rt: Runtime, market: MarketValidator, stop: asyncio.Event) -> None:
    """The scorer role: Cielo feed → score with consensus → alerts."""
    s = rt.settings
    feed = CieloFeed(s.cielo, rt.store, clock=rt.clock, metrics=rt.metrics)
    sinks = build_sinks(s, clock=rt.clock)
    scorer = Scorer(s, rt.store, market, feed, sinks, clock=rt.clock, metrics=rt.metrics)
    rt.scorer = scorer
    try:
        await supervise(
            "scorer",
            lambda: until_stopped(stop, scorer.run()),
            stop=stop,
            clock=rt.clock,
            metrics=rt.metrics,
        )
    finally:
        await scorer.aclose()  # its sinks and its feed


def install_stop_signals(stop: asyncio.Event) -> None:
    """SIGINT and SIGTERM set ``stop`` instead of killing the loop mid-write."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


async def run(
    settings: Settings,
    *,
    role: str,
    clock: Clock,
    metrics: Metrics,
    stop: asyncio.Event,
    grace_seconds: float = 10.0,
) -> int:
    """Run ``role`` (or every role) until ``stop`` is set; return the exit status."""
    names = ["aggregator", "scorer"] if role == "all" else [role]
    async with open_store(settings.store, clock=clock) as store:
        try:
            await store.ping()
        except StoreError as exc:
            log.warning("store not reachable at start (%s); continuing, it is retried", exc)
        rt = Runtime(settings=settings, store=store, clock=clock, metrics=metrics)
        log.info("callsbot starting: roles=%s store=%s", ",".join(names), safe_url(settings))
        try:
            async with market_data(settings, clock=clock, metrics=metrics) as market:
                await _run_roles(rt, names, market, stop, grace_seconds)
        except FatalError as exc:
            log.error("fatal: %s", exc)
            return EXIT_FATAL
    log.info("callsbot stopped")
    return 0


async def _run_roles(
    rt: Runtime,
    names: list[str],
    market: MarketValidator,
    stop: asyncio.Event,
    grace_seconds: float,
) -> None:
    from callsbot.web import serve

    async def role_task(name: str) -> None:
        try:
            if name == "aggregator":
                await run_aggregator(rt, market, stop)
            else:
                await run_scorer(rt, market, stop)
        except* FatalError as group:
            raise group.exceptions[0] from None
        except* FATAL as group:
            raise FatalError(f"{name}: {group.exceptions[0]}") from None

    tasks = [asyncio.create_task(role_task(n), name=n) for n in names]
    if rt.settings.web.enabled:
        tasks.append(asyncio.create_task(serve(rt, stop), name="web"))
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if not stop.is_set():
        stop.set()  # a role ended on its own (fatal error): stop the others cleanly too
    log.info("stopping (grace %.0fs)", grace_seconds)
    _, late = await asyncio.wait(tasks, timeout=grace_seconds)
    for task in late:
        log.error(
            "%s still running after the %.0fs grace; cancelled", task.get_name(), grace_seconds
        )
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    errors = [t.exception() for t in tasks if not t.cancelled() and t.exception() is not None]
    for error in errors:
        if isinstance(error, FatalError):
            raise error
    for error in errors:
        raise FatalError(f"unexpected error: {error!r}") from error


def safe_url(settings: Settings) -> str:
    """The store URL without a password."""
    url = settings.store.url
    if "@" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url
