"""Cielo feed over its WebSocket: buys within a second, REST for the gaps and the bad days.

:class:`CieloWebSocket` is a service (``cielo-ws``) for ``cielo.mode = "websocket"``:

1. Connect to ``cielo.ws_url`` with the ``X-API-KEY`` header; aiohttp pings every
   ``ws_heartbeat_seconds`` and a missing pong ends the connection.
2. Send ``subscribe_feed`` with the ``[cielo]`` filter (:func:`subscribe_command`).
3. Read ``tx`` events; each item goes through :meth:`CieloFeed.accept
   <callsbot.sources.cielo.CieloFeed.accept>`, i.e. the same tx-hash claim and the same
   :func:`~callsbot.sources.cielo.classify_item` parser as a REST page, and every buy goes to the
   handler (the scorer's ``handle_buys``) with ``path="websocket"``.
4. Alongside, fill the gap from the REST feed: ``fromTimestamp`` = the newest item known to be
   covered without a hole (nothing at all on the first connect: the newest pages, as a poll
   does). Buys come with ``path="gap_fill"``; what the socket delivered too is ``seen``.
5. When the connection ends, reconnect after a jittered, doubling wait
   (:meth:`RetryPolicy.backoff <callsbot.net.retry.RetryPolicy.backoff>`) that starts over after
   a good connection. After ``ws_max_failures`` bad ones in a row (refused, a handshake or
   protocol error, a subscription answered with an error), poll the REST feed every
   ``poll_seconds`` instead (logged once, and in :meth:`CieloWebSocket.health`) and try the
   socket again every ``ws_retry_seconds``.

Only a rejected key ends the service: 401/403 at the upgrade, or an ``error`` event saying so,
raise :class:`~callsbot.sources.cielo.CieloAuthError` naming ``CALLSBOT_CIELO_API_KEY``.
Unknown event types and malformed messages are counted (``callsbot_cielo_ws_events_total``)
and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, Protocol

import aiohttp
import attrs

from callsbot.clock import Clock
from callsbot.config import CieloSettings
from callsbot.metrics import Metrics
from callsbot.models import Buy
from callsbot.net.retry import RetryPolicy, Sleep
from callsbot.sources.cielo import API_KEY_ENV, CieloAuthError, CieloFeed, item_timestamp
from callsbot.tasks import until_stopped

log = logging.getLogger(__name__)

#: The event type that carries a feed item. Cielo's reference leaves it unnamed; public clients
#: of the live API read ``tx``.
FEED_EVENTS = frozenset({"tx"})
#: Events that answer our commands or say nothing about trades: counted as ``control``.
CONTROL_EVENTS = frozenset(
    {"feed_subscribed", "feed_unsubscribed", "wallet_subscribed", "wallet_unsubscribed", "pong"}
)
#: Words in an ``error`` event that mean the key was refused (then nothing else can help).
_AUTH_WORDS = ("api key", "api-key", "apikey", "unauthorized", "unauthorised", "forbidden")
#: Buys being scored at once; the reader waits for a slot beyond this.
MAX_IN_FLIGHT = 64
#: Readiness detail while the socket is down and the REST feed is polled instead.
FALLBACK_DETAIL = "cielo websocket down, polling"

#: How long a close handshake may take before the connection is simply dropped.
_CLOSE_SECONDS = 2.0

PATH_WEBSOCKET = "websocket"
PATH_GAP_FILL = "gap_fill"
PATH_POLL = "poll"


class BuyHandler(Protocol):
    """Where buys go (the scorer's ``handle_buys``)."""

    def __call__(self, buys: Sequence[Buy], *, path: str) -> Awaitable[object]:
        """Score ``buys`` (already claimed) that arrived by ``path``."""
        ...


class SocketFailed(Exception):
    """A connection could not be made or kept (counted toward the fallback).

    Attributes:
        reason: a short label for ``callsbot_cielo_ws_failures_total{reason}``.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@attrs.frozen
class Ended:
    """How a connection that was up came to an end.

    Attributes:
        good: it was subscribed, delivered an event or stayed up ``ws_stable_seconds``; the
            reconnect back-off starts over.
        reason: ``closed`` (a close frame or the connection dropped), ``heartbeat`` or
            ``error``, or ``subscribe_refused``.
    """

    good: bool
    reason: str


def subscribe_command(settings: CieloSettings) -> dict[str, Any]:
    """The ``subscribe_feed`` command for the ``[cielo]`` filter.

    Keys the settings leave open are omitted (the server then does not filter on them):
    ``chains``, ``tx_types``, ``min_usd_value`` (``min_usd`` when above 0), ``new_trade``
    (``new_trades`` when set) inside ``filter``; ``list_id`` beside it, as documented.
    """
    wanted: dict[str, Any] = {}
    if settings.chains:
        wanted["chains"] = list(settings.chains)
    if settings.tx_types:
        wanted["tx_types"] = list(settings.tx_types)
    if settings.min_usd > 0:
        wanted["min_usd_value"] = settings.min_usd
    if settings.new_trades is not None:
        wanted["new_trade"] = settings.new_trades
    command: dict[str, Any] = {"type": "subscribe_feed"}
    if wanted:
        command["filter"] = wanted
    if settings.list_id is not None:
        command["list_id"] = settings.list_id
    return command


def reconnect_policy(settings: CieloSettings) -> RetryPolicy:
    """The reconnect back-off: ``ws_backoff_initial_seconds`` doubling up to
    ``ws_backoff_max_seconds``, plus up to ``ws_backoff_jitter_seconds`` at random."""
    return RetryPolicy(
        attempts=max(settings.ws_max_failures, 1),
        wait_initial=settings.ws_backoff_initial_seconds,
        wait_max=settings.ws_backoff_max_seconds,
        wait_jitter=settings.ws_backoff_jitter_seconds,
    )


def _is_auth_error(data: Any) -> bool:
    if isinstance(data, Mapping):
        for key in ("code", "status", "status_code"):
            if str(data.get(key)) in ("401", "403"):
                return True
        text = " ".join(str(data.get(k, "")) for k in ("message", "error", "reason"))
    else:
        text = str(data)
    text = text.lower()
    return any(word in text for word in _AUTH_WORDS)


class CieloWebSocket:
    """The Cielo WebSocket consumer (service ``cielo-ws``).

    Args:
        settings: the ``[cielo]`` section (``api_key``, ``ws_*``, the filter, ``poll_seconds``).
        feed: the REST feed: the tx-hash claim and the parser for every item, gap fills and
            the polls while the socket is down.
        handle: where buys go, e.g. :meth:`Scorer.handle_buys <callsbot.scorer.Scorer.handle_buys>`.
        clock: "now" (connection age, poll and retry schedule).
        metrics: ``cielo_ws_*``, ``cielo_gap_fill_items``, ``feed_items``, ``feed_polls``.
        sleep: every pause of the service (back-off, polls while down); tests move a FakeClock.
        session: an aiohttp session to use; the service opens (and closes) its own when ``None``.
        policy: the reconnect back-off; :func:`reconnect_policy` of the settings when ``None``.

    Raises:
        ValueError: ``settings.api_key`` is not set (names ``CALLSBOT_CIELO_API_KEY``).
    """

    name = "cielo-ws"

    def __init__(
        self,
        settings: CieloSettings,
        feed: CieloFeed,
        handle: BuyHandler,
        *,
        clock: Clock,
        metrics: Metrics,
        sleep: Sleep = asyncio.sleep,
        session: aiohttp.ClientSession | None = None,
        policy: RetryPolicy | None = None,
    ) -> None:
        if not settings.api_key:
            raise ValueError(f"the Cielo API key is not set: set {API_KEY_ENV}")
        self._settings = settings
        self._key = settings.api_key
        self._feed = feed
        self._handle = handle
        self._clock = clock
        self._metrics = metrics
        self._sleep = sleep
        self._session = session
        self._policy = policy if policy is not None else reconnect_policy(settings)
        # Every item up to this timestamp (Cielo's, unix seconds) reached us by some path.
        self._watermark: float | None = None
        self._started = False
        self._ever_connected = False
        self._connected = False
        self._fallback = False
        self._next_poll_at = 0.0
        self._in_flight: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)

    # -- introspection -----------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether a subscribed connection is up right now."""
        return self._connected

    @property
    def polling(self) -> bool:
        """Whether the socket is down and the REST feed is polled instead."""
        return self._fallback

    @property
    def watermark(self) -> float | None:
        """The newest item time (unix s) up to which the feed is known to be covered."""
        return self._watermark

    def health(self) -> list[str]:
        """``cielo websocket down, polling`` while falling back; not connected yet at start."""
        if self._fallback:
            return [FALLBACK_DETAIL]
        if not self._ever_connected:
            return ["cielo websocket not connected yet"]
        return []

    # -- the loop -----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, read, reconnect (or poll) until ``stop`` is set.

        Raises:
            CieloAuthError: the key was rejected (at the upgrade, by an event or by REST).
        """
        await until_stopped(stop, self.loop())

    async def loop(self) -> None:
        """Run until cancelled; see the module docstring.

        Raises:
            CieloAuthError: the key was rejected.
        """
        async with contextlib.AsyncExitStack() as stack:
            session = self._session
            if session is None:
                session = await stack.enter_async_context(aiohttp.ClientSession())
            stack.push_async_callback(self._cancel_in_flight)
            failures = 0
            while True:
                try:
                    ended = await self._connection(session)
                except SocketFailed as exc:
                    self._metrics.cielo_ws_failures.labels(reason=exc.reason).inc()
                    detail = self._redact(str(exc))
                    failures += 1
                else:
                    self._metrics.cielo_ws_failures.labels(reason=ended.reason).inc()
                    detail = ended.reason
                    failures = 1 if ended.good else failures + 1
                if failures >= self._settings.ws_max_failures:
                    await self._poll_instead(detail)
                    continue
                wait = self._policy.backoff(failures)
                log.info("cielo: websocket %s; reconnecting in %.1fs", detail, wait)
                await self._sleep(wait)

    # -- one connection -----------------------------------------------------------------------

    async def _connect(self, session: aiohttp.ClientSession) -> aiohttp.ClientWebSocketResponse:
        s = self._settings
        try:
            async with asyncio.timeout(s.ws_connect_timeout_seconds):
                return await session.ws_connect(
                    s.ws_url,
                    headers={"X-API-KEY": self._key},
                    heartbeat=s.ws_heartbeat_seconds,
                    autoping=True,
                    # A close handshake must not hold up a reconnect or the shutdown grace.
                    timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=_CLOSE_SECONDS),
                )
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status in (401, 403):
                raise CieloAuthError(
                    f"Cielo rejected the API key at the WebSocket upgrade (HTTP {exc.status});"
                    f" check {API_KEY_ENV}"
                ) from None
            raise SocketFailed("handshake", f"HTTP {exc.status}") from None
        except TimeoutError:
            raise SocketFailed("timeout", "no connection within the timeout") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise SocketFailed("refused", f"{type(exc).__name__}: {exc}") from None

    async def _connection(self, session: aiohttp.ClientSession) -> Ended:
        """Connect, subscribe, then read and fill the gap until the connection ends.

        Raises:
            SocketFailed: no connection could be made.
            CieloAuthError: the key was rejected.
        """
        ws = await self._connect(session)
        since = self._watermark if self._started else None
        first = not self._started
        self._started = True
        if self._ever_connected:
            self._metrics.cielo_ws_reconnects.inc()
        self._ever_connected = True
        conn = _Connection(ws, self._clock.time())
        try:
            await ws.send_json(subscribe_command(self._settings))
            self._set_connected(True)
            gap = asyncio.create_task(self._fill_gap(conn, since, first=first))
            reader = asyncio.create_task(self._read(conn))
            try:
                pending: set[asyncio.Task[Any]] = {gap, reader}
                while reader in pending:
                    done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        task.result()  # a rejected key (from either side) ends everything
                return reader.result()
            finally:
                for task in (gap, reader):
                    task.cancel()
                await asyncio.gather(gap, reader, return_exceptions=True)
        except (aiohttp.ClientError, ConnectionError) as exc:
            # send_json on a connection that died right after the upgrade
            raise SocketFailed("refused", f"{type(exc).__name__}: {exc}") from None
        finally:
            self._set_connected(False)
            await ws.close()

    def _set_connected(self, up: bool) -> None:
        self._connected = up
        self._metrics.cielo_ws_connected.set(1 if up else 0)

    def _mark_good(self, conn: _Connection) -> None:
        """The subscription took (acknowledged, or an event came): the socket is back."""
        conn.good = True
        if self._fallback:
            self._fallback = False
            self._metrics.cielo_ws_fallback.set(0)
            log.warning("cielo: websocket back; REST polling stopped")

    async def _read(self, conn: _Connection) -> Ended:
        ws = conn.ws
        while True:
            msg = await ws.receive()
            if msg.type == aiohttp.WSMsgType.TEXT:
                if await self._on_text(conn, msg.data):
                    return Ended(False, "subscribe_refused")
            elif msg.type == aiohttp.WSMsgType.BINARY:
                self._metrics.cielo_ws_events.labels(kind="malformed").inc()
            elif msg.type == aiohttp.WSMsgType.ERROR:
                heartbeat = isinstance(msg.data, aiohttp.ServerTimeoutError)
                log.info("cielo: websocket error: %s", self._redact(str(msg.data)))
                return Ended(self._good(conn), "heartbeat" if heartbeat else "error")
            else:  # CLOSE, CLOSING, CLOSED: the server closed, or the connection dropped
                return Ended(self._good(conn), "closed")

    def _good(self, conn: _Connection) -> bool:
        stable = self._clock.time() - conn.since >= self._settings.ws_stable_seconds
        return conn.good or stable

    async def _on_text(self, conn: _Connection, text: str) -> bool:
        """Handle one text message; ``True`` when the subscription was refused."""
        try:
            event = json.loads(text)
        except ValueError:
            event = None
        kind = event.get("type") if isinstance(event, dict) else None
        if not isinstance(event, dict) or not isinstance(kind, str):
            self._metrics.cielo_ws_events.labels(kind="malformed").inc()
            log.debug("cielo: skipping a websocket message that is not an event")
            return False
        data = event.get("data")
        if kind in FEED_EVENTS:
            if not isinstance(data, Mapping):
                self._metrics.cielo_ws_events.labels(kind="malformed").inc()
                return False
            self._metrics.cielo_ws_events.labels(kind="feed").inc()
            self._mark_good(conn)
            await self._on_item(conn, data)
            return False
        if kind == "error":
            self._metrics.cielo_ws_events.labels(kind="error").inc()
            detail = data if data is not None else event.get("message")
            if _is_auth_error(detail):
                raise CieloAuthError(
                    f"Cielo rejected the API key on the WebSocket; check {API_KEY_ENV}"
                )
            log.warning("cielo: websocket error event: %s", self._redact(str(detail))[:200])
            # An error before the subscription took means no event will ever come.
            return not conn.good
        if kind in CONTROL_EVENTS:
            self._metrics.cielo_ws_events.labels(kind="control").inc()
            if kind == "feed_subscribed":
                self._mark_good(conn)
            return False
        self._metrics.cielo_ws_events.labels(kind="unknown").inc()
        log.debug("cielo: skipping websocket event of unknown type %r", kind[:40])
        return False

    async def _on_item(self, conn: _Connection, item: Mapping[str, Any]) -> None:
        ts = item_timestamp(item)
        if ts is not None:
            conn.newest = ts if conn.newest is None else max(conn.newest, ts)
            if conn.gap_filled:
                self._advance(ts)
        outcome, buy = await self._feed.accept(item)
        self._metrics.feed_items.labels(outcome=outcome).inc()
        if buy is not None:
            await self._dispatch(buy)

    async def _dispatch(self, buy: Buy) -> None:
        # Scoring may wait on market data or a sink; the reader goes on meanwhile.
        await self._slots.acquire()
        task = asyncio.create_task(self._hand([buy], PATH_WEBSOCKET))
        self._in_flight.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._slots.release()

    async def _cancel_in_flight(self) -> None:
        tasks = list(self._in_flight)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _hand(self, buys: Sequence[Buy], path: str) -> None:
        try:
            await self._handle(buys, path=path)
        except Exception:
            # One buy that cannot be scored must not end the feed.
            log.exception("cielo: scoring %d buy(s) from %s failed", len(buys), path)

    def _advance(self, ts: float | None) -> None:
        if ts is not None and (self._watermark is None or ts > self._watermark):
            self._watermark = ts

    # -- REST: gap fill and polling while down --------------------------------------------------

    async def _fill_gap(self, conn: _Connection, since: float | None, *, first: bool) -> None:
        """Read the REST feed from ``since`` until it answers; then the socket alone counts."""
        attempt = 0
        while True:
            result = await self._feed.poll(since=since)
            for outcome, n in result.skipped.items():
                self._metrics.cielo_gap_fill_items.labels(outcome=outcome).inc(n)
            if result.buys:
                self._metrics.cielo_gap_fill_items.labels(outcome="buy").inc(len(result.buys))
                await self._hand(result.buys, PATH_GAP_FILL)
            if result.outcome == "ok":
                if since is not None and result.pages >= self._settings.max_pages:
                    log.warning(
                        "cielo: the gap fill read cielo.max_pages=%d pages; a longer gap may"
                        " have lost its oldest items",
                        result.pages,
                    )
                self._advance(result.newest)
                self._advance(conn.newest)
                conn.gap_filled = True
                if not first:
                    log.info(
                        "cielo: gap since %s filled: %d buy(s), %d other item(s)",
                        "start" if since is None else f"{since:.0f}",
                        len(result.buys),
                        sum(result.skipped.values()),
                    )
                return
            attempt += 1
            wait = result.retry_after or self._policy.backoff(attempt)
            await self._sleep(max(wait, self._settings.ws_backoff_initial_seconds))

    async def _poll_instead(self, detail: str) -> None:
        """Poll the REST feed until it is time to try the socket again."""
        if not self._fallback:
            self._fallback = True
            self._metrics.cielo_ws_fallback.set(1)
            log.warning(
                "cielo: websocket down (%s); polling the REST feed every %.0fs, retrying the"
                " socket every %.0fs",
                detail,
                self._settings.poll_seconds,
                self._settings.ws_retry_seconds,
            )
        retry_at = self._clock.time() + self._settings.ws_retry_seconds
        while True:
            now = self._clock.time()
            if now >= self._next_poll_at:
                self._next_poll_at = now + await self._poll_once()
            now = self._clock.time()
            if now >= retry_at:
                return
            await self._sleep(min(self._next_poll_at, retry_at) - now)

    async def _poll_once(self) -> float:
        """One poll from the watermark; returns the seconds until the next one."""
        result = await self._feed.poll(since=self._watermark)
        if result.outcome == "ok":
            self._advance(result.newest)
        if result.buys:
            await self._hand(result.buys, PATH_POLL)
        if result.retry_after is not None:
            return result.retry_after
        return self._settings.poll_seconds

    def _redact(self, text: str) -> str:
        return text.replace(self._key, "<redacted>")


@attrs.define(eq=False)
class _Connection:
    ws: aiohttp.ClientWebSocketResponse
    since: float
    good: bool = False
    newest: float | None = None
    gap_filled: bool = False
