"""The web server and dashboard as ``run`` serves them: on a thread and loop of their own.

Each view must reach the parts on the home loop (the window store, readiness) and the hub's
events must reach the browsers, in order; a blocked home loop is reported, not hidden.
"""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator

import aiohttp
import attrs
import pytest
from prometheus_client import Gauge

from callsbot.clock import FakeClock
from callsbot.config import Settings
from callsbot.metrics import Metrics
from callsbot.runtime.roles import Parts, Served, build_served, make_parts
from callsbot.store import MemoryStore
from tests.conftest import make_redis_store
from tests.dashboard.rig import TOKEN, mention, read_frames

T0 = 1_700_000_000


class Flag:
    """A service whose readiness the test sets; notes the thread it was asked on."""

    name = "flag"

    def __init__(self) -> None:
        self.reasons: list[str] = []
        self.asked_on: set[int] = set()

    def health(self) -> list[str]:
        self.asked_on.add(threading.get_ident())
        return list(self.reasons)

    async def run(self, stop: asyncio.Event) -> None:
        await stop.wait()


@attrs.define
class Running:
    parts: Parts
    served: Served
    flag: Flag
    base: str


@pytest.fixture
async def running() -> AsyncIterator[Running]:
    settings = Settings()
    settings = attrs.evolve(settings, web=attrs.evolve(settings.web, port=0))
    clock = FakeClock(float(T0))
    store = MemoryStore(window=settings.store.window_seconds, clock=clock)
    parts = make_parts(settings, clock=clock, metrics=Metrics.create(), store=store, market=None)
    flag = Flag()
    served = build_served(parts, [parts.events, flag], dashboard=True)
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(parts.events.run(stop)),
        asyncio.create_task(served.host.run(stop)),
    ]
    port = await asyncio.wait_for(served.listening(), 10)
    yield Running(parts, served, flag, f"http://127.0.0.1:{port}")
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 15)


async def test_the_server_runs_off_the_home_loop_and_answers_from_it(running: Running) -> None:
    store = running.parts.store
    await store.record(TOKEN, "@alpha", T0 - 60)
    await store.record(TOKEN, "@beta", T0 - 30)
    async with aiohttp.ClientSession() as http:
        async with http.get(running.base + "/healthz") as resp:
            assert resp.status == 200
        async with http.get(running.base + "/readyz") as resp:
            assert resp.status == 200
        running.flag.reasons = ["store unreachable"]
        async with http.get(running.base + "/readyz") as resp:
            assert resp.status == 503
            assert "store unreachable" in (await resp.json())["reasons"]
        async with http.get(running.base + "/api/consensus") as resp:
            body = await resp.json()
        assert [(t["token"], t["groups"]) for t in body["tokens"]] == [(TOKEN, 2)]
        async with http.get(running.base + "/api/dash/snapshot") as resp:
            assert resp.status == 200
    # Readiness was asked on the home loop's thread, never on the server's.
    assert running.flag.asked_on == {threading.get_ident()}
    assert running.served.host.loop is not asyncio.get_running_loop()


async def test_hub_events_reach_a_browser_in_order(running: Running) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.get(running.base + "/api/dash/events") as resp,
    ):
        assert resp.status == 200
        assert (await read_frames(resp, 1))[0].retry is not None
        groups = ["@a", "@b", "@c", "@d"]
        for n, group in enumerate(groups, 1):
            running.parts.events.publish(mention(TOKEN, group, T0 + n, count=n, msg=n))
        seen: list[str] = []
        ids: list[int] = []
        while len(seen) < len(groups):
            for frame in await read_frames(resp, 1):
                if frame.id is not None:
                    ids.append(frame.id)
                if frame.event == "token" and frame.data["token"]["token"] == TOKEN:
                    seen += [c["group"] for c in frame.data["token"]["calls"]]
                elif frame.event == "call" and frame.data["token"] == TOKEN:
                    seen.append(frame.data["call"]["group"])
    assert seen == groups
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


async def test_a_blocked_home_loop_fails_liveness_instead_of_answering_ok(
    running: Running,
) -> None:
    ctx = running.served.web.context
    ctx.home_within = 0.2
    url = running.base + "/healthz"

    def get() -> int:
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    answer: list[int] = []
    asked = threading.Thread(target=lambda: answer.append(get()))
    asked.start()
    # The home loop stuck in one blocking call (as a blocking call in a handler would do):
    # the request must be answered meanwhile, by the server's own loop, with a 503.
    deadline = time.monotonic() + 5
    while asked.is_alive() and time.monotonic() < deadline:
        asked.join(0.05)
    assert answer == [503]
    assert await asyncio.to_thread(get) == 200  # free again


async def test_metrics_are_rendered_on_the_home_loop(running: Running) -> None:
    rendered_on: list[int] = []

    def probe() -> float:
        rendered_on.append(threading.get_ident())
        return 1.0

    gauge = Gauge(
        "test_render_probe", "where gauges are read", registry=running.parts.metrics.registry
    )
    gauge.set_function(probe)
    async with aiohttp.ClientSession() as http, http.get(running.base + "/metrics") as resp:
        assert resp.status == 200
        assert b"test_render_probe 1.0" in await resp.read()
    assert rendered_on == [threading.get_ident()]


async def test_a_window_store_bound_to_the_home_loop_is_read_there(redis_url: str) -> None:
    """A Redis connection belongs to the loop that opened it: /api/consensus must read it
    on the home loop, not on the server's."""
    settings = Settings()
    settings = attrs.evolve(settings, web=attrs.evolve(settings.web, port=0))
    clock = FakeClock(float(T0))
    store = make_redis_store(redis_url, clock)
    await store.record(TOKEN, "@alpha", T0 - 60)  # the connection is made on this loop
    parts = make_parts(settings, clock=clock, metrics=Metrics.create(), store=store, market=None)
    served = build_served(parts, [parts.events], dashboard=True)
    stop = asyncio.Event()
    task = asyncio.create_task(served.host.run(stop))
    try:
        port = await asyncio.wait_for(served.listening(), 10)
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/api/consensus") as resp,
        ):
            assert resp.status == 200
            body = await resp.json()
        assert [(t["token"], t["groups"]) for t in body["tokens"]] == [(TOKEN, 1)]
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        await store.aclose()


async def test_after_a_restart_the_server_listens_and_streams_again() -> None:
    settings = Settings()
    settings = attrs.evolve(settings, web=attrs.evolve(settings.web, port=0))
    clock = FakeClock(float(T0))
    store = MemoryStore(window=settings.store.window_seconds, clock=clock)
    parts = make_parts(settings, clock=clock, metrics=Metrics.create(), store=store, market=None)
    served = build_served(parts, [parts.events], dashboard=True)
    hub_stop = asyncio.Event()
    hub = asyncio.create_task(parts.events.run(hub_stop))
    for attempt in range(2):  # as the supervisor restarts it: a new thread and loop each time
        stop = asyncio.Event()
        task = asyncio.create_task(served.host.run(stop))
        port = await asyncio.wait_for(served.listening(), 10)
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/api/dash/events") as resp,
        ):
            assert resp.status == 200, f"start {attempt + 1}"
            parts.events.publish(mention(TOKEN, f"@g{attempt}", T0 + attempt, msg=attempt))
            kinds: list[str | None] = []
            while not {"token", "call"} & set(kinds):
                kinds += [f.event for f in await read_frames(resp, 1)]
        stop.set()
        await asyncio.wait_for(task, 15)
    hub_stop.set()
    await hub


async def test_a_port_in_use_is_the_servers_own_error(running: Running) -> None:
    taken = int(running.base.rsplit(":", 1)[1])
    settings = Settings()
    settings = attrs.evolve(settings, web=attrs.evolve(settings.web, port=taken))
    clock = FakeClock(float(T0))
    store = MemoryStore(window=settings.store.window_seconds, clock=clock)
    parts = make_parts(settings, clock=clock, metrics=Metrics.create(), store=store, market=None)
    served = build_served(parts, [parts.events], dashboard=True)
    task = asyncio.create_task(served.host.run(asyncio.Event()))
    with pytest.raises(RuntimeError, match="web stopped"):
        await asyncio.wait_for(served.listening(), 10)
    with pytest.raises(OSError, match="address already in use"):
        await asyncio.wait_for(task, 15)
