"""Events across processes: this process's events go onto the shared stream, the others' come
off it into the local hub.

In one process (``run``) the hub is used directly and nothing here runs. In split mode every
process appends the events it publishes (:class:`StreamPublisher`) and reads the other
processes' (:class:`StreamReader`), resuming from the last entry id it handled. Consumers are
idempotent (a re-score, a row keyed by its message), so an entry read twice changes nothing.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import socket

from callsbot.clock import Clock
from callsbot.errors import StoreError
from callsbot.events import Event, EventHub, decode, encode
from callsbot.metrics import Metrics
from callsbot.store.base import EventStream
from callsbot.tasks import wait_stop

log = logging.getLogger("callsbot.bridge")

_BATCH = 500
_BACKOFF_START = 0.5
_BACKOFF_MAX = 5.0


def process_origin(role: str) -> str:
    """A name for this process's entries: role, host and pid."""
    return f"{role}@{socket.gethostname()}:{os.getpid()}"


class StreamPublisher:
    """A hub subscriber and a service: appends this process's events to the stream in batches.

    While the store is away the events wait in memory (up to ``buffer``; beyond that the oldest
    are dropped and counted) and go out in order when it is back.
    """

    name = "stream-publisher"
    #: Stopped after the producers and the event hub (see :mod:`callsbot.runtime.app`).
    drains_events = True

    def __init__(
        self,
        stream: EventStream,
        *,
        origin: str,
        maxlen: int,
        buffer: int,
        metrics: Metrics,
        hub: EventHub,
    ) -> None:
        self._stream = stream
        self._origin = origin
        self._maxlen = maxlen
        self._hub = hub
        self._pending: collections.deque[tuple[str, str]] = collections.deque(maxlen=buffer)
        self._metrics = metrics
        self._wake = asyncio.Event()
        self._failing: str | None = None

    async def __call__(self, event: Event) -> None:
        """Queue ``event`` for the stream (the hub calls this)."""
        if self._hub.is_remote(event):
            return
        if len(self._pending) == self._pending.maxlen:
            self._metrics.stream_dropped.inc()
        self._pending.append(encode(event))
        self._wake.set()

    def health(self) -> list[str]:
        """Reasons: the stream cannot be written (events waiting)."""
        if self._failing is None:
            return []
        return [f"event stream unavailable: {len(self._pending)} events waiting ({self._failing})"]

    async def flush(self) -> bool:
        """Append what waits, in batches; ``False`` when the store failed."""
        while self._pending:
            batch = [self._pending[i] for i in range(min(_BATCH, len(self._pending)))]
            try:
                await self._stream.append(batch, origin=self._origin, maxlen=self._maxlen)
            except StoreError as exc:
                if self._failing is None:
                    log.warning("event stream unavailable, %d events waiting: %s", len(batch), exc)
                self._failing = str(exc)
                return False
            for _ in batch:
                self._pending.popleft()
            self._metrics.stream_appended.inc(len(batch))
        if self._failing is not None:
            log.info("event stream is back; waiting events appended")
        self._failing = None
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Append as events arrive until ``stop``; then one last flush."""
        delay = _BACKOFF_START
        while not stop.is_set():
            waker = asyncio.ensure_future(self._wake.wait())
            stopper = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait({waker, stopper}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waker.cancel()
                stopper.cancel()
            self._wake.clear()
            if await self.flush():
                delay = _BACKOFF_START
                continue
            await wait_stop(stop, delay)
            delay = min(delay * 2, _BACKOFF_MAX)
            self._wake.set()
        await self.flush()


class StreamReader:
    """A service: reads the other processes' events off the stream into the local hub.

    It starts after the position it saved last (or at the stream's end on its first run, so a
    new process does not replay history), saves its position after each batch, and rides out a
    store outage with a resetting backoff.
    """

    name = "stream-reader"

    def __init__(
        self,
        stream: EventStream,
        hub: EventHub,
        *,
        reader: str,
        origin: str,
        block: float,
        metrics: Metrics,
        clock: Clock,
        kinds: frozenset[str] | None = None,
    ) -> None:
        self._stream = stream
        self._hub = hub
        self._reader = reader
        self._origin = origin
        self._block = block
        self._metrics = metrics
        self._clock = clock
        self._kinds = kinds
        self._last: str | None = None
        self._failing: str | None = None

    @property
    def last_id(self) -> str | None:
        """The last entry id handled."""
        return self._last

    def health(self) -> list[str]:
        """Reasons: the stream cannot be read."""
        return [] if self._failing is None else [f"event stream unreadable: {self._failing}"]

    async def read_once(self) -> int:
        """Read one batch (waiting up to ``block`` s); return how many events were handled.

        Raises:
            StoreError: the stream could not be read (the position is unchanged).
        """
        if self._last is None:
            self._last = await self._stream.position(self._reader) or await self._stream.last_id()
        entries = await self._stream.read_after(self._last, count=_BATCH, block=self._block)
        handled = 0
        for entry in entries:
            self._last = entry.id
            if entry.origin == self._origin or (
                self._kinds is not None and entry.kind not in self._kinds
            ):
                continue
            try:
                event = decode(entry.kind, entry.payload)
            except ValueError as exc:
                self._metrics.stream_skipped.inc()
                log.warning("event stream entry %s skipped: %s", entry.id, exc)
                continue
            self._hub.publish(event, remote=True)
            self._metrics.stream_lag.observe(max(0.0, self._clock.time() - event.at))
            handled += 1
        if entries:
            await self._stream.save_position(self._reader, self._last)
        return handled

    async def run(self, stop: asyncio.Event) -> None:
        """Read until ``stop`` is set."""
        delay = _BACKOFF_START
        while not stop.is_set():
            try:
                await self.read_once()
            except StoreError as exc:
                if self._failing is None:
                    log.warning("event stream unreadable, retrying: %s", exc)
                self._failing = str(exc)
                await wait_stop(stop, delay)
                delay = min(delay * 2, _BACKOFF_MAX)
                continue
            if self._failing is not None:
                log.info("event stream readable again")
            self._failing = None
            delay = _BACKOFF_START
