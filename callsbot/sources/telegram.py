"""Telegram call groups through a Telethon user session.

:class:`TelegramListener` holds the logic (resolve each group on its own, turn messages into
:class:`~callsbot.aggregator.IncomingMessage`, catch up after a reconnect, heartbeat) and talks
to Telegram only through the narrow :class:`TelegramGateway` boundary. :class:`TelethonGateway`
is that boundary over a real ``TelegramClient``; tests put a fake gateway there that hands the
listener real ``telethon.tl.types.Message`` objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import stat
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

import attrs

from callsbot.clock import Clock, unix_seconds
from callsbot.config import Settings
from callsbot.errors import NoGroupsResolved, SessionError, StoreError
from callsbot.extract import entities_from_telethon
from callsbot.metrics import Metrics
from callsbot.models import ForwardHeader, IncomingMessage
from callsbot.store import SignalStore, keys

log = logging.getLogger("callsbot.telegram")

Handler = Callable[[Any, bool], Awaitable[None]]
Sleep = Callable[[float], Awaitable[None]]

ROLE = "aggregator"


class GroupUnavailable(Exception):
    """A configured group could not be resolved (renamed, private, banned, not joined…)."""


@attrs.frozen
class ResolvedGroup:
    """A configured group that Telegram knows.

    Attributes:
        ref: as written in config (``@name`` or a numeric id).
        chat_id: Telegram's peer id (``-100…`` for channels and supergroups).
        name: the name mentions are recorded under: ``@username`` or ``str(chat_id)``.
        entity: the gateway's handle for the chat (a Telethon entity in production).
    """

    ref: str
    chat_id: int
    name: str
    entity: Any = attrs.field(eq=False, repr=False, default=None)


class MessageIntake(Protocol):
    """Where the listener hands messages (the aggregator pipeline)."""

    async def submit(self, message: IncomingMessage) -> None:
        """Queue ``message``; may wait while the queue is full (back-pressure)."""
        ...

    async def flush_cursors(self) -> None:
        """Write the catch-up cursors of the messages finished so far."""
        ...


class TelegramGateway(Protocol):
    """Everything the listener needs from Telegram."""

    async def resolve(self, ref: str) -> ResolvedGroup:
        """Resolve one configured group.

        Raises:
            GroupUnavailable: with the reason.
        """
        ...

    def listen(self, groups: Sequence[ResolvedGroup], handler: Handler) -> None:
        """Deliver new (``edited=False``) and edited messages of ``groups`` to ``handler``."""
        ...

    def history(self, group: ResolvedGroup, *, min_id: int) -> AsyncIterator[Any]:
        """Messages of ``group`` with an id above ``min_id``, newest first."""
        ...

    def is_connected(self) -> bool:
        """Whether the client is connected right now."""
        ...


def peer_id(peer: Any) -> int | None:
    """The Bot-API style id of a Telethon ``Peer*`` (``-100…`` channels, ``-…`` basic groups)."""
    if peer is None:
        return None
    if getattr(peer, "user_id", None) is not None:
        return int(peer.user_id)
    if getattr(peer, "channel_id", None) is not None:
        return -(10**12) - int(peer.channel_id)
    if getattr(peer, "chat_id", None) is not None:
        return -int(peer.chat_id)
    return None


def forward_header(fwd: Any) -> ForwardHeader | None:
    """A Telethon ``MessageFwdHeader`` as a :class:`ForwardHeader` (``None`` when not a forward)."""
    if fwd is None:
        return None
    date = getattr(fwd, "date", None)
    return ForwardHeader(
        origin_peer=peer_id(getattr(fwd, "from_id", None)),
        origin_name=getattr(fwd, "from_name", None),
        origin_message_id=getattr(fwd, "channel_post", None),
        origin_date=None if date is None else int(date.timestamp()),
    )


def message_date(message: Any) -> int:
    """A Telethon message's own date (server clock) as unix seconds."""
    return int(message.date.timestamp())


class TelegramListener:
    """Listens to the configured groups and feeds the aggregator.

    Args:
        gateway: the Telegram boundary.
        intake: where messages go (the pipeline; its ``submit`` only queues).
        store: for catch-up cursors and the heartbeat.
        settings: all settings.
        clock: "now".
        metrics: the process's metrics.
        sleep: injectable for tests.
    """

    def __init__(
        self,
        *,
        gateway: TelegramGateway,
        intake: MessageIntake,
        store: SignalStore,
        settings: Settings,
        clock: Clock,
        metrics: Metrics,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._gateway = gateway
        self._intake = intake
        self._store = store
        self._settings = settings
        self._tg = settings.telegram
        self._clock = clock
        self._metrics = metrics
        self._sleep = sleep
        self._groups: dict[int, ResolvedGroup] = {}
        self._failed: dict[str, str] = {}
        self._was_connected = False

    @property
    def groups(self) -> dict[int, ResolvedGroup]:
        """Resolved groups by chat id."""
        return dict(self._groups)

    @property
    def failed(self) -> dict[str, str]:
        """Configured groups that did not resolve, with the reason."""
        return dict(self._failed)

    name = "telegram"

    @property
    def connected(self) -> bool:
        """Whether the Telegram client is connected right now."""
        return self._gateway.is_connected()

    def health(self) -> list[str]:
        """Reasons the listener is not ready (not connected)."""
        return [] if self.connected else ["telegram not connected"]

    # -- groups --------------------------------------------------------------------------------

    async def resolve_groups(self, refs: Sequence[str] | None = None) -> list[ResolvedGroup]:
        """Resolve each group on its own; a failure is logged and remembered, never fatal here.

        Returns:
            The groups that resolved in this call.
        """
        new: list[ResolvedGroup] = []
        for ref in refs if refs is not None else self._tg.groups:
            try:
                group = await self._gateway.resolve(ref)
            except GroupUnavailable as exc:
                if self._failed.get(ref) != str(exc):
                    log.warning(
                        "group %s skipped: %s (retrying every %.0fs)",
                        ref,
                        exc,
                        self._tg.resolve_retry_seconds,
                    )
                self._failed[ref] = str(exc)
                continue
            self._failed.pop(ref, None)
            if group.chat_id not in self._groups:
                log.info("listening to %s (id %d)", group.name, group.chat_id)
                new.append(group)
            self._groups[group.chat_id] = group
        self._metrics.groups_resolved.labels("ok").set(len(self._groups))
        self._metrics.groups_resolved.labels("failed").set(len(self._failed))
        return new

    async def start(self) -> None:
        """Resolve the groups and subscribe.

        Raises:
            NoGroupsResolved: none of the configured groups resolved.
        """
        if not self._tg.groups:
            raise NoGroupsResolved("no groups configured: set [telegram] groups in config.toml")
        await self.resolve_groups()
        if not self._groups:
            reasons = "; ".join(f"{ref}: {why}" for ref, why in self._failed.items())
            raise NoGroupsResolved(f"none of the configured groups resolved ({reasons})")
        self._gateway.listen(list(self._groups.values()), self.on_message)

    # -- messages ------------------------------------------------------------------------------

    async def on_message(self, message: Any, edited: bool) -> None:
        """The Telethon event handler: filter, convert, queue. Never waits on HTTP or Redis."""
        incoming = self.to_incoming(message, source="edit" if edited else "live")
        if incoming is not None:
            await self._intake.submit(incoming)

    def to_incoming(self, message: Any, *, source: str) -> IncomingMessage | None:
        """Convert a Telethon message of a listened group, or ``None`` to skip it."""
        group = self._groups.get(message.chat_id)
        if group is None:
            return None
        if self._tg.skip_forwards and message.fwd_from is not None:
            self._metrics.mentions_rejected.labels("forwarded").inc()
            return None
        if self._tg.skip_own and message.out:
            self._metrics.mentions_rejected.labels("own_message").inc()
            return None
        text = message.message or ""
        if not text:
            return None
        return IncomingMessage(
            chat_id=group.chat_id,
            group=group.name,
            message_id=message.id,
            ts=message_date(message),
            text=text,
            entities=entities_from_telethon(message),
            source=source,
            sender_id=peer_id(getattr(message, "from_id", None)),
            forward=forward_header(getattr(message, "fwd_from", None)),
            received_at=self._clock.time(),
        )

    async def catch_up(self) -> int:
        """Feed what was missed since each group's cursor, at most one window back.

        Returns:
            How many messages were queued.
        """
        if not self._tg.catch_up:
            return 0
        oldest = unix_seconds(self._clock) - self._store.window
        queued = 0
        for group in list(self._groups.values()):
            try:
                min_id = await self._store.get_cursor(keys.chat_cursor(group.chat_id)) or 0
            except StoreError as exc:
                log.warning("catch-up of %s postponed: store unavailable (%s)", group.name, exc)
                continue
            missed: list[IncomingMessage] = []
            async for message in self._gateway.history(group, min_id=min_id):
                if message_date(message) <= oldest:
                    break
                incoming = self.to_incoming(message, source="catch_up")
                if incoming is not None:
                    missed.append(incoming)
            for incoming in reversed(missed):  # oldest first, as they happened
                await self._intake.submit(incoming)
            if missed:
                log.info("caught up %d messages of %s", len(missed), group.name)
            queued += len(missed)
        return queued

    # -- loops ---------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Start, catch up, then beat and watch the connection until ``stop`` is set."""
        await self.start()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._watch(stop), name="telegram-watch")
            tg.create_task(self._retry_failed(stop), name="telegram-resolve-retry")

    async def tick(self) -> None:
        """One watch step: heartbeat while connected; catch up after a (re)connect."""
        await self._intake.flush_cursors()
        connected = self._gateway.is_connected()
        if connected and not self._was_connected:
            await self.catch_up()
        self._was_connected = connected
        if connected:
            try:
                await self._store.beat(ROLE, ttl=3 * self._settings.store.heartbeat_interval)
            except StoreError as exc:
                self._metrics.store_errors.labels("beat").inc()
                log.warning("heartbeat not written: %s", exc)
        elif self._was_connected is False:
            log.debug("telegram disconnected; heartbeat paused")

    async def _watch(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.tick()
            await _wait(stop, self._settings.store.heartbeat_interval)

    async def _retry_failed(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await _wait(stop, self._tg.resolve_retry_seconds)
            if self._failed and not stop.is_set():
                new = await self.resolve_groups(list(self._failed))
                if new:
                    self._gateway.listen(list(self._groups.values()), self.on_message)
                    await self.catch_up()


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


# ---------------------------------------------------------------------------------------------
# The session file: private, locked, authorised.


def session_path(setting: str) -> Path:
    """The file Telethon uses for ``setting`` (it appends ``.session`` when missing)."""
    path = Path(setting).expanduser()
    return path if path.name.endswith(".session") else path.with_name(path.name + ".session")


def check_session_file(path: Path) -> None:
    """Refuse a session file that other users can read: it is a login.

    Raises:
        SessionError: missing, or readable/writable by group or others.
    """
    if not path.exists():
        raise SessionError(f"no Telegram session at {path}: run `python -m callsbot login`")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise SessionError(
            f"session file {path} is accessible by other users (mode {mode:04o}); "
            f"it holds your Telegram login. Run: chmod 600 {path}"
        )


def create_private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if it does not exist (Telethon fills it in)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    os.close(fd)


class SessionLock:
    """An exclusive lock next to the session file, so two processes never share one session.

    Telegram invalidates an auth key used from two connections at once; the lock turns that
    into a clear error at startup instead.
    """

    def __init__(self, session: Path) -> None:
        self.path = session.with_name(session.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`SessionError`."""
        fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise SessionError(
                f"session {self.path.with_suffix('')} is in use by another callsbot process "
                f"(lock {self.path}); stop it first or give this one its own session"
            ) from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
