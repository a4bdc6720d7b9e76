"""The recorder: the service that writes the hub's events into the history, in batches.

It subscribes to the :class:`~callsbot.events.EventHub` for every kind the history keeps. The
hub hands it events through its bounded per-subscriber queue; the handler only appends them to
the recorder's own buffer (never waiting on the database), and one writer task empties that
buffer a batch (``[history] batch_size``) per transaction. Events stay in the buffer until their
batch is committed, so nothing is lost to a failed or interrupted write; writes are idempotent,
so a batch written twice is harmless.

While the database is away the buffer grows (up to ``buffer_size``; past that events are dropped
and counted), ``/readyz`` names the outage and ``callsbot_history_up`` is 0; the writer retries
with a doubling pause. At shutdown what could not be written is saved to the spool file (0600,
the recording format of :mod:`callsbot.history.recording`) and the next start writes it first.

Shutdown order: stop the recorder after the producers and the hub, so that the events they emit
while draining still reach it; whatever is left in the recorder's hub queue when it stops is
taken over and written or spooled.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
from pathlib import Path

from callsbot.clock import Clock
from callsbot.config import HistorySettings
from callsbot.errors import HistoryUnavailable
from callsbot.events import Event, EventHub, Subscription
from callsbot.history import recording
from callsbot.history.base import HistoryStore
from callsbot.metrics import Metrics

log = logging.getLogger("callsbot.history")

DAY = 86400.0


class HistoryRecorder:
    """Writes events into a :class:`HistoryStore` off the hot path (a service).

    Args:
        history: where events go.
        settings: the ``[history]`` section (batch, buffer and queue sizes, retention, spool).
        clock: "now", for retention and the outage's age.
        metrics: ``history_*`` metrics.
        hub: subscribed to at construction when given (else feed :meth:`accept` yourself).
        spool: the spool file (``None``: no spool; what is unwritten at shutdown is lost).
        upgrade: apply the schema migrations before the first write (else only check nothing).
        retry_min: first pause after a failed write (s); doubles up to ``retry_max_seconds``.
    """

    name = "history"
    #: Stopped after the producers and the event hub (see :mod:`callsbot.runtime.app`).
    drains_events = True

    def __init__(
        self,
        history: HistoryStore,
        *,
        settings: HistorySettings,
        clock: Clock,
        metrics: Metrics,
        hub: EventHub | None = None,
        spool: Path | None = None,
        upgrade: bool = True,
        retry_min: float = 0.5,
    ) -> None:
        self._history = history
        self._settings = settings
        self._clock = clock
        self._metrics = metrics
        self._spool = spool
        self._upgrade = upgrade
        self._retry_min = retry_min
        self._pending: collections.deque[Event] = collections.deque()
        self._wake = asyncio.Event()
        self._closing = asyncio.Event()
        self._schema_ready = False
        self._down_since: float | None = None
        self._down_reason = ""
        self._dropping = False
        self._from_spool = 0
        self.subscription: Subscription | None = None
        self._hub = hub
        if hub is not None:
            self.subscription = hub.subscribe(
                self.name,
                self.accept,
                kinds=recording.EVENT_TYPES,
                maxsize=settings.queue_size,
            )

    # -- intake --------------------------------------------------------------------------------

    async def accept(self, event: Event) -> None:
        """Take one event (the hub's handler); never waits on the database.

        An event another process published (it came off the shared stream) is that process's
        to record.
        """
        if self._hub is not None and self._hub.is_remote(event):
            return
        if len(self._pending) >= self._settings.buffer_size:
            self._metrics.history_events.labels("dropped").inc()
            if not self._dropping:
                self._dropping = True
                log.error(
                    "HISTORY BUFFER FULL (%d events): new events are dropped until the database "
                    "takes the backlog",
                    self._settings.buffer_size,
                )
            return
        self._pending.append(event)
        self._metrics.history_buffer.set(len(self._pending))
        self._wake.set()

    @property
    def pending(self) -> int:
        """Events not yet committed to the database."""
        return len(self._pending)

    @property
    def history(self) -> HistoryStore:
        """The history it writes to (the window keeper reads it back)."""
        return self._history

    def unwritten(self) -> list[Event]:
        """The events taken but not yet committed, oldest first (a copy)."""
        return list(self._pending)

    # -- the service ---------------------------------------------------------------------------

    def health(self) -> list[str]:
        """Reasons the recorder is not ready: the database is away, events are being dropped."""
        reasons: list[str] = []
        if self._down_since is not None:
            age = max(0.0, self._clock.time() - self._down_since)
            reasons.append(
                f"history database unavailable for {age:.0f}s ({self._down_reason}); "
                f"{len(self._pending)} events buffered"
            )
        if self._dropping:
            reasons.append("history buffer full: events are being dropped")
        return reasons

    async def run(self, stop: asyncio.Event) -> None:
        """Write events until ``stop`` is set; then write or spool everything left and return.

        Raises:
            ConfigError: the database's schema is newer than this code.
        """
        if self._spool is not None:
            self._load_spool(self._spool)
        writer = asyncio.create_task(self._writer(), name="history-writer")
        pruner = (
            asyncio.create_task(self._pruner(), name="history-prune")
            if self._settings.retention_days > 0
            else None
        )
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({stopped, writer}, return_when=asyncio.FIRST_COMPLETED)
            self._closing.set()
            self._wake.set()
            await writer  # re-raises what ended it early (a schema newer than the code)
            self._take_subscription()
            await self._final_flush()
        finally:
            for task in (stopped, pruner, writer):
                if task is not None and not task.done():
                    task.cancel()
            # Synchronous on purpose: this also runs when the task is cancelled (the grace
            # period ran out), when no further await could be relied on.
            self._take_subscription()
            if self._spool is not None:
                self._save_spool(self._spool)

    async def flush(self) -> None:
        """Write everything buffered now (backfill, tests).

        Raises:
            HistoryUnavailable: the database failed; the events stay buffered.
        """
        await self._ensure_schema()
        while self._pending:
            await self._write_batch()

    async def prune_once(self) -> int:
        """Delete what is older than ``retention_days`` (nothing when it is 0); rows deleted."""
        days = self._settings.retention_days
        if days <= 0:
            return 0
        cutoff = self._clock.time() - days * DAY
        deleted = await self._history.prune(cutoff)
        if deleted:
            log.info("history retention: %d rows older than %d days deleted", deleted, days)
        return deleted

    # -- internals -----------------------------------------------------------------------------

    async def _ensure_schema(self) -> None:
        if self._schema_ready:
            return
        if self._upgrade:
            revision = await self._history.upgrade()
            log.info("history at schema revision %s (%s)", revision, self._history.where)
        self._schema_ready = True

    async def _write_batch(self) -> None:
        batch = [
            self._pending[i] for i in range(min(self._settings.batch_size, len(self._pending)))
        ]
        started = asyncio.get_running_loop().time()
        await self._history.record(batch)
        self._metrics.history_write_seconds.observe(asyncio.get_running_loop().time() - started)
        for _ in batch:
            self._pending.popleft()
        self._metrics.history_events.labels("written").inc(len(batch))
        self._metrics.history_buffer.set(len(self._pending))
        self._up()
        if self._from_spool:
            self._from_spool = max(0, self._from_spool - len(batch))
            if not self._from_spool and self._spool is not None:
                with contextlib.suppress(FileNotFoundError):
                    self._spool.unlink()
        if self._dropping and len(self._pending) < self._settings.buffer_size // 2:
            self._dropping = False

    def _up(self) -> None:
        if self._down_since is not None:
            log.info(
                "history database is back after %.0fs",
                self._clock.time() - self._down_since,
            )
        self._down_since = None
        self._metrics.history_up.set(1)

    def _down(self, exc: HistoryUnavailable) -> None:
        if self._down_since is None:
            self._down_since = self._clock.time()
            log.warning("history database unavailable, buffering events: %s", exc)
        self._down_reason = str(exc)
        self._metrics.history_up.set(0)

    async def _writer(self) -> None:
        delay = self._retry_min
        while not self._closing.is_set():
            try:
                await self._ensure_schema()
                if self._pending:
                    await self._write_batch()
                    delay = self._retry_min
                    continue
                if not self._down_since:
                    self._metrics.history_up.set(1)
            except HistoryUnavailable as exc:
                self._down(exc)
                await self._pause(delay)
                delay = min(delay * 2, self._settings.retry_max_seconds)
                continue
            self._wake.clear()
            if not self._pending and not self._closing.is_set():
                await self._wake.wait()

    async def _pause(self, seconds: float) -> None:
        # asyncio.wait, not wait_for: on Python 3.11 wait_for can swallow a cancellation.
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            await asyncio.wait({closing}, timeout=seconds)
        finally:
            closing.cancel()

    async def _pruner(self) -> None:
        while True:
            if self._schema_ready:
                try:
                    await self.prune_once()
                except HistoryUnavailable as exc:
                    log.warning("history retention: prune failed, next try later: %s", exc)
            await self._pause(self._settings.prune_interval_seconds)

    async def _final_flush(self) -> None:
        """One attempt per batch at shutdown: a database that fails now is not waited for."""
        if not self._pending:
            return
        try:
            await self.flush()
        except HistoryUnavailable as exc:
            self._down(exc)
            log.warning("history: %d events could not be written at shutdown", len(self._pending))

    def _take_subscription(self) -> None:
        sub = self.subscription
        if sub is None:
            return
        while not sub.queue.empty():
            event = sub.queue.get_nowait()
            sub.queue.task_done()
            self._pending.append(event)  # over buffer_size if need be: nothing is dropped now
        self._metrics.history_buffer.set(len(self._pending))

    def _save_spool(self, path: Path) -> None:
        if not self._pending:
            return
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            n = recording.write(self._pending, fh)
        os.replace(tmp, path)
        self._metrics.history_events.labels("spooled").inc(n)
        log.warning("history: %d events not yet written; saved to %s for the next start", n, path)

    def _load_spool(self, path: Path) -> None:
        try:
            with path.open(encoding="utf-8") as fh:
                events = list(recording.read(fh))
        except FileNotFoundError:
            return
        except recording.RecordingError as exc:
            broken = path.with_name(path.name + ".broken")
            os.replace(path, broken)
            log.error("history spool %s unreadable (%s); moved to %s", path, exc, broken)
            return
        self._pending.extendleft(reversed(events))
        self._from_spool = len(events)
        self._metrics.history_buffer.set(len(self._pending))
        self._wake.set()
        log.info("history: took back %d events from %s", len(events), path)
        if not events:
            path.unlink()
