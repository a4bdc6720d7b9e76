"""The dashboard over HTTP: SSE frames read directly, limits, resume, safety headers, tokens."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable

import attrs
import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestClient, TestServer

from callsbot.config import Settings, WebSettings, load_settings
from callsbot.errors import ConfigError
from callsbot.web import WebContext, WebServer, build_app
from tests.dashboard.rig import T0, TOKEN, alert_sent, mention, read_frames, served, verdict

Serve = Callable[[WebContext], Awaitable[TestClient]]
SECRET = "s3cret-token-for-tests-only"


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    clients: list[TestClient] = []

    async def start(ctx: WebContext) -> TestClient:
        client = TestClient(TestServer(build_app(ctx), host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()


def web_settings(**kwargs: object) -> Settings:
    return attrs.evolve(Settings(), web=attrs.evolve(WebSettings(), **kwargs))


async def until(predicate: Callable[[], bool], seconds: float = 5.0) -> None:
    """Wait for something the server does on its own (no simulated time moves here)."""
    async with asyncio.timeout(seconds):
        while not predicate():  # noqa: ASYNC110 (the server changes it, no event to wait on)
            await asyncio.sleep(0.01)


async def test_snapshot_holds_the_state_and_the_last_event_id(serve: Serve) -> None:
    rig = served()
    await rig.publish(verdict(TOKEN, T0), mention(TOKEN, "@a", T0), alert_sent(TOKEN, T0 + 5))
    client = await serve(rig.ctx)
    resp = await client.get("/api/dash/snapshot")
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "no-store"
    body = await resp.json()
    assert [t["symbol"] for t in body["tokens"]] == ["MOONCAT"]
    assert [a["symbol"] for a in body["alerts"]] == ["MOONCAT"]
    assert body["last_event_id"] == rig.dashboard.broadcaster.last_id
    assert body["window_s"] == 3600
    assert body["outcomes_available"] is False


async def test_events_carry_increasing_ids_retry_and_keepalives(serve: Serve) -> None:
    rig = served()
    rig.dashboard.timing = attrs.evolve(rig.dashboard.timing, keepalive_seconds=1.0)
    client = await serve(rig.ctx)
    resp = await client.get("/api/dash/events")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    (hello,) = await read_frames(resp, 1)
    assert hello.retry == 2000
    await rig.publish(
        mention(TOKEN, "@a", T0), mention(TOKEN, "@b", T0 + 1, count=2), alert_sent(TOKEN, T0 + 2)
    )
    frames = await read_frames(resp, 3)
    assert [f.event for f in frames] == ["token", "call", "alert"]
    ids = [f.id for f in frames]
    assert all(isinstance(i, int) for i in ids)
    assert ids == sorted(ids)
    assert len(set(ids)) == 3
    assert frames[1].data["call"] == {"group": "@b", "ts": T0 + 1}
    assert frames[1].data["now"] == T0
    (idle,) = await read_frames(resp, 1)  # nothing published: a keep-alive comment follows
    assert (idle.event, idle.comment) == (None, "keep-alive")
    resp.close()


async def test_resume_from_last_event_id_loses_nothing_within_the_buffer(serve: Serve) -> None:
    rig = served()
    client = await serve(rig.ctx)
    resp = await client.get("/api/dash/events")
    await read_frames(resp, 1)
    await rig.publish(mention(TOKEN, "@a", T0))
    (seen,) = await read_frames(resp, 1)
    resp.close()
    # The browser is away while these happen.
    groups = [f"@g{i}" for i in range(20)]
    for i, g in enumerate(groups):
        await rig.publish(mention(TOKEN, g, T0 + i, count=i + 2))
    resp = await client.get("/api/dash/events", headers={"Last-Event-ID": str(seen.id)})
    frames = await read_frames(resp, 21)
    assert frames[0].retry == 2000
    missed = frames[1:]
    assert [f.id for f in missed] == list(range(seen.id + 1, seen.id + 21))  # type: ignore[operator]
    assert [f.data["call"]["group"] for f in missed] == groups
    resp.close()
    # The same from the query (first connection after a snapshot, where no header can be set).
    resp = await client.get(f"/api/dash/events?last_event_id={seen.id + 19}")  # type: ignore[operator]
    frames = await read_frames(resp, 2)
    assert [f.id for f in frames[1:]] == [seen.id + 20]  # type: ignore[operator]
    resp.close()


async def test_an_id_older_than_the_buffer_or_from_another_process_gets_a_reset(
    serve: Serve,
) -> None:
    rig = served(web_settings(sse_buffer=5))
    client = await serve(rig.ctx)
    first = rig.dashboard.broadcaster.last_id
    for i in range(10):
        await rig.publish(mention(TOKEN, f"@g{i}", T0 + i))
    for stale in (first, first + 3, first + 1000):
        resp = await client.get("/api/dash/events", headers={"Last-Event-ID": str(stale)})
        frames = await read_frames(resp, 2)
        assert frames[1].event == "reset"
        assert frames[1].data == {"last_event_id": first + 10}
        resp.close()
    resp = await client.get("/api/dash/events", headers={"Last-Event-ID": "x"})
    assert resp.status == 400


async def test_the_seventeenth_client_gets_503(serve: Serve) -> None:
    rig = served()
    client = await serve(rig.ctx)
    streams = [await client.get("/api/dash/events") for _ in range(16)]
    assert [r.status for r in streams] == [200] * 16
    extra = await client.get("/api/dash/events")
    assert extra.status == 503
    assert extra.headers["Retry-After"] == "10"
    await rig.publish(mention(TOKEN, "@a", T0))
    for r in streams:  # the sixteen are served all the same
        frames = await read_frames(r, 2)
        assert frames[1].event == "token"
    streams[0].close()
    await until(lambda: rig.dashboard.broadcaster.clients == 15)
    again = await client.get("/api/dash/events")
    assert again.status == 200
    for r in [*streams, again]:
        r.close()


async def test_a_stalled_client_is_dropped_and_never_waited_for(serve: Serve) -> None:
    rig = served(web_settings(sse_client_queue=8))
    # One write per event: the healthy client keeps up with a publisher that never pauses.
    rig.dashboard.timing = attrs.evolve(rig.dashboard.timing, flush_seconds=0.0)
    client = await serve(rig.ctx)
    broadcaster = rig.dashboard.broadcaster
    # A client that connects and never reads, with a tiny receive buffer.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", client.port))
    _, writer = await asyncio.open_connection(sock=sock)
    writer.write(b"GET /api/dash/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    await writer.drain()
    healthy = await client.get("/api/dash/events")
    await until(lambda: broadcaster.clients == 2)
    got: list[int] = []

    async def read_healthy() -> None:
        while True:
            for f in await read_frames(healthy, 1, seconds=30):
                if f.id is not None:
                    got.append(f.id)

    reading = asyncio.create_task(read_healthy())
    pad = "x" * 60_000
    published = 0
    try:
        async with asyncio.timeout(30):
            while broadcaster.clients == 2:
                broadcaster.publish("pad", {"pad": pad})  # returns at once, whoever is slow
                published += 1
                await asyncio.sleep(0)
        assert broadcaster.clients == 1
        sample = rig.parts.metrics.registry.get_sample_value
        assert sample("callsbot_dash_clients_dropped_total", {"reason": "slow"}) == 1
        # The healthy client got every event, in order.
        await until(lambda: len(got) == published, seconds=30)
        assert got == sorted(got)
    finally:
        reading.cancel()
        writer.close()
        healthy.close()


async def test_every_view_is_read_only(serve: Serve) -> None:
    rig = served()
    client = await serve(rig.ctx)
    app = client.server.app
    assert app is not None
    paths = {r.resource.canonical for r in app.router.routes() if r.resource is not None}
    assert {"/dash", "/api/dash/snapshot", "/api/dash/events", "/metrics"} <= paths
    methods = {r.method for r in app.router.routes()}
    assert methods == {"GET", "HEAD"}
    for path in paths:
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            resp = await client.request(method, path)
            assert resp.status == 405, (method, path)


async def test_every_response_carries_the_content_security_policy(serve: Serve) -> None:
    rig = served()
    client = await serve(rig.ctx)
    for path in (
        "/dash",
        "/dash/app.js",
        "/dash/app.css",
        "/api/dash/snapshot",
        "/healthz",
        "/nope",
    ):
        resp = await client.get(path)
        csp = resp.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp
        assert "unsafe-inline" not in csp
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
    stream = await client.get("/api/dash/events")
    assert "default-src 'self'" in stream.headers["Content-Security-Policy"]
    stream.close()
    page = await (await client.get("/dash")).text()
    assert '<script src="/dash/app.js" defer></script>' in page
    assert "style=" not in page
    assert "onclick" not in page
    script = await (await client.get("/dash/app.js")).text()
    assert "innerHTML" not in script.replace("no innerHTML", "")
    assert "insertAdjacentHTML" not in script
    assert "eval(" not in script


async def test_only_loopback_hosts_are_answered_without_a_token(serve: Serve) -> None:
    rig = served()
    client = await serve(rig.ctx)
    resp = await client.get("/api/dash/snapshot", headers={"Host": "evil.example:9108"})
    assert resp.status == 421
    resp = await client.get("/api/dash/snapshot", headers={"Host": "localhost:9108"})
    assert resp.status == 200


async def test_with_a_token_every_data_view_needs_the_bearer(serve: Serve) -> None:
    rig = served(web_settings(token=SECRET))
    client = await serve(rig.ctx)
    for path in ("/api/dash/snapshot", "/api/dash/events", "/metrics", "/readyz", "/api/consensus"):
        resp = await client.get(path)
        assert resp.status == 401, path
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        resp = await client.get(path, headers={"Authorization": "Bearer wrong-token-xxxxxxxx"})
        assert resp.status == 401, path
    for path in ("/dash", "/dash/app.js", "/healthz"):  # no data: the page must load to ask
        assert (await client.get(path)).status == 200
    ok = await client.get("/api/dash/snapshot", headers={"Authorization": f"Bearer {SECRET}"})
    assert ok.status == 200
    # A token-protected server answers any Host: that is what binding beyond loopback is for.
    resp = await client.get(
        "/api/dash/snapshot", headers={"Authorization": f"Bearer {SECRET}", "Host": "box.lan"}
    )
    assert resp.status == 200


def test_binding_beyond_loopback_without_a_token_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, environ={"CALLSBOT_WEB_HOST": "0.0.0.0"}, env_file=None)
    assert info.value.key == "CALLSBOT_WEB_TOKEN"
    settings = load_settings(
        None,
        environ={"CALLSBOT_WEB_HOST": "0.0.0.0", "CALLSBOT_WEB_TOKEN": SECRET},
        env_file=None,
    )
    assert settings.web.token == SECRET
    assert SECRET not in repr(settings)
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        assert load_settings(None, environ={"CALLSBOT_WEB_HOST": host}, env_file=None)
    with pytest.raises(ConfigError) as short:
        load_settings(None, environ={"CALLSBOT_WEB_TOKEN": "short"}, env_file=None)
    assert "at least 16" in str(short.value)


def test_the_cli_refuses_to_start_exposed_without_a_token(tmp_path: object) -> None:
    env = {
        "CALLSBOT_WEB_HOST": "0.0.0.0",
        "PATH": "/usr/bin:/bin",
        "CALLSBOT_ENV_FILE": "/nonexistent",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "callsbot", "demo", "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "CALLSBOT_WEB_TOKEN" in proc.stderr


async def test_the_server_itself_refuses_an_exposed_bind_without_a_token() -> None:
    rig = served()
    server = WebServer(rig.ctx, host="0.0.0.0", port=0)
    with pytest.raises(ConfigError):
        await server.run(asyncio.Event())


async def test_stopping_the_server_ends_open_streams() -> None:
    rig = served(web_settings(port=0))
    server = WebServer(rig.ctx, host="127.0.0.1", port=0)
    stop = asyncio.Event()
    task = asyncio.create_task(server.run(stop))
    port = await server.listening()
    async with ClientSession() as session:
        resp = await session.get(f"http://127.0.0.1:{port}/api/dash/events")
        await read_frames(resp, 1)
        stop.set()
        async with asyncio.timeout(5):
            await task
            assert await resp.content.read() == b""
