"""What reputation and independence are computed from, and the interfaces that supply it.

:class:`MentionLog` gives each group's first mention of each token (with sender, forward header
and text fingerprints); :class:`Labels` gives resolved hit labels. The history store implements
both when it lands; until then :class:`MemoryMentionLog` and :class:`MemoryLabels` serve the
tests and the bench, and ``callsbot.sources.mention_log`` reads them from JSONL files.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

import attrs

from callsbot.models import ForwardHeader


@attrs.frozen
class Mention:
    """One message's mention of a token, as the append-only mention log keeps it.

    Attributes:
        ts: the message's own date, unix seconds.
        group: the name the group's mentions are recorded under.
        token: the token's address.
        chat_id: the group's peer id (how forwards of a monitored group are recognised).
        message_id: the message's id within the chat.
        sender_id: the posting user, when Telegram names one.
        forward: the forward header, when the message is a forward.
        sha1: SHA-1 of the normalised text (:mod:`~callsbot.reputation.fingerprint`).
        simhash: 64-bit simhash of the normalised text.
    """

    ts: float
    group: str
    token: str
    chat_id: int | None = None
    message_id: int | None = None
    sender_id: int | None = None
    forward: ForwardHeader | None = None
    sha1: str | None = None
    simhash: int | None = None


@attrs.frozen
class Label:
    """Whether a group's call of a token was a hit (outcomes.md section 5).

    Attributes:
        group: the group.
        token: the token.
        called_at: the group's first mention of the token, unix seconds.
        hit: the token reached 2× within 24 h of ``called_at`` + 60 s.
        resolved_at: when the label became known (the 2× candle for a hit, the end of the
            horizon for a miss); a label is used only from this moment on.
    """

    group: str
    token: str
    called_at: float
    hit: bool
    resolved_at: float


class MentionLog(Protocol):
    """Where first mentions come from (the history store, a JSONL file, memory)."""

    async def first_mentions(self, since: float, until: float) -> Sequence[Mention]:
        """Each group's first mention of each token dated ``since <= ts < until``, in time order.

        Raises:
            Unavailable: the log could not be read now (retry later).
        """
        ...


class Labels(Protocol):
    """Where resolved hit labels come from (the outcome tracker when it lands)."""

    async def labels(self, since: float, until: float) -> Sequence[Label]:
        """Labels of calls made at or after ``since`` that resolved at or before ``until``.

        Raises:
            Unavailable: the labels could not be read now (retry later).
        """
        ...


def first_of_each(mentions: Iterable[Mention]) -> list[Mention]:
    """The earliest mention of each (group, token), in time order (ties: group, then token)."""
    first: dict[tuple[str, str], Mention] = {}
    for m in mentions:
        key = (m.group, m.token)
        seen = first.get(key)
        if seen is None or m.ts < seen.ts:
            first[key] = m
    return sorted(first.values(), key=lambda m: (m.ts, m.group, m.token))


class MemoryMentionLog:
    """A :class:`MentionLog` over mentions held in memory (tests, the bench, JSONL files)."""

    def __init__(self, mentions: Iterable[Mention] = ()) -> None:
        self._mentions: list[Mention] = list(mentions)

    def add(self, mention: Mention) -> None:
        """Append one mention (any order)."""
        self._mentions.append(mention)

    @property
    def mentions(self) -> tuple[Mention, ...]:
        """Every mention held, in the order added."""
        return tuple(self._mentions)

    async def first_mentions(self, since: float, until: float) -> Sequence[Mention]:
        """See :meth:`MentionLog.first_mentions`."""
        return first_of_each(m for m in self._mentions if since <= m.ts < until)


class MemoryLabels:
    """A :class:`Labels` over labels held in memory."""

    def __init__(self, labels: Iterable[Label] = ()) -> None:
        self._labels: list[Label] = list(labels)

    def add(self, label: Label) -> None:
        """Append one label."""
        self._labels.append(label)

    async def labels(self, since: float, until: float) -> Sequence[Label]:
        """See :meth:`Labels.labels`."""
        return [lb for lb in self._labels if lb.called_at >= since and lb.resolved_at <= until]
