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

import attrs

from callsbot.events import Event
from callsbot.metrics import Metrics
from callsbot.runtime.service import Service
from callsbot.tasks import Home

log = logging.getLogger("callsbot.runtime")

T = TypeVar("T")


class ThreadHost:
    """Runs ``services`` on a new thread's event loop until the home loop's ``stop``.

    As a service of the home loop it ends when they end: with the first error of one of them
    (the others are stopped first), so that the home loop's supervisor restarts the lot on a
    new thread and loop.

    Args:
        name: the service's (and the thread's) name.
        services: what runs on the hosted loop.
        home: told which loop is home when this starts.
        grace_seconds: how long the hosted services get to stop (keep it below the process's
            own grace, so the thread has ended before the process does).
    """

    def __init__(
        self,
        name: str,
        services: Sequence[Service],
        *,
        home: Home,
        grace_seconds: float = 8.0,
    ) -> None:
        self.name = name
        self._services = list(services)
        self._home = home
        self._grace = grace_seconds
        self._started: list[Callable[[], None]] = []
        self._current: _Run | None = None
        self._next: asyncio.Future[_Run] | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The hosted loop while a run is under way (events may be queued to it before it
        turns)."""
        run = self._current
        return None if run is None else run.loop

    def on_start(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` on the hosted loop each time it starts."""
        self._started.append(callback)

    def health(self) -> list[str]:
        """The hosted services' reasons (each answers from its own cached state)."""
        return [reason for service in self._services for reason in service.health()]

    async def hosted(self, factory: Callable[[], Awaitable[T]]) -> T:
        """Await ``factory()`` on the hosted loop once it runs (e.g. the server's port).

        Waits for a run that has not started yet (a task about to run :meth:`run`).

        Raises:
            RuntimeError: that run ended before the call did.
        """
        run = self._current
        if run is None or not run.ready.done():
            run = await asyncio.shield(self._next_run())
        try:
            future = asyncio.run_coroutine_threadsafe(_call(factory), run.loop)
        except RuntimeError:
            raise RuntimeError(f"{self.name} stopped") from None
        answer = asyncio.wrap_future(future)
        waiters: list[asyncio.Future[Any]] = [answer, run.ended]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not answer.done():
                answer.cancel()
        if answer.cancelled() or not answer.done():
            raise RuntimeError(f"{self.name} stopped")
        return answer.result()

    def _next_run(self) -> asyncio.Future[_Run]:
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
        return self._next

    async def run(self, stop: asyncio.Event) -> None:
        """Run the hosted loop until ``stop``; raise what ended a hosted service early."""
        home = asyncio.get_running_loop()
        self._home.bind(home)
        # The loop and its stop event exist before the thread does: a stop that comes while
        # the thread is starting is queued on the loop, never lost.
        loop = asyncio.new_event_loop()
        run = _Run(loop, asyncio.Event(), home.create_future(), home.create_future())
        done: concurrent.futures.Future[None] = concurrent.futures.Future()

        def main() -> None:
            try:
                with asyncio.Runner(loop_factory=lambda: loop) as runner:
                    runner.run(self._serve(run, home))
            except BaseException as exc:
                done.set_exception(exc)
            else:
                done.set_result(None)

        self._current = run
        thread = threading.Thread(target=main, name=f"callsbot-{self.name}", daemon=True)
        thread.start()
        finished: asyncio.Future[None] = asyncio.wrap_future(done)
        stopper = asyncio.ensure_future(stop.wait())
        waiters: list[asyncio.Future[Any]] = [finished, stopper]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            with contextlib.suppress(RuntimeError):  # the hosted loop has already closed
                loop.call_soon_threadsafe(run.stop.set)
            try:
                # The hosted services stop within their grace; a little more for the loop.
                await asyncio.wait({finished}, timeout=self._grace + 1.0)
            finally:
                if self._current is run:
                    self._current = None
                for future in (run.ready, run.ended):
                    if not future.done():
                        future.set_result(None)
        if not finished.done():
            raise RuntimeError(f"{self.name} did not stop within {self._grace:g}s")
        finished.result()

    async def _serve(self, run: _Run, home: asyncio.AbstractEventLoop) -> None:
        for callback in self._started:
            callback()
        home.call_soon_threadsafe(self._announce, run)
        tasks = [
            asyncio.create_task(s.run(run.stop), name=f"{self.name}-{s.name}")
            for s in self._services
        ]
        stopper = asyncio.ensure_future(run.stop.wait())
        await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        run.stop.set()
        _, late = await asyncio.wait(tasks, timeout=self._grace) if tasks else ((), ())
        for task in late:
            log.error("%s: %s still running after the grace; cancelled", self.name, task)
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in tasks:
            error = None if task.cancelled() else task.exception()
            if error is not None:
                raise error

    def _announce(self, run: _Run) -> None:
        """On the home loop: ``run`` turns; whoever waited for a run gets it."""
        if run.ready.done():
            return  # it ended before this callback came round
        run.ready.set_result(None)
        waiting, self._next = self._next, None
        if waiting is not None and not waiting.done():
            waiting.set_result(run)


@attrs.frozen
class _Run:
    """One start of the hosted loop: its loop, its stop event and, on the home loop, when it
    turned and when it ended."""

    loop: asyncio.AbstractEventLoop
    stop: asyncio.Event
    ready: asyncio.Future[None]
    ended: asyncio.Future[None]


async def _call(factory: Callable[[], Awaitable[T]]) -> T:
    return await factory()


class Handoff:
    """A hub subscriber (on the home loop) that hands events to ``handler`` on a hosted loop.

    Events keep their order; the hub's subscriber never waits (it appends and, at most once per
    ``batch_seconds``, wakes the hosted loop). Until the hosted loop runs, and while it is
    behind, up to ``maxsize`` events wait; beyond that the oldest are dropped and counted in
    ``callsbot_events_dropped_total{subscriber=name}``: like any subscriber that falls behind,
    the handler never sees them.

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
            try:
                self._pending.popleft()
            except IndexError:
                pass  # a drain on the hosted loop emptied it meanwhile: nothing to drop
            else:
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
