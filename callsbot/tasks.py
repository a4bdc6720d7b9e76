"""asyncio helpers that every layer uses to stop cleanly."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from types import TracebackType
from typing import Self


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
