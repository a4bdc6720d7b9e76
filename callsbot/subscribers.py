"""Subscribers every process registers on its event hub: metrics and the consensus log line.

They run off the hot path: the pipeline publishes and moves on; these read the events later
from their own queues.
"""

from __future__ import annotations

import logging

from callsbot.clock import Clock, unix_seconds
from callsbot.errors import StoreError
from callsbot.events import Event, EventHub, LevelReached, MentionRecorded
from callsbot.metrics import Metrics
from callsbot.store.base import MentionWindow

log = logging.getLogger("callsbot.aggregator")


class EventMetrics:
    """Counts what the events say: mentions recorded by kind, levels reached."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    async def __call__(self, event: Event) -> None:
        """Count one event."""
        if isinstance(event, MentionRecorded):
            self._metrics.mentions_recorded.labels(event.mention_kind).inc()
        elif isinstance(event, LevelReached):
            self._metrics.levels_reached.labels(str(min(event.level, 3))).inc()


class ConsensusLog:
    """Logs ``consensus TOKEN groups=N [@a, @b] first call M min ago`` from 2 groups on."""

    def __init__(self, window: MentionWindow, clock: Clock) -> None:
        self._window = window
        self._clock = clock

    async def __call__(self, event: Event) -> None:
        """Log one consensus line for a mention that made 2 or more groups."""
        if not isinstance(event, MentionRecorded) or event.count < 2:
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


def subscribe_standard(
    hub: EventHub, *, window: MentionWindow, clock: Clock, metrics: Metrics
) -> None:
    """Register the subscribers every process has."""
    hub.subscribe("metrics", EventMetrics(metrics))
    hub.subscribe("consensus-log", ConsensusLog(window, clock), kinds=[MentionRecorded])
