"""Telegram Desktop chat exports (``result.json``) as a message source for backfill.

The format (api-formats.md section e): a single chat ``{"name", "type", "id", "messages"}`` or a
whole account ``{"chats": {"list": [...]}, "left_chats": {"list": [...]}}``. Message text is a
string or a list of strings and ``{"type", "text"}`` objects; ``text_entities`` is always the
list form, which is what we read (hidden ``text_link`` targets exist only in its ``href``).
Telegram Desktop writes control characters in strings as ``\\xHH``, which JSON does not have;
those escapes are read as the characters they stand for.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from callsbot.models import Entity, IncomingMessage

log = logging.getLogger("callsbot.export")

#: Export entity types → Bot-API names used by :mod:`callsbot.extract`.
_TYPES = {"link": "url", "text_link": "text_url"}
_CHANNEL_TYPES = {"public_channel", "private_channel", "public_supergroup", "private_supergroup"}
#: Basic (non-super) groups: Telethon's peer id of PeerChat(id) is -id.
_BASIC_GROUP_TYPES = {"private_group"}
#: A ``\xHH`` escape, unless its backslash is itself escaped (an even run of them before it).
_HEX_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\x([0-9A-Fa-f]{2})")
_NUMERIC_ID = re.compile(r"-?[0-9]{1,20}")


class ExportError(Exception):
    """The file is not a Telegram Desktop JSON export."""


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit of Telegram's entity offsets."""
    return len(text.encode("utf-16-le")) // 2


def chat_peer_id(chat: dict[str, Any]) -> int:
    """The peer id live messages carry: ``-100<id>`` for channels and supergroups, ``-<id>``
    for basic groups, as ``telethon.utils.get_peer_id`` gives them.

    Raises:
        ExportError: the chat has no numeric ``id``.
    """
    value = chat.get("id")
    if isinstance(value, bool) or not (
        isinstance(value, int) or (isinstance(value, str) and _NUMERIC_ID.fullmatch(value))
    ):
        name = str(chat.get("name") or "?")[:80]
        got = "no id" if value is None else f"id {str(value)[:40]!r}"
        raise ExportError(f"chat {name!r} has no numeric id ({got}); is this file an export?")
    raw = int(value)
    if chat.get("type") in _CHANNEL_TYPES and raw > 0:
        return -(10**12 + raw)  # as telethon.utils.get_peer_id(PeerChannel(raw))
    if chat.get("type") in _BASIC_GROUP_TYPES and raw > 0:
        return -raw  # as telethon.utils.get_peer_id(PeerChat(raw))
    return raw


def text_and_entities(parts: Any) -> tuple[str, tuple[Entity, ...]]:
    """Plain text and entities from an export ``text``/``text_entities`` value."""
    if isinstance(parts, str):
        return parts, ()
    if not isinstance(parts, list):
        return "", ()
    chunks: list[str] = []
    entities: list[Entity] = []
    offset = 0
    for part in parts:
        if isinstance(part, str):
            piece, kind, href = part, "plain", None
        elif isinstance(part, dict):
            piece = str(part.get("text", ""))
            kind = str(part.get("type", "plain"))
            href = part.get("href")
        else:
            continue
        length = utf16_len(piece)
        if kind != "plain" and length:
            entities.append(
                Entity(_TYPES.get(kind, kind), offset, length, str(href) if href else None)
            )
        chunks.append(piece)
        offset += length
    return "".join(chunks), tuple(entities)


def _chats(data: Any) -> list[dict[str, Any]]:
    if isinstance(data, dict) and isinstance(data.get("messages"), list):
        return [data]
    found: list[dict[str, Any]] | None = None
    # A whole-account export lists the chats the account is in and those it has left.
    for section in ("chats", "left_chats"):
        part = data.get(section) if isinstance(data, dict) else None
        chats = part.get("list") if isinstance(part, dict) else None
        if isinstance(chats, list):
            found = (found or []) + [
                c for c in chats if isinstance(c, dict) and isinstance(c.get("messages"), list)
            ]
    if found is None:
        raise ExportError("not a Telegram Desktop JSON export (no 'messages' or 'chats.list')")
    return found


def _load(path: str | Path) -> Any:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, ValueError) as exc:
        raise ExportError(f"cannot read {path}: {exc}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        if "\\x" not in text:
            raise ExportError(f"cannot read {path}: {exc}") from None
    try:
        return json.loads(_HEX_ESCAPE.sub(r"\1\\u00\2", text))
    except ValueError as exc:
        raise ExportError(f"cannot read {path}: {exc}") from None


def read_export(
    path: str | Path, *, group: str | None = None, since: int | None = None
) -> Iterator[IncomingMessage]:
    """Messages of an export, oldest first, as the pipeline's input.

    Args:
        path: the ``result.json`` file.
        group: the name to record mentions under (an export has no @username; without it the
            chat's peer id is used, as for a live group without a username).
        since: skip messages dated before this unix time.

    Raises:
        ExportError: unreadable file, not an export, or a chat without a numeric id.
    """
    data = _load(path)
    for chat in _chats(data):
        chat_id = chat_peer_id(chat)
        name = group or str(chat_id)
        for raw in chat["messages"]:
            if not isinstance(raw, dict) or raw.get("type") != "message":
                continue
            try:
                ts = int(raw["date_unixtime"])
                message_id = int(raw["id"])
            except (KeyError, TypeError, ValueError):
                log.warning("export message without id/date_unixtime skipped: %.80r", raw)
                continue
            if since is not None and ts < since:
                continue
            source = raw.get("text_entities", raw.get("text", ""))
            text, entities = text_and_entities(source)
            if not text:
                continue
            yield IncomingMessage(
                chat_id=chat_id,
                group=name,
                message_id=message_id,
                ts=ts,
                text=text,
                entities=entities,
                source="backfill",
            )
