"""``/readyz`` tells the truth in every fault state, within a second (issue 17, items 6 and 8).

Real redis-server processes: full (maxmemory), a read-only ACL user, frozen (SIGSTOP), a password
changed under a running process. The probe writes through a script, as every write of ours
does; ``/readyz`` answers from its cached findings.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from callsbot.clock import FakeClock
from callsbot.config import Settings, StoreSettings
from callsbot.metrics import Metrics
from callsbot.runtime.probes import StoreProbe
from callsbot.runtime.roles import build_listener, build_pipeline, build_store_probe, make_parts
from callsbot.store.redis import RedisStore
from callsbot.testing.redis_server import RedisServer
from callsbot.web import Checked, WebContext, build_app
from tests.conftest import make_redis_store, mark_window_whole
from tests.tg import FakeGateway

#: How long one ``/readyz`` may take, in every state.
ANSWER_WITHIN = 1.0

READER = ("--user", "reader", "on", ">reader-pw", "~*", "&*", "+@read", "+@scripting", "+ping")


@pytest.fixture
def server() -> Iterator[RedisServer]:
    server = RedisServer(config=READER)
    server.start()
    mark_window_whole(server)
    yield server
    server.stop()  # SIGKILL ends a frozen one too


@pytest.fixture
def clock() -> FakeClock:
    # Near Redis TIME: the probe measures the clock, and a 2023 fake clock would be "skewed".
    return FakeClock(time.time())


def settings(url: str) -> Settings:
    return Settings(
        store=StoreSettings(
            url=url,
            probe_interval_seconds=0.1,
            probe_timeout_seconds=0.3,
            connect_timeout=0.5,
            socket_timeout=2.0,
        )
    )


@pytest.fixture
async def clients() -> AsyncIterator[list[TestClient]]:
    made: list[TestClient] = []
    yield made
    for client in made:
        await client.close()


async def web(
    clients: list[TestClient], store: RedisStore, clock: FakeClock, *services: Checked
) -> TestClient:
    ctx = WebContext(services=list(services), window=store, clock=clock, metrics=Metrics.create())
    client = TestClient(TestServer(build_app(ctx)))
    await client.start_server()
    clients.append(client)
    return client


def probe_for(store: RedisStore, clock: FakeClock, url: str, metrics: Metrics) -> StoreProbe:
    parts = make_parts(settings(url), clock=clock, metrics=metrics, store=store, market=None)
    return build_store_probe(parts, name="test")


async def readyz(client: TestClient) -> tuple[int, list[str], float]:
    started = time.monotonic()
    resp = await client.get("/readyz")
    body = await resp.json()
    return resp.status, body.get("reasons", []), time.monotonic() - started


async def test_a_full_redis_is_named_oom(
    server: RedisServer, clock: FakeClock, clients: list[TestClient]
) -> None:
    metrics = Metrics.create()
    async with make_redis_store(server.url, clock) as store:
        probe = probe_for(store, clock, server.url, metrics)
        client = await web(clients, store, clock, probe)
        await probe.probe()
        assert (await readyz(client))[0] == 200
        server.command("CONFIG", "SET", "maxmemory", "1")
        await probe.probe()
        status, [reason], took = await readyz(client)
        assert (status, took < ANSWER_WITHIN) == (503, True)
        assert reason.startswith("store full (oom): writes refused at maxmemory")
        assert metrics.registry.get_sample_value("callsbot_store_state", {"state": "oom"}) == 1


async def test_a_read_only_user_is_named_noperm(
    server: RedisServer, clock: FakeClock, clients: list[TestClient]
) -> None:
    url = server.url_for("reader", "reader-pw")
    async with make_redis_store(url, clock) as store:
        await store.ping()  # a PING-only check was satisfied with this
        probe = probe_for(store, clock, url, Metrics.create())
        client = await web(clients, store, clock, probe)
        await probe.probe()
        status, [reason], took = await readyz(client)
        assert (status, took < ANSWER_WITHIN) == (503, True)
        assert reason.startswith("store denies callsbot a command (noperm)")


async def test_a_frozen_redis_is_named_within_the_probe_timeout_and_readyz_never_waits(
    server: RedisServer, clock: FakeClock, clients: list[TestClient]
) -> None:
    async with make_redis_store(server.url, clock) as store:
        probe = probe_for(store, clock, server.url, Metrics.create())
        client = await web(clients, store, clock, probe)
        stop = asyncio.Event()
        running = asyncio.create_task(probe.run(stop))
        try:
            await until(client, lambda status, reasons: status == 200)
            server.freeze()
            frozen_at = time.monotonic()
            reasons = await until(client, lambda status, reasons: status == 503)
            # One probe interval plus its timeout (0.4 s), with room for a loaded machine.
            assert time.monotonic() - frozen_at < 1.5
            assert reasons == ["store unreachable (timeout): no answer within 0.3s"]
            server.thaw()
            await until(client, lambda status, reasons: status == 200)
        finally:
            stop.set()
            await running


async def until(client: TestClient, condition: object, *, within: float = 5.0) -> list[str]:
    """Ask ``/readyz`` until ``condition(status, reasons)``; every answer within a second."""
    deadline = time.monotonic() + within
    while True:
        status, reasons, took = await readyz(client)
        assert took < ANSWER_WITHIN, f"/readyz took {took:.2f}s"
        if condition(status, reasons):  # type: ignore[operator]
            return reasons
        assert time.monotonic() < deadline, (status, reasons)
        await asyncio.sleep(0.02)


async def test_telegram_never_connected_is_named(
    server: RedisServer, clock: FakeClock, clients: list[TestClient]
) -> None:
    async with make_redis_store(server.url, clock) as store:
        probe = probe_for(store, clock, server.url, Metrics.create())
        gateway = FakeGateway({"@alpha": (1111, "alpha")})
        gateway.connected = False
        parts = make_parts(
            settings(server.url), clock=clock, metrics=Metrics.create(), store=store, market=None
        )
        listener = build_listener(parts, gateway, build_pipeline(parts, validate=False))
        client = await web(clients, store, clock, probe, listener)
        await probe.probe()
        status, reasons, took = await readyz(client)
        assert (status, reasons, took < ANSWER_WITHIN) == (503, ["telegram not connected"], True)


async def test_a_password_changed_at_run_time_is_named_auth_not_an_outage(
    server: RedisServer, clock: FakeClock, clients: list[TestClient]
) -> None:
    metrics = Metrics.create()
    async with make_redis_store(server.url, clock) as store:
        probe = probe_for(store, clock, server.url, metrics)
        client = await web(clients, store, clock, probe)
        await probe.probe()
        assert (await readyz(client))[0] == 200
        server.command("CONFIG", "SET", "requirepass", "rotated")
        server.password = "rotated"
        server.command("CLIENT", "KILL", "TYPE", "normal")  # our connections reconnect
        await probe.probe()
        status, [reason], _ = await readyz(client)
        assert status == 503
        assert reason.startswith("store rejects the credentials (auth)")
        states = {
            state: metrics.registry.get_sample_value("callsbot_store_state", {"state": state})
            for state in ("auth", "connection", "timeout", "ok")
        }
        assert states == {"auth": 1, "connection": 0, "timeout": 0, "ok": 0}


async def test_rights_revoked_at_run_time_are_named_noperm(
    server: RedisServer, clock: FakeClock, clients: list[TestClient]
) -> None:
    server.command("ACL", "SETUSER", "worker", "on", ">worker-pw", "~*", "&*", "+@all")
    url = server.url_for("worker", "worker-pw")
    async with make_redis_store(url, clock) as store:
        probe = probe_for(store, clock, url, Metrics.create())
        client = await web(clients, store, clock, probe)
        await probe.probe()
        assert (await readyz(client))[0] == 200
        server.command("ACL", "SETUSER", "worker", "-@write")
        await probe.probe()
        status, [reason], _ = await readyz(client)
        assert status == 503
        assert reason.startswith("store denies callsbot a command (noperm)")
