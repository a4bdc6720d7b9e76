"""The service contract, and how services are supervised.

A *service* is anything long-running: the Telegram listener, the aggregator pipeline, the
scorer, the event hub, the store probe, the web server (and later the recorder and the
tracker). Each has a ``name``, runs until a stop event is set, and says why it is not ready.
The supervisor restarts a crashed service with a resetting backoff while its siblings run on,
and ends the process on :class:`~callsbot.errors.FatalError` without knowing which adapter
raised it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Protocol

from callsbot.clock import Clock
from callsbot.errors import FatalError
from callsbot.metrics import Metrics
from callsbot.tasks import wait_stop

log = logging.getLogger("callsbot")

_BACKOFF_START = 1.0
_BACKOFF_MAX = 60.0
#: A loop that ran this long before crashing starts its backoff from the beginning again.
_HEALTHY_AFTER = 60.0


class Service(Protocol):
    """Something that runs until told to stop and can say why it is not ready."""

    @property
    def name(self) -> str:
        """Short, stable name (logs, metrics, readiness reasons)."""
        ...

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set, then finish cleanly and return.

        Raises:
            FatalError: nothing a restart could fix; the process ends.
        """
        ...

    def health(self) -> list[str]:
        """Reasons this service is not ready now (empty: ready). Cheap and never blocking."""
        ...


async def supervise(
    name: str,
    loop: Callable[[], Awaitable[None]],
    *,
    stop: asyncio.Event,
    clock: Clock,
    metrics: Metrics,
    backoff_start: float = _BACKOFF_START,
) -> None:
    """Run ``loop`` until ``stop``; restart it with backoff when it crashes.

    The backoff doubles from ``backoff_start`` up to a minute, and starts over once the loop
    has run for a minute without crashing. Each restart counts in ``callsbot_loop_restarts``.

    Raises:
        FatalError: ``loop`` raised one (noted with ``name``); it is not retried.
    """
    delay = backoff_start
    while not stop.is_set():
        started = clock.time()
        try:
            await loop()
            return
        except FatalError as exc:
            exc.add_note(f"in {name}")
            raise
        except Exception:
            if stop.is_set():
                return
            if clock.time() - started > _HEALTHY_AFTER:
                delay = backoff_start
            metrics.loop_restarts.labels(name).inc()
            log.exception("%s crashed; restarting in %.1fs", name, delay)
            await wait_stop(stop, delay)
            delay = min(delay * 2, _BACKOFF_MAX)


async def run_service(
    service: Service, stop: asyncio.Event, *, clock: Clock, metrics: Metrics
) -> None:
    """:func:`supervise` one service."""
    await supervise(
        service.name, lambda: service.run(stop), stop=stop, clock=clock, metrics=metrics
    )


def install_stop_signals(stop: asyncio.Event) -> None:
    """SIGINT and SIGTERM set ``stop`` instead of killing the loop mid-write."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
