"""The storage contract shared by every backend.

A *mention* is (token, group, ts): group ``group`` called ``token`` in a message dated ``ts``
(unix seconds, Telegram's server clock). Per token a group counts once; the window slides on
the mention timestamps: a mention counts while ``now - ts < window``.

Every method either answers truthfully or raises :class:`StoreError`. No method answers 0,
``False`` or an empty result for "could not ask": the scorer must be able to tell "no group
called this" (a −1 solo penalty) from "the store is away" (a degraded 0).

The same holds for a store that lost its data (a Redis restart without persistence): its window
is empty, not truthful. A generation marker says the window is whole; without it (lost, or
rebuilding from the history) every read of the window raises :class:`WindowUnavailable`.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

import attrs

from callsbot.clock import Clock, unix_seconds
from callsbot.errors import StoreError, StoreFault
from callsbot.reputation.independence import AtOnceVote
from callsbot.reputation.snapshot import Reputation
from callsbot.tasks import Closing


class WindowUnavailable(StoreError):
    """The window lost its data (or was never built) and is not rebuilt yet: a read would lie.

    Attributes:
        rebuilding: a rebuild from the history is under way (``False``: no marker at all, the
            data was lost and nothing has started to rebuild it).
    """

    def __init__(self, message: str, *, rebuilding: bool = False) -> None:
        super().__init__(message, fault=StoreFault.REBUILDING)
        self.rebuilding = rebuilding


@attrs.frozen
class WindowState:
    """The generation marker: whether the window is whole, and since when.

    Attributes:
        generation: id of the build that made the window whole (``None``: no marker at all,
            the store lost its data or nothing ever built it).
        ready: the build finished; reads answer. ``False`` while rebuilding or without marker.
        checks: how many checks the keeper counted on this generation.
        since: the store's unix time of the last state change (``None`` without marker).
    """

    generation: str | None
    ready: bool
    checks: int = 0
    since: float | None = None

    def refusal(self) -> WindowUnavailable | None:
        """The error a read of the window raises, or ``None`` when it is whole."""
        problem = self.problem()
        if problem is None:
            return None
        return WindowUnavailable(problem, rebuilding=self.generation is not None)

    def problem(self) -> str | None:
        """Why reads of the window refuse to answer, or ``None`` when it is whole."""
        if self.ready:
            return None
        if self.generation is None:
            return "no generation marker: the store lost its data, or the window was never built"
        return "the window is being rebuilt from the history"


class MentionWindow(abc.ABC):
    """The sliding window of mentions: who called which token, and when.

    Args:
        window: sliding-window length in seconds.
        clock: where "now" comes from.
    """

    def __init__(self, *, window: int, clock: Clock) -> None:
        if window <= 0:
            raise ValueError("window must be > 0")
        self.window = window
        self.clock = clock

    def now(self) -> int:
        """The store's idea of now, integer unix seconds."""
        return unix_seconds(self.clock)

    def _clamp(self, ts: float) -> int:
        return min(int(ts), self.now())

    # -- mentions ------------------------------------------------------------------------------

    @abc.abstractmethod
    async def record(self, token: str, group: str, ts: float) -> int:
        """Record that ``group`` called ``token`` in a message dated ``ts``.

        ``ts`` later than now is clamped to now. If the group already called the token, its
        timestamp moves forward (never backward). Members that have left the window are removed.
        A mention already outside the window is not counted. One round trip to a remote store.

        Returns:
            The number of distinct groups that called ``token`` within the window, after the write.

        Raises:
            StoreError: the write may not have happened.
        """

    @abc.abstractmethod
    async def record_once(
        self, token: str, group: str, ts: float, *, claim: str, ttl: int
    ) -> int | None:
        """Claim ``claim`` (named by :mod:`~callsbot.store.keys`) for ``ttl`` s; if won, record.

        The aggregator's write of one mention: "this message's address was counted" and the
        count itself. A backend may send both in one round trip and apply the record even for a
        lost claim, since recording the same (token, group, ts) again changes nothing.

        Returns:
            The group count after the write, or ``None`` when the claim was already taken (the
            mention was recorded before).

        Raises:
            StoreError: neither may have happened; retrying is safe.
        """

    @abc.abstractmethod
    async def groups(self, token: str) -> dict[str, int]:
        """Groups that called ``token`` within the window, mapped to their latest timestamp.

        Raises:
            StoreError: could not ask.
        """

    @abc.abstractmethod
    async def counts(self, tokens: Sequence[str]) -> dict[str, int]:
        """Distinct-group counts in the window for many tokens, in one round trip.

        Returns:
            A count for every requested token (0 for a token nobody called).

        Raises:
            StoreError: could not ask; never a partial or all-zero answer instead.
        """

    @abc.abstractmethod
    async def active_tokens(self) -> list[str]:
        """Tokens with at least one mention in the window, most recently mentioned first.

        Raises:
            StoreError: could not ask.
        """

    async def snapshot(self) -> dict[str, dict[str, int]]:
        """Every active token with its groups and their timestamps.

        Raises:
            StoreError: could not ask.
        """
        result: dict[str, dict[str, int]] = {}
        for token in await self.active_tokens():
            members = await self.groups(token)
            if members:
                result[token] = members
        return result

    # -- the generation marker -----------------------------------------------------------------

    @abc.abstractmethod
    async def window_state(self, *, check: str | None = None) -> WindowState:
        """Read the generation marker.

        Args:
            check: the keeper's own generation: when the marker names it, one check is
                counted first (atomically), so a count lower than expected shows that the
                store went back to an older copy of its data.

        Raises:
            StoreError: could not ask.
        """

    @abc.abstractmethod
    async def begin_rebuild(self, generation: str) -> None:
        """Replace the marker by ``generation`` in state ``rebuilding``: reads refuse from now.

        Raises:
            StoreError: not written.
        """

    @abc.abstractmethod
    async def finish_rebuild(self, generation: str) -> bool:
        """Mark ``generation`` ready, if the marker still says it is being rebuilt.

        Returns:
            ``False`` when the marker changed meanwhile (the store lost it again, or another
            build took over): the window is not known to be whole, build again.

        Raises:
            StoreError: could not ask.
        """


class Liveness(abc.ABC):
    """Heartbeats of the roles, and whether the store answers at all."""

    # -- liveness ------------------------------------------------------------------------------

    @abc.abstractmethod
    async def beat(self, role: str, ttl: float) -> None:
        """Record that ``role`` is alive now; the beat vanishes after ``ttl`` seconds.

        Raises:
            StoreError: the beat was not written.
        """

    @abc.abstractmethod
    async def heartbeat_age(self, role: str) -> float | None:
        """Seconds since ``role``'s last beat, or ``None`` when there is no live beat.

        Raises:
            StoreError: could not ask.
        """

    @abc.abstractmethod
    async def ping(self) -> None:
        """Return when the store answers.

        Raises:
            StoreError: it does not.
        """

    @abc.abstractmethod
    async def probe_write(self, name: str) -> None:
        """Do what every write needs: a real write (with a short TTL) through a loaded script.

        A PING answers while every write fails (memory full, a read-only user or replica), so
        readiness and the startup checks write instead.

        Raises:
            StoreError: the write was refused; :attr:`~callsbot.errors.StoreError.fault` says why.
        """

    @abc.abstractmethod
    async def sync_clock(self) -> float:
        """Measure this process's clock against the store's and adopt the store's time.

        Heartbeat ages and window edges are then measured on the store's clock, so processes
        whose clocks disagree still agree on them. A skew beyond the backend's limit is not
        adopted (one of the clocks is broken, and which one cannot be told from here); it is
        reported instead.

        Returns:
            Seconds this process's clock is ahead of the store's (negative: behind).

        Raises:
            StoreError: could not ask.
        """

    async def diagnose(self, error: StoreError) -> StoreError:
        """Look closer at a failure to reach the store; a backend may name a better fault.

        Returns:
            ``error`` itself, or a more precise one (a TLS handshake that timed out because the
            server speaks plain text is a configuration mistake, not an outage).
        """
        return error

    @abc.abstractmethod
    async def eviction_policy(self) -> str | None:
        """The store's eviction policy (Redis ``maxmemory-policy``), ``None`` if it has none.

        Raises:
            StoreError: could not ask (a user without the right to ``CONFIG GET``: ``noperm``).
        """


class Claims(abc.ABC):
    """First-one-wins claims with a lifetime (seen messages and txs, alert cooldowns).

    Claim names come from :mod:`callsbot.store.keys`; callers never format them.
    """

    @abc.abstractmethod
    async def claim(self, key: str, ttl: int) -> bool:
        """Atomically claim ``key`` for ``ttl`` seconds: first caller wins.

        Returns:
            ``True`` for exactly one caller until the claim expires, ``False`` for the others.

        Raises:
            StoreError: could not ask (the caller must not assume either answer).
        """

    @abc.abstractmethod
    async def release(self, key: str) -> None:
        """Drop a claim so the work it guarded can be retried (e.g. a delivery that failed).

        Raises:
            StoreError: could not ask.
        """

    @abc.abstractmethod
    async def lease(self, key: str, owner: str, ttl: float) -> bool:
        """Hold ``key`` for ``owner`` for ``ttl`` seconds: take it when free, renew it (the
        lifetime starts again) when ``owner`` holds it already.

        A lease is a claim that names its holder, so work in progress can be guarded for a
        short time and the guard given up or extended by the holder only.

        Returns:
            ``True`` when ``owner`` holds the lease now, ``False`` when another holder has it
            (a plain :meth:`claim` of the same key counts as another holder).

        Raises:
            StoreError: could not ask (the caller must not assume either answer).
        """

    @abc.abstractmethod
    async def unlease(self, key: str, owner: str) -> None:
        """Drop ``key`` when ``owner`` holds it; a lease that expired and was taken by another
        holder meanwhile stays theirs.

        Raises:
            StoreError: could not ask.
        """

    @abc.abstractmethod
    async def is_claimed(self, key: str) -> bool:
        """Whether ``key`` is held now (by a claim or a lease), without taking it.

        Raises:
            StoreError: could not ask.
        """


class Cursors(abc.ABC):
    """Monotonic named integers (the last message id processed per chat)."""

    @abc.abstractmethod
    async def advance_cursor(self, name: str, value: int) -> int:
        """Set cursor ``name`` to ``max(current, value)`` and return the result.

        Raises:
            StoreError: could not ask.
        """

    @abc.abstractmethod
    async def get_cursor(self, name: str) -> int | None:
        """The cursor's value, or ``None`` if it was never set.

        Raises:
            StoreError: could not ask.
        """


class Tables(abc.ABC):
    """Small named tables of text rows that outlive a process (the scorer's pending buys and
    its watch list). Table names come from :mod:`callsbot.store.keys`.

    Rows have no lifetime of their own: the owner of a table drops what it no longer needs.
    """

    @abc.abstractmethod
    async def put_row(self, table: str, key: str, value: str) -> None:
        """Write row ``key`` of ``table`` (replacing it).

        Raises:
            StoreError: the row may not have been written.
        """

    @abc.abstractmethod
    async def drop_row(self, table: str, key: str) -> None:
        """Delete row ``key`` of ``table`` (nothing when it is absent).

        Raises:
            StoreError: the row may still be there.
        """

    @abc.abstractmethod
    async def rows(self, table: str) -> dict[str, str]:
        """Every row of ``table``.

        Raises:
            StoreError: could not ask; never an empty answer instead.
        """


@attrs.frozen
class StreamEntry:
    """One entry of the event stream: its id, who wrote it, the event kind and the event."""

    id: str
    origin: str
    kind: str
    payload: str


class EventStream(abc.ABC):
    """An append-only, trimmed log of encoded events shared by processes (split mode).

    Entry ids increase; a reader keeps the last id it handled (:meth:`save_position`) and
    resumes after it.
    """

    @abc.abstractmethod
    async def append(
        self, entries: Sequence[tuple[str, str]], *, origin: str, maxlen: int
    ) -> list[str]:
        """Append ``(kind, payload)`` entries written by ``origin``, trimming to ~``maxlen``.

        Returns:
            The new entries' ids.

        Raises:
            StoreError: none may have been appended.
        """

    @abc.abstractmethod
    async def read_after(self, last_id: str, *, count: int, block: float) -> list[StreamEntry]:
        """Up to ``count`` entries after ``last_id``, waiting up to ``block`` s for the first.

        Raises:
            StoreError: could not ask.
        """

    @abc.abstractmethod
    async def last_id(self) -> str:
        """The newest entry's id (``"0-0"`` when the stream is empty).

        Raises:
            StoreError: could not ask.
        """

    @abc.abstractmethod
    async def position(self, reader: str) -> str | None:
        """The last id ``reader`` saved, or ``None``.

        Raises:
            StoreError: could not ask.
        """

    @abc.abstractmethod
    async def save_position(self, reader: str, entry_id: str) -> None:
        """Remember that ``reader`` handled everything up to ``entry_id``.

        Raises:
            StoreError: not saved.
        """


class ReputationBoard(abc.ABC):
    """What the weighted consensus shares across processes (docs/consensus.md).

    - The reputation the periodic job computed (group weights, copy probabilities, clusters),
      with the moment it describes; one value, replaced by each publication.
    - The at-once votes of the window: per token, the groups whose calls repeat a vote already
      cast (a forward, the same text, the same sender). A group without an entry made its own
      call. They live one window, like the mentions they describe.
    """

    @abc.abstractmethod
    async def publish_reputation(self, reputation: Reputation) -> None:
        """Replace the published reputation with ``reputation``.

        Raises:
            StoreError: it may not have been written.
        """

    @abc.abstractmethod
    async def reputation(self) -> Reputation | None:
        """The last published reputation, or ``None`` when none was ever published.

        Raises:
            StoreError: could not ask, or what is stored cannot be read.
        """

    @abc.abstractmethod
    async def put_vote(self, token: str, group: str, vote: AtOnceVote) -> None:
        """Set ``group``'s at-once vote for ``token`` (kept one window from this write).

        Raises:
            StoreError: it may not have been written.
        """

    @abc.abstractmethod
    async def votes(self, token: str) -> dict[str, AtOnceVote]:
        """The at-once votes recorded for ``token`` within the last window, by group.

        Raises:
            StoreError: could not ask.
        """


class SignalStore(
    MentionWindow, Liveness, Claims, Cursors, Tables, EventStream, ReputationBoard, Closing
):
    """A whole backend: every capability, one connection pool, one lifecycle.

    Callers take the capability they use (:class:`MentionWindow`, :class:`Claims`,
    :class:`Liveness`, :class:`Cursors`, :class:`Tables`, :class:`EventStream`,
    :class:`ReputationBoard`); only the wiring holds the whole store.
    """

    async def record_once(
        self, token: str, group: str, ts: float, *, claim: str, ttl: int
    ) -> int | None:
        """Claim, then record when this caller won (backends may do both in one round trip)."""
        if not await self.claim(claim, ttl):
            return None
        return await self.record(token, group, ts)

    async def groups_and_votes(self, token: str) -> tuple[dict[str, int], dict[str, AtOnceVote]]:
        """:meth:`groups` and :meth:`votes` of ``token`` (one round trip where the backend can).

        Raises:
            StoreError: could not ask.
        """
        return await self.groups(token), await self.votes(token)

    # -- lifecycle -----------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Release connections. Safe to call twice."""
