"""What happened, as frozen values, and the hub that fans them out to subscribers.

The pipeline and the scorer *publish*; the metrics, the consensus log line, the history
recorder, the dashboard and the cross-process bridge *subscribe*. Publishing never waits: each
subscriber has its own bounded queue and its own task, so a slow subscriber only ever fills its
own queue (what overflows is counted in ``callsbot_events_dropped_total`` and logged once per
episode), and a subscriber that raises is logged, counted in
``callsbot_event_handler_errors_total`` and goes on with the next event.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import types
import typing
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, ClassVar

import attrs

from callsbot.alert import Alert
from callsbot.clock import Clock
from callsbot.metrics import Metrics
from callsbot.models import Buy, ForwardHeader, MessageRef, Verdict
from callsbot.scoring import ScoreCard

log = logging.getLogger("callsbot.events")


@attrs.frozen(kw_only=True)
class Event:
    """Base of every event.

    Attributes:
        at: unix seconds when it happened (for a mention: when it was recorded).
    """

    kind: ClassVar[str] = "event"
    at: float


@attrs.frozen(kw_only=True)
class MentionRecorded(Event):
    """A group's mention of a token was written to the window store (first time only).

    Attributes:
        ref: the message it came from.
        token: the token's address.
        kind: ``mint``, ``pair``, ``evm`` or ``evm_pair``: what the message named.
        chain: the token's chain.
        pair: the pair address the message named, when it named a pair.
        count: distinct groups that called the token in the window after this write.
        text: the message's plain text (for fingerprints; never logged).
        sender_id: the posting user, when Telegram names one.
        forward: the forward header, when the message is a forward.
    """

    kind: ClassVar[str] = "mention_recorded"
    ref: MessageRef
    token: str
    mention_kind: str
    chain: str
    count: int
    pair: str | None = None
    text: str = ""
    sender_id: int | None = None
    forward: ForwardHeader | None = None


@attrs.frozen(kw_only=True)
class LevelReached(Event):
    """A token's distinct-group count reached ``level`` for the first time in this window.

    Attributes:
        token: the token's address.
        chain: its chain.
        level: the count reached (1, 2, 3, ...).
        ts: the message date of the mention that made it ``level`` (outcomes start there).
        ref: the deciding message.
    """

    kind: ClassVar[str] = "level_reached"
    token: str
    chain: str
    level: int
    ts: int
    ref: MessageRef


@attrs.frozen(kw_only=True)
class VerdictMade(Event):
    """Market data judged a token (``at`` is when the snapshot was observed)."""

    kind: ClassVar[str] = "verdict_made"
    chain: str
    verdict: Verdict


@attrs.frozen(kw_only=True)
class BuyScored(Event):
    """The scorer scored a token surfaced by the feed.

    Attributes:
        buy: the trade.
        card: the score with every line and the consensus it used.
        outcome: ``alerted``, ``watching``, ``cooldown``, ``alert_failed``.
        rescore: ``True`` when a watch-list re-score, not a new buy, produced it.
    """

    kind: ClassVar[str] = "buy_scored"
    buy: Buy
    card: ScoreCard
    outcome: str
    rescore: bool = False


@attrs.frozen(kw_only=True)
class AlertSent(Event):
    """An alert reached at least one sink.

    Attributes:
        alert: what was sent.
        deliveries: ``(sink name, message id or None)`` for every sink that took it.
    """

    kind: ClassVar[str] = "alert_sent"
    alert: Alert
    deliveries: tuple[tuple[str, str | None], ...]


#: Every event class by its ``kind`` (what the cross-process stream carries).
KINDS: dict[str, type[Event]] = {
    cls.kind: cls for cls in (MentionRecorded, LevelReached, VerdictMade, BuyScored, AlertSent)
}


def encode(event: Event) -> tuple[str, str]:
    """``(kind, JSON)`` of ``event``, for the cross-process stream; :func:`decode` reads it."""
    return event.kind, json.dumps(_unstructure(event), ensure_ascii=False, allow_nan=False)


def decode(kind: str, payload: str) -> Event:
    """The event :func:`encode` wrote.

    Raises:
        ValueError: unknown kind, or a payload that is not such an event.
    """
    cls = KINDS.get(kind)
    if cls is None:
        raise ValueError(f"unknown event kind {kind!r}")
    try:
        event = _structure(cls, json.loads(payload))
    except (TypeError, KeyError, AttributeError) as exc:
        raise ValueError(f"malformed {kind} event: {exc}") from exc
    assert isinstance(event, Event)
    return event


def _unstructure(obj: Any) -> Any:
    if attrs.has(type(obj)):
        return {f.name: _unstructure(getattr(obj, f.name)) for f in attrs.fields(type(obj))}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, tuple | list):
        return [_unstructure(x) for x in obj]
    return obj


def _structure(tp: Any, data: Any) -> Any:
    if data is None or tp is Any:
        return data
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in args if a is not type(None)]
        return _structure(inner, data)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_structure(args[0], x) for x in data)
        return tuple(_structure(a, x) for a, x in zip(args, data, strict=True))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(data)
    if isinstance(tp, type) and attrs.has(tp):
        hints = typing.get_type_hints(tp)
        fields = attrs.fields(tp)
        return tp(
            **{f.name: _structure(hints[f.name], data[f.name]) for f in fields if f.name in data}
        )
    if tp is float and isinstance(data, int | float):
        return float(data)
    if isinstance(tp, type) and not isinstance(data, tp):
        raise TypeError(f"expected {tp.__name__}, got {type(data).__name__}")
    return data


Handler = Callable[[Event], Awaitable[None]]


@attrs.define(eq=False)
class Subscription:
    """One subscriber: its handler, the event kinds it wants and its bounded queue."""

    name: str
    handler: Handler
    kinds: frozenset[str] | None
    queue: asyncio.Queue[Event]
    overflowing: bool = False

    def wants(self, event: Event) -> bool:
        """Whether this subscriber takes ``event``."""
        return self.kinds is None or event.kind in self.kinds


class EventHub:
    """Fans events out to subscribers through bounded per-subscriber queues.

    Args:
        metrics: ``events_published``, ``events_dropped``, ``event_handler_errors``,
            ``event_lag``.
        clock: for the lag metric (event time to handling).
    """

    name = "events"

    def __init__(self, *, metrics: Metrics, clock: Clock) -> None:
        self._metrics = metrics
        self._clock = clock
        self._subs: list[Subscription] = []
        self._running = False

    @property
    def subscribers(self) -> tuple[str, ...]:
        """Names of the subscribers, in subscription order."""
        return tuple(s.name for s in self._subs)

    def subscribe(
        self,
        name: str,
        handler: Handler,
        *,
        kinds: Iterable[type[Event]] | None = None,
        maxsize: int = 10_000,
    ) -> Subscription:
        """Add a subscriber; ``kinds`` limits it to those event classes (default: all)."""
        wanted = None if kinds is None else frozenset(k.kind for k in kinds)
        sub = Subscription(name, handler, wanted, asyncio.Queue(maxsize=maxsize))
        self._subs.append(sub)
        return sub

    def publish(self, event: Event) -> None:
        """Queue ``event`` for every subscriber that wants it; never waits."""
        self._metrics.events_published.labels(event.kind).inc()
        for sub in self._subs:
            if not sub.wants(event):
                continue
            try:
                sub.queue.put_nowait(event)
            except asyncio.QueueFull:
                self._metrics.events_dropped.labels(sub.name).inc()
                if not sub.overflowing:
                    sub.overflowing = True
                    log.error(
                        "event subscriber %s is %d events behind: new events are dropped for it "
                        "until it catches up",
                        sub.name,
                        sub.queue.qsize(),
                    )
            else:
                if sub.overflowing and sub.queue.qsize() < sub.queue.maxsize // 2:
                    sub.overflowing = False

    def backlog(self) -> dict[str, int]:
        """Events waiting, per subscriber."""
        return {s.name: s.queue.qsize() for s in self._subs}

    def health(self) -> list[str]:
        """Reasons the hub is not ready: a subscriber that is dropping events."""
        return [
            f"event subscriber {s.name} is dropping events" for s in self._subs if s.overflowing
        ]

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver events until ``stop`` is set, then deliver what is already queued."""
        self._running = True
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [
                    tg.create_task(self._consume(sub), name=f"events-{sub.name}")
                    for sub in self._subs
                ]
                await stop.wait()
                for sub in self._subs:
                    await sub.queue.join()
                for task in tasks:
                    task.cancel()
        finally:
            self._running = False

    async def drain(self) -> None:
        """Deliver everything queued now (tests and replays, which run no :meth:`run`)."""
        for sub in self._subs:
            while not sub.queue.empty():
                event = sub.queue.get_nowait()
                await self._deliver(sub, event)
                sub.queue.task_done()

    async def _consume(self, sub: Subscription) -> None:
        while True:
            event = await sub.queue.get()
            try:
                await self._deliver(sub, event)
            finally:
                sub.queue.task_done()

    async def _deliver(self, sub: Subscription, event: Event) -> None:
        try:
            await sub.handler(event)
        except asyncio.CancelledError:
            raise
        except Exception:
            self._metrics.event_handler_errors.labels(sub.name).inc()
            log.exception("event subscriber %s failed on %s", sub.name, event.kind)
        self._metrics.event_lag.labels(sub.name).observe(max(0.0, self._clock.time() - event.at))
