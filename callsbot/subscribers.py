"""Subscribers every process registers on its event hub (metrics and the consensus log line),
and the vote tracker the aggregator adds in weighted consensus mode.

They run off the hot path: the pipeline publishes and moves on; these read the events later
from their own queues.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from callsbot.clock import Clock, unix_seconds
from callsbot.errors import StoreError
from callsbot.events import Event, EventHub, LevelReached, MentionRecorded
from callsbot.metrics import Metrics
from callsbot.reputation.fingerprint import fingerprint
from callsbot.reputation.independence import OWN, VoteBook
from callsbot.reputation.inputs import Mention
from callsbot.store.base import MentionWindow, ReputationBoard

log = logging.getLogger("callsbot.aggregator")


class EventMetrics:
    """Counts what this process's events say: mentions recorded by kind, levels reached."""

    def __init__(self, metrics: Metrics, hub: EventHub) -> None:
        self._metrics = metrics
        self._hub = hub

    async def __call__(self, event: Event) -> None:
        """Count one event (not one another process published: that process counts it)."""
        if self._hub.is_remote(event):
            return
        if isinstance(event, MentionRecorded):
            self._metrics.mentions_recorded.labels(event.mention_kind).inc()
        elif isinstance(event, LevelReached):
            self._metrics.levels_reached.labels(str(min(event.level, 3))).inc()


class ConsensusLog:
    """Logs ``consensus TOKEN groups=N [@a, @b] first call M min ago`` from 2 groups on."""

    def __init__(self, window: MentionWindow, clock: Clock, hub: EventHub) -> None:
        self._window = window
        self._clock = clock
        self._hub = hub

    async def __call__(self, event: Event) -> None:
        """Log one consensus line for a mention of this process that made 2 or more groups."""
        if not isinstance(event, MentionRecorded) or event.count < 2 or self._hub.is_remote(event):
            return
        try:
            groups = await self._window.groups(event.token)
        except StoreError:
            return
        now = unix_seconds(self._clock)
        first = min(groups.values(), default=now)
        log.info(
            "consensus %s groups=%d [%s] first call %.0f min ago",
            event.token,
            event.count,
            ", ".join(sorted(groups, key=groups.__getitem__)),
            (now - first) / 60,
            extra={"token": event.token, "groups": event.count},
        )


class VoteTracker:
    """Decides each recorded mention's at-once vote and shares it with the scorers.

    A :class:`~callsbot.reputation.independence.VoteBook` judges every message against the
    token's messages of the last 24 h (forwards, the same text, the same sender). A group whose
    best message about a token repeats a vote already cast gets an entry in the store's votes
    of the token (refreshed with each such message, so it lives as long as the group's call
    in the window); a group's own call needs none, and replaces one.

    Args:
        board: where the votes are written.
        metrics: ``store_errors{op="put_vote"}``.
        monitored: the monitored groups now (chat id → name), e.g. the Telegram listener's
            resolved groups; the groups that post mentions are learned in any case.
    """

    def __init__(
        self,
        board: ReputationBoard,
        *,
        metrics: Metrics,
        monitored: Callable[[], Mapping[int, str]] | None = None,
    ) -> None:
        self._board = board
        self._metrics = metrics
        self._monitored = monitored
        self._book = VoteBook()

    @property
    def book(self) -> VoteBook:
        """The decisions so far (tests)."""
        return self._book

    async def __call__(self, event: Event) -> None:
        """Judge one recorded mention; write the group's vote when it is not its own call."""
        if not isinstance(event, MentionRecorded):
            return
        if self._monitored is not None:
            for chat_id, name in self._monitored().items():
                self._book.learn(chat_id, name)
        ref = event.ref
        before = self._book.group_vote(event.token, ref.group)
        self._book.add(mention_of(event))
        after = self._book.group_vote(event.token, ref.group)
        if after.kind == OWN and before.kind == OWN:
            return
        try:
            await self._board.put_vote(event.token, ref.group, after)
        except StoreError as exc:
            # The group then counts as its own call: the deployed rule, never a lost mention.
            self._metrics.store_errors.labels(op="put_vote").inc()
            log.warning("votes: %s's vote on %s not written: %s", ref.group, event.token, exc)


def mention_of(event: MentionRecorded) -> Mention:
    """The independence rules' record of a recorded mention (fingerprints from its text), as
    the history's mention log reads it back."""
    fp = fingerprint(event.text) if event.text else None
    ref = event.ref
    return Mention(
        ts=ref.ts,
        group=ref.group,
        token=event.token,
        chat_id=ref.chat_id,
        message_id=ref.message_id,
        sender_id=event.sender_id,
        forward=event.forward,
        sha1=None if fp is None else fp.sha1,
        simhash=None if fp is None else fp.simhash,
    )


def subscribe_standard(
    hub: EventHub, *, window: MentionWindow, clock: Clock, metrics: Metrics
) -> None:
    """Register the subscribers every process has."""
    hub.subscribe("metrics", EventMetrics(metrics, hub))
    hub.subscribe("consensus-log", ConsensusLog(window, clock, hub), kinds=[MentionRecorded])
