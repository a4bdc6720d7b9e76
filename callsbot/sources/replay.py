"""A recorded Telegram session played back through the real listener.

:class:`ReplayGateway` stands where :class:`~callsbot.sources.telethon_client.TelethonGateway`
stands. It builds real ``telethon.tl.types.Message`` objects (with real entity classes) from a
recording and delivers them to the listener's handler, so the demo and the multi-process tests
exercise the same conversion, extraction and pipeline as production.

Recording format (JSON)::

    {
      "groups": [{"ref": "@alpha", "channel_id": 1111111111, "username": "alpha"}, ...],
      "messages": [
        {"group": "@alpha", "id": 1, "at": 12.5, "text": "CA: ...",
         "entities": [{"type": "text_link", "offset": 0, "length": 5, "url": "https://..."}],
         "edit": false, "forwarded": false}
      ]
    }

``at`` is seconds after the replay starts; the message's date is "now" on the injected clock when
it is delivered. Entities use Bot-API names and UTF-16 offsets, as Telegram sends them.

With ``"epoch": <unix seconds>`` the recording is a channel timeline fixed in time, as Telegram
keeps it: message ``at`` is posted at ``epoch + at`` and dated so. A process that starts later
finds what was posted before it started in the history (``history()`` serves every message whose
time has come, edits applied) and gets the rest delivered live at their time. A process that is
killed and started again thus reads what it missed through its catch-up, as it would from
Telegram.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
from telethon.tl import types as tl

from callsbot.clock import Clock
from callsbot.sources.telegram import GroupUnavailable, Handler, ResolvedGroup

log = logging.getLogger("callsbot.replay")

Sleep = Callable[[float], Awaitable[None]]

_ENTITY_CLASSES: dict[str, Any] = {
    "bold": tl.MessageEntityBold,
    "italic": tl.MessageEntityItalic,
    "underline": tl.MessageEntityUnderline,
    "strikethrough": tl.MessageEntityStrike,
    "code": tl.MessageEntityCode,
    "url": tl.MessageEntityUrl,
    "mention": tl.MessageEntityMention,
    "hashtag": tl.MessageEntityHashtag,
    "cashtag": tl.MessageEntityCashtag,
    "spoiler": tl.MessageEntitySpoiler,
}


@attrs.frozen
class RecordedMessage:
    group: str
    id: int
    at: float
    text: str
    entities: tuple[dict[str, Any], ...] = ()
    edit: bool = False
    forwarded: bool = False


@attrs.frozen
class Recording:
    """A parsed recording: groups by ref, messages in delivery order, and the epoch (unix
    seconds of ``at = 0``) when the timeline is fixed in time."""

    groups: dict[str, tuple[int, str | None]]
    messages: tuple[RecordedMessage, ...]
    epoch: float | None = None

    @classmethod
    def load(cls, path: str | Path) -> Recording:
        """Read a recording file.

        Raises:
            ValueError: the file is not a recording (the message names what is wrong).
        """
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recording:
        try:
            groups = {
                str(g["ref"]): (int(g["channel_id"]), g.get("username")) for g in data["groups"]
            }
            messages = tuple(
                RecordedMessage(
                    group=str(m["group"]),
                    id=int(m["id"]),
                    at=float(m.get("at", 0.0)),
                    text=str(m.get("text", "")),
                    entities=tuple(m.get("entities", ())),
                    edit=bool(m.get("edit", False)),
                    forwarded=bool(m.get("forwarded", False)),
                )
                for m in data["messages"]
            )
            epoch = None if data.get("epoch") is None else float(data["epoch"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a Telegram recording: {exc!r}") from None
        return cls(groups, tuple(sorted(messages, key=lambda m: m.at)), epoch)


def telethon_entity(raw: dict[str, Any]) -> Any:
    """A Bot-API entity dict as the Telethon entity object Telegram would deliver."""
    kind, offset, length = raw["type"], int(raw["offset"]), int(raw["length"])
    if kind in ("text_link", "text_url"):
        return tl.MessageEntityTextUrl(offset=offset, length=length, url=str(raw["url"]))
    if kind == "pre":
        return tl.MessageEntityPre(offset=offset, length=length, language=raw.get("language", ""))
    cls = _ENTITY_CLASSES.get(kind, tl.MessageEntityUnknown)
    return cls(offset=offset, length=length)


def channel_peer_id(channel_id: int) -> int:
    """``telethon.utils.get_peer_id(PeerChannel(channel_id))``."""
    return -(10**12 + channel_id)


class ReplayGateway:
    """Delivers a :class:`Recording` to the listener, on the injected clock.

    Args:
        recording: what to play.
        clock: message dates are ``clock.time()`` at delivery.
        sleep: how to wait until a message's ``at`` (a fake clock's sleep in the demo).
        speed: divides every wait (``2.0`` plays twice as fast).
        stop: once set, nothing more is delivered (the process is shutting down: a message
            handed over after the pipeline drained would be counted as delivered but lost).
    """

    def __init__(
        self,
        recording: Recording,
        *,
        clock: Clock,
        sleep: Sleep = asyncio.sleep,
        speed: float = 1.0,
        stop: asyncio.Event | None = None,
    ) -> None:
        self._recording = recording
        self._stop = stop
        self._clock = clock
        self._sleep = sleep
        self._speed = speed
        self._handler: Handler | None = None
        self._listening: set[int] = set()
        self._delivered: dict[int, list[Any]] = {}
        self._task: asyncio.Task[None] | None = None
        self.finished = asyncio.Event()
        self.delivered_count = 0

    async def resolve(self, ref: str) -> ResolvedGroup:
        if ref not in self._recording.groups:
            raise GroupUnavailable(f"UsernameNotOccupiedError: no group {ref} in the recording")
        channel_id, username = self._recording.groups[ref]
        chat_id = channel_peer_id(channel_id)
        return ResolvedGroup(ref, chat_id, f"@{username}" if username else str(chat_id))

    def listen(self, groups: Sequence[ResolvedGroup], handler: Handler) -> None:
        self._handler = handler
        self._listening = {g.chat_id for g in groups}
        if self._task is None:
            self._task = asyncio.create_task(self.play(), name="telegram-replay")

    async def history(self, group: ResolvedGroup, *, min_id: int) -> AsyncIterator[Any]:
        if self._recording.epoch is None:
            posted = self._delivered.get(group.chat_id, [])
        else:
            posted = self._posted(group.chat_id)
        for message in sorted(posted, key=lambda m: -m.id):
            if message.id > min_id:
                yield message

    def _posted(self, chat_id: int) -> list[Any]:
        """What the timeline holds by now for ``chat_id``: each message in its latest edit."""
        assert self._recording.epoch is not None
        now = self._clock.time()
        latest: dict[int, Any] = {}
        for recorded in self._recording.messages:
            if self._recording.epoch + recorded.at > now:
                break
            message = self.message(recorded)
            if message.chat_id != chat_id:
                continue
            if recorded.edit and recorded.id not in latest:
                continue  # an edit of a message not posted: nothing to show
            if recorded.edit:
                message.date = latest[recorded.id].date
            latest[recorded.id] = message
        return list(latest.values())

    def is_connected(self) -> bool:
        return True

    def message(self, recorded: RecordedMessage) -> Any:
        """The real Telethon message for one recorded message, dated now (or at its time on a
        timeline with an epoch)."""
        channel_id, _ = self._recording.groups[recorded.group]
        epoch = self._recording.epoch
        when = self._clock.time() if epoch is None else epoch + recorded.at
        now = dt.datetime.fromtimestamp(when, tz=dt.UTC)
        return tl.Message(
            id=recorded.id,
            peer_id=tl.PeerChannel(channel_id),
            date=now,
            message=recorded.text,
            entities=[telethon_entity(e) for e in recorded.entities] or None,
            fwd_from=tl.MessageFwdHeader(date=now) if recorded.forwarded else None,
            edit_date=now if recorded.edit else None,
        )

    async def play(self) -> None:
        """Deliver every message at its time; sets :attr:`finished` at the end.

        On a timeline with an epoch, what was posted before this started is history only.
        """
        elapsed = 0.0
        epoch = self._recording.epoch
        started = self._clock.time()
        try:
            for recorded in self._recording.messages:
                if epoch is not None:
                    if epoch + recorded.at <= started:
                        continue
                    wait = epoch + recorded.at - self._clock.time()
                    if wait > 0:
                        await self._sleep(wait)
                elif recorded.at > elapsed:
                    await self._sleep((recorded.at - elapsed) / self._speed)
                    elapsed = recorded.at
                if self._stop is not None and self._stop.is_set():
                    break
                await self.deliver(recorded)
        finally:
            log.info("replay: delivered %d messages", self.delivered_count)
            self.finished.set()

    async def aclose(self) -> None:
        """Stop playing (what was delivered stays delivered); safe to call twice."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def deliver(self, recorded: RecordedMessage) -> None:
        """Deliver one recorded message now (as new or as an edit)."""
        message = self.message(recorded)
        if not recorded.edit:
            self._delivered.setdefault(message.chat_id, []).append(message)
        if self._handler is not None and message.chat_id in self._listening:
            await self._handler(message, recorded.edit)
            self.delivered_count += 1
