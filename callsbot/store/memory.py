"""In-process store: tests, the demo and the single-process default."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import attrs

from callsbot.clock import Clock, unix_seconds
from callsbot.reputation.independence import AtOnceVote
from callsbot.reputation.snapshot import Reputation
from callsbot.store.base import SignalStore, StreamEntry, WindowState

#: Claims are swept of expired entries once there are this many (then at each doubling).
_SWEEP_EVERY = 4096


class MemoryStore(SignalStore):
    """A :class:`SignalStore` held in dictionaries of this process.

    Single event loop only; every method completes without yielding, so each is atomic. Its
    window is born whole (it cannot lose data behind the process's back): the marker starts
    ready, and only a rebuild (the keeper's, at start) takes it away for a moment.
    """

    def __init__(self, *, window: int, clock: Clock) -> None:
        super().__init__(window=window, clock=clock)
        self._tokens: dict[str, dict[str, int]] = {}
        self._beats: dict[str, tuple[int, float]] = {}
        self._claims: dict[str, float] = {}
        self._holders: dict[str, str] = {}  # key -> lease owner (a plain claim has none)
        self._claims_sweep_at = _SWEEP_EVERY
        self._cursors: dict[str, int] = {}
        self._swept_at = 0
        self._stream: list[StreamEntry] = []
        self._stream_seq = 0
        self._stream_grew = asyncio.Event()
        self._positions: dict[str, str] = {}
        self._reputation: Reputation | None = None
        self._votes: dict[str, tuple[float, dict[str, AtOnceVote]]] = {}  # token → (expiry, votes)
        self._votes_sweep_at = _SWEEP_EVERY
        self._tables: dict[str, dict[str, str]] = {}
        self._marker = WindowState("memory", True)

    def _whole(self) -> None:
        refusal = self._marker.refusal()
        if refusal is not None:
            raise refusal

    def _live(self, token: str, cutoff: int) -> dict[str, int]:
        members = self._tokens.get(token)
        if not members:
            return {}
        return {g: ts for g, ts in members.items() if ts > cutoff}

    async def record(self, token: str, group: str, ts: float) -> int:
        # The hot path of the in-process store: no extra frames, no throw-away dict.
        now = unix_seconds(self.clock)
        cutoff = now - self.window
        stamp = min(int(ts), now)
        members = self._tokens.get(token)
        if members is None:
            members = self._tokens[token] = {}
        if stamp > members.get(group, cutoff):
            members[group] = stamp
        for g in [g for g, t in members.items() if t <= cutoff]:
            del members[g]
        if not members:
            del self._tokens[token]
        if now - self._swept_at >= self.window // 10:
            # Time-based, not count-based: a full scan at 100k tokens costs tens of ms, so it
            # runs a few times per window however fast mentions arrive.
            self._swept_at = now
            self._sweep(cutoff)
        return len(members)

    def _sweep(self, cutoff: int) -> None:
        for token in [t for t, m in self._tokens.items() if max(m.values()) <= cutoff]:
            del self._tokens[token]

    async def record_once(
        self, token: str, group: str, ts: float, *, claim: str, ttl: int
    ) -> int | None:
        # Recorded even when the claim is lost, as Redis does: the same mention again changes
        # nothing, and a rebuild must restore a mention whose claim survived.
        won = await self.claim(claim, ttl)
        count = await self.record(token, group, ts)
        return count if won else None

    async def groups(self, token: str) -> dict[str, int]:
        self._whole()
        return self._live(token, self.now() - self.window)

    async def counts(self, tokens: Sequence[str]) -> dict[str, int]:
        self._whole()
        cutoff = self.now() - self.window
        result: dict[str, int] = {}
        for token in tokens:
            members = self._tokens.get(token)
            result[token] = sum(1 for ts in members.values() if ts > cutoff) if members else 0
        return result

    async def active_tokens(self) -> list[str]:
        self._whole()
        cutoff = self.now() - self.window
        latest = {t: max(m.values()) for t, m in self._tokens.items() if m}
        return sorted((t for t, ts in latest.items() if ts > cutoff), key=lambda t: -latest[t])

    async def beat(self, role: str, ttl: float) -> None:
        now = self.clock.time()
        self._beats[role] = (int(now), now + ttl)

    async def heartbeat_age(self, role: str) -> float | None:
        entry = self._beats.get(role)
        now = self.clock.time()
        if entry is None or entry[1] <= now:
            return None
        return max(0.0, now - entry[0])

    async def claim(self, key: str, ttl: int) -> bool:
        now = self.clock.time()
        expires = self._claims.get(key)
        if expires is not None and expires > now:
            return False
        if len(self._claims) >= self._claims_sweep_at:
            self._claims = {k: e for k, e in self._claims.items() if e > now}
            self._holders = {k: o for k, o in self._holders.items() if k in self._claims}
            # Sweep again only once the live claims have doubled: a sweep on every claim past
            # a fixed size made each claim cost O(live claims).
            self._claims_sweep_at = max(_SWEEP_EVERY, 2 * len(self._claims))
        self._claims[key] = now + ttl
        self._holders.pop(key, None)
        return True

    async def release(self, key: str) -> None:
        self._claims.pop(key, None)
        self._holders.pop(key, None)

    async def lease(self, key: str, owner: str, ttl: float) -> bool:
        now = self.clock.time()
        expires = self._claims.get(key)
        if expires is not None and expires > now and self._holders.get(key) != owner:
            return False
        self._claims[key] = now + ttl
        self._holders[key] = owner
        return True

    async def unlease(self, key: str, owner: str) -> None:
        expires = self._claims.get(key)
        if expires is not None and expires > self.clock.time() and self._holders.get(key) == owner:
            del self._claims[key]
            del self._holders[key]

    async def is_claimed(self, key: str) -> bool:
        expires = self._claims.get(key)
        return expires is not None and expires > self.clock.time()

    async def advance_cursor(self, name: str, value: int) -> int:
        current = max(self._cursors.get(name, value), value)
        self._cursors[name] = current
        return current

    async def get_cursor(self, name: str) -> int | None:
        return self._cursors.get(name)

    async def publish_reputation(self, reputation: Reputation) -> None:
        self._reputation = reputation

    async def reputation(self) -> Reputation | None:
        return self._reputation

    async def put_vote(self, token: str, group: str, vote: AtOnceVote) -> None:
        now = self.clock.time()
        entry = self._votes.get(token)
        members = entry[1] if entry is not None and entry[0] > now else {}
        members[group] = vote
        self._votes[token] = (now + self.window, members)
        if len(self._votes) >= self._votes_sweep_at:
            self._votes = {t: e for t, e in self._votes.items() if e[0] > now}
            self._votes_sweep_at = max(_SWEEP_EVERY, 2 * len(self._votes))

    async def votes(self, token: str) -> dict[str, AtOnceVote]:
        return self._live_votes(token)

    def _live_votes(self, token: str) -> dict[str, AtOnceVote]:
        entry = self._votes.get(token)
        if entry is None or entry[0] <= self.clock.time():
            return {}
        return dict(entry[1])

    async def groups_and_votes(self, token: str) -> tuple[dict[str, int], dict[str, AtOnceVote]]:
        return self._live(token, self.now() - self.window), self._live_votes(token)

    async def window_state(self, *, check: str | None = None) -> WindowState:
        if check is not None and check == self._marker.generation:
            self._marker = attrs.evolve(self._marker, checks=self._marker.checks + 1)
        return self._marker

    async def begin_rebuild(self, generation: str) -> None:
        self._marker = WindowState(generation, False, 0, self.clock.time())

    async def finish_rebuild(self, generation: str) -> bool:
        if self._marker.generation != generation or self._marker.ready:
            return False
        self._marker = WindowState(generation, True, self._marker.checks, self.clock.time())
        return True

    async def ping(self) -> None:
        return None

    # -- tables --------------------------------------------------------------------------------

    async def put_row(self, table: str, key: str, value: str) -> None:
        self._tables.setdefault(table, {})[key] = value

    async def drop_row(self, table: str, key: str) -> None:
        self._tables.get(table, {}).pop(key, None)

    async def rows(self, table: str) -> dict[str, str]:
        return dict(self._tables.get(table, {}))

    async def probe_write(self, name: str) -> None:
        return None

    async def sync_clock(self) -> float:
        return 0.0  # one process, one clock

    async def eviction_policy(self) -> str | None:
        return None

    # -- event stream --------------------------------------------------------------------------

    async def append(
        self, entries: Sequence[tuple[str, str]], *, origin: str, maxlen: int
    ) -> list[str]:
        ids: list[str] = []
        for kind, payload in entries:
            self._stream_seq += 1
            entry = StreamEntry(f"{self._stream_seq}-0", origin, kind, payload)
            self._stream.append(entry)
            ids.append(entry.id)
        del self._stream[: max(0, len(self._stream) - maxlen)]
        self._stream_grew.set()
        return ids

    async def read_after(self, last_id: str, *, count: int, block: float) -> list[StreamEntry]:
        after = _seq(last_id)
        found = [e for e in self._stream if _seq(e.id) > after][:count]
        if found or block <= 0:
            return found
        self._stream_grew.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(block):
                await self._stream_grew.wait()
        return [e for e in self._stream if _seq(e.id) > after][:count]

    async def last_id(self) -> str:
        return self._stream[-1].id if self._stream else "0-0"

    async def position(self, reader: str) -> str | None:
        return self._positions.get(reader)

    async def save_position(self, reader: str, entry_id: str) -> None:
        self._positions[reader] = entry_id


def _seq(entry_id: str) -> int:
    return int(entry_id.split("-", 1)[0])
