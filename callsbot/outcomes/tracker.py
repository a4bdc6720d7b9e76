"""The outcome tracker: what happened to the price after every event (outcomes.md sections 1–3).

A service subscribed to the event hub. For each level reached, each first score of a token in
a window (level 0 included: the "solo" bucket) and each alert it stores the event and plans the
section-2 fetches in the history (:mod:`callsbot.outcomes.ledger`); events on one token within
one window share one schedule. When a fetch is due it asks GeckoTerminal (the shared limiter and
cool-down of :class:`~callsbot.market.prices.GeckoTerminalClient`), keeps the candles, and
recomputes every section-3 field of the schedule's events with
:func:`~callsbot.outcomes.path.compute_outcome`. Everything lives in the history, so a restart
carries on with the fetches that are due; ``dead`` and ``unresolved`` are statuses, never
silent drops.

Alerts also get short replies at their checkpoints (``📈 +1h 1.42× · peak 2.31× at 38 min ·
drawdown −18 %``), at most once each: a claim in the window store and a row in the history.

The clock and the sleep are injected: tests and the demo move a FakeClock to the next due time
instead of waiting for it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

import attrs
from sqlalchemy.ext.asyncio import AsyncConnection

from callsbot.clock import Clock
from callsbot.config import OutcomesSettings
from callsbot.errors import HistoryUnavailable, SinkError, StoreError
from callsbot.events import (
    AlertSent,
    BuyScored,
    Event,
    EventHub,
    LevelReached,
    MentionRecorded,
    Subscription,
    VerdictMade,
)
from callsbot.market.prices import (
    Candles,
    GeckoTerminalClient,
    NoDataReason,
    NoDataYet,
    Timeframe,
    best_pool,
)
from callsbot.metrics import Metrics
from callsbot.outcomes.command import rules_from
from callsbot.outcomes.followup import followup_text
from callsbot.outcomes.ledger import (
    Fetch,
    FetchState,
    NewEvent,
    OutcomeLedger,
    Schedule,
    ScheduleView,
    TrackedEvent,
)
from callsbot.outcomes.path import Outcome, OutcomeStatus, compute_outcome, unresolved_outcome
from callsbot.outcomes.report import EventKind
from callsbot.outcomes.schedule import (
    FIVE_MINUTES,
    LATE_STAGE,
    MINUTE,
    Window,
    as_of,
    late_entry_fetch,
)
from callsbot.store import keys
from callsbot.store.base import Claims

log = logging.getLogger("callsbot.outcomes")

Sleep = Callable[[float], Awaitable[None]]

#: Event kinds the tracker subscribes to.
KINDS = (MentionRecorded, VerdictMade, LevelReached, BuyScored, AlertSent)
#: Tokens whose calls and pools are remembered (oldest forgotten first).
_MEMORY = 20_000
#: Follow-up claims outlive any checkpoint.
_FOLLOWUP_CLAIM_TTL = 3 * 86_400
#: Fetches read from the history at a time.
_DUE_BATCH = 20


class Replier(Protocol):
    """Where follow-ups go: a sink that can answer one of its own messages."""

    name: str

    async def reply(self, text: str, *, reply_to: str) -> str | None:
        """Send ``text`` as a reply to message ``reply_to``; return the new message's id.

        Raises:
            SinkError: not sent.
        """
        ...


@attrs.define
class _Calls:
    first: int
    last: int


@attrs.frozen
class _Reply:
    event: TrackedEvent
    checkpoint: int
    replier: Replier
    text: str


class OutcomeTracker:
    """Follows events to their outcomes (a service).

    Args:
        ledger: the tracker's tables in the history.
        gecko: the GeckoTerminal client (its limiter is the budget of every fetch).
        settings: the ``[outcomes]`` section.
        window: the store window (s): a token's events within it share fetches, and a score is
            the "first" when none came within it before.
        network: the chain GeckoTerminal serves (``[geckoterminal] network``); events of other
            chains become unresolved.
        clock: "now".
        sleep: the loop's pause (a FakeClock's in tests and the demo).
        metrics: ``tracker_*``.
        hub: subscribed to at construction when given.
        claims: follow-up claims (the window store); ``None``: only the history guards them.
        repliers: sinks that can reply, by sink name (``telegram``).
        buffer_size: events held while the history is away (beyond: counted and logged).
        queue_size: the hub queue of its subscription.
    """

    name = "tracker"
    #: Stopped after the event hub: what the others publish while stopping is still tracked.
    drains_events = True

    def __init__(
        self,
        ledger: OutcomeLedger,
        gecko: GeckoTerminalClient,
        *,
        settings: OutcomesSettings,
        window: int,
        network: str,
        clock: Clock,
        metrics: Metrics,
        sleep: Sleep = asyncio.sleep,
        hub: EventHub | None = None,
        claims: Claims | None = None,
        repliers: Mapping[str, Replier] | None = None,
        buffer_size: int = 100_000,
        queue_size: int = 10_000,
    ) -> None:
        self.ledger = ledger
        self.gecko = gecko
        self._settings = settings
        self._rules = rules_from(settings)
        self._window = window
        self._network = network
        self._clock = clock
        self._metrics = metrics
        self._sleep = sleep
        self._claims = claims
        self._repliers = dict(repliers or {})
        self._buffer_size = buffer_size
        self._intake: collections.deque[NewEvent] = collections.deque()
        self._calls: collections.OrderedDict[str, dict[str, _Calls]] = collections.OrderedDict()
        self._pools: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._dues: list[float] = []
        self._wake = asyncio.Event()
        self._started = False
        self._down_since: float | None = None
        self._down_reason = ""
        self._dropped = 0
        self.subscription: Subscription | None = None
        if hub is not None:
            self.subscription = hub.subscribe(
                self.name, self.accept, kinds=KINDS, maxsize=queue_size
            )
        metrics.tracker_queue.set_function(lambda: float(self.queue_length))
        metrics.tracker_scheduled.set_function(lambda: float(len(self._dues)))
        metrics.tracker_oldest_due.set_function(self.oldest_due_delay)

    # -- what it states ------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        """Whether :meth:`start` is done (the schema is there: its tables can be read)."""
        return self._started

    @property
    def pending(self) -> int:
        """Events taken but not yet stored."""
        return len(self._intake)

    @property
    def queue_length(self) -> int:
        """Fetches due now and not yet made."""
        now = self._clock.time()
        return sum(1 for d in self._dues if d <= now)

    @property
    def scheduled(self) -> int:
        """Fetches scheduled, due or not."""
        return len(self._dues)

    def next_due(self) -> float | None:
        """When the next fetch is due (``None``: none scheduled)."""
        return self._dues[0] if self._dues else None

    def oldest_due_delay(self) -> float:
        """How late the oldest due fetch is, seconds (0 when none is due)."""
        if not self._dues:
            return 0.0
        return max(0.0, self._clock.time() - self._dues[0])

    def health(self) -> list[str]:
        """Reasons the tracker is not ready: the history is away, events are being dropped."""
        reasons = []
        if self._down_since is not None:
            age = max(0.0, self._clock.time() - self._down_since)
            reasons.append(
                f"outcome tracker: history unavailable for {age:.0f}s ({self._down_reason}); "
                f"{len(self._intake)} events waiting"
            )
        if len(self._intake) >= self._buffer_size:
            reasons.append("outcome tracker: event buffer full, events are being dropped")
        return reasons

    # -- intake --------------------------------------------------------------------------------

    async def accept(self, event: Event) -> None:
        """Take one event (the hub's handler); never waits on the database or the network.

        Events from other processes are taken too: one tracker follows them all.
        """
        if isinstance(event, MentionRecorded):
            self._note_call(event)
            return
        if isinstance(event, VerdictMade):
            snap = event.verdict.snapshot
            if event.verdict.valid and snap is not None and snap.pair_address:
                self._remember(self._pools, event.verdict.token, snap.pair_address)
            return
        new = self._new_event(event)
        if new is None:
            return
        if len(self._intake) >= self._buffer_size:
            self._dropped += 1
            self._metrics.tracker_events.labels(kind="dropped").inc()
            if self._dropped == 1 or self._dropped % 1000 == 0:
                log.error(
                    "outcome tracker: buffer full (%d events), %d dropped so far",
                    self._buffer_size,
                    self._dropped,
                )
            return
        self._intake.append(new)
        self._wake.set()

    @staticmethod
    def _remember(memory: collections.OrderedDict[str, str], key: str, value: str) -> None:
        memory[key] = value
        memory.move_to_end(key)
        while len(memory) > _MEMORY:
            memory.popitem(last=False)

    def _note_call(self, event: MentionRecorded) -> None:
        calls = self._calls.setdefault(event.token, {})
        self._calls.move_to_end(event.token)
        ts = event.ref.ts
        seen = calls.get(event.ref.group)
        if seen is None:
            calls[event.ref.group] = _Calls(ts, ts)
        else:
            seen.first, seen.last = min(seen.first, ts), max(seen.last, ts)
        while len(self._calls) > _MEMORY:
            self._calls.popitem(last=False)

    def _groups_at(self, token: str, ts: int) -> tuple[str, ...]:
        """The groups with a call of ``token`` in ``(ts − window, ts]`` seen so far."""
        calls = self._calls.get(token, {})
        inside = [
            (c.first, g) for g, c in calls.items() if c.first <= ts and c.last > ts - self._window
        ]
        return tuple(g for _, g in sorted(inside))

    def _pool(self, token: str) -> tuple[str | None, str | None]:
        pool = self._pools.get(token)
        return (pool, "verdict") if pool else (None, None)

    def _new_event(self, event: Event) -> NewEvent | None:
        if isinstance(event, LevelReached):
            groups = self._groups_at(event.token, event.ts)
            if len(event.groups) > len(groups):
                groups = event.groups
            pool, source = self._pool(event.token)
            return NewEvent(
                kind=EventKind.LEVEL_REACHED,
                chain=event.chain,
                token=event.token,
                level=event.level,
                event_ts=event.ts,
                at=event.at,
                groups=groups,
                pool=pool,
                pool_source=source,
            )
        if isinstance(event, BuyScored):
            # A re-score is never a first score; a degraded score's level is not known.
            if event.rescore or event.card.consensus.degraded:
                return None
            pool, source = self._pool(event.buy.token)
            groups = event.card.consensus.groups
            return NewEvent(
                kind=EventKind.SCORED,
                chain=event.buy.chain,
                token=event.buy.token,
                level=len(groups),
                event_ts=int(event.at),
                at=event.at,
                groups=groups,
                pool=pool,
                pool_source=source,
            )
        if isinstance(event, AlertSent):
            alert = event.alert
            groups = alert.card.consensus.groups
            sink, message = self._reply_target(event.deliveries)
            return NewEvent(
                kind=EventKind.ALERT,
                chain=alert.snapshot.chain or alert.buy.chain,
                token=alert.token,
                level=len(groups),
                event_ts=int(event.at),
                at=event.at,
                groups=groups,
                pool=alert.snapshot.pair_address or None,
                pool_source="snapshot",
                alert_created_at=alert.created_at,
                reply_sink=sink,
                reply_to=message,
            )
        return None

    def _reply_target(
        self, deliveries: tuple[tuple[str, str | None], ...]
    ) -> tuple[str | None, str | None]:
        with_id = [(s, m) for s, m in deliveries if m is not None]
        for sink, message in with_id:
            if sink in self._repliers:
                return sink, message
        return with_id[0] if with_id else (None, None)

    async def ingest(self) -> int:
        """Store the events taken so far and plan their fetches; how many were new.

        Raises:
            HistoryUnavailable: the database failed; the events stay in memory.
        """
        new = 0
        while self._intake:
            event = self._intake[0]
            if event.kind is EventKind.LEVEL_REACHED and len(event.groups) < event.level:
                # Restarted since those groups called: the history's mentions tell.
                found = await self.ledger.mention_groups(
                    event.token, ts=event.event_ts, window=self._window, recorded_by=event.at
                )
                if len(found) > len(event.groups):
                    event = attrs.evolve(event, groups=found)
            stored = await self.ledger.register(event, window=self._window, now=self._clock.time())
            self._intake.popleft()
            label = event.kind.value if stored is not None else "repeated"
            self._metrics.tracker_events.labels(kind=label).inc()
            new += stored is not None
        await self.refresh()
        return new

    async def refresh(self) -> None:
        """Re-read the due times of the pending fetches (what the metrics state)."""
        self._dues = await self.ledger.pending_dues()

    async def catch_up(self, since: float) -> int:
        """Track what the history recorded since ``since`` and the tracker does not know yet
        (events taken but lost to a crash, or recorded while the tracker was off)."""
        kinds = {k.kind for k in KINDS}
        taken = 0
        async for event in self.ledger.history.events(since=since, kinds=kinds):
            before = len(self._intake)
            await self.accept(event)
            taken += len(self._intake) - before
            if len(self._intake) >= 500:
                await self.ingest()
        await self.ingest()
        return taken

    # -- fetching ------------------------------------------------------------------------------

    async def run_due(self, stop: asyncio.Event | None = None) -> int:
        """Make every fetch due now (later ones wait); how many were made.

        Raises:
            HistoryUnavailable: the database failed (the fetch in hand is made again later).
        """
        made = 0
        while stop is None or not stop.is_set():
            now = self._clock.time()
            batch = await self.ledger.due(now, limit=_DUE_BATCH)
            for fetch, schedule in batch:
                if stop is not None and stop.is_set():
                    break
                await self._execute(fetch, schedule)
                made += 1
            # What a fetch schedules is due later: only a full batch, or time that moved while
            # fetching (the limiter's waits), can leave something due now.
            if len(batch) < _DUE_BATCH and self._clock.time() <= now:
                break
        await self.refresh()
        return made

    async def _execute(self, fetch: Fetch, schedule: Schedule) -> None:
        if schedule.chain != self._network:
            detail = f"no price source for chain {schedule.chain!r}"
            await self._give_up(fetch, schedule, detail, permanent=True)
            return
        pool = schedule.pool or await self._find_pool(schedule)
        if pool is None:
            await self._failed(fetch, schedule, "no pool found for the token", permanent=False)
            return
        timeframe = Timeframe.MINUTE if fetch.step == MINUTE else Timeframe.FIVE_MINUTES
        got = await self.gecko.fetch_candles(
            pool, schedule.token, timeframe, limit=fetch.size, before=fetch.before
        )
        if isinstance(got, NoDataYet):
            await self._no_data(fetch, schedule, got)
            return
        await self._keep(fetch, schedule, got, asked=pool)

    async def _find_pool(self, schedule: Schedule) -> str | None:
        pool = await self.ledger.verdict_pool(schedule.chain, schedule.token)
        source = "history"
        if pool is None:
            found = await self.gecko.pools(schedule.token)
            if isinstance(found, NoDataYet):
                log.info("outcome tracker: pool lookup of %s failed: %s", schedule.token, found)
                return None
            best = best_pool(found, schedule.token)
            pool, source = (best.address if best else None), "lookup"
        if pool is not None:
            await self.ledger.set_pool(schedule.id, pool, source)
        return pool

    async def _keep(self, fetch: Fetch, schedule: Schedule, got: Candles, *, asked: str) -> None:
        async with self.ledger.transaction() as conn:
            await self.ledger.fetched(
                fetch.id,
                pool=got.pool,
                fetched_at=got.fetched_at,
                complete_until=got.complete_until,
                candles=got.candles,
                skipped=got.skipped,
                conn=conn,
            )
            if got.pool != asked:  # the asked pool answered 404: the token moved
                await self.ledger.set_pool(schedule.id, got.pool, "lookup", conn=conn)
            _changed, replies = await self._recompute(schedule.id, conn)
        self._metrics.tracker_fetches.labels(outcome="ok").inc()
        await self._send_followups(replies)

    async def _no_data(self, fetch: Fetch, schedule: Schedule, got: NoDataYet) -> None:
        detail = f"{got.reason.value}: {got.detail}"
        if got.reason is NoDataReason.RATE_LIMITED:
            # Candles persist: a rate limit only delays the fetch, it never counts as an error.
            wait = max(self.gecko.cooldown_remaining, self.gecko.settings.cooldown_seconds)
            await self.ledger.retry(
                fetch.id, schedule.id, due=self._clock.time() + wait, error=detail, counted=False
            )
            self._metrics.tracker_fetches.labels(outcome="rate_limited").inc()
            return
        await self._failed(fetch, schedule, detail, permanent=got.permanent)

    async def _failed(
        self, fetch: Fetch, schedule: Schedule, detail: str, *, permanent: bool
    ) -> None:
        attempts = fetch.attempts + 1
        if permanent or attempts >= self._settings.max_fetch_errors:
            await self._give_up(fetch, schedule, detail, permanent=permanent)
            return
        wait = min(
            self._settings.retry_seconds * 2 ** (attempts - 1), self._settings.retry_max_seconds
        )
        await self.ledger.retry(
            fetch.id, schedule.id, due=self._clock.time() + wait, error=detail, counted=True
        )
        self._metrics.tracker_fetches.labels(outcome="retry").inc()
        log.info(
            "outcome tracker: fetch %d of %s failed (%s); again in %.0fs",
            fetch.stage,
            schedule.token,
            detail,
            wait,
        )

    async def _give_up(
        self, fetch: Fetch, schedule: Schedule, detail: str, *, permanent: bool
    ) -> None:
        log.warning(
            "outcome tracker: giving up fetch %d of %s: %s", fetch.stage, schedule.token, detail
        )
        async with self.ledger.transaction() as conn:
            await self.ledger.give_up(
                fetch.id,
                schedule.id,
                error=detail,
                now=self._clock.time(),
                cancel_rest=permanent,
                conn=conn,
            )
            _changed, replies = await self._recompute(schedule.id, conn)
        self._metrics.tracker_fetches.labels(outcome="failed").inc()
        await self._send_followups(replies)

    # -- outcomes ------------------------------------------------------------------------------

    async def recompute(self, schedule_id: int) -> dict[int, Outcome]:
        """Recompute the outcomes of a schedule's events from the candles it has; store the ones
        that changed, close the schedule when nothing is left to fetch, then send the follow-ups
        that are due.

        Returns:
            The outcomes stored now, by event id.
        """
        async with self.ledger.transaction() as conn:
            changed, replies = await self._recompute(schedule_id, conn)
        await self._send_followups(replies)
        return changed

    async def _recompute(
        self, schedule_id: int, conn: AsyncConnection
    ) -> tuple[dict[int, Outcome], list[_Reply]]:
        view = await self.ledger.view(schedule_id, conn=conn)
        now = self._clock.time()
        minute, five = view.candles(MINUTE), view.candles(FIVE_MINUTES)
        spans = view.spans(MINUTE), view.spans(FIVE_MINUTES)
        latency = self._settings.latency_seconds
        current: dict[int, Outcome | None] = {}
        for event in view.events:
            old = view.outcomes.get(event.id)
            if old is not None and old.status is not OutcomeStatus.TRACKING:
                continue  # decided (or given up on): final
            complete = as_of(event.event_ts, *spans, rules=self._rules)
            current[event.id] = (
                None
                if complete is None
                else compute_outcome(
                    event.event_ts,
                    minute,
                    five,
                    as_of=complete,
                    latency=latency,
                    rules=self._rules,
                )
            )
        pending = [f.window for f in view.fetches if f.state is FetchState.PENDING]
        if not pending:
            pending = await self._late_entry(view, current, conn)
        if not pending:
            detail = view.schedule.detail or "the price path could not be completed"
            for event_id, outcome in current.items():
                if outcome is None or outcome.status is OutcomeStatus.TRACKING:
                    event_ts = next(e.event_ts for e in view.events if e.id == event_id)
                    current[event_id] = unresolved_outcome(
                        event_ts, latency=latency, errors=view.schedule.errors, detail=detail
                    )
        changed = {
            event_id: outcome
            for event_id, outcome in current.items()
            if outcome is not None and outcome != view.outcomes.get(event_id)
        }
        await self.ledger.save_outcomes(changed, now=now, conn=conn)
        if not pending:
            await self.ledger.close(schedule_id, conn=conn)
        replies = self._followups(attrs.evolve(view, outcomes={**view.outcomes, **changed}), now)
        return changed, replies

    async def _late_entry(
        self, view: ScheduleView, current: Mapping[int, Outcome | None], conn: AsyncConnection
    ) -> list[Window]:
        """One more 5-minute fetch when an entry came so late that its horizon ends after the
        last 5-minute fetch (once per schedule)."""
        if any(f.stage == LATE_STAGE for f in view.fetches):
            return []
        late = [
            o.entry_ts
            for o in current.values()
            if o is not None and o.status is OutcomeStatus.TRACKING and o.entry_ts is not None
        ]
        fives = [
            f.before for f in view.fetches if f.step == FIVE_MINUTES and f.state is FetchState.DONE
        ]
        if not late or not fives:
            return []
        window = late_entry_fetch(max(late), after=max(fives), rules=self._rules)
        if not await self.ledger.add_fetch(view.schedule.id, window, conn=conn):
            return []
        return [window]

    def _followups(self, view: ScheduleView, now: float) -> list[_Reply]:
        """The replies due to the schedule's alerts at the checkpoints their candles now cover."""
        if not self._settings.followups:
            return []
        minute, five = view.candles(MINUTE), view.candles(FIVE_MINUTES)
        spans = view.spans(MINUTE), view.spans(FIVE_MINUTES)
        replies = []
        for event in view.events:
            if event.kind is not EventKind.ALERT or event.reply_to is None:
                continue
            replier = self._repliers.get(event.reply_sink or "")
            final = view.outcomes.get(event.id)
            if replier is None or (final is not None and final.status is OutcomeStatus.UNRESOLVED):
                continue
            complete = as_of(event.event_ts, *spans, rules=self._rules)
            for checkpoint in self._settings.followups:
                due_at = event.event_ts + checkpoint
                if (event.id, checkpoint) in view.followups:
                    continue
                if complete is None or complete < due_at:
                    continue  # not known yet
                if now - due_at > self._settings.followup_max_late_seconds:
                    self._metrics.tracker_followups.labels(outcome="too_late").inc()
                    continue
                outcome = compute_outcome(
                    event.event_ts,
                    minute,
                    five,
                    as_of=due_at,
                    latency=self._settings.latency_seconds,
                    rules=self._rules,
                )
                text = followup_text(outcome, checkpoint)
                if text is not None:
                    replies.append(_Reply(event, checkpoint, replier, text))
        return replies

    async def _send_followups(self, replies: list[_Reply]) -> None:
        for reply in replies:
            await self._send_followup(reply)

    async def _send_followup(self, reply: _Reply) -> None:
        event, checkpoint = reply.event, reply.checkpoint
        assert event.reply_to is not None
        claim = keys.followup_claim(event.token, event.event_ts, checkpoint)
        if self._claims is not None:
            try:
                won = await self._claims.claim(claim, _FOLLOWUP_CLAIM_TTL)
            except StoreError as exc:
                # Never twice beats at least once: without the claim, no reply.
                log.warning("outcome tracker: follow-up claim failed, not replying: %s", exc)
                self._metrics.tracker_followups.labels(outcome="claim_failed").inc()
                return
            if not won:
                self._metrics.tracker_followups.labels(outcome="claimed").inc()
                return
        try:
            message_id = await reply.replier.reply(reply.text, reply_to=event.reply_to)
        except SinkError as exc:
            log.error("outcome tracker: follow-up of %s not sent: %s", event.token, exc)
            self._metrics.tracker_followups.labels(outcome="failed").inc()
            if self._claims is not None:
                with contextlib.suppress(StoreError):
                    await self._claims.release(claim)
            return
        await self.ledger.record_followup(
            event.id,
            checkpoint,
            at=self._clock.time(),
            sink=reply.replier.name,
            message_id=message_id,
            text=reply.text,
        )
        self._metrics.tracker_followups.labels(outcome="sent").inc()

    # -- the service ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Migrate the schema, catch up on what the history recorded, read the schedule.

        Raises:
            ConfigError: the database's schema is newer than this code.
            HistoryUnavailable: the database cannot be reached (call again).
        """
        if self._started:
            return
        await self.ledger.upgrade()
        if self._settings.catch_up_seconds > 0:
            since = self._clock.time() - self._settings.catch_up_seconds
            latest = await self.ledger.latest_event_at()
            if latest is not None:
                since = max(since, latest - 60.0)
            taken = await self.catch_up(since)
            if taken:
                log.info("outcome tracker: caught up on %d events from the history", taken)
        await self.refresh()
        self._started = True
        log.info("outcome tracker: %d fetches scheduled (%s)", len(self._dues), self.ledger.where)

    async def run(self, stop: asyncio.Event) -> None:
        """Store events and make due fetches until ``stop`` is set; then store what is left.

        Raises:
            ConfigError: the database's schema is newer than this code.
        """
        delay = 1.0
        while not stop.is_set():
            try:
                await self.start()
                await self.ingest()
                await self.run_due(stop)
            except HistoryUnavailable as exc:
                self._down(exc)
                await self._pause(delay, stop)
                delay = min(delay * 2, self._settings.retry_max_seconds)
                continue
            self._up()
            delay = 1.0
            if stop.is_set():
                break
            due = self.next_due()
            wait = None if due is None else max(0.0, due - self._clock.time())
            await self._pause(wait, stop)
        self._take_subscription()
        if self._intake:
            try:
                await self.ingest()
            except HistoryUnavailable as exc:
                self._metrics.tracker_events.labels(kind="lost").inc(len(self._intake))
                log.error(
                    "outcome tracker: %d events not stored at shutdown (%s); the next start "
                    "catches up on them from the history",
                    len(self._intake),
                    exc,
                )

    def _take_subscription(self) -> None:
        sub = self.subscription
        if sub is None:
            return
        while not sub.queue.empty():
            event = sub.queue.get_nowait()
            sub.queue.task_done()
            new = self._new_event(event)
            if new is not None:
                self._intake.append(new)

    async def _pause(self, seconds: float | None, stop: asyncio.Event) -> None:
        """Wait ``seconds`` on the injected sleep (``None``: no limit), or less when an event
        arrives or ``stop`` is set."""
        if self._intake or stop.is_set():
            return
        waiters = {asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())}
        sleeper = asyncio.ensure_future(self._sleep(seconds)) if seconds is not None else None
        try:
            await asyncio.wait(
                waiters | ({sleeper} if sleeper else set()), return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiter in waiters:
                waiter.cancel()
            self._wake.clear()
            if sleeper is not None and not sleeper.done():
                sleeper.cancel()
        if sleeper is not None and sleeper.done() and not sleeper.cancelled():
            sleeper.result()

    def _up(self) -> None:
        if self._down_since is not None:
            log.info("outcome tracker: history is back")
        self._down_since = None

    def _down(self, exc: HistoryUnavailable) -> None:
        if self._down_since is None:
            self._down_since = self._clock.time()
            log.warning("outcome tracker: history unavailable: %s", exc)
        self._down_reason = str(exc)
