"""Home: reaching the loop that owns the parts from another thread's loop."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

import pytest

from callsbot.tasks import Home, HomeTimeout


@contextlib.contextmanager
def loop_thread() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop running forever on a thread of its own (a stand-in home loop)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


@contextlib.contextmanager
def blocked(loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    """``loop`` stuck in one callback until the block ends (a blocking call in the loop)."""
    release = threading.Event()
    entered = threading.Event()

    def stuck() -> None:
        entered.set()
        release.wait(10)

    loop.call_soon_threadsafe(stuck)
    entered.wait(5)
    try:
        yield
    finally:
        release.set()


async def test_on_the_home_loop_itself_calls_go_straight_through() -> None:
    home = Home(asyncio.get_running_loop())
    me = threading.get_ident()

    async def where() -> int:
        return threading.get_ident()

    assert await home.call(threading.get_ident, within=1) == me
    assert await home.run(where, within=1) == me
    assert await Home().call(lambda: 7, within=1) == 7  # no loop named: the running one


async def test_from_another_loop_calls_run_on_the_home_thread() -> None:
    with loop_thread() as loop:
        home = Home(loop)
        home_thread = await home.call(threading.get_ident, within=5)
        assert home_thread != threading.get_ident()

        async def where() -> tuple[int, asyncio.AbstractEventLoop]:
            await asyncio.sleep(0)
            return threading.get_ident(), asyncio.get_running_loop()

        assert await home.run(where, within=5) == (home_thread, loop)


async def test_errors_come_back_to_the_caller() -> None:
    with loop_thread() as loop:
        home = Home(loop)

        def fails() -> None:
            raise KeyError("from home")

        async def fails_async() -> None:
            raise ValueError("from home")

        with pytest.raises(KeyError, match="from home"):
            await home.call(fails, within=5)
        with pytest.raises(ValueError, match="from home"):
            await home.run(fails_async, within=5)


async def test_a_blocked_home_loop_is_a_timeout_and_the_call_is_cancelled_there() -> None:
    with loop_thread() as loop:
        home = Home(loop)
        ran: list[str] = []

        async def late() -> None:
            ran.append("ran")

        with blocked(loop):
            with pytest.raises(HomeTimeout, match=r"did not answer within 0\.05s"):
                await home.call(lambda: ran.append("called"), within=0.05)
            with pytest.raises(HomeTimeout):
                await home.run(late, within=0.05)
        # Once the loop is free again, neither abandoned call runs.
        assert await home.call(lambda: list(ran), within=5) == []


async def test_a_closed_home_loop_is_a_timeout_not_a_crash() -> None:
    with loop_thread() as loop:
        home = Home(loop)
    with pytest.raises(HomeTimeout, match="home loop gone"):
        await home.call(lambda: None, within=1)
