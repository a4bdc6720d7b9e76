"""asyncio helpers that every layer uses: stopping cleanly, and reaching the home loop."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Self, TypeVar

T = TypeVar("T")


async def wait_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Wait up to ``seconds`` for ``stop``; ``True`` when it was set.

    ``asyncio.wait``, not ``wait_for``: Python 3.11's ``wait_for`` can swallow the cancel that
    ends a loop (CPython gh-86296).
    """
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({waiter}, timeout=seconds)
    finally:
        waiter.cancel()
    return stop.is_set()


async def until_stopped(stop: asyncio.Event, coro: Awaitable[None]) -> None:
    """Run ``coro`` (a loop that only ends when cancelled) until ``stop`` is set."""
    task = asyncio.ensure_future(coro)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (task, stopper):
            t.cancel()
        # Python 3.11's asyncio.wait_for (redis-py sends every command through it) swallows a
        # cancellation that lands as its inner future completes (CPython gh-86296), and the
        # loop then runs on until the grace is over: cancel again until it ends.
        while not (await asyncio.wait({task}, timeout=0.1))[0]:
            task.cancel()
        results = await asyncio.gather(task, stopper, return_exceptions=True)
    error = results[0]
    if isinstance(error, BaseException) and not isinstance(error, asyncio.CancelledError):
        raise error


class Closing:
    """``async with`` for anything with an ``aclose()``: the block's end closes it."""

    async def aclose(self) -> None:
        """Release what the object holds. Safe to call twice."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


#: How long code on another loop waits for the home loop by default: long enough for a busy
#: loop, short enough that a stuck one is reported (``/healthz``, the dashboard's refresh).
HOME_WITHIN_SECONDS = 5.0


class HomeTimeout(Exception):
    """The home loop did not answer in time (it is blocked, or stopping)."""


class Home:
    """The event loop that owns the process's parts (store, hub, history), seen from any loop.

    Parts built on one loop (a Redis connection, an SQLAlchemy engine, the services' state) are
    used on that loop only. Code that may run on another thread's loop (the web server's) goes
    through :meth:`run` and :meth:`call`; on the home loop itself they call straight through.

    Args:
        loop: the home loop; until one is named (:meth:`bind`), every call goes straight
            through on the running loop (one loop in the process, as in tests).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The home loop, once known."""
        return self._loop

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Name the home loop (done by the service that starts another one)."""
        self._loop = loop

    def _remote(self) -> asyncio.AbstractEventLoop | None:
        """The home loop when it is not the running one."""
        loop = self._loop
        if loop is None or loop is asyncio.get_running_loop():
            return None
        return loop

    async def run(self, factory: Callable[[], Awaitable[T]], *, within: float) -> T:
        """Await ``factory()`` on the home loop; its result, or its error, here.

        Raises:
            HomeTimeout: no answer within ``within`` seconds (the call is cancelled there).
        """
        loop = self._remote()
        if loop is None:
            return await factory()

        async def wrapped() -> T:
            return await factory()

        try:
            future = asyncio.run_coroutine_threadsafe(wrapped(), loop)
        except RuntimeError as exc:  # the home loop is closed
            raise HomeTimeout(f"home loop gone: {exc}") from None
        return await _wait_foreign(future, within)

    async def call(self, fn: Callable[[], T], *, within: float) -> T:
        """Call ``fn()`` on the home loop (between its callbacks); its result here.

        Raises:
            HomeTimeout: no answer within ``within`` seconds.
        """
        loop = self._remote()
        if loop is None:
            return fn()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except BaseException as exc:
                    future.set_exception(exc)

        try:
            loop.call_soon_threadsafe(run)
        except RuntimeError as exc:
            raise HomeTimeout(f"home loop gone: {exc}") from None
        return await _wait_foreign(future, within)


async def _wait_foreign(future: concurrent.futures.Future[T], within: float) -> T:
    waiter = asyncio.wrap_future(future)
    try:
        done, _ = await asyncio.wait({waiter}, timeout=within)
    finally:
        if not waiter.done():
            waiter.cancel()  # cancels the call on the home loop too
    if not done:
        raise HomeTimeout(f"the home loop did not answer within {within:g}s")
    if waiter.cancelled():
        raise HomeTimeout("the home loop cancelled the call (it is stopping)")
    return waiter.result()
