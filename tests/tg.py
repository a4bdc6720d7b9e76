"""Real Telethon message objects and a fake Telegram boundary for listener tests."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import base58
from telethon.tl.types import (
    Message,
    MessageFwdHeader,
    PeerChannel,
    PeerUser,
    TypeMessageEntity,
)

from callsbot.sources.telegram import GroupUnavailable, Handler, ResolvedGroup


def mint(i: int) -> str:
    """A valid Solana address (32 bytes), different for every ``i``."""
    return base58.b58encode(hashlib.sha256(b"callsbot-test-mint-%d" % i).digest()).decode()


def channel_peer_id(channel_id: int) -> int:
    return -(10**12 + channel_id)  # Telethon's utils.get_peer_id(PeerChannel(id))


def tg_message(
    channel_id: int,
    msg_id: int,
    text: str,
    ts: float,
    *,
    entities: Sequence[TypeMessageEntity] = (),
    forwarded: bool = False,
    out: bool = False,
    edit_ts: float | None = None,
) -> Message:
    """A real ``telethon.tl.types.Message`` as Telegram delivers it for a channel post."""
    when = dt.datetime.fromtimestamp(ts, tz=dt.UTC)
    return Message(
        id=msg_id,
        peer_id=PeerChannel(channel_id),
        date=when,
        message=text,
        out=out,
        entities=list(entities) or None,
        fwd_from=MessageFwdHeader(date=when, from_id=PeerUser(42)) if forwarded else None,
        edit_date=dt.datetime.fromtimestamp(edit_ts, tz=dt.UTC) if edit_ts else None,
    )


class FakeGateway:
    """The Telegram side of the boundary: resolves names, delivers and replays messages."""

    def __init__(self, known: dict[str, tuple[int, str | None]]) -> None:
        #: ref → (channel id, username or None); a ref missing here fails to resolve.
        self.known = dict(known)
        self.history_by_chat: dict[int, dict[int, Message]] = {}
        self.handler: Handler | None = None
        self.listened: list[int] = []
        self.connected = True
        self.resolve_calls: list[str] = []

    async def resolve(self, ref: str) -> ResolvedGroup:
        self.resolve_calls.append(ref)
        if ref not in self.known:
            raise GroupUnavailable(f"UsernameNotOccupiedError: nobody is using {ref}")
        channel_id, username = self.known[ref]
        chat_id = channel_peer_id(channel_id)
        name = f"@{username}" if username else str(chat_id)
        return ResolvedGroup(ref=ref, chat_id=chat_id, name=name)

    def listen(self, groups: Sequence[ResolvedGroup], handler: Handler) -> None:
        self.handler = handler
        self.listened = [g.chat_id for g in groups]

    async def history(self, group: ResolvedGroup, *, min_id: int) -> AsyncIterator[Any]:
        messages = sorted(self.history_by_chat.get(group.chat_id, {}).values(), key=lambda m: -m.id)
        for message in messages:
            if message.id > min_id:
                yield message

    def is_connected(self) -> bool:
        return self.connected

    def post(self, message: Message) -> None:
        """Telegram stores a message (history sees it) without delivering it live."""
        self.history_by_chat.setdefault(message.chat_id, {})[message.id] = message

    async def deliver(self, message: Message, *, edited: bool = False) -> None:
        """Telegram stores and delivers a message to the registered handler."""
        if not edited:
            self.post(message)
        assert self.handler is not None
        if message.chat_id in self.listened:
            await self.handler(message, edited)
