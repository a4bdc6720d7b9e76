"""Readiness probes: ask a peer on a schedule, answer ``/readyz`` from the cached result.

``/readyz`` must answer in well under a second whatever state the store is in (frozen, full,
gone), so no view ever waits on a peer: the probe does, in its own loop, and the views read
what it found last.
"""

from __future__ import annotations

import asyncio
import logging

from callsbot.clock import Clock
from callsbot.errors import StoreError
from callsbot.metrics import Metrics
from callsbot.store.base import Liveness
from callsbot.tasks import wait_stop

log = logging.getLogger("callsbot")

#: Roles whose heartbeat age is exported as a gauge.
ROLES = ("aggregator", "scorer")


class StoreProbe:
    """Pings the store and reads the heartbeats every ``interval`` seconds.

    Args:
        store: what to ping.
        clock: "now".
        metrics: ``heartbeat_age{role}`` is refreshed on every probe.
        interval: seconds between probes.
        timeout: a probe that takes longer counts as a failure.
    """

    name = "store"

    def __init__(
        self,
        store: Liveness,
        *,
        clock: Clock,
        metrics: Metrics,
        interval: float,
        timeout: float = 2.0,
    ) -> None:
        self._store = store
        self._clock = clock
        self._metrics = metrics
        self._interval = interval
        self._timeout = timeout
        self._problem: str | None = "store not probed yet"

    def health(self) -> list[str]:
        """The last probe's reason, if it failed."""
        return [] if self._problem is None else [self._problem]

    async def probe(self) -> None:
        """Ask the store now and remember the answer."""
        try:
            async with asyncio.timeout(self._timeout):
                await self._store.ping()
                for role in ROLES:
                    age = await self._store.heartbeat_age(role)
                    if age is not None:
                        self._metrics.heartbeat_age.labels(role).set(age)
        except StoreError as exc:
            self._problem = f"store unreachable: {exc}"
        except TimeoutError:
            self._problem = f"store unreachable: no answer within {self._timeout:.1f}s"
        else:
            self._problem = None

    async def run(self, stop: asyncio.Event) -> None:
        """Probe every ``interval`` seconds until ``stop`` is set."""
        while not stop.is_set():
            await self.probe()
            await wait_stop(stop, self._interval)
