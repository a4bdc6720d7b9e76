"""The window keeper: notices that the window store lost its data and rebuilds it.

Redis restarted without persistence comes back empty: every token's groups, the active index,
the catch-up cursors and the seen-message claims are gone, and an empty window reads as "nobody
called this" (a false −1 solo penalty). The store keeps a generation marker
(:class:`~callsbot.store.base.WindowState`) that the keeper writes once the window is whole;
without it every read of the window raises
:class:`~callsbot.store.base.WindowUnavailable`, so the scorer degrades to 0 instead of lying.

The keeper runs in the aggregator's process (the one with the history of what it recorded):

- at start, and whenever the marker is missing, not its own, or was set back (its check count
  went down: the store fell back to an older copy of its data), it marks the window as being
  rebuilt, replays every mention of the last window from the history (and the recorder's
  not-yet-written events) into the store, restores the catch-up cursors (the largest message id
  per chat) and the seen-message claims, and marks the window whole again;
- without a history (``[history] enabled = false``) a lost window cannot be replayed: it is
  whole again only once a whole window has passed since the loss (everything in it was then
  written after the loss). A marker that is still there at start is taken as it is.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Iterable, Sequence

from callsbot.clock import Clock
from callsbot.config import Settings
from callsbot.errors import HistoryUnavailable, StoreError
from callsbot.events import Event, MentionRecorded
from callsbot.history.base import HistoryStore
from callsbot.metrics import Metrics
from callsbot.store import SignalStore, keys
from callsbot.tasks import wait_stop

log = logging.getLogger("callsbot.keeper")

#: Mentions written per round of concurrent writes (the store coalesces them into batches).
_CHUNK = 512
#: Sources whose messages move a catch-up cursor (as in the pipeline).
_CURSOR_SOURCES = frozenset({"live", "catch_up"})


class WindowKeeper:
    """Keeps the window store whole (a service of the aggregator's process).

    Args:
        store: the window store.
        history: where mentions are replayed from (``None``: no history, see the module).
        settings: all settings (``store``: window, check interval, skew limit; ``telegram``:
            the seen-message claims' lifetime).
        clock: this process's clock (the history's ``at`` times are on it).
        metrics: ``window_whole`` and ``window_rebuilds{why}``.
        unwritten: the events recorded but not yet in the history (the recorder's buffer).
    """

    name = "window"

    def __init__(
        self,
        store: SignalStore,
        history: HistoryStore | None,
        *,
        settings: Settings,
        clock: Clock,
        metrics: Metrics,
        unwritten: Callable[[], Iterable[Event]] | None = None,
    ) -> None:
        self._store = store
        self._history = history
        self._settings = settings
        self._clock = clock
        self._metrics = metrics
        self._unwritten = unwritten
        self._interval = settings.store.heartbeat_interval
        #: The generation this keeper knows whole, and the check count it last saw on it.
        self._generation: str | None = None
        self._checks = 0
        #: A build waiting for a window to pass (no history): its generation and start.
        self._waiting: tuple[str, int] | None = None
        self._problem: str | None = "window not checked yet"
        self._started = False
        #: Why the rebuild in progress started; set until it finished (a failed one is retried).
        self._retry: str | None = None

    @property
    def whole(self) -> bool:
        """Whether the keeper knows the window to be whole right now."""
        return self._generation is not None

    def health(self) -> list[str]:
        """Why the window is not known to be whole (empty when it is)."""
        return [] if self._problem is None else [self._problem]

    async def run(self, stop: asyncio.Event) -> None:
        """Check (and rebuild when needed) at start and every heartbeat interval until ``stop``."""
        while not stop.is_set():
            await self.check()
            await wait_stop(stop, self._interval)

    async def check(self) -> bool:
        """Look at the marker once and act on it; ``True`` when the window is whole after.

        Never raises for the store's or the history's sake: an outage leaves things as they
        are (reads refuse anyway while the store is away) and is tried again next time.
        """
        try:
            await self._check()
        except (StoreError, HistoryUnavailable) as exc:
            if self._generation is None:
                self._problem = f"window not whole: rebuild failed, retrying: {exc}"
            log.warning("window check failed, retrying in %.0fs: %s", self._interval, exc)
        self._metrics.window_whole.set(1 if self.whole else 0)
        if self.whole:
            self._problem = None
        return self.whole

    async def _check(self) -> None:
        state = await self._store.window_state(check=self._generation)
        if self._retry is not None:
            await self.rebuild(self._retry)
            return
        if not self._started:
            self._started = True
            if self._history is not None:
                await self.rebuild("start")
            elif state.ready:
                self._adopt(state.generation, state.checks)
            else:
                await self._lost("start")
            return
        if self._waiting is not None:
            await self._wait_for_window(state.generation)
            return
        if state.generation is None or (state.generation != self._generation and not state.ready):
            await self._lost("lost")
        elif state.generation != self._generation:
            # Another keeper finished a build (a second aggregator): its window is whole.
            self._adopt(state.generation, state.checks)
        elif state.checks != self._checks + 1:
            log.error(
                "the store went back to an older copy of its data (check %d, expected %d)",
                state.checks,
                self._checks + 1,
            )
            await self._lost("rolled_back")
        else:
            self._checks = state.checks

    def _adopt(self, generation: str | None, checks: int) -> None:
        self._generation, self._checks = generation, checks

    async def _lost(self, why: str) -> None:
        if self._history is not None:
            await self.rebuild(why)
            return
        generation = _new_generation()
        self._generation = None
        await self._store.begin_rebuild(generation)
        self._metrics.window_rebuilds.labels(why).inc()
        self._waiting = (generation, self._store.now())
        log.error(
            "the window store lost its data (%s) and there is no history to rebuild it from; "
            "consensus is unknown until one window (%ds) has passed",
            why,
            self._store.window,
        )
        await self._wait_for_window(generation)

    async def _wait_for_window(self, current: str | None) -> None:
        assert self._waiting is not None
        generation, since = self._waiting
        if current != generation:
            self._waiting = None
            await self._lost("lost")
            return
        left = since + self._store.window - self._store.now()
        if left > 0:
            self._problem = (
                f"window not whole: the store lost its data and there is no history; "
                f"whole again in {left}s"
            )
            return
        self._waiting = None
        if await self._store.finish_rebuild(generation):
            self._adopt(generation, 0)
            log.info("window whole again: a whole window has passed since the loss")

    async def rebuild(self, why: str) -> int:
        """Mark the window as being rebuilt, replay the history into it, mark it whole.

        Returns:
            How many mentions were replayed (0 when the marker changed meanwhile: the store
            lost its data again; the next check starts over).

        Raises:
            StoreError: the store failed; the window stays marked as being rebuilt.
            HistoryUnavailable: the history could not be read; likewise.
        """
        generation = _new_generation()
        self._generation = None
        self._problem = f"window being rebuilt from the history ({why})"
        self._metrics.window_whole.set(0)
        if self._retry is None:
            self._metrics.window_rebuilds.labels(why).inc()
            if why != "start":
                log.error("the window store lost its data (%s): rebuilding it from history", why)
        self._retry = why
        await self._store.begin_rebuild(generation)
        mentions = await self._mentions()
        await self._replay(mentions)
        self._retry = None
        if not await self._store.finish_rebuild(generation):
            log.warning("the window's marker changed during the rebuild; starting over")
            return 0
        self._adopt(generation, 0)
        log.info("window rebuilt from the history: %d mentions (%s)", len(mentions), why)
        return len(mentions)

    async def _mentions(self) -> list[MentionRecorded]:
        """Every mention recorded within the last window (and the skew limit), once each."""
        # ``at`` is on the recording process's clock; the allowance covers a skewed one.
        allowance = self._settings.store.max_clock_skew_seconds
        since = self._clock.time() - self._store.window - allowance
        found: dict[tuple[int, int, str], MentionRecorded] = {}
        # A database never migrated holds nothing yet (the recorder migrates it at its first
        # write, maybe right now): asking it for mentions would only fail.
        if self._history is not None and await self._history.revision() is not None:
            async for event in self._history.events(since=since, kinds=[MentionRecorded.kind]):
                if isinstance(event, MentionRecorded):
                    found.setdefault(_key(event), event)
        for event in self._unwritten() if self._unwritten is not None else ():
            if isinstance(event, MentionRecorded) and event.at >= since:
                found.setdefault(_key(event), event)
        return list(found.values())

    async def _replay(self, mentions: Sequence[MentionRecorded]) -> None:
        cutoff = self._store.now() - self._store.window
        ttl = self._settings.telegram.seen_ttl_seconds
        live = [m for m in mentions if m.ref.ts > cutoff]
        for start in range(0, len(live), _CHUNK):
            # Concurrent calls go out together (the Redis store batches them per round trip).
            await asyncio.gather(
                *(
                    self._store.record_once(
                        m.token,
                        m.ref.group,
                        m.ref.ts,
                        claim=keys.seen_mention(m.ref.chat_id, m.ref.message_id, m.token),
                        ttl=ttl,
                    )
                    for m in live[start : start + _CHUNK]
                )
            )
        cursors: dict[int, int] = {}
        for m in mentions:
            if m.ref.source in _CURSOR_SOURCES:
                cursors[m.ref.chat_id] = max(cursors.get(m.ref.chat_id, 0), m.ref.message_id)
        for chat_id, message_id in cursors.items():
            await self._store.advance_cursor(keys.chat_cursor(chat_id), message_id)


def _key(event: MentionRecorded) -> tuple[int, int, str]:
    return (event.ref.chat_id, event.ref.message_id, event.token)


def _new_generation() -> str:
    return uuid.uuid4().hex[:16]
