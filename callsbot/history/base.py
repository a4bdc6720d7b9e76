"""The history store's interface: what every backend promises (tests/history holds the suite).

The history is the append-only record of what happened: mentions with their message references
and text fingerprints, market verdicts, buys, score cards, level-reached events and alerts. The
window store (memory/Redis) answers "how many groups now?"; the history answers everything that
needs the past.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Collection, Sequence

from callsbot.events import Event
from callsbot.tasks import Closing


class HistoryStore(abc.ABC, Closing):
    """Append-only, idempotent storage of events.

    Contract:

    - :meth:`record` writes a batch in one transaction: all of it or, raising
      :class:`~callsbot.errors.HistoryUnavailable`, none of it. Every row has a natural unique
      key (docs/history.md), so writing an event again (a replay, a backfill, a catch-up, a
      restart, a retried batch) changes nothing: one row per (chat, message, token), per (token,
      level, message date), and so on. The first version written wins.
    - :meth:`events` gives back what was recorded, equal to what was written (a mention's text
      only when the store keeps texts), in time order: ``at``, then kind in the order of
      :data:`callsbot.history.recording.EVENT_TYPES`, then write order.
    - Every method raises :class:`~callsbot.errors.HistoryUnavailable` when the database cannot be
      reached or fails; never an answer made up from a failure. Configuration problems (a bad
      URL, a schema newer than this code) are :class:`~callsbot.errors.ConfigError`.
    """

    @abc.abstractmethod
    async def upgrade(self) -> str:
        """Bring the schema to this code's version; return the revision now in force.

        Raises:
            ConfigError: the database was migrated by a newer callsbot (exit status 2).
            HistoryUnavailable: the database cannot be reached.
        """

    @abc.abstractmethod
    async def revision(self) -> str | None:
        """The schema revision in force, ``None`` for a database never migrated (so empty).

        Raises:
            HistoryUnavailable: the database cannot be reached.
        """

    @abc.abstractmethod
    async def ping(self) -> None:
        """Return when the database answers; raise HistoryUnavailable otherwise."""

    @abc.abstractmethod
    async def record(self, events: Sequence[Event]) -> None:
        """Write ``events`` (any mix of kinds) in one transaction, ignoring what already exists."""

    @abc.abstractmethod
    def events(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        kinds: Collection[str] | None = None,
        token: str | None = None,
    ) -> AsyncIterator[Event]:
        """Recorded events with ``since <= at < until``, in time order, streamed.

        Args:
            since: earliest ``at`` (inclusive); ``None``: from the beginning.
            until: latest ``at`` (exclusive); ``None``: to the end.
            kinds: event kinds (``Event.kind`` values) to include; ``None``: all.
            token: only events about this token.
        """

    @abc.abstractmethod
    async def counts(self) -> dict[str, int]:
        """Rows per table."""

    @abc.abstractmethod
    async def prune(self, before: float) -> int:
        """Delete every event with ``at < before``; return the rows deleted (retention)."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release connections. The store is not used afterwards."""

    @property
    @abc.abstractmethod
    def where(self) -> str:
        """Where the data lives, safe to print (a file path, or a URL without its password)."""
