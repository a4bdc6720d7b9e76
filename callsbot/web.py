"""Health, readiness, metrics and the consensus API on a small aiohttp server.

Bound to 127.0.0.1 by default: ``/metrics`` and ``/api/consensus`` say what the bot is watching,
which is nobody else's business.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, Protocol

import attrs
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from callsbot.clock import Clock, unix_seconds
from callsbot.errors import StoreError
from callsbot.metrics import Metrics
from callsbot.store.base import MentionWindow

log = logging.getLogger("callsbot.web")


class Checked(Protocol):
    """Anything that can say why it is not ready (every service does)."""

    @property
    def name(self) -> str: ...

    def health(self) -> list[str]: ...


@attrs.define(eq=False)
class WebContext:
    """What the web views read: the services to ask about readiness, and the window.

    Attributes:
        services: asked for :meth:`health` on every ``/readyz``; named by none of the views.
        window: the mention window behind ``/api/consensus``.
        clock: "now".
        metrics: rendered by ``/metrics``.
    """

    services: Sequence[Checked]
    window: MentionWindow
    clock: Clock
    metrics: Metrics


CONTEXT: web.AppKey[WebContext] = web.AppKey("context")


def build_app(ctx: WebContext) -> web.Application:
    """The aiohttp application (also used directly by tests)."""
    app = web.Application()
    app[CONTEXT] = ctx
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/consensus", consensus)
    return app


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the event loop answers. No dependency is checked."""
    return web.json_response({"status": "ok"})


def readiness(ctx: WebContext) -> list[str]:
    """Reasons the process is not ready, from every service's cached health; empty when ready."""
    return [reason for service in ctx.services for reason in service.health()]


async def readyz(request: web.Request) -> web.Response:
    """Readiness: every service's reasons; 503 with them when there are any."""
    problems = readiness(request.app[CONTEXT])
    if problems:
        return web.json_response({"status": "not ready", "reasons": problems}, status=503)
    return web.json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition."""
    ctx = request.app[CONTEXT]
    return web.Response(body=ctx.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def consensus(request: web.Request) -> web.Response:
    """Tokens active in the window with their groups and call times."""
    ctx = request.app[CONTEXT]
    try:
        snapshot = await ctx.window.snapshot()
    except StoreError as exc:
        return web.json_response({"error": f"store unreachable: {exc}"}, status=503)
    now = unix_seconds(ctx.clock)
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
        {"window_s": ctx.window.window, "now": now, "tokens": tokens}, dumps=_dumps
    )


def _dumps(obj: Any) -> str:
    import json

    return json.dumps(obj, ensure_ascii=False)


class WebServer:
    """The HTTP server as a service.

    Args:
        ctx: what the views read.
        host: bind address (127.0.0.1 by default in settings).
        port: TCP port.
    """

    name = "web"

    def __init__(self, ctx: WebContext, *, host: str, port: int) -> None:
        self._ctx = ctx
        self._host = host
        self._port = port

    def health(self) -> list[str]:
        """The server itself never holds readiness back."""
        return []

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set."""
        runner = web.AppRunner(build_app(self._ctx), access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port)
            await site.start()
            log.info("http on %s:%d", self._host, self._port)
            await stop.wait()
        finally:
            await runner.cleanup()
