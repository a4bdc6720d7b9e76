"""The scorer role: feed → market snapshot → score + consensus → watch list → alert once.

Each poll turns the feed's new buys into score cards. A token at or above the alert threshold
is claimed in the store (``alert:<token>``, one cooldown) and sent to every sink; a token below
it goes on a watch list for one store window. Every tick reads the distinct-group counts of the
whole watch list in one round trip and re-scores the tokens whose count rose, so groups that
call a token after Cielo surfaced it can still lift it over the threshold.

The scorer learns about mentions only through the store, never from the aggregator directly.

Nothing it owes survives only in its memory: buys waiting for market data and the watch list
are rows in the store (:data:`~callsbot.store.keys.PENDING_BUYS`,
:data:`~callsbot.store.keys.WATCH_LIST`) that a restarted scorer takes back; a feed transaction
is marked done only once its buy was handled; an alert being sent holds a short lease that
turns into the cooldown only when a sink took it, so a scorer that dies mid-send is retried
instead of blocking the token for the cooldown. Alerts made while the store was away are written
back when it answers again, and a restarted scorer learns the alerts of the last cooldown from
the history before it sends anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import attrs

from callsbot.alert import Alert
from callsbot.clock import Clock
from callsbot.config import Settings
from callsbot.errors import HistoryUnavailable, StoreError
from callsbot.events import (
    AlertSent,
    BuyScored,
    CodecError,
    Event,
    EventHub,
    MentionRecorded,
    structure,
    unstructure,
)
from callsbot.history.base import HistoryStore
from callsbot.market.models import MarketData
from callsbot.metrics import Metrics
from callsbot.models import Buy, MarketSnapshot, Status, Verdict
from callsbot.reputation.snapshot import NEUTRAL, Reputation
from callsbot.scoring import Consensus, ScoreCard, consensus, score
from callsbot.sinks.base import AlertSink
from callsbot.sources.cielo import CieloAuthError, PollResult
from callsbot.store import keys
from callsbot.store.base import SignalStore, WindowUnavailable
from callsbot.tasks import until_stopped

log = logging.getLogger(__name__)

AGGREGATOR_ROLE = "aggregator"
SCORER_ROLE = "scorer"
#: The published reputation is re-read at most this often (s), and at least once per job interval.
REPUTATION_REFRESH_SECONDS = 60.0

Sleep = Callable[[float], Awaitable[None]]


class FeedSource(Protocol):
    """Where buys come from (:class:`callsbot.sources.cielo.CieloFeed`)."""

    async def poll(self) -> PollResult:
        """New buys since the last poll.

        Raises:
            CieloAuthError: fatal; everything else is reported in the result.
        """
        ...

    async def handled(self, buys: Sequence[Buy]) -> None:
        """The scorer is done with ``buys``: their transactions count as handled from now on."""
        ...


@attrs.frozen
class Scored:
    """What happened to one buy (or one re-scored watch-list token).

    Attributes:
        buy: the trade.
        outcome: ``alerted``, ``cooldown`` (already alerted by this or another scorer),
            ``alert_failed`` (every sink failed; retried next tick), ``alert_busy`` (another
            scorer is sending it right now; retried next tick), ``watching`` (below the
            threshold), ``market_invalid`` or ``market_unknown`` (kept pending, retried).
        card: the score, when the token could be scored.
    """

    buy: Buy
    outcome: str
    card: ScoreCard | None = None


@attrs.define
class _Watch:
    buy: Buy
    snapshot: MarketSnapshot
    since: float
    count: int | None  # distinct groups at the last scoring; None when the store was away
    degraded: bool
    retry_alert: bool = False


@attrs.define
class _Pending:
    buy: Buy
    since: float


class Scorer:
    """The scorer role.

    Args:
        settings: all settings (``scoring``, ``consensus``, ``cielo.poll_seconds``, ``store``).
        store: the shared signal store (counts, heartbeats, alert claims).
        market: market data (any :class:`~callsbot.market.models.MarketData`).
        feed: the buy feed, normally a :class:`~callsbot.sources.cielo.CieloFeed`.
        sinks: where alerts go; an alert counts as delivered when at least one accepts it.
        clock: "now".
        metrics: ``feed_items``, ``feed_polls``, ``alerts``, ``store_errors``.
        events: where :class:`BuyScored` and :class:`AlertSent` are published.
        sleep: the loop's pause; tests inject one that moves a fake clock.
        history: where :meth:`restore` learns the alerts of the last cooldown (``None``: only
            the store's claims tell).
        owner: the name this process holds alert leases under (:func:`keys.lease_owner`).
    """

    def __init__(
        self,
        settings: Settings,
        store: SignalStore,
        market: MarketData,
        feed: FeedSource,
        sinks: Sequence[AlertSink],
        *,
        clock: Clock,
        metrics: Metrics,
        events: EventHub | None = None,
        sleep: Sleep = asyncio.sleep,
        history: HistoryStore | None = None,
        owner: str | None = None,
    ) -> None:
        self._settings = settings
        self._history = history
        self._owner = owner if owner is not None else keys.lease_owner("scorer")
        self._events = events
        self._scoring = settings.scoring
        self._store = store
        self._market = market
        self._feed = feed
        self._sinks = tuple(sinks)
        self._clock = clock
        self._metrics = metrics
        self._sleep = sleep
        self._watch: dict[str, _Watch] = {}
        self._urgent: set[str] = set()
        self._wake = asyncio.Event()
        self._pending: dict[str, _Pending] = {}
        # Alert claims this process knows to be in their cooldown (its own alerts, those the
        # history told), claim -> expiry; and those the store has not taken yet.
        self._cooldowns: dict[str, float] = {}
        self._unsynced: dict[str, float] = {}
        # Rows of the pending and watch tables not written yet: (table, token) -> JSON or None
        # (drop the row).
        self._unsaved: dict[tuple[str, str], str | None] = {}
        self._restored_rows = False
        self._learned_alerts = history is None
        # Tokens this process is sending right now: its own lease would let it in twice (the
        # WebSocket path scores concurrently with the loop).
        self._sending: set[str] = set()
        self._next_poll_delay = settings.cielo.poll_seconds
        self._last_poll_at: float | None = None
        # In websocket mode the Cielo WebSocket service hands buys to handle_buys (and polls only
        # while the socket is down); the scorer's own poll stays off.
        self._polls_feed = settings.cielo.mode == "poll"
        self._reputation: Reputation = NEUTRAL
        self._reputation_read_at: float | None = None

    # -- introspection (tests, /api) -----------------------------------------------------------

    @property
    def watching(self) -> tuple[str, ...]:
        """Tokens on the late-consensus watch list, oldest first."""
        return tuple(self._watch)

    @property
    def pending(self) -> tuple[str, ...]:
        """Tokens waiting for market data that was unknown when they arrived."""
        return tuple(self._pending)

    @property
    def last_poll_at(self) -> float | None:
        """Unix time of the last poll the feed answered (``ok`` or ``pending``), if any."""
        return self._last_poll_at

    @property
    def next_poll_delay(self) -> float:
        """Seconds until the next feed poll (Retry-After or back-off after a 429)."""
        return self._next_poll_delay

    # -- the loop ------------------------------------------------------------------------------

    name = "scorer"

    def health(self) -> list[str]:
        """Reasons the scorer is not ready: the feed not polled yet, or not for too long.

        In websocket mode the WebSocket service reports on the feed instead.
        """
        if not self._polls_feed:
            return []
        limit = 3 * self._settings.cielo.poll_seconds + self._settings.cielo.timeout_seconds
        if self._last_poll_at is None:
            return ["feed not polled yet"]
        age = self._clock.time() - self._last_poll_at
        return [f"feed last polled {age:.0f}s ago"] if age > limit else []

    async def run(self, stop: asyncio.Event) -> None:
        """Poll, tick and beat until ``stop`` is set.

        Raises:
            CieloAuthError: the feed's API key was rejected (nothing else ends the loop).
        """
        await until_stopped(stop, self.loop())

    async def loop(self) -> None:
        """Take back the saved state, then poll, tick and beat (role ``scorer``) until cancelled.

        Raises:
            CieloAuthError: the feed's API key was rejected (nothing else ends the loop).
        """
        await self.restore()
        next_poll = next_tick = next_beat = self._clock.time()
        tick_every = self._scoring.watch_tick_seconds
        beat_every = self._settings.store.heartbeat_interval
        while True:
            if self._clock.time() >= next_poll:
                try:
                    await self.poll_once()
                except CieloAuthError:
                    raise
                except Exception:
                    log.exception("scorer: poll failed; polling again later")
                    self._metrics.feed_polls.labels(outcome="crashed").inc()
                    self._next_poll_delay = self._settings.cielo.poll_seconds
                next_poll = self._clock.time() + self._next_poll_delay
            if self._clock.time() >= next_tick:
                try:
                    await self.tick()
                except Exception:
                    log.exception("scorer: watch-list tick failed")
                next_tick = self._clock.time() + tick_every
            if self._clock.time() >= next_beat:
                await self._beat(3 * beat_every)
                next_beat = self._clock.time() + beat_every
            wait = min(next_poll, next_tick, next_beat) - self._clock.time()
            await self._pause(max(0.0, wait))
            if self._urgent:
                try:
                    await self.react()
                except Exception:
                    log.exception("scorer: re-scoring on a new mention failed")

    async def _pause(self, seconds: float) -> None:
        """Wait ``seconds`` on the injected sleep, or less when a watched token was mentioned."""
        if self._urgent:
            return
        sleeper = asyncio.ensure_future(self._sleep(seconds))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waker.cancel()
            self._wake.clear()
            slept = sleeper.done()
            if not slept:
                sleeper.cancel()
        if slept:
            sleeper.result()  # what the sleep raised ends the loop, as before

    async def notice(self, event: Event) -> None:
        """A hub subscriber: a new mention of a watched token makes the scorer re-score it now."""
        if isinstance(event, MentionRecorded) and event.token in self._watch:
            self._urgent.add(event.token)
            self._wake.set()

    async def react(self) -> list[Scored]:
        """Re-score the watched tokens mentioned since the last call (one ``counts`` read)."""
        tokens = [t for t in self._urgent if t in self._watch]
        self._urgent.clear()
        if not tokens:
            return []
        self._metrics.scorer_reactions.inc()
        results = await self._rescore(tokens)
        await self._save_rows()
        return results

    async def _beat(self, ttl: float) -> None:
        try:
            await self._store.beat(SCORER_ROLE, ttl)
        except StoreError as exc:
            self._metrics.store_errors.labels(op="beat").inc()
            log.debug("scorer: heartbeat not written: %s", exc)

    async def poll_once(self) -> list[Scored]:
        """Poll the feed once and score every new buy (one per token: the largest).

        In websocket mode (``cielo.mode``) this does nothing and schedules no further poll.

        Raises:
            CieloAuthError: the feed's API key was rejected.
        """
        if not self._polls_feed:
            self._next_poll_delay = math.inf
            return []
        result = await self._feed.poll()
        if result.outcome in ("ok", "pending"):
            self._last_poll_at = self._clock.time()
        if result.retry_after is not None:
            self._next_poll_delay = result.retry_after
        else:
            self._next_poll_delay = self._settings.cielo.poll_seconds
        return await self.handle_buys(result.buys, path="poll")

    async def handle_buys(self, buys: Sequence[Buy], *, path: str) -> list[Scored]:
        """Score new buys, whichever way they arrived (one per token: the largest).

        Once each is handled (alerted, watched, parked for market data, skipped), the feed is
        told, so their transactions count as done; a buy whose handling never ended (the process
        died) comes back from the feed.

        Args:
            buys: new buys (each transaction leased by the feed).
            path: how they arrived, for ``callsbot_buys_total{path}``: ``poll``, ``websocket``
                or ``gap_fill``.
        """
        if not buys:
            return []
        self._metrics.buys.labels(path=path).inc(len(buys))
        best: dict[str, Buy] = {}
        for buy in buys:
            current = best.get(buy.token)
            if current is None or (buy.usd or 0.0) >= (current.usd or 0.0):
                best[buy.token] = buy
        results = await self._evaluate(list(best.values()))
        await self._save_rows()
        await self._feed.handled(buys)
        return results

    async def tick(self) -> list[Scored]:
        """Retry pending buys, expire the watch list, re-score tokens whose group count rose.

        Also takes back what :meth:`restore` could not read yet and writes back what the store
        missed while it was away (alert claims, pending and watch-list rows).
        """
        if not (self._restored_rows and self._learned_alerts):
            await self.restore()
        await self._write_back()
        results = await self._retry_pending()
        now = self._clock.time()
        for token in [t for t, w in self._watch.items() if now - w.since >= self._store.window]:
            self._unwatch(token)
        if self._watch:
            results += await self._rescore(list(self._watch))
        await self._save_rows()
        return results

    # -- what outlives the process -------------------------------------------------------------

    async def restore(self) -> None:
        """Take back the pending buys and the watch list from the store, and learn the alerts
        of the last cooldown from the history; what cannot be read now is tried again on the
        next tick. Call it before anything is sent (:meth:`loop` does)."""
        if not self._learned_alerts:
            await self._learn_alerts()
            await self._write_back()
        if not self._restored_rows:
            await self._load_rows()

    async def _learn_alerts(self) -> None:
        assert self._history is not None
        now = self._clock.time()
        cooldown = self._scoring.cooldown_seconds
        learned = 0
        try:
            async for event in self._history.events(since=now - cooldown, kinds=[AlertSent.kind]):
                if not isinstance(event, AlertSent):
                    continue
                key = keys.alert_claim(event.alert.token)
                expires = event.at + cooldown
                if expires > max(now, self._cooldowns.get(key, 0.0)):
                    self._cooldowns[key] = expires
                    # The store may have lost it (a Redis restart without persistence).
                    self._unsynced[key] = expires
                    learned += 1
        except HistoryUnavailable as exc:
            # The recorder reports a history outage; here it only means "ask again next tick".
            log.info("scorer: the history cannot tell the recent alerts yet: %s", exc)
            return
        self._learned_alerts = True
        if learned:
            log.info("scorer: %d alerts of the last cooldown learned from the history", learned)

    async def _load_rows(self) -> None:
        try:
            watch = await self._store.rows(keys.WATCH_LIST)
            pending = await self._store.rows(keys.PENDING_BUYS)
        except StoreError as exc:
            self._metrics.store_errors.labels(op="rows").inc()
            log.warning("scorer: cannot take back the watch list and pending buys yet: %s", exc)
            return
        now = self._clock.time()
        taken = [0, 0]
        for (table, rows), kind, limit, i in (
            ((keys.WATCH_LIST, watch), _Watch, float(self._store.window), 0),
            ((keys.PENDING_BUYS, pending), _Pending, self._scoring.pending_max_age_seconds, 1),
        ):
            mine: dict[str, Any] = self._watch if kind is _Watch else self._pending
            for token, raw in rows.items():
                entry = _decode(raw, kind)
                if entry is None or now - entry.since >= limit:
                    if entry is None:
                        log.warning("scorer: unreadable %s row for %s dropped", table, token)
                    self._unsaved[(table, token)] = None
                elif token not in mine:
                    mine[token] = entry
                    taken[i] += 1
        self._restored_rows = True
        if any(taken):
            log.info(
                "scorer: took back %d watched tokens and %d pending buys from the store", *taken
            )

    def _keep_watch(self, token: str) -> None:
        entry = self._watch.get(token)
        self._unsaved[(keys.WATCH_LIST, token)] = None if entry is None else _encode(entry)

    def _keep_pending(self, token: str) -> None:
        entry = self._pending.get(token)
        self._unsaved[(keys.PENDING_BUYS, token)] = None if entry is None else _encode(entry)

    def _unwatch(self, token: str) -> None:
        if self._watch.pop(token, None) is not None:
            self._keep_watch(token)

    async def _save_rows(self) -> bool:
        """Write the changed pending and watch rows; ``False`` when the store is away."""
        for row, value in list(self._unsaved.items()):
            table, token = row
            try:
                if value is None:
                    await self._store.drop_row(table, token)
                else:
                    await self._store.put_row(table, token, value)
            except StoreError as exc:
                self._metrics.store_errors.labels(op="rows").inc()
                log.debug("scorer: %d state rows wait for the store: %s", len(self._unsaved), exc)
                return False
            if self._unsaved.get(row) is value:
                del self._unsaved[row]
        return True

    async def _write_back(self) -> None:
        """Hand the store the alert claims it missed while it was away (or lost since)."""
        now = self._clock.time()
        written = 0
        for key, expires in list(self._unsynced.items()):
            if expires > now:
                try:
                    await self._store.claim(key, max(1, math.ceil(expires - now)))
                except StoreError:
                    self._metrics.store_errors.labels(op="claim").inc()
                    return
                written += 1
            del self._unsynced[key]
        if written:
            log.info("scorer: %d alert claims written back to the store", written)

    async def _rescore(self, tokens: Sequence[str]) -> list[Scored]:
        """Re-score those of ``tokens`` whose group count rose (or that wait for a retry)."""
        try:
            counts = await self._store.counts(tokens)
        except StoreError as exc:
            self._metrics.store_errors.labels(op="counts").inc()
            log.warning("scorer: cannot read group counts for the watch list: %s", exc)
            return []
        healthy = await self._aggregator_healthy()
        due: list[Buy] = []
        for token in tokens:
            entry = self._watch.get(token)
            if entry is None:
                continue
            count = counts.get(token, 0)
            if (
                entry.retry_alert
                or entry.count is None
                or count > entry.count
                or (entry.degraded and healthy)
            ):
                due.append(entry.buy)
            elif entry.count != count:
                entry.count = count
                self._keep_watch(token)
        return await self._evaluate(due, rescore=True) if due else []

    # -- steps ---------------------------------------------------------------------------------

    async def _aggregator_healthy(self) -> bool:
        if not any(w.degraded for w in self._watch.values()):
            return False
        try:
            age = await self._store.heartbeat_age(AGGREGATOR_ROLE)
        except StoreError:
            self._metrics.store_errors.labels(op="heartbeat_age").inc()
            return False
        return age is not None and age <= self._settings.consensus.heartbeat_stale_seconds

    async def _retry_pending(self) -> list[Scored]:
        if not self._pending:
            return []
        now = self._clock.time()
        limit = self._scoring.pending_max_age_seconds
        for token in [t for t, p in self._pending.items() if now - p.since >= limit]:
            log.info("scorer: giving up on %s: market data unknown for %.0fs", token, limit)
            self._metrics.feed_items.labels(outcome="market_unknown_expired").inc()
            del self._pending[token]
            self._keep_pending(token)
        return await self._evaluate([p.buy for p in self._pending.values()])

    async def _verdicts(self, buys: Sequence[Buy]) -> dict[str, Verdict]:
        by_chain: dict[str, list[str]] = {}
        for buy in buys:
            by_chain.setdefault(buy.chain, []).append(buy.token)
        out: dict[str, Verdict] = {}
        for chain, tokens in by_chain.items():
            try:
                out.update(await self._market.verdicts(tokens, chain=chain))
            except Exception as exc:
                # Market data is a boundary: whatever it raises means "unknown right now".
                log.warning("scorer: market data unavailable for %d token(s): %s", len(tokens), exc)
        return out

    async def _evaluate(self, buys: Sequence[Buy], *, rescore: bool = False) -> list[Scored]:
        if not buys:
            return []
        verdicts = await self._verdicts(buys)
        results: list[Scored] = []
        for buy in buys:
            verdict = verdicts.get(buy.token)
            watched = self._watch.get(buy.token) if rescore else None
            if verdict is None or verdict.status is Status.UNKNOWN:
                if watched is not None:
                    # Re-scoring a watched token: the snapshot it was scored with still serves.
                    results.append(await self._score(buy, watched.snapshot))
                    continue
                results.append(self._park(buy))
                continue
            if self._pending.pop(buy.token, None) is not None:
                self._keep_pending(buy.token)
            if not verdict.valid or verdict.snapshot is None:
                self._metrics.feed_items.labels(outcome="market_invalid").inc()
                log.info(
                    "scorer: skipping %s: %s %s", buy.token, verdict.reason.value, verdict.detail
                )
                self._unwatch(buy.token)
                results.append(Scored(buy, "market_invalid"))
                continue
            results.append(await self._score(buy, verdict.snapshot))
        return results

    def _park(self, buy: Buy) -> Scored:
        parked = self._pending.get(buy.token)
        if parked is not None:
            if parked.buy != buy:
                parked.buy = buy
                self._keep_pending(buy.token)
        else:
            self._metrics.feed_items.labels(outcome="market_unknown").inc()
            log.info("scorer: %s waits for market data; retried every tick", buy.token)
            self._pending[buy.token] = _Pending(buy, self._clock.time())
            self._keep_pending(buy.token)
            while len(self._pending) > self._scoring.pending_max:
                dropped = next(iter(self._pending))
                del self._pending[dropped]
                self._keep_pending(dropped)
                self._metrics.feed_items.labels(outcome="market_unknown_expired").inc()
        return Scored(buy, "market_unknown")

    async def _consensus(self, token: str) -> tuple[Consensus, int | None]:
        settings = self._settings.consensus
        try:
            if settings.weighted:
                members, votes = await self._store.groups_and_votes(token)
            else:
                members, votes = await self._store.groups(token), {}
            age = await self._store.heartbeat_age(AGGREGATOR_ROLE)
        except WindowUnavailable as exc:
            # The store answers, but its window is lost or being rebuilt from the history:
            # the trader is told that, not that the store is down.
            self._metrics.store_errors.labels(op="consensus").inc()
            log.warning("scorer: consensus for %s degraded, window not whole: %s", token, exc)
            why = "window being rebuilt" if exc.rebuilding else "window lost, not rebuilt yet"
            return consensus(None, heartbeat_age=None, settings=settings, unknown=why), None
        except StoreError as exc:
            self._metrics.store_errors.labels(op="consensus").inc()
            log.warning("scorer: consensus for %s degraded, store unreachable: %s", token, exc)
            return consensus(None, heartbeat_age=None, settings=settings), None
        if settings.weighted:
            now = self._clock.time()
            reputation = self._reputation
            if self._reputation_read_at is None or now - self._reputation_read_at >= min(
                REPUTATION_REFRESH_SECONDS, settings.job_interval_seconds
            ):
                reputation = await self._published_reputation()
            cons = consensus(
                members,
                heartbeat_age=age,
                settings=settings,
                now=now,
                reputation=reputation,
                votes=votes,
            )
        else:
            names = [g for g, _ in sorted(members.items(), key=lambda kv: (kv[1], kv[0]))]
            cons = consensus(names, heartbeat_age=age, settings=settings)
        if cons.degraded:
            log.warning("scorer: consensus for %s degraded: %s", token, cons.reason)
        return cons, len(members)

    @property
    def reputation(self) -> Reputation:
        """The reputation weighted consensus uses now (:data:`NEUTRAL` until one is read)."""
        return self._reputation

    async def _published_reputation(self) -> Reputation:
        """Read the published reputation again (the caller decides when: once per refresh)."""
        now = self._clock.time()
        self._reputation_read_at = now
        try:
            published = await self._store.reputation()
        except StoreError as exc:
            # Weights change slowly: the last ones read serve until the store answers again.
            self._metrics.store_errors.labels(op="reputation").inc()
            log.warning("scorer: cannot read the published reputation, keeping the last: %s", exc)
            return self._reputation
        if published is None:
            self._reputation = NEUTRAL
        elif published.computed_at != self._reputation.computed_at:
            self._reputation = published
            log.info(
                "scorer: reputation of %.0f s ago: %d weighted groups, %d copy relations",
                now - published.computed_at,
                len(published.weights),
                len(published.copies),
            )
        return self._reputation

    async def _score(self, buy: Buy, snapshot: MarketSnapshot) -> Scored:
        cons, count = await self._consensus(buy.token)
        card = score(buy, snapshot, cons, settings=self._scoring, now=self._clock.time())
        scored = await self._decide(buy, snapshot, card, count)
        if self._events is not None:
            self._events.publish(
                BuyScored(at=self._clock.time(), buy=buy, card=card, outcome=scored.outcome)
            )
        return scored

    async def _decide(
        self, buy: Buy, snapshot: MarketSnapshot, card: ScoreCard, count: int | None
    ) -> Scored:
        if card.total < self._scoring.alert_threshold:
            self._remember(buy, snapshot, count, degraded=card.degraded)
            log.info(
                "scorer: %s scored %.1f (< %.1f), watching",
                buy.token,
                card.total,
                self._scoring.alert_threshold,
            )
            return Scored(buy, "watching", card)
        # Written down before the send: a scorer that dies mid-send finds it again at start.
        self._remember(buy, snapshot, count, degraded=card.degraded, retry_alert=True)
        await self._save_rows()
        outcome = await self._alert(Alert(buy, snapshot, card, self._clock.time()))
        if outcome in ("alerted", "cooldown"):
            self._unwatch(buy.token)
        return Scored(buy, outcome, card)

    def _remember(
        self,
        buy: Buy,
        snapshot: MarketSnapshot,
        count: int | None,
        *,
        degraded: bool,
        retry_alert: bool = False,
    ) -> None:
        old = self._watch.pop(buy.token, None)
        # A re-score keeps the original window; a new buy of the token starts a fresh one.
        since = old.since if old is not None and old.buy == buy else self._clock.time()
        entry = _Watch(buy, snapshot, since, count, degraded, retry_alert)
        self._watch[buy.token] = entry
        if entry != old:
            self._keep_watch(buy.token)
        while len(self._watch) > self._scoring.watch_max:
            self._unwatch(next(iter(self._watch)))

    # -- alerts --------------------------------------------------------------------------------

    def _cooling(self, key: str) -> bool:
        now = self._clock.time()
        self._cooldowns = {k: e for k, e in self._cooldowns.items() if e > now}
        return key in self._cooldowns

    async def _take_lease(self, token: str) -> str | None:
        """Lease the sending of ``token``'s alert: ``None`` when this process may send it,
        else the outcome (``cooldown``, ``alert_busy``)."""
        key, lease = keys.alert_claim(token), keys.alert_lease(token)
        # What this process alerted (or learned from the history) stays in its own memory for
        # the cooldown: an alert sent while the store was away must not be sent again once it is
        # back, before the write-back got there.
        if self._cooling(key):
            return "cooldown"
        if token in self._sending:
            return "alert_busy"
        if await self._alerted_elsewhere(token):
            return "cooldown"
        await self._write_back()
        try:
            if not await self._store.lease(lease, self._owner, self._scoring.alert_lease_seconds):
                return "alert_busy"
            if await self._store.is_claimed(key):
                await self._store.unlease(lease, self._owner)
                return "cooldown"
        except StoreError as exc:
            # Alert anyway (the score says degraded); this process at least never repeats
            # itself, and the claim is written back when the store answers again.
            self._metrics.store_errors.labels(op="claim").inc()
            log.warning("scorer: alert claim failed, using a local cooldown: %s", exc)
        return None

    async def _alerted_elsewhere(self, token: str) -> bool:
        """Whether the history has an alert of ``token`` within the cooldown (any scorer's).

        Asked before every send: a store that lost its claims (a Redis restart without
        persistence) or missed them (an outage) must not make this scorer repeat an alert that
        another scorer sent. A history that cannot answer in time does not hold the alert up.
        """
        if self._history is None:
            return False
        now = self._clock.time()
        cooldown = self._scoring.cooldown_seconds
        latest: float | None = None
        try:
            async with asyncio.timeout(self._settings.history.connect_timeout):
                async for event in self._history.events(
                    since=now - cooldown, kinds=[AlertSent.kind], token=token
                ):
                    latest = event.at if latest is None else max(latest, event.at)
        except (HistoryUnavailable, TimeoutError) as exc:
            log.info("scorer: the history cannot tell whether %s was alerted: %s", token, exc)
            return False
        if latest is None:
            return False
        key = keys.alert_claim(token)
        self._cooldowns[key] = self._unsynced[key] = latest + cooldown
        await self._write_back()
        log.info("scorer: %s was alerted %.0fs ago (the history says)", token, now - latest)
        return True

    async def _renew(self, token: str) -> None:
        """Keep the send lease alive while the sinks take their time."""
        lease, every = keys.alert_lease(token), self._scoring.alert_lease_seconds / 3
        while True:
            # Real time, not the injected sleep: the lease runs out on the store's clock (Redis'
            # own), and a test's sleep that jumps a fake clock would spin here.
            await asyncio.sleep(every)
            with contextlib.suppress(StoreError):
                await self._store.lease(lease, self._owner, self._scoring.alert_lease_seconds)

    async def _settle(self, token: str, *, delivered: bool) -> None:
        """End the send lease; on a delivery the cooldown starts (in the store, and here)."""
        key, lease = keys.alert_claim(token), keys.alert_lease(token)
        if delivered:
            expires = self._clock.time() + self._scoring.cooldown_seconds
            self._cooldowns[key] = expires
            self._unsynced[key] = expires
        try:
            if delivered:
                await self._store.claim(key, self._scoring.cooldown_seconds)
                self._unsynced.pop(key, None)
            await self._store.unlease(lease, self._owner)
        except StoreError as exc:
            self._metrics.store_errors.labels(op="release").inc()
            log.warning("scorer: alert claim of %s not settled in the store yet: %s", token, exc)

    async def _alert(self, alert: Alert) -> str:
        busy = await self._take_lease(alert.token)
        if busy is not None:
            self._metrics.alerts.labels(sink="all", outcome=busy).inc()
            if busy == "cooldown":
                log.info("scorer: %s already alerted within the cooldown", alert.token)
            else:
                log.info("scorer: %s is being sent by another scorer; retrying", alert.token)
            return busy
        self._sending.add(alert.token)
        renew = asyncio.create_task(self._renew(alert.token), name="scorer-alert-lease")
        try:
            delivered = await asyncio.gather(*(self._deliver(s, alert) for s in self._sinks))
            sent = not self._sinks or any(ok for ok, _ in delivered)
            await self._settle(alert.token, delivered=sent)
        finally:
            renew.cancel()
            await asyncio.gather(renew, return_exceptions=True)
            self._sending.discard(alert.token)
        if not sent:
            return "alert_failed"
        if self._events is not None:
            # The message ids are what the alert's follow-up replies answer.
            took = tuple(
                (sink.name, message_id)
                for sink, (ok, message_id) in zip(self._sinks, delivered, strict=True)
                if ok
            )
            self._events.publish(AlertSent(at=self._clock.time(), alert=alert, deliveries=took))
        return "alerted"

    async def _deliver(self, sink: AlertSink, alert: Alert) -> tuple[bool, str | None]:
        try:
            message_id = await sink.send(alert)
        except Exception as exc:
            # One broken sink must neither stop the others nor the scorer.
            self._metrics.alerts.labels(sink=sink.name, outcome="failed").inc()
            log.error("scorer: alert for %s not delivered to %s: %s", alert.token, sink.name, exc)
            return False, None
        self._metrics.alerts.labels(sink=sink.name, outcome="sent").inc()
        return True, message_id if isinstance(message_id, str) else None

    async def aclose(self) -> None:
        """Close the sinks (and the feed, if it has ``aclose``)."""
        for sink in self._sinks:
            await sink.aclose()
        closer = getattr(self._feed, "aclose", None)
        if closer is not None:
            await closer()


def _encode(entry: _Watch | _Pending) -> str:
    return json.dumps(unstructure(entry), ensure_ascii=False, allow_nan=False)


def _decode(raw: str, kind: type[Any]) -> Any:
    """A stored row as ``kind`` (:class:`_Watch`, :class:`_Pending`), ``None`` if unreadable."""
    try:
        return structure(json.loads(raw), kind)
    except (ValueError, CodecError):
        return None
