"""The dashboard as a service: one hub subscriber feeding the state and the broadcaster.

:meth:`Dashboard.handle` is the event hub's subscriber: it applies each event to the state and
publishes what changed to the browsers, in the order the events came (one subscription, one
queue, one task: the hub's). In split mode the web role gets its events from the Redis Stream
bridge, which publishes them into this process's hub: nothing here changes.

:meth:`Dashboard.run` seeds the state from the window store once, then every ``refresh``
seconds drops calls that left the window and re-reads the readiness reasons, every
``providers`` seconds asks the optional providers (outcomes, scoreboard, groups), and sends the
browsers a clock tick so they can age the calls between events. When it stops, every stream
ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs

from callsbot.clock import Clock
from callsbot.dashboard.sources import DashboardSources
from callsbot.dashboard.state import DashboardState, Update
from callsbot.dashboard.stream import Broadcaster
from callsbot.errors import StoreError
from callsbot.events import Event
from callsbot.store.base import MentionWindow
from callsbot.tasks import HOME_WITHIN_SECONDS, Home, HomeTimeout, wait_stop

log = logging.getLogger("callsbot.dashboard")

Sleep = Callable[[float], Awaitable[None]]


@attrs.frozen
class Timing:
    """How often the dashboard does what no event triggers.

    Attributes:
        refresh_seconds: expiring calls and re-reading readiness.
        providers_seconds: asking the outcome, scoreboard and group providers.
        tick_seconds: sending the browsers the server's clock.
        keepalive_seconds: a comment on an idle stream, so proxies keep it open.
        retry_ms: how long a browser waits before reconnecting (the stream's ``retry:``).
        flush_seconds: after a write to a client, events for it are gathered this long (up
            to twice that, by client) into the next write (0: one write per event).
    """

    refresh_seconds: float = 1.0
    providers_seconds: float = 30.0
    tick_seconds: float = 5.0
    keepalive_seconds: float = 15.0
    retry_ms: int = 2000
    flush_seconds: float = 0.03


class Dashboard:
    """The dashboard's state, its broadcaster and the loop that keeps them current.

    Args:
        state: the in-memory state.
        broadcaster: the browsers' event streams.
        clock: "now" (the demo's simulated clock runs faster than the wall clock).
        sources: the optional providers.
        window: seeds the state at start (calls made before this process started).
        timing: intervals.
        rate: simulated seconds per wall-clock second (1 live; the demo's speed), so the
            browser can age calls between events.
        home: the loop that owns ``window``, the providers and the services asked for
            readiness (the dashboard may run on the web server's own loop).
    """

    name = "dashboard"

    def __init__(
        self,
        *,
        state: DashboardState,
        broadcaster: Broadcaster,
        clock: Clock,
        sources: DashboardSources | None = None,
        window: MentionWindow | None = None,
        timing: Timing | None = None,
        rate: float = 1.0,
        sleep: Sleep = asyncio.sleep,
        home: Home | None = None,
    ) -> None:
        self.state = state
        self.broadcaster = broadcaster
        self.timing = timing if timing is not None else Timing()
        self._clock = clock
        self._sources = sources if sources is not None else DashboardSources()
        self._window = window
        self._rate = rate
        self._sleep = sleep
        self._home = home if home is not None else Home()
        self._provider_failures: set[str] = set()

    # -- the hub's subscriber ------------------------------------------------------------------

    async def handle(self, event: Event) -> None:
        """Apply one event and publish what changed (the hub calls this; it never waits)."""
        self.take(event)

    def take(self, event: Event) -> None:
        """Apply one event and publish what changed, on the loop the dashboard runs on."""
        self.publish(self.state.apply(event))

    def publish(self, updates: Sequence[Update]) -> None:
        """Send ``updates`` to every browser, stamped with the server's clock."""
        if not updates:
            return
        now = self._clock.time()
        for update in updates:
            self.broadcaster.publish(update.kind, {"now": now, **update.data})

    # -- views ---------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The whole state with the id of the last event it includes."""
        data = self.state.snapshot(self._clock.time())
        data["rate"] = self._rate
        data["last_event_id"] = self.broadcaster.last_id
        data["outcomes_available"] = self._sources.outcomes is not None
        return data

    def set_rate(self, rate: float) -> None:
        """Simulated seconds per wall second from now on (0: the clock stopped); tells browsers."""
        self._rate = rate
        self.tick()

    def tick(self) -> None:
        """Send the server's clock to the browsers (not kept for resumes: a fresher one follows)."""
        self.broadcaster.send_transient("tick", {"now": self._clock.time(), "rate": self._rate})

    # -- the service ---------------------------------------------------------------------------

    def health(self) -> list[str]:
        """The dashboard never holds readiness back (a slow browser is dropped, not waited for)."""
        return []

    async def run(self, stop: asyncio.Event) -> None:
        """Seed, then refresh until ``stop``; end every stream on the way out."""
        self.broadcaster.reopen()  # a restart after a failure streams again
        try:
            await self.seed()
            await self.refresh()
            await self.refresh_providers()
            t = self.timing
            since_providers = since_tick = 0.0
            while not await wait_stop(stop, t.refresh_seconds):
                await self.refresh()
                since_providers += t.refresh_seconds
                since_tick += t.refresh_seconds
                if since_providers >= t.providers_seconds:
                    since_providers = 0.0
                    await self.refresh_providers()
                if since_tick >= t.tick_seconds:
                    since_tick = 0.0
                    self.tick()
        finally:
            self.broadcaster.close()

    async def seed(self) -> None:
        """Rows for what the window store already holds (best effort: the store may be away)."""
        if self._window is None:
            return
        try:
            calls = await self._home.run(self._window.snapshot, within=HOME_WITHIN_SECONDS)
        except (StoreError, HomeTimeout) as exc:
            log.warning("dashboard: store unreachable, starting empty: %s", exc)
            return
        self.publish(self.state.seed(calls, self._clock.time()))

    async def refresh(self) -> None:
        """Expire calls that left the window; re-read the readiness reasons."""
        self.publish(self.state.expire(self._clock.time()))
        health = self._sources.health
        if health is not None:
            try:
                reasons = await self._home.call(lambda: list(health()), within=HOME_WITHIN_SECONDS)
            except HomeTimeout as exc:
                reasons = [f"event loop not answering: {exc}"]
            self.publish(self.state.set_health(reasons))

    async def refresh_providers(self) -> None:
        """Ask the outcome, scoreboard and group providers (each optional, each may fail)."""
        src = self._sources
        if src.outcomes is not None:
            keys = self.state.alert_keys
            outcomes = src.outcomes
            cells = await self._ask("outcomes", lambda: outcomes(keys)) if keys else {}
            if cells is not None:
                self.publish(self.state.set_outcomes(cells))
        else:
            self.publish(self.state.set_outcomes(None))
        if src.scoreboard is not None:
            rows = await self._ask("scoreboard", src.scoreboard)
            if rows is not None:
                self.publish(self.state.set_scoreboard(rows))
        if src.groups is not None:
            view = await self._ask("groups", src.groups)
            if view is not None:
                self.publish(self.state.set_groups(view))

    async def _ask(self, name: str, ask: Callable[[], Awaitable[Any]]) -> Any:
        try:
            result = await self._home.run(ask, within=HOME_WITHIN_SECONDS)
        except Exception as exc:
            # A provider is another part's data: its failure keeps the panel's last values.
            if name not in self._provider_failures:
                self._provider_failures.add(name)
                log.warning("dashboard: %s provider failed, showing its last values: %s", name, exc)
            return None
        self._provider_failures.discard(name)
        return result
