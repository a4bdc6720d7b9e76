"""Health, readiness, metrics and the consensus API on a small aiohttp server.

Bound to 127.0.0.1 by default: ``/metrics`` and ``/api/consensus`` say what the bot is watching,
which is nobody else's business.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from callsbot.clock import unix_seconds
from callsbot.errors import StoreError

if TYPE_CHECKING:
    from callsbot.app import Runtime

log = logging.getLogger("callsbot.web")

RUNTIME: web.AppKey[Runtime] = web.AppKey("runtime")


def build_app(rt: Runtime) -> web.Application:
    """The aiohttp application (also used directly by tests)."""
    app = web.Application()
    app[RUNTIME] = rt
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/consensus", consensus)
    return app


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the event loop answers. No dependency is checked."""
    return web.json_response({"status": "ok"})


async def readiness(rt: Runtime) -> list[str]:
    """Reasons the process is not ready; empty when it is."""
    problems: list[str] = []
    try:
        await rt.store.ping()
    except StoreError as exc:
        problems.append(f"store unreachable: {exc}")
    if rt.listener is not None and not rt.listener.connected:
        problems.append("telegram not connected")
    if rt.scorer is not None:
        last = rt.scorer.last_poll_at
        limit = 3 * rt.settings.cielo.poll_seconds + rt.settings.cielo.timeout_seconds
        if last is None:
            problems.append("feed not polled yet")
        elif rt.clock.time() - last > limit:
            problems.append(f"feed last polled {rt.clock.time() - last:.0f}s ago")
    return problems


async def readyz(request: web.Request) -> web.Response:
    """Readiness: store reachable, Telegram connected, feed polled recently; 503 otherwise."""
    problems = await readiness(request.app[RUNTIME])
    if problems:
        return web.json_response({"status": "not ready", "reasons": problems}, status=503)
    return web.json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition."""
    rt = request.app[RUNTIME]
    await _refresh_gauges(rt)
    return web.Response(body=rt.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _refresh_gauges(rt: Runtime) -> None:
    for role in ("aggregator", "scorer"):
        try:
            age = await rt.store.heartbeat_age(role)
        except StoreError:
            continue
        if age is not None:
            rt.metrics.heartbeat_age.labels(role).set(age)
    if rt.aggregator is not None:
        rt.metrics.queue_depth.set(rt.aggregator.backlog)
        rt.metrics.buffer_size.set(rt.aggregator.buffered)


async def consensus(request: web.Request) -> web.Response:
    """Tokens active in the window with their groups and call times."""
    rt = request.app[RUNTIME]
    try:
        snapshot = await rt.store.snapshot()
    except StoreError as exc:
        return web.json_response({"error": f"store unreachable: {exc}"}, status=503)
    now = unix_seconds(rt.clock)
    tokens: list[dict[str, Any]] = []
    for token, groups in snapshot.items():
        ordered = sorted(groups.items(), key=lambda kv: kv[1])
        tokens.append(
            {
                "token": token,
                "groups": len(groups),
                "first_call": ordered[0][1],
                "last_call": ordered[-1][1],
                "calls": [{"group": g, "ts": ts, "age_s": now - ts} for g, ts in ordered],
            }
        )
    tokens.sort(key=lambda t: (-t["groups"], -t["last_call"]))
    return web.json_response(
        {"window_s": rt.store.window, "now": now, "tokens": tokens}, dumps=_dumps
    )


def _dumps(obj: Any) -> str:
    import json

    return json.dumps(obj, ensure_ascii=False)


async def serve(rt: Runtime, stop: asyncio.Event) -> None:
    """Serve until ``stop`` is set."""
    runner = web.AppRunner(build_app(rt), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, rt.settings.web.host, rt.settings.web.port)
        await site.start()
        log.info("http on %s:%d", rt.settings.web.host, rt.settings.web.port)
        await stop.wait()
    finally:
        await runner.cleanup()
