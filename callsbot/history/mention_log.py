"""The history as the reputation job's mention log (first mentions with their fingerprints)."""

from __future__ import annotations

from collections.abc import Sequence

from callsbot.events import MentionRecorded
from callsbot.history.base import HistoryStore
from callsbot.reputation.fingerprint import fingerprint
from callsbot.reputation.inputs import Mention, first_of_each


class HistoryMentionLog:
    """A :class:`~callsbot.reputation.inputs.MentionLog` over the history's mentions table.

    Periods are on the mention's recorded time (the message date for backfilled mentions), and
    each group's first mention of each token is kept. Fingerprints are computed from the kept
    text with the same function the history stores them with; with ``[history] keep_text =
    false`` there is no text, and the text-based independence rule then has nothing to compare.
    """

    def __init__(self, history: HistoryStore) -> None:
        self._history = history

    async def first_mentions(self, since: float, until: float) -> Sequence[Mention]:
        """First mention of each (group, token) recorded in ``[since, until)``, oldest first.

        Raises:
            HistoryUnavailable: the history could not be read.
        """
        found: list[Mention] = []
        async for event in self._history.events(
            since=since, until=until, kinds=[MentionRecorded.kind]
        ):
            if not isinstance(event, MentionRecorded):
                continue
            fp = fingerprint(event.text) if event.text else None
            found.append(
                Mention(
                    ts=float(event.ref.ts),
                    group=event.ref.group,
                    token=event.token,
                    chat_id=event.ref.chat_id,
                    message_id=event.ref.message_id,
                    sender_id=event.sender_id,
                    forward=event.forward,
                    sha1=None if fp is None else fp.sha1,
                    simhash=None if fp is None else fp.simhash,
                )
            )
        return first_of_each(found)
