"""The scorer role: feed → market snapshot → score + consensus → watch list → alert once.

Each poll turns the feed's new buys into score cards. A token at or above the alert threshold
is claimed in the store (``alert:<token>``, one cooldown) and sent to every sink; a token below
it goes on a watch list for one store window. Every tick reads the distinct-group counts of the
whole watch list in one round trip and re-scores the tokens whose count rose, so groups that
call a token after Cielo surfaced it can still lift it over the threshold.

The scorer learns about mentions only through the store, never from the aggregator directly.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import attrs

from callsbot.alert import Alert
from callsbot.clock import Clock
from callsbot.config import Settings
from callsbot.errors import StoreError
from callsbot.events import AlertSent, BuyScored, Event, EventHub, MentionRecorded
from callsbot.market.models import MarketData
from callsbot.metrics import Metrics
from callsbot.models import Buy, MarketSnapshot, Status, Verdict
from callsbot.reputation.snapshot import NEUTRAL, Reputation
from callsbot.scoring import Consensus, ScoreCard, consensus, score
from callsbot.sinks.base import AlertSink
from callsbot.sources.cielo import CieloAuthError, PollResult
from callsbot.store import keys
from callsbot.store.base import SignalStore
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


@attrs.frozen
class Scored:
    """What happened to one buy (or one re-scored watch-list token).

    Attributes:
        buy: the trade.
        outcome: ``alerted``, ``cooldown`` (already alerted by this or another scorer),
            ``alert_failed`` (every sink failed; retried next tick), ``watching`` (below the
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
    ) -> None:
        self._settings = settings
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
        self._local_claims: dict[str, float] = {}
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
        """Poll, tick and beat (role ``scorer``) until cancelled.

        Raises:
            CieloAuthError: the feed's API key was rejected (nothing else ends the loop).
        """
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
        return await self._rescore(tokens)

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

        Args:
            buys: new buys (each transaction already claimed by the feed).
            path: how they arrived, for ``callsbot_buys_total{path}``: ``poll``, ``websocket``
                or ``gap_fill``.
        """
        if buys:
            self._metrics.buys.labels(path=path).inc(len(buys))
        best: dict[str, Buy] = {}
        for buy in buys:
            current = best.get(buy.token)
            if current is None or (buy.usd or 0.0) >= (current.usd or 0.0):
                best[buy.token] = buy
        return await self._evaluate(list(best.values()))

    async def tick(self) -> list[Scored]:
        """Retry pending buys, expire the watch list, re-score tokens whose group count rose."""
        results = await self._retry_pending()
        now = self._clock.time()
        for token in [t for t, w in self._watch.items() if now - w.since >= self._store.window]:
            del self._watch[token]
        if not self._watch:
            return results
        return results + await self._rescore(list(self._watch))

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
            else:
                entry.count = count
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
            self._pending.pop(buy.token, None)
            if not verdict.valid or verdict.snapshot is None:
                self._metrics.feed_items.labels(outcome="market_invalid").inc()
                log.info(
                    "scorer: skipping %s: %s %s", buy.token, verdict.reason.value, verdict.detail
                )
                self._watch.pop(buy.token, None)
                results.append(Scored(buy, "market_invalid"))
                continue
            results.append(await self._score(buy, verdict.snapshot))
        return results

    def _park(self, buy: Buy) -> Scored:
        parked = self._pending.get(buy.token)
        if parked is not None:
            parked.buy = buy
        else:
            self._metrics.feed_items.labels(outcome="market_unknown").inc()
            self._pending[buy.token] = _Pending(buy, self._clock.time())
            while len(self._pending) > self._scoring.pending_max:
                dropped = next(iter(self._pending))
                del self._pending[dropped]
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
        outcome = await self._alert(Alert(buy, snapshot, card, self._clock.time()))
        if outcome == "alert_failed":
            self._remember(buy, snapshot, count, degraded=card.degraded, retry_alert=True)
        else:
            self._watch.pop(buy.token, None)
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
        self._watch[buy.token] = _Watch(buy, snapshot, since, count, degraded, retry_alert)
        while len(self._watch) > self._scoring.watch_max:
            del self._watch[next(iter(self._watch))]

    # -- alerts --------------------------------------------------------------------------------

    async def _claim(self, key: str) -> bool:
        ttl = self._scoring.cooldown_seconds
        now = self._clock.time()
        self._local_claims = {k: e for k, e in self._local_claims.items() if e > now}
        # What this process alerted stays in its own memory for the cooldown too: an alert sent
        # while the store was away must not be sent again once it is back (the store never
        # heard of it).
        if key in self._local_claims:
            return False
        try:
            won = await self._store.claim(key, ttl)
        except StoreError as exc:
            # Alert anyway (the score says degraded); this process at least never repeats itself.
            self._metrics.store_errors.labels(op="claim").inc()
            log.warning("scorer: alert claim failed, using a local cooldown: %s", exc)
            won = True
        if won:
            self._local_claims[key] = now + ttl
        return won

    async def _release(self, key: str) -> None:
        self._local_claims.pop(key, None)
        try:
            await self._store.release(key)
        except StoreError as exc:
            self._metrics.store_errors.labels(op="release").inc()
            log.warning("scorer: could not release %s; it retries after the cooldown: %s", key, exc)

    async def _alert(self, alert: Alert) -> str:
        key = keys.alert_claim(alert.token)
        if not await self._claim(key):
            self._metrics.alerts.labels(sink="all", outcome="cooldown").inc()
            log.info("scorer: %s already alerted within the cooldown", alert.token)
            return "cooldown"
        delivered = await asyncio.gather(*(self._deliver(sink, alert) for sink in self._sinks))
        if self._sinks and not any(ok for ok, _ in delivered):
            await self._release(key)
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
