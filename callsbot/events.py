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
import weakref
from collections.abc import Awaitable, Callable, Iterable
from functools import cache
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
        groups: the groups in the window at that moment when the publisher knows them without
            asking the store again (replays do); empty otherwise, and then the history's
            mentions table tells (every mention of the token dated in (ts − window, ts]).
    """

    kind: ClassVar[str] = "level_reached"
    token: str
    chain: str
    level: int
    ts: int
    ref: MessageRef
    groups: tuple[str, ...] = ()


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
        outcome: ``alerted``, ``watching``, ``cooldown``, ``alert_failed``, ``alert_busy``
            (another scorer was sending it).
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
    return event.kind, json.dumps(unstructure(event), ensure_ascii=False, allow_nan=False)


def decode(kind: str, payload: str) -> Event:
    """The event :func:`encode` wrote.

    Raises:
        ValueError: unknown kind, or a payload that is not such an event.
    """
    cls = KINDS.get(kind)
    if cls is None:
        raise ValueError(f"unknown event kind {kind!r}")
    try:
        event = structure(json.loads(payload), cls)
    except ValueError as exc:
        raise ValueError(f"malformed {kind} event: {exc}") from exc
    assert isinstance(event, Event)
    return event


class CodecError(ValueError):
    """A value that does not fit the type it should become."""


def unstructure(value: Any) -> Any:
    """An attrs value (events included) as JSON-ready dicts, lists and scalars."""
    if attrs.has(type(value)):
        return {f.name: unstructure(getattr(value, f.name)) for f in attrs.fields(type(value))}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [unstructure(v) for v in value]
    return value


@cache
def _hints(cls: type[Any]) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def structure(data: Any, tp: Any) -> Any:
    """Build a value of type ``tp`` from :func:`unstructure`'s output.

    Raises:
        CodecError: ``data`` does not fit ``tp``.
    """
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        if data is None:
            return None
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return structure(data, args[0])
    if origin is tuple:
        if not isinstance(data, list):
            raise CodecError(f"expected a list, got {data!r:.60}")
        items = typing.get_args(tp)
        if len(items) == 2 and items[1] is Ellipsis:
            return tuple(structure(v, items[0]) for v in data)
        if len(items) != len(data):
            raise CodecError(f"expected {len(items)} items, got {len(data)}")
        return tuple(structure(v, a) for v, a in zip(data, items, strict=True))
    if isinstance(tp, type) and attrs.has(tp):
        if not isinstance(data, dict):
            raise CodecError(f"expected an object for {tp.__name__}, got {data!r:.60}")
        hints = _hints(tp)
        names = {f.name for f in attrs.fields(tp) if f.init}
        unknown = set(data) - names
        if unknown:
            raise CodecError(f"{tp.__name__}: unknown fields {sorted(unknown)}")
        try:
            return tp(**{k: structure(v, hints[k]) for k, v in data.items()})
        except TypeError as exc:
            raise CodecError(f"{tp.__name__}: {exc}") from None
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(data)
        except ValueError:
            raise CodecError(f"{data!r} is not a {tp.__name__}") from None
    if tp is float:
        if isinstance(data, int | float) and not isinstance(data, bool):
            return float(data)
    elif tp is int:
        if isinstance(data, int) and not isinstance(data, bool):
            return data
    elif tp in (str, bool):
        if isinstance(data, tp):
            return data
    elif tp is Any:
        return data
    raise CodecError(f"expected {getattr(tp, '__name__', tp)}, got {data!r:.60}")


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
        self._remote: weakref.WeakSet[Event] = weakref.WeakSet()

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

    def publish(self, event: Event, *, remote: bool = False) -> None:
        """Queue ``event`` for every subscriber that wants it; never waits.

        ``remote``: the event happened in another process (it came off the shared stream);
        subscribers that only count or forward this process's own events ask :meth:`is_remote`.
        """
        if remote:
            self._remote.add(event)
        else:
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

    def is_remote(self, event: Event) -> bool:
        """Whether ``event`` was published as coming from another process."""
        return event in self._remote

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
