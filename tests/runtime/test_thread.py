"""ThreadHost and Handoff: services on a loop of their own, events handed over in order."""

from __future__ import annotations

import asyncio
import collections
import threading

import pytest

from callsbot.clock import FakeClock
from callsbot.events import Event, EventHub, MentionRecorded
from callsbot.metrics import Metrics
from callsbot.models import MessageRef
from callsbot.runtime.thread import Handoff, ThreadHost
from callsbot.tasks import Home

T0 = 1_700_000_000.0


class Recording:
    """A service that notes where it ran and how it ended."""

    def __init__(self, name: str, *, fail: BaseException | None = None) -> None:
        self.name = name
        self.fail = fail
        self.thread: int | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stopped = False
        self.running = asyncio.Event()  # only awaited on the hosted loop

    def health(self) -> list[str]:
        return [f"{self.name} says hi"]

    async def run(self, stop: asyncio.Event) -> None:
        self.thread = threading.get_ident()
        self.loop = asyncio.get_running_loop()
        if self.fail is not None:
            raise self.fail
        await stop.wait()
        self.stopped = True


def mention(n: int) -> MentionRecorded:
    ref = MessageRef("live", -100, "g", n, int(T0), T0)
    return MentionRecorded(
        at=T0 + n, ref=ref, token=f"tok{n}", mention_kind="mint", chain="solana", count=1
    )


async def test_hosted_services_run_on_another_thread_and_stop_with_the_home_stop() -> None:
    a, b = Recording("a"), Recording("b")
    home = Home()
    host = ThreadHost("web", [a, b], home=home, grace_seconds=5)
    stop = asyncio.Event()
    task = asyncio.create_task(host.run(stop))
    hosted_thread = await host.hosted(_thread_id)
    assert hosted_thread != threading.get_ident()
    assert home.loop is asyncio.get_running_loop()  # the hosted side reaches home through it
    assert host.health() == ["a says hi", "b says hi"]
    stop.set()
    await asyncio.wait_for(task, 10)
    assert a.stopped
    assert b.stopped
    assert a.thread == b.thread == hosted_thread
    assert a.loop is b.loop
    assert a.loop is not asyncio.get_running_loop()
    assert host.loop is None


async def test_a_failing_hosted_service_stops_its_siblings_and_raises_at_home() -> None:
    ok, bad = Recording("ok"), Recording("bad", fail=ValueError("boom"))
    host = ThreadHost("web", [ok, bad], home=Home(), grace_seconds=5)
    with pytest.raises(ValueError, match="boom"):
        await asyncio.wait_for(host.run(asyncio.Event()), 10)
    assert ok.stopped


async def test_it_can_run_again_after_a_failure() -> None:
    svc = Recording("again", fail=RuntimeError("first start fails"))
    host = ThreadHost("web", [svc], home=Home(), grace_seconds=5)
    with pytest.raises(RuntimeError):
        await asyncio.wait_for(host.run(asyncio.Event()), 10)
    svc.fail = None
    stop = asyncio.Event()
    task = asyncio.create_task(host.run(stop))
    assert await host.hosted(_thread_id) != threading.get_ident()
    stop.set()
    await asyncio.wait_for(task, 10)
    assert svc.stopped


async def _thread_id() -> int:
    return threading.get_ident()


async def test_handoff_delivers_in_order_on_the_hosted_loop_even_before_it_starts() -> None:
    metrics = Metrics.create()
    clock = FakeClock(T0)
    hub = EventHub(metrics=metrics, clock=clock)
    host = ThreadHost("web", [], home=Home(), grace_seconds=5)
    seen: list[tuple[str, int]] = []
    done = threading.Event()

    def handler(event: MentionRecorded) -> None:  # type: ignore[override]
        seen.append((event.token, threading.get_ident()))
        if len(seen) == 60:
            done.set()

    handoff = Handoff("dash", handler, host=host, metrics=metrics, maxsize=100)  # type: ignore[arg-type]
    hub.subscribe("dash", handoff)
    stop = asyncio.Event()
    hub_task = asyncio.create_task(hub.run(stop))
    for n in range(20):  # before the hosted loop exists: kept
        hub.publish(mention(n))
    await hub.drain()
    assert seen == []
    hosted = asyncio.create_task(_run_hosted(host, stop))
    hosted_thread = await host.hosted(_thread_id)
    for n in range(20, 60):
        hub.publish(mention(n))
    await hub.drain()
    assert await asyncio.to_thread(done.wait, 10)
    stop.set()
    await asyncio.gather(hub_task, hosted)
    assert [t for t, _ in seen] == [f"tok{n}" for n in range(60)]
    assert {thread for _, thread in seen} == {hosted_thread}


async def _run_hosted(host: ThreadHost, stop: asyncio.Event) -> None:
    await host.run(stop)


async def test_handoff_drops_the_oldest_beyond_its_bound_and_counts_them() -> None:
    metrics = Metrics.create()
    host = ThreadHost("web", [], home=Home(), grace_seconds=5)
    seen: list[str] = []
    handoff = Handoff("dash", lambda e: seen.append(e.token), host=host, metrics=metrics, maxsize=5)  # type: ignore[attr-defined]
    for n in range(8):  # the hosted loop is not running: they wait, and the bound holds
        await handoff(mention(n))
    dropped = metrics.registry.get_sample_value(
        "callsbot_events_dropped_total", {"subscriber": "dash"}
    )
    assert dropped == 3
    stop = asyncio.Event()
    task = asyncio.create_task(host.run(stop))
    await host.hosted(_thread_id)  # the start drains what waited
    stop.set()
    await task
    assert seen == ["tok3", "tok4", "tok5", "tok6", "tok7"]


async def test_a_failing_handler_is_counted_and_the_next_events_still_arrive() -> None:
    metrics = Metrics.create()
    host = ThreadHost("web", [], home=Home(), grace_seconds=5)
    seen: list[str] = []

    def handler(event: MentionRecorded) -> None:
        if event.token == "tok1":
            raise KeyError("bad event")
        seen.append(event.token)

    handoff = Handoff("dash", handler, host=host, metrics=metrics, maxsize=10)  # type: ignore[arg-type]
    for n in range(3):
        await handoff(mention(n))
    stop = asyncio.Event()
    task = asyncio.create_task(host.run(stop))
    await host.hosted(_thread_id)
    stop.set()
    await task
    assert seen == ["tok0", "tok2"]
    errors = metrics.registry.get_sample_value(
        "callsbot_event_handler_errors_total", {"subscriber": "dash"}
    )
    assert errors == 1


async def test_a_stop_that_comes_before_the_thread_turns_is_not_lost() -> None:
    svc = Recording("early")
    host = ThreadHost("web", [svc], home=Home(), grace_seconds=5)
    stop = asyncio.Event()
    stop.set()  # set before the hosted loop exists
    await asyncio.wait_for(host.run(stop), 10)
    assert host.loop is None
    # Whether the service started or not, nothing is left running on the thread.
    assert svc.stopped or svc.thread is None


async def test_a_call_into_a_run_that_ends_fails_instead_of_waiting_forever() -> None:
    svc = Recording("short")
    host = ThreadHost("web", [svc], home=Home(), grace_seconds=5)
    stop = asyncio.Event()
    task = asyncio.create_task(host.run(stop))
    await host.hosted(_thread_id)
    never = asyncio.Event()  # awaited on the hosted loop: only the run's end ends the call

    async def forever() -> None:
        await never.wait()

    call = asyncio.create_task(host.hosted(forever))
    await asyncio.sleep(0)
    stop.set()
    with pytest.raises(RuntimeError, match="web stopped"):
        await asyncio.wait_for(call, 10)
    await task


def test_a_drain_between_the_check_and_the_drop_is_not_an_error() -> None:
    metrics = Metrics.create()
    host = ThreadHost("web", [], home=Home(), grace_seconds=5)
    seen: list[str] = []
    handoff = Handoff("dash", lambda e: seen.append(e.token), host=host, metrics=metrics, maxsize=1)  # type: ignore[attr-defined]
    asyncio.run(handoff(mention(0)))
    # The full queue is emptied "on the other thread" between the length check and the pop.
    real = handoff._pending

    class Racy(collections.deque[Event]):
        raced = False

        def __len__(self) -> int:
            n = super().__len__()
            if not self.raced:
                self.raced = True
                handoff.drain()
            return n

    handoff._pending = Racy()
    handoff._pending.append(real.popleft())
    asyncio.run(handoff(mention(1)))
    assert seen == ["tok0"]
    assert list(handoff._pending) == [mention(1)]
    dropped = metrics.registry.get_sample_value(
        "callsbot_events_dropped_total", {"subscriber": "dash"}
    )
    assert not dropped
