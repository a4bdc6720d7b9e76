"""Server-sent events to many browsers without ever waiting for one.

:meth:`Broadcaster.publish` encodes an event once, gives it the next id, keeps it in a bounded
ring buffer and offers it to every client's own bounded queue; it never awaits. A client whose
queue is full is too slow: it is dropped on the spot (its connection aborted), and it may
reconnect with ``Last-Event-ID`` to get what it missed from the ring buffer. At most
``max_clients`` stream at once; :meth:`Broadcaster.join` refuses one more with
:class:`TooManyClients` (the view answers 503).

Ids are integers that increase for the life of the process and across restarts (the wiring
starts them at the process's start time in microseconds), so a browser coming back with an id
from an earlier process, or one older than the buffer, is told to reload the snapshot (a
``reset`` event) instead of silently missing events.
"""

from __future__ import annotations

import asyncio
import collections
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs
from prometheus_client import Counter, Gauge

from callsbot.metrics import Metrics


class TooManyClients(Exception):
    """Every streaming slot is taken."""


@attrs.frozen
class StreamMetrics:
    """The broadcaster's metrics, registered on the process's registry."""

    clients: Gauge
    dropped: Counter
    sent: Counter

    @classmethod
    def create(cls, metrics: Metrics) -> StreamMetrics:
        """Register them on ``metrics.registry``."""
        r = metrics.registry
        return cls(
            clients=Gauge("callsbot_dash_clients", "Dashboard event-stream clients", registry=r),
            dropped=Counter(
                "callsbot_dash_clients_dropped",
                "Dashboard clients dropped, by reason",
                ["reason"],
                registry=r,
            ),
            sent=Counter("callsbot_dash_events", "Dashboard events published", registry=r),
        )


def encode(kind: str, data: Mapping[str, Any], event_id: int | None = None) -> bytes:
    """One SSE frame: ``id``, ``event`` and one ``data`` line (JSON never holds a raw newline)."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return f"{head}event: {kind}\ndata: {body}\n\n".encode()


KEEPALIVE = b": keep-alive\n\n"


class Client:
    """One streaming browser: its bounded queue of encoded frames.

    Args:
        maxsize: frames it may fall behind before it is dropped.
        abort: ends its connection at once (called when it is dropped).
        phase: 0..1, spreads the clients' gathering intervals (see the events view).
    """

    def __init__(self, maxsize: int, abort: Callable[[], None], *, phase: float = 0.0) -> None:
        self.phase = phase
        self._frames: collections.deque[bytes] = collections.deque()
        self._maxsize = maxsize
        self._abort = abort
        self._waiter: asyncio.Future[None] | None = None
        self.dropped: str | None = None

    @property
    def backlog(self) -> int:
        """Frames waiting."""
        return len(self._frames)

    def offer(self, frame: bytes) -> bool:
        """Queue ``frame``; a full queue drops the client instead (``False``)."""
        if self.dropped is not None:
            return False
        if len(self._frames) >= self._maxsize:
            self.drop("slow")
            return False
        self._frames.append(frame)
        self._wake()
        return True

    def drop(self, reason: str, *, abort: bool = True) -> None:
        """End this client: its stream stops; ``abort`` also cuts its connection at once.

        A slow client's handler may be stuck writing to a full socket: only aborting the
        connection frees it.
        """
        if self.dropped is None:
            self.dropped = reason
            self._frames.clear()
            self._wake()
            if abort:
                self._abort()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def next(self, wait_seconds: float) -> list[bytes]:
        """The frames queued, waiting up to ``wait_seconds`` for one; ``[]`` when none came."""
        if not self._frames and self.dropped is None:
            # A bare future and a timer: this runs for every client on every event, and a
            # task per wait (asyncio.wait on Event.wait) costs several times more.
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            timer = loop.call_later(wait_seconds, _resolve, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
        frames = list(self._frames)
        self._frames.clear()
        return frames


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Broadcaster:
    """Fans encoded events out to the streaming clients.

    Args:
        buffer: events kept for ``Last-Event-ID`` resumes.
        max_clients: clients streaming at once.
        client_queue: frames one client may fall behind before it is dropped.
        metrics: the process's metrics (the broadcaster registers its own three).
        first_id: the id of the first event.
    """

    def __init__(
        self,
        *,
        buffer: int,
        max_clients: int,
        client_queue: int,
        metrics: Metrics,
        first_id: int = 1,
    ) -> None:
        self._ring: collections.deque[tuple[int, bytes]] = collections.deque(maxlen=buffer)
        self._max_clients = max_clients
        self._client_queue = client_queue
        self._clients: set[Client] = set()
        self._next_id = first_id
        self._metrics = StreamMetrics.create(metrics)
        self._closed = False
        self._joined = 0

    @property
    def last_id(self) -> int:
        """The id of the latest event (one less than the first id before any)."""
        return self._next_id - 1

    @property
    def clients(self) -> int:
        """Clients streaming now."""
        return len(self._clients)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` ended every stream."""
        return self._closed

    def publish(self, kind: str, data: Mapping[str, Any]) -> int:
        """Send an event to every client and keep it for resumes; return its id. Never waits."""
        event_id = self._next_id
        self._next_id += 1
        frame = encode(kind, data, event_id)
        self._ring.append((event_id, frame))
        self._metrics.sent.inc()
        self._fan_out(frame)
        return event_id

    def send_transient(self, kind: str, data: Mapping[str, Any]) -> None:
        """Send an event without an id that is not kept (clock ticks); never waits."""
        self._fan_out(encode(kind, data))

    def _fan_out(self, frame: bytes) -> None:
        for client in list(self._clients):
            if not client.offer(frame):
                self._leave(client)

    def join(self, last_id: int | None, abort: Callable[[], None]) -> tuple[Client, list[bytes]]:
        """A new client, and the frames it missed after ``last_id`` (``None``: nothing missed).

        When ``last_id`` is not in the buffer's range (too old, or from another process), the
        frames are one ``reset`` event: the browser reloads the snapshot.

        Raises:
            TooManyClients: ``max_clients`` are streaming already.
        """
        if len(self._clients) >= self._max_clients:
            self._metrics.dropped.labels("full").inc()
            raise TooManyClients(f"{len(self._clients)} dashboard clients already")
        client = Client(self._client_queue, abort, phase=(self._joined % 16) / 16)
        self._joined += 1
        self._clients.add(client)
        self._metrics.clients.set(len(self._clients))
        return client, self.missed(last_id)

    def missed(self, last_id: int | None) -> list[bytes]:
        """The buffered frames after ``last_id``; a ``reset`` frame when some are not kept."""
        if last_id is None or last_id == self.last_id:
            return []
        oldest = self._ring[0][0] if self._ring else self._next_id
        if oldest - 1 <= last_id < self.last_id:
            return [frame for i, frame in self._ring if i > last_id]
        return [encode("reset", {"last_event_id": self.last_id})]

    def leave(self, client: Client) -> None:
        """Forget ``client`` (its stream ended)."""
        self._leave(client)

    def _leave(self, client: Client) -> None:
        if client in self._clients:
            self._clients.discard(client)
            self._metrics.clients.set(len(self._clients))
            if client.dropped == "slow":
                self._metrics.dropped.labels("slow").inc()

    def reopen(self) -> None:
        """Take clients again after :meth:`close` (the dashboard restarted)."""
        self._closed = False

    def close(self) -> None:
        """End every stream (the server is stopping); clients joining later are ended at once."""
        self._closed = True
        for client in list(self._clients):
            client.drop("closed", abort=False)
            self._leave(client)

    def frames(self) -> Iterable[tuple[int, bytes]]:
        """The buffered ``(id, frame)`` pairs, oldest first (tests, benchmarks)."""
        return tuple(self._ring)
