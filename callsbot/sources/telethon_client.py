"""The real Telegram boundary: a Telethon ``TelegramClient`` behind :class:`TelegramGateway`.

Kept thin on purpose: everything that can be tested without Telegram lives in
:mod:`callsbot.sources.telegram`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from telethon import TelegramClient, events, utils
from telethon import errors as tg_errors

from callsbot.config import Settings, TelegramSettings
from callsbot.errors import SessionError
from callsbot.sources.telegram import (
    GroupUnavailable,
    Handler,
    ResolvedGroup,
    SessionLock,
    check_session_file,
    create_private_file,
    session_path,
)

log = logging.getLogger("callsbot.telegram")

#: Longest FloodWait we sit out inside one call before reporting the group as unavailable
#: (the periodic resolve retry tries again later).
_MAX_INLINE_FLOOD_WAIT = 120


class TelethonGateway:
    """:class:`~callsbot.sources.telegram.TelegramGateway` over a connected TelegramClient."""

    def __init__(self, client: TelegramClient) -> None:
        self._client = client
        self._handlers: list[tuple[Any, Any]] = []

    async def resolve(self, ref: str) -> ResolvedGroup:
        target: str | int = int(ref) if ref.lstrip("-").isdigit() else ref
        for _attempt in range(2):
            try:
                entity = await self._client.get_entity(target)
                break
            except tg_errors.FloodWaitError as exc:
                log.warning("FloodWait: Telegram asks to wait %ds (resolving %s)", exc.seconds, ref)
                if exc.seconds > _MAX_INLINE_FLOOD_WAIT:
                    raise GroupUnavailable(f"flood wait of {exc.seconds}s") from None
                await asyncio.sleep(exc.seconds)
            except (ValueError, TypeError, tg_errors.RPCError) as exc:
                raise GroupUnavailable(f"{exc.__class__.__name__}: {exc}") from None
        else:
            raise GroupUnavailable("still flood-limited after waiting")
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
        while True:
            try:
                async for message in self._client.iter_messages(group.entity, min_id=min_id):
                    yield message
                return
            except tg_errors.FloodWaitError as exc:
                log.warning("FloodWait: waiting %ds before catching up %s", exc.seconds, group.name)
                await asyncio.sleep(exc.seconds)

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
async def connected_gateway(settings: Settings) -> AsyncIterator[TelethonGateway]:
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
            yield TelethonGateway(client)
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
