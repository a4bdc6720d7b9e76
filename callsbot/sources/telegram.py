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
import functools
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


class FloodWaited(Exception):
    """Telegram asked to wait longer than one call sits out (``telegram.flood_wait_max_seconds``).

    Attributes:
        seconds: how long Telegram asked to wait.
    """

    def __init__(self, seconds: float, what: str) -> None:
        super().__init__(f"Telegram asks to wait {seconds:.0f}s ({what})")
        self.seconds = seconds


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

    def behind(self, chat_id: int) -> None:
        """The chat's history past its cursor is about to be read: hold its cursor."""
        ...

    def caught_up(self, chat_id: int) -> None:
        """A catch-up of the chat queued every message it missed."""
        ...

    def take_rereads(self) -> set[int]:
        """Chats whose dropped messages should be read again from their history now."""
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
        """Messages of ``group`` with an id above ``min_id``, newest first.

        Raises:
            FloodWaited: Telegram asked to wait longer than the gateway sits out.
        """
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
        # One catch-up task per group: a group waiting out a FloodWait blocks nobody else.
        self._catching: dict[int, asyncio.Task[int]] = {}
        self._retry_at: dict[int, float] = {}  # groups behind: when to try their catch-up again
        self._flood_until: dict[int, float] = {}  # groups whose catch-up waits out a FloodWait
        self._last_seen: dict[int, float] = {}  # the latest message seen per group (unix s)
        self._stale: set[int] = set()

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
        """Reasons the listener is not ready: not connected, a group silent for longer than
        ``telegram.stale_after_seconds``, a catch-up postponed by a FloodWait."""
        if not self.connected:
            return ["telegram not connected"]
        now = self._clock.time()
        reasons = [
            f"group {self._groups[c].name} silent for {now - self._last_seen[c]:.0f}s "
            f"(stale after {self._tg.stale_after_seconds:.0f}s)"
            for c in sorted(self._stale)
            if c in self._groups and c in self._last_seen
        ]
        reasons += [
            f"catch-up of {self._groups[c].name} waits out a FloodWait ({until - now:.0f}s left)"
            for c, until in sorted(self._flood_until.items())
            if c in self._groups and until > now
        ]
        return reasons

    @property
    def catching_up(self) -> tuple[int, ...]:
        """Chats whose catch-up is running now."""
        return tuple(self._catching)

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
        self._follow(list(self._groups.values()))
        self._gateway.listen(list(self._groups.values()), self.on_message)

    def _follow(self, groups: Sequence[ResolvedGroup]) -> None:
        """Groups start being listened to: their history is to be read, their silence timed."""
        now = self._clock.time()
        for group in groups:
            self._last_seen.setdefault(group.chat_id, now)
            if self._tg.catch_up:
                self._intake.behind(group.chat_id)

    # -- messages ------------------------------------------------------------------------------

    async def on_message(self, message: Any, edited: bool) -> None:
        """The Telethon event handler: filter, convert, queue. Never waits on HTTP or Redis."""
        if message.chat_id in self._groups:
            self._saw(message.chat_id, self._clock.time())
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

    def _saw(self, chat_id: int, when: float) -> None:
        if when > self._last_seen.get(chat_id, 0.0):
            self._last_seen[chat_id] = when
        if chat_id in self._stale:
            self._stale.discard(chat_id)
            group = self._groups.get(chat_id)
            log.info("group %s delivers again", group.name if group else chat_id)

    async def catch_up(self) -> int:
        """Catch up every group (concurrently) and wait for it; at most one window back.

        Returns:
            How many messages were queued.
        """
        tasks = self.start_catch_up(list(self._groups.values()))
        return sum(await asyncio.gather(*tasks))

    def start_catch_up(self, groups: Sequence[ResolvedGroup]) -> list[asyncio.Task[int]]:
        """Start the catch-up of each of ``groups`` that is not running already (its own task:
        one group's FloodWait never holds up another group or the heartbeat).

        Returns:
            The catch-up tasks of ``groups``, started now or running already.
        """
        if not self._tg.catch_up:
            return []
        tasks: list[asyncio.Task[int]] = []
        for group in groups:
            task = self._catching.get(group.chat_id)
            if task is None:
                self._intake.behind(group.chat_id)
                task = asyncio.create_task(
                    self._catch_up_group(group), name=f"telegram-catch-up-{group.chat_id}"
                )
                self._catching[group.chat_id] = task
                task.add_done_callback(functools.partial(self._finished_catch_up, group.chat_id))
            tasks.append(task)
        return tasks

    def _finished_catch_up(self, chat_id: int, task: asyncio.Task[int]) -> None:
        if self._catching.get(chat_id) is task:
            del self._catching[chat_id]

    async def wait_caught_up(self) -> None:
        """Return once no catch-up is running (tests, shutdown)."""
        while self._catching:
            await asyncio.gather(*self._catching.values(), return_exceptions=True)

    async def _catch_up_group(self, group: ResolvedGroup) -> int:
        """Catch up one group; a failure postpones it (the cursor stays put meanwhile)."""
        chat_id = group.chat_id
        try:
            queued = await self._read_missed(group)
        except FloodWaited as exc:
            wait = max(exc.seconds, 1.0)
            self._retry_at[chat_id] = self._flood_until[chat_id] = self._clock.time() + wait
            self._metrics.flood_waits.labels(group.name).inc()
            self._metrics.flood_wait.labels(group.name).set(wait)
            log.warning(
                "catch-up of %s postponed by %.0fs: %s; the other groups go on",
                group.name,
                wait,
                exc,
            )
            return 0
        except StoreError as exc:
            self._retry_at[chat_id] = self._clock.time() + self._settings.store.heartbeat_interval
            log.warning("catch-up of %s postponed: store unavailable (%s)", group.name, exc)
            return 0
        except Exception:
            # A Telegram error other than a FloodWait: this group is retried, the others go on.
            self._retry_at[chat_id] = self._clock.time() + self._tg.resolve_retry_seconds
            log.exception("catch-up of %s failed; retrying later", group.name)
            return 0
        self._retry_at.pop(chat_id, None)
        if self._flood_until.pop(chat_id, None) is not None:
            self._metrics.flood_wait.labels(group.name).set(0)
        self._intake.caught_up(chat_id)
        return queued

    async def _read_missed(self, group: ResolvedGroup) -> int:
        oldest = unix_seconds(self._clock) - self._store.window
        min_id = await self._store.get_cursor(keys.chat_cursor(group.chat_id)) or 0
        missed: list[IncomingMessage] = []
        async for message in self._gateway.history(group, min_id=min_id):
            date = message_date(message)
            self._saw(group.chat_id, date)
            if date <= oldest:
                break
            incoming = self.to_incoming(message, source="catch_up")
            if incoming is not None:
                missed.append(incoming)
        for incoming in reversed(missed):  # oldest first, as they happened
            await self._intake.submit(incoming)
        if missed:
            log.info("caught up %d messages of %s", len(missed), group.name)
        return len(missed)

    # -- loops ---------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Start, catch up, then beat and watch the connection until ``stop`` is set."""
        await self.start()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._watch(stop), name="telegram-watch")
                tg.create_task(self._retry_failed(stop), name="telegram-resolve-retry")
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Stop the catch-ups still running (what they had not queued is read next time)."""
        tasks = list(self._catching.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def tick(self) -> None:
        """One watch step: cursors, then the catch-ups due, a heartbeat while connected, and
        the groups' silence. Never waits for a catch-up: those run in their own tasks."""
        await self._intake.flush_cursors()
        connected = self._gateway.is_connected()
        if connected and not self._was_connected:
            self.start_catch_up(list(self._groups.values()))
        elif connected:
            self.start_catch_up(self._catch_ups_due())
        elif self._was_connected and self._tg.catch_up:
            # Whatever is posted until the reconnect is read by the catch-up then; live messages
            # finishing first must not move the cursor past it.
            for chat_id in self._groups:
                self._intake.behind(chat_id)
        self._was_connected = connected
        if connected:
            try:
                await self._store.beat(ROLE, ttl=3 * self._settings.store.heartbeat_interval)
            except StoreError as exc:
                self._metrics.store_errors.labels("beat").inc()
                log.warning("heartbeat not written: %s", exc)
        else:
            log.debug("telegram disconnected; heartbeat paused")
        self._watch_silence(connected)

    def _catch_ups_due(self) -> list[ResolvedGroup]:
        if not self._tg.catch_up:
            return []
        now = self._clock.time()
        due = {c for c, at in self._retry_at.items() if at <= now}
        rereads = self._intake.take_rereads() - due
        due = {c for c in due | rereads if c in self._groups and c not in self._catching}
        for chat_id in sorted(due & rereads):
            log.info("reading %s again: mentions of it were dropped", self._groups[chat_id].name)
        return [self._groups[c] for c in sorted(due)]

    def _watch_silence(self, connected: bool) -> None:
        """Export each group's silence; flag a group silent for too long while connected."""
        now = self._clock.time()
        limit = self._tg.stale_after_seconds
        for chat_id, group in self._groups.items():
            age = max(0.0, now - self._last_seen.get(chat_id, now))
            self._metrics.group_message_age.labels(group.name).set(age)
            stale = connected and limit > 0 and age > limit
            self._metrics.group_stale.labels(group.name).set(1 if stale else 0)
            if stale and chat_id not in self._stale:
                self._stale.add(chat_id)
                log.warning(
                    "group %s silent for %.0fs while connected (telegram.stale_after_seconds = "
                    "%.0f): check that the account still reads it",
                    group.name,
                    age,
                    limit,
                )
            elif not stale:
                self._stale.discard(chat_id)

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
                    self._follow(new)
                    self._gateway.listen(list(self._groups.values()), self.on_message)
                    self.start_catch_up(new)


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
