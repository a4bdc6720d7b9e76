"""The replay engine: a recording played through the real aggregator and scorer, in-process.

:class:`Replay` builds the pipeline and the scorer through the wiring module
(:mod:`callsbot.runtime.roles`) over a simulated clock, a window store (the memory store unless
one is handed in) and market data answered "as of" the clock from the recording
(:mod:`callsbot.replay.market`). It then moves the clock from one due moment to the next and,
at each, does what the live processes would have done by then, in their order:

1. beat the aggregator's heartbeat (the scorer trusts consensus only while it is fresh);
2. hand every message received by now to the pipeline (``Aggregator.process``, the workers'
   own entry), deliver the events it published, and let the scorer react to a mention of a
   watched token (``Scorer.react``), as its loop does when woken;
3. retry candidates whose market data was unknown (every :data:`RETRY_SECONDS`, the retry
   loop's longest pause);
4. hand the buys served by now to the scorer (``Scorer.handle_buys``); a tape whose buys were
   taken at the scorer's polls (``Tape.feed_poll``) is polled as the live loop polls, every
   ``cielo.poll_seconds`` through ``Scorer.poll_once`` (so the scorer's feed health holds);
5. every ``scoring.watch_tick_seconds``: the scorer's tick (pending buys, watch-list expiry and
   re-scores);
6. run the periodic jobs: in weighted consensus mode first the real reputation job
   (``roles.build_reputation_job``) every ``consensus.job_interval_seconds``, over the run's
   own mentions so far and :class:`~callsbot.replay.labels.RunLabels`; then those handed in.

Nothing reads an item of the recording before its ``at`` has passed; the clock only moves
forward; nothing sleeps; no HTTP client is built (market data, feed and sinks are in-process).
The events of the run are captured from the hub: the alerts sent and the levels reached are the
run's answer (:class:`RunResult`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import attrs
from prometheus_client import CollectorRegistry

from callsbot.alert import Alert
from callsbot.clock import Clock, FakeClock
from callsbot.config import Settings
from callsbot.events import (
    AlertSent,
    BuyScored,
    Event,
    EventHub,
    LevelReached,
    MentionRecorded,
)
from callsbot.market.models import MarketData
from callsbot.metrics import Metrics
from callsbot.models import Buy
from callsbot.replay.labels import RunLabels
from callsbot.replay.market import CandleGate, RecordedMarket
from callsbot.replay.tape import Gate, Tape, TapeMessage
from callsbot.reputation.inputs import MemoryMentionLog
from callsbot.reputation_job import ReputationJob
from callsbot.runtime import roles
from callsbot.scorer import AGGREGATOR_ROLE, Scored
from callsbot.sinks.base import AlertSink
from callsbot.sources.cielo import PollResult
from callsbot.store import SignalStore
from callsbot.store.memory import MemoryStore
from callsbot.subscribers import mention_of, subscribe_standard

#: Seconds between retries of candidates whose market data was unknown (the live retry loop
#: backs off from 1 s to this).
RETRY_SECONDS = 5.0


@attrs.frozen
class Periodic:
    """A job the engine runs every ``interval`` simulated seconds from the tape's start.

    Attributes:
        interval: seconds between runs.
        run: the job (for example ``ReputationJob.run_once``).
        name: for people.
    """

    interval: float
    run: Callable[[], Awaitable[object]]
    name: str = "job"


@attrs.frozen
class RunResult:
    """What one replay did.

    Attributes:
        settings: the configuration replayed.
        start: the first moment played.
        end: the last moment played.
        gate: how the market gate was answered.
        alerts: every alert sent, in order.
        levels: every "level reached", in order.
        scores: every score card, in order.
        mentions: mentions recorded.
        delivered: messages handed to the pipeline.
        scored: the last thing that happened to each token the feed surfaced.
        seconds: the run's own time (wall clock, for the benchmark).
        cpu_seconds: the processor time it took (this process's).
    """

    settings: Settings
    start: float
    end: float
    gate: Gate
    alerts: tuple[AlertSent, ...]
    levels: tuple[LevelReached, ...]
    scores: tuple[BuyScored, ...]
    mentions: int
    delivered: int
    scored: dict[str, Scored] = attrs.field(factory=dict, eq=False)
    seconds: float = attrs.field(default=0.0, eq=False)
    cpu_seconds: float = attrs.field(default=0.0, eq=False)


@attrs.define
class _Recorder:
    """What the run published: levels, scores and alerts kept, mentions counted (and, in
    weighted mode, logged for the reputation job)."""

    events: list[Event] = attrs.field(factory=list)
    mentions: int = 0
    labels: RunLabels | None = None
    mention_log: MemoryMentionLog | None = None

    def take(self, event: Event) -> None:
        if isinstance(event, MentionRecorded):
            self.mentions += 1
            if self.labels is not None:
                self.labels.called(event)
            if self.mention_log is not None:
                self.mention_log.add(mention_of(event))
        elif isinstance(event, LevelReached | BuyScored | AlertSent):
            self.events.append(event)


class _ReplayHub(EventHub):
    """The hub, keeping every event of the run as it is published.

    A subscriber of its own would cost a queue round trip and a lag sample per event, for a
    day of mentions a good part of the replay's time; the subscribers the roles register are
    served as ever.
    """

    def __init__(self, recorder: _Recorder, *, metrics: Metrics, clock: Clock) -> None:
        super().__init__(metrics=metrics, clock=clock)
        self._recorder = recorder

    def publish(self, event: Event, *, remote: bool = False) -> None:
        """Keep ``event``, then publish it as :class:`EventHub` does."""
        self._recorder.take(event)
        super().publish(event, remote=remote)


class _TapeFeed:
    """The scorer's feed slot: a poll answers the buys the engine put in :attr:`due`."""

    def __init__(self) -> None:
        self.due: list[Buy] = []

    async def poll(self) -> PollResult:
        buys, self.due = self.due, []
        return PollResult(buys=tuple(buys))

    async def handled(self, buys: Sequence[Buy]) -> None:
        """Nothing to mark: a replay's buys are not leased."""


@attrs.define
class CaptureSink:
    """An alert sink that keeps what it is sent (the replay's only sink unless given more)."""

    sent: list[Alert] = attrs.field(factory=list)
    name: str = "replay"

    async def send(self, alert: Alert) -> None:
        """Keep ``alert``."""
        self.sent.append(alert)

    async def aclose(self) -> None:
        """Nothing to release."""


class _Discard:
    """A metric that records nothing (every method of Counter, Gauge and Histogram a no-op)."""

    def labels(self, *_values: str, **_labels: str) -> _Discard:
        return self

    def inc(self, _amount: float = 1.0) -> None:
        return None

    def dec(self, _amount: float = 1.0) -> None:
        return None

    def set(self, _value: float) -> None:
        return None

    def observe(self, _value: float) -> None:
        return None


def quiet_metrics() -> Metrics:
    """Metrics that count nothing, for backtest replays.

    A replay reports figures, not Prometheus series, and the labelled-child lookups of a
    day's events were a tenth of its time.
    """
    discard = _Discard()
    fields = {f.name: discard for f in attrs.fields(Metrics) if f.name != "registry"}
    return Metrics(registry=CollectorRegistry(), **cast(dict[str, Any], fields))


async def _never_sleep(seconds: float) -> None:
    # Only the roles' own run loops sleep, and the engine never runs them: a call here is a bug
    # that would otherwise stall or move the simulated clock behind the engine's back.
    raise RuntimeError(f"a replayed component tried to sleep {seconds}s")


# The tolerance keeps a time that is on the grid but for float rounding on its own point.
_EPS = 1e-9


def _grid_at(t: float, origin: float, step: float) -> float:
    """The first point of ``origin + k·step`` (k ≥ 0) at or after ``t``."""
    return origin + max(math.ceil((t - origin) / step - _EPS), 0) * step


def _grid_next(t: float, origin: float, step: float) -> float:
    """The first point of ``origin + k·step`` (k ≥ 0) strictly after ``t``."""
    return origin + max(math.floor((t - origin) / step + _EPS) + 1, 0) * step


class Replay:
    """One recording played through the real roles under one configuration.

    Args:
        tape: what to play.
        settings: the configuration.
        store: the window store (default: a new memory store with the configuration's window).
        market: market data (default: from the tape, see :mod:`callsbot.replay.market`).
        metrics: the run's metrics (default: a fresh registry).
        sinks: alert sinks besides the capturing one (the demo's printer).
        periodic: jobs to run on the simulated clock (after the reputation job).
        reputation: in weighted consensus mode, run the reputation job on the simulated clock
            (every ``consensus.job_interval_seconds`` from the tape's start) over the run's own
            mentions so far and :attr:`labels`; ``False`` leaves every weight at 1 (neutral).
            Default: only on a store the engine made (a store handed in may be shared, and the
            run's reputation would replace the one live scorers read). Count mode never runs
            it.
        standard: also register every process's standard subscribers (metrics by event, the
            consensus log line), as ``roles.make_parts`` does; a backtest does without them,
            they only count and log.
        clock: the simulated clock (default: a new one at the tape's start); a store handed
            in must run on it.
    """

    def __init__(
        self,
        tape: Tape,
        settings: Settings,
        *,
        store: SignalStore | None = None,
        market: MarketData | None = None,
        metrics: Metrics | None = None,
        sinks: Sequence[AlertSink] = (),
        periodic: Sequence[Periodic] = (),
        reputation: bool | None = None,
        standard: bool = False,
        clock: FakeClock | None = None,
    ) -> None:
        self.tape = tape
        self.settings = settings
        self.clock = clock if clock is not None else FakeClock(tape.start)
        self.metrics = metrics if metrics is not None else Metrics.create()
        self._own_store = store is None
        if store is None:
            store = MemoryStore(window=settings.store.window_seconds, clock=self.clock)
        self._recorder = _Recorder()
        events = _ReplayHub(self._recorder, metrics=self.metrics, clock=self.clock)
        if standard:
            subscribe_standard(events, window=store, clock=self.clock, metrics=self.metrics)
        self.labels = RunLabels(tape.paths, settings=settings.outcomes, clock=self.clock)
        #: The run's recorded mentions, for the reputation job (``None``: no job).
        self.mention_log: MemoryMentionLog | None = None
        if reputation is None:
            reputation = self._own_store
        if reputation and settings.consensus.weighted:
            self.mention_log = self._recorder.mention_log = MemoryMentionLog()
        parts = roles.Parts(
            settings,
            self.clock,
            self.metrics,
            store,
            None,
            events,
            _never_sleep,
            mention_log=self.mention_log,
            labels=self.labels if self.mention_log is not None else None,
        )
        self.market = market if market is not None else self._market(parts)
        self.parts = attrs.evolve(parts, market=self.market)
        #: The weighted mode's reputation job on the simulated clock (``None``: not run).
        self.reputation_job: ReputationJob | None = roles.build_reputation_job(self.parts)
        if self.mention_log is not None:
            # The at-once votes of the live aggregator (a forward, the same text or sender as
            # an earlier group's message): a repeat counts as no new call here either.
            monitored = {m.message.chat_id: m.message.group for m in tape.messages}
            roles.subscribe_vote_tracker(self.parts, monitored=lambda: monitored)
        self.aggregator = roles.build_pipeline(self.parts)
        self.capture = CaptureSink()
        self._feed = _TapeFeed()
        self.scorer = roles.build_scorer(self.parts, feed=self._feed, sinks=[self.capture, *sinks])
        self._periodic = list(periodic)
        if self.reputation_job is not None:
            self._periodic.insert(
                0,
                Periodic(
                    settings.consensus.job_interval_seconds,
                    self._run_reputation_job,
                    ReputationJob.name,
                ),
            )
        self._next_job = [tape.start for _ in self._periodic]
        self._recorder.labels = self.labels
        self.scored: dict[str, Scored] = {}
        self._seen: dict[str, Any] = {}
        self.delivered = 0
        self._msg = 0
        self._buy = 0
        self._skip = 0
        self._next_tick = tape.start
        self._next_retry = tape.start
        self._beat_at = -math.inf
        self._tick_every = settings.scoring.watch_tick_seconds
        self._poll_every = settings.cielo.poll_seconds
        # In websocket mode the scorer does not poll: buys are handed in as they come.
        self._polls = tape.feed_poll and settings.cielo.mode == "poll"
        self._next_poll = tape.start
        self._beat_every = settings.store.heartbeat_interval

    def add_periodic(self, job: Periodic) -> None:
        """Run ``job`` every ``job.interval`` seconds from the next due moment on."""
        self._periodic.append(job)
        self._next_job.append(_grid_at(self.clock.time(), self.tape.start, job.interval))

    async def _run_reputation_job(self) -> None:
        job = self.reputation_job
        if job is not None:
            # A replay is the only process: no claim to win, nothing else publishes.
            await job.run_once(claim=False)

    def _market(self, parts: roles.Parts) -> MarketData:
        tape, s = self.tape, self.settings
        if tape.gate is Gate.APPROXIMATE:
            return CandleGate(tape.paths, settings=s.market, clock=self.clock, events=parts.events)
        return RecordedMarket(
            tape.observations,
            settings=s.market,
            clock=self.clock,
            absent=tape.absent,
            outages=tape.outages,
            resolutions=tape.resolutions,
            events=parts.events,
        )

    # -- the schedule --------------------------------------------------------------------------

    def _message_due(self, m: TapeMessage) -> float:
        return _grid_at(m.at, self.tape.start, self.tape.step) if self.tape.step else m.at

    def _buy_due(self, at: float) -> float:
        return _grid_at(at, self.tape.start, self._poll_every) if self.tape.feed_poll else at

    def next_due(self) -> float:
        """The next moment something is due."""
        tape = self.tape
        due = self._next_tick
        if self._msg < len(tape.messages):
            due = min(due, self._message_due(tape.messages[self._msg]))
        if self._buy < len(tape.buys):
            due = min(due, self._buy_due(tape.buys[self._buy].at))
        if self.aggregator.deferred:
            due = min(due, self._next_retry)
        if self._polls:
            due = min(due, self._next_poll)
        for job_due in self._next_job:
            due = min(due, job_due)
        return max(due, self.clock.time())

    async def advance(self, until: float) -> None:
        """Play everything due up to ``until``; the clock ends at ``until``."""
        while (t := self.next_due()) <= until:
            await self._play(t)
        self.clock.set(max(self.clock.time(), until))

    async def run(self) -> RunResult:
        """Play the whole tape and return what happened."""
        started, cpu = time.perf_counter(), time.process_time()
        await self.advance(self.tape.end)
        return self.result(
            seconds=time.perf_counter() - started, cpu_seconds=time.process_time() - cpu
        )

    def result(self, *, seconds: float = 0.0, cpu_seconds: float = 0.0) -> RunResult:
        """What the run did so far."""
        events = self._recorder.events
        return RunResult(
            settings=self.settings,
            start=self.tape.start,
            end=self.clock.time(),
            gate=self.tape.gate,
            alerts=tuple(e for e in events if isinstance(e, AlertSent)),
            levels=tuple(e for e in events if isinstance(e, LevelReached)),
            scores=tuple(e for e in events if isinstance(e, BuyScored)),
            mentions=self._recorder.mentions,
            delivered=self.delivered,
            scored=dict(self.scored),
            seconds=seconds,
            cpu_seconds=cpu_seconds,
        )

    # -- one moment ----------------------------------------------------------------------------

    async def _play(self, t: float) -> None:
        self.clock.set(t)
        tape = self.tape
        if t - self._beat_at >= self._beat_every:
            await self.parts.store.beat(AGGREGATOR_ROLE, 3 * self._beat_every)
            self._beat_at = t
        while self._skip < len(tape.skipped) and tape.skipped[self._skip].at <= t:
            self.metrics.feed_items.labels(outcome=tape.skipped[self._skip].reason).inc()
            self._skip += 1
        while self._msg < len(tape.messages) and self._message_due(tape.messages[self._msg]) <= t:
            await self.deliver(tape.messages[self._msg])
            self._msg += 1
        if self.aggregator.deferred and t >= self._next_retry:
            await self.aggregator.retry_deferred()
            await self._settle()
        if self.aggregator.deferred or t >= self._next_retry:
            self._next_retry = _grid_next(t, tape.start, RETRY_SECONDS)
        buys: list[Buy] = []
        while self._buy < len(tape.buys) and self._buy_due(tape.buys[self._buy].at) <= t:
            buys.append(tape.buys[self._buy].buy)
            self._buy += 1
        if buys:
            self.metrics.feed_items.labels(outcome="buy").inc(len(buys))
        if self._polls:
            self._feed.due += buys
            if t >= self._next_poll:
                polled = bool(self._feed.due)
                self._take(await self.scorer.poll_once())
                if polled:
                    await self._settle()
                self._next_poll = _grid_next(t, tape.start, self._poll_every)
        elif buys:
            self._take(await self.scorer.handle_buys(buys, path="poll"))
            await self._settle()
        if t >= self._next_tick:
            self._take(await self.scorer.tick())
            await self._settle()
            self._next_tick = _grid_next(t, tape.start, self._tick_every)
        for i, job in enumerate(self._periodic):
            if t >= self._next_job[i]:
                await job.run()
                await self._settle()
                self._next_job[i] = _grid_next(t, tape.start, job.interval)

    async def deliver(self, m: TapeMessage) -> None:
        """Hand one message to the pipeline now, then settle what it caused."""
        message = m.message
        if m.dated_at_delivery:
            now = self.clock.time()
            forward = message.forward
            if forward is not None:
                forward = attrs.evolve(forward, origin_date=int(now))
            message = attrs.evolve(message, ts=int(now), received_at=now, forward=forward)
        self.delivered += 1
        # The listener's own filters, which the engine stands in for.
        if not message.text:
            return
        if self.settings.telegram.skip_forwards and message.forward is not None:
            self.metrics.mentions_rejected.labels("forwarded").inc()
            return
        seen = self._seen.get(message.source)
        if seen is None:
            seen = self._seen[message.source] = self.metrics.messages_seen.labels(message.source)
        seen.inc()
        await self.aggregator.process(message)
        await self._settle()

    async def _settle(self) -> None:
        """Deliver the events published so far; let the scorer react as its woken loop does."""
        hub = self.parts.events
        await hub.drain()
        reacted = await self.scorer.react()
        if reacted:
            self._take(reacted)
            await hub.drain()

    def _take(self, results: Sequence[Scored]) -> None:
        for result in results:
            self.scored[result.buy.token] = result

    async def aclose(self) -> None:
        """Close the scorer's sinks and a store the engine made."""
        await self.scorer.aclose()
        if self._own_store:
            await self.parts.store.aclose()


async def replay(
    tape: Tape,
    settings: Settings,
    *,
    periodic: Callable[[Replay], Sequence[Periodic]] | None = None,
    metrics: Metrics | None = None,
) -> RunResult:
    """Play ``tape`` under ``settings`` on a memory store and return what happened.

    ``periodic`` builds jobs from the engine once its parts exist (weighted consensus's
    reputation job is the engine's own, see :class:`Replay`); ``metrics`` defaults to a fresh
    registry (:func:`quiet_metrics` when only the figures matter).
    """
    engine = Replay(tape, settings, metrics=metrics)
    try:
        for job in periodic(engine) if periodic is not None else ():
            engine.add_periodic(job)
        return await engine.run()
    finally:
        await engine.aclose()
