"""The real Telegram boundary: a Telethon ``TelegramClient`` behind :class:`TelegramGateway`.

Kept thin on purpose: everything that can be tested without Telegram lives in
:mod:`callsbot.sources.telegram`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from telethon import TelegramClient, events, utils
from telethon import errors as tg_errors

from callsbot.clock import Clock
from callsbot.config import Settings, TelegramSettings
from callsbot.errors import SessionError
from callsbot.net.retry import Attempt, RetryPolicy, Sleep, retry_call
from callsbot.sources.telegram import (
    FloodWaited,
    GroupUnavailable,
    Handler,
    ResolvedGroup,
    SessionLock,
    check_session_file,
    create_private_file,
    session_path,
)

log = logging.getLogger("callsbot.telegram")

T = TypeVar("T")

#: Messages asked per history request (Telegram's own page size).
HISTORY_PAGE = 100
#: Attempts of one call that Telegram keeps flood-limiting (each wait within the cap).
_FLOOD_ATTEMPTS = 3


def _flood_seconds(exc: BaseException) -> float | None:
    return float(exc.seconds) if isinstance(exc, tg_errors.FloodWaitError) else None


class TelethonGateway:
    """:class:`~callsbot.sources.telegram.TelegramGateway` over a connected TelegramClient.

    A FloodWait is sat out through :func:`~callsbot.net.retry.retry_call` on the injected clock
    and sleep, inside the call that got it, when it is at most ``max_flood_wait`` seconds; a
    longer one is raised as :class:`~callsbot.sources.telegram.FloodWaited` (catch-up) or
    :class:`~callsbot.sources.telegram.GroupUnavailable` (resolving), so the caller postpones
    that one group instead of everything waiting.

    Args:
        client: a connected client.
        clock: "now" for the retries.
        sleep: how FloodWaits are waited out.
        max_flood_wait: the longest wait sat out inside one call (s).
    """

    def __init__(
        self,
        client: TelegramClient,
        *,
        clock: Clock,
        sleep: Sleep = asyncio.sleep,
        max_flood_wait: float = 120.0,
    ) -> None:
        self._client = client
        self._clock = clock
        self._sleep = sleep
        self._max_flood_wait = max_flood_wait
        self._handlers: list[tuple[Any, Any]] = []

    async def _call(self, fn: Callable[[], Awaitable[T]], what: str) -> T:
        """``fn()``, with FloodWaits up to the cap sat out and longer ones raised.

        Raises:
            FloodWaited: Telegram asked for a longer wait, or kept asking.
        """

        async def attempt(_: Attempt) -> T:
            try:
                return await fn()
            except tg_errors.FloodWaitError as exc:
                log.warning("FloodWait: Telegram asks to wait %ds (%s)", exc.seconds, what)
                if exc.seconds > self._max_flood_wait:
                    raise FloodWaited(exc.seconds, what) from None
                raise

        try:
            return await retry_call(
                attempt,
                on=tg_errors.FloodWaitError,
                policy=RetryPolicy(attempts=_FLOOD_ATTEMPTS),
                clock=self._clock,
                sleep=self._sleep,
                wait_hint=_flood_seconds,
                name=f"telegram {what}",
            )
        except tg_errors.FloodWaitError as exc:
            raise FloodWaited(exc.seconds, f"{what}, still flood-limited after waiting") from None

    async def resolve(self, ref: str) -> ResolvedGroup:
        target: str | int = int(ref) if ref.lstrip("-").isdigit() else ref
        try:
            entity = await self._call(lambda: self._client.get_entity(target), f"resolving {ref}")
        except FloodWaited as exc:
            raise GroupUnavailable(f"flood wait of {exc.seconds:.0f}s") from None
        except (ValueError, TypeError, tg_errors.RPCError) as exc:
            raise GroupUnavailable(f"{exc.__class__.__name__}: {exc}") from None
        chat_id = utils.get_peer_id(entity)
        username = getattr(entity, "username", None)
        return ResolvedGroup(
            ref=ref,
            chat_id=chat_id,
            name=f"@{username}" if username else str(chat_id),
            entity=entity,
        )

    def listen(self, groups: Sequence[ResolvedGroup], handler: Handler) -> None:
        for callback, event in self._handlers:
            self._client.remove_event_handler(callback, event)
        ids = [g.chat_id for g in groups]

        async def on_new(event: Any) -> None:
            await handler(event.message, False)

        async def on_edit(event: Any) -> None:
            await handler(event.message, True)

        new_event, edit_event = events.NewMessage(chats=ids), events.MessageEdited(chats=ids)
        self._client.add_event_handler(on_new, new_event)
        self._client.add_event_handler(on_edit, edit_event)
        self._handlers = [(on_new, new_event), (on_edit, edit_event)]

    async def history(self, group: ResolvedGroup, *, min_id: int) -> AsyncIterator[Any]:
        # Page by page, newest first: a FloodWait retries the page it hit, not the whole read.
        max_id = 0
        while True:
            below = max_id

            async def page(below: int = below) -> Any:
                return await self._client.get_messages(
                    group.entity, limit=HISTORY_PAGE, min_id=min_id, max_id=below
                )

            messages = list(await self._call(page, f"catching up {group.name}"))
            for message in messages:
                yield message
            if len(messages) < HISTORY_PAGE:
                return
            max_id = messages[-1].id

    def is_connected(self) -> bool:
        return bool(self._client.is_connected())


def _credentials(tg: TelegramSettings) -> tuple[int, str]:
    if tg.api_id is None or not tg.api_hash:
        raise SessionError(
            "CALLSBOT_TELEGRAM_API_ID and CALLSBOT_TELEGRAM_API_HASH must be set (environment "
            "or .env); get them at my.telegram.org"
        )
    return tg.api_id, tg.api_hash


def build_client(tg: TelegramSettings) -> TelegramClient:
    """A TelegramClient on the configured session; FloodWaits are raised to us, not slept."""
    api_id, api_hash = _credentials(tg)
    return TelegramClient(
        str(session_path(tg.session)),
        api_id,
        api_hash,
        flood_sleep_threshold=0,
        # Reconnect for ever: the listener's own catch-up fills the gap once it is back.
        connection_retries=-1,
        retry_delay=5,
        auto_reconnect=True,
    )


@asynccontextmanager
async def connected_gateway(
    settings: Settings, *, clock: Clock, sleep: Sleep = asyncio.sleep
) -> AsyncIterator[TelethonGateway]:
    """Lock, check and connect the session; yield a gateway; disconnect on exit.

    Raises:
        SessionError: missing/unsafe/locked session, not authorised, or a duplicated auth key.
    """
    path = session_path(settings.telegram.session)
    check_session_file(path)
    with SessionLock(path):
        client = build_client(settings.telegram)
        try:
            await client.connect()
            if not await client.is_user_authorized():
                raise SessionError(
                    f"session {path} is not logged in: run `python -m callsbot login`"
                )
            yield TelethonGateway(
                client,
                clock=clock,
                sleep=sleep,
                max_flood_wait=settings.telegram.flood_wait_max_seconds,
            )
        except tg_errors.AuthKeyDuplicatedError:
            raise SessionError(
                f"Telegram revoked session {path}: it was used from two places at once. "
                "Delete the file and run `python -m callsbot login` again"
            ) from None
        except tg_errors.AuthKeyUnregisteredError:
            raise SessionError(
                f"session {path} was logged out: run `python -m callsbot login`"
            ) from None
        finally:
            await client.disconnect()


async def login(settings: Settings) -> None:
    """Create or refresh the session interactively (phone, code, 2FA password); mode 0600."""
    path = session_path(settings.telegram.session)
    create_private_file(path)
    with SessionLock(path):
        client = build_client(settings.telegram)
        try:
            await client.start()  # prompts for phone, code and password on the terminal
            me = await client.get_me()
            name = getattr(me, "username", None) or getattr(me, "first_name", "")
            print(f"logged in as {name}; session saved to {path}")
        finally:
            await client.disconnect()
    os.chmod(path, 0o600)
