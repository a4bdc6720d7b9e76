"""Services on a thread and event loop of their own, run as one service of the home loop.

Why: the web server's work (above all the dashboard's writes to up to 16 browsers, one
``send()`` each) delays whatever else the loop has to do: on the pipeline's loop it held
mentions back (bench case 10). On a loop of its own it runs beside the pipeline, since a
``send()`` releases the GIL. What the hosted services need from the home loop's parts (the
window store, the history, readiness) they reach through :class:`~callsbot.tasks.Home`; events
reach them through a :class:`Handoff` subscribed to the home loop's hub.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from callsbot.events import Event
from callsbot.metrics import Metrics
from callsbot.runtime.service import Service
from callsbot.tasks import Home

log = logging.getLogger("callsbot.runtime")

T = TypeVar("T")


class ThreadHost:
    """Runs ``services`` on a new thread's event loop until the home loop's ``stop``.

    As a service of the home loop it ends when they end: with the first error of one of them
    (the others are stopped first), so that the home loop's supervisor restarts the lot.

    Args:
        name: the service's (and the thread's) name.
        services: what runs on the hosted loop.
        home: told which loop is home when this starts.
        grace_seconds: how long the hosted services get to stop.
    """

    def __init__(
        self,
        name: str,
        services: Sequence[Service],
        *,
        home: Home,
        grace_seconds: float = 10.0,
    ) -> None:
        self.name = name
        self._services = list(services)
        self._home = home
        self._grace = grace_seconds
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started: list[Callable[[], None]] = []
        self._ready: asyncio.Future[None] | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The hosted loop while it runs."""
        return self._loop

    def on_start(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` on the hosted loop each time it starts."""
        self._started.append(callback)

    def health(self) -> list[str]:
        """The hosted services' reasons (each answers from its own cached state)."""
        return [reason for service in self._services for reason in service.health()]

    async def hosted(self, factory: Callable[[], Awaitable[T]]) -> T:
        """Await ``factory()`` on the hosted loop (e.g. the server's port once it listens)."""
        await asyncio.shield(self._ready_future())
        loop = self._loop
        if loop is None:
            raise RuntimeError(f"{self.name} stopped")
        future = asyncio.run_coroutine_threadsafe(_call(factory), loop)
        return await asyncio.wrap_future(future)

    def _ready_future(self) -> asyncio.Future[None]:
        """Resolved once the hosted loop runs (or failed to start); made on the home loop."""
        if self._ready is None or (self._ready.done() and self._loop is None):
            self._ready = asyncio.get_running_loop().create_future()
        return self._ready

    async def run(self, stop: asyncio.Event) -> None:
        """Run the hosted loop until ``stop``; raise what ended a hosted service early."""
        home = asyncio.get_running_loop()
        self._home.bind(home)
        inner_stop: list[asyncio.Event] = []
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        ready = self._ready_future()

        def main() -> None:
            try:
                asyncio.run(self._serve(inner_stop, lambda: _settle(home, ready)))
            except BaseException as exc:
                done.set_exception(exc)
            else:
                done.set_result(None)
            finally:
                _settle(home, ready)

        thread = threading.Thread(target=main, name=f"callsbot-{self.name}", daemon=True)
        thread.start()
        finished: asyncio.Future[None] = asyncio.wrap_future(done)
        stopper = asyncio.ensure_future(stop.wait())
        waiters: list[asyncio.Future[Any]] = [finished, stopper]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            self._signal_stop(inner_stop)
            # The hosted services stop within their own grace; a little more for the loop.
            await asyncio.wait({finished}, timeout=self._grace + 1.0)
            self._ready = None
        if not finished.done():
            raise RuntimeError(f"{self.name} did not stop within {self._grace:g}s")
        finished.result()

    def _signal_stop(self, inner_stop: list[asyncio.Event]) -> None:
        loop = self._loop
        if loop is None or not inner_stop:
            return
        with contextlib.suppress(RuntimeError):  # the hosted loop has already closed
            loop.call_soon_threadsafe(inner_stop[0].set)

    async def _serve(self, inner_stop: list[asyncio.Event], ready: Callable[[], None]) -> None:
        stop = asyncio.Event()
        inner_stop.append(stop)
        self._loop = asyncio.get_running_loop()
        try:
            for callback in self._started:
                callback()
            ready()
            tasks = [
                asyncio.create_task(s.run(stop), name=f"{self.name}-{s.name}")
                for s in self._services
            ]
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            stop.set()
            _, late = await asyncio.wait(tasks, timeout=self._grace) if tasks else ((), ())
            for task in late:
                log.error("%s: %s still running after the grace; cancelled", self.name, task)
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for task in tasks:
                error = None if task.cancelled() else task.exception()
                if error is not None:
                    raise error
        finally:
            self._loop = None


def _settle(loop: asyncio.AbstractEventLoop, ready: asyncio.Future[None]) -> None:
    """Resolve ``ready`` (a future of ``loop``) from any thread, once."""

    def settle() -> None:
        if not ready.done():
            ready.set_result(None)

    with contextlib.suppress(RuntimeError):  # the home loop is closed: nobody waits
        loop.call_soon_threadsafe(settle)


async def _call(factory: Callable[[], Awaitable[T]]) -> T:
    return await factory()


class Handoff:
    """A hub subscriber (on the home loop) that hands events to ``handler`` on a hosted loop.

    Events keep their order; the hub's subscriber never waits (it appends and, at most once per
    ``batch_seconds``, wakes the hosted loop). Until the hosted loop runs, and while it is
    behind, up to ``maxsize`` events wait; beyond that the oldest are dropped and counted in
    ``callsbot_events_dropped_total{subscriber=name}`` (the dashboard's browsers then reload).

    Args:
        name: the subscriber's name in the metric.
        handler: takes one event on the hosted loop; its errors are logged and counted.
        host: the hosted loop's owner.
        metrics: the process's metrics.
        maxsize: events kept while the hosted loop is behind.
        batch_seconds: events arriving within this long are handed over together.
    """

    def __init__(
        self,
        name: str,
        handler: Callable[[Event], None],
        *,
        host: ThreadHost,
        metrics: Metrics,
        maxsize: int,
        batch_seconds: float = 0.01,
    ) -> None:
        self.name = name
        self._handler = handler
        self._host = host
        self._metrics = metrics
        self._pending: collections.deque[Event] = collections.deque()
        self._maxsize = maxsize
        self._batch = batch_seconds
        self._armed = False
        host.on_start(self.drain)

    async def __call__(self, event: Event) -> None:
        """Queue ``event`` for the hosted loop (the hub calls this on the home loop)."""
        if len(self._pending) >= self._maxsize:
            self._pending.popleft()
            self._metrics.events_dropped.labels(self.name).inc()
        # Append before looking at the flag; the drain clears the flag before it pops: so an
        # event is either seen by a drain that is due, or it arms the next one.
        self._pending.append(event)
        if self._armed:
            return
        loop = self._host.loop
        if loop is None:
            return  # handed over when the hosted loop starts
        self._armed = True
        try:
            loop.call_soon_threadsafe(self._arm)
        except RuntimeError:
            self._armed = False  # the hosted loop is closing; its next start drains

    def _arm(self) -> None:
        asyncio.get_running_loop().call_later(self._batch, self.drain)

    def drain(self) -> None:
        """Hand every waiting event to the handler now (on the hosted loop only)."""
        self._armed = False
        while self._pending:
            event = self._pending.popleft()
            try:
                self._handler(event)
            except Exception:
                self._metrics.event_handler_errors.labels(self.name).inc()
                log.exception("event subscriber %s failed on %s", self.name, event.kind)
