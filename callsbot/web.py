"""Health, readiness, metrics and the consensus API on a small aiohttp server.

Bound to 127.0.0.1 by default: ``/metrics`` and ``/api/consensus`` say what the bot is watching,
which is nobody else's business. Every view is read-only (GET and HEAD only).

Security, for every view, extensions (the dashboard) included:

- With a token (``CALLSBOT_WEB_TOKEN``, required to bind anywhere but loopback), every view but
  ``/healthz`` and the paths an extension declares public (static files without data) needs
  ``Authorization: Bearer <token>``, compared in constant time.
- Without one, the server only answers requests whose ``Host`` is a loopback name or address:
  a web page that rebinds its own DNS name to 127.0.0.1 cannot read the views.
- Every response carries a strict Content-Security-Policy (``default-src 'self'``, no inline
  script or style, Trusted Types required) and headers against sniffing, framing and referrers.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Callable, Collection, Sequence
from typing import Any, Protocol

import attrs
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from callsbot.clock import Clock, unix_seconds
from callsbot.config import env_name, is_loopback
from callsbot.errors import ConfigError, StoreError
from callsbot.metrics import Metrics
from callsbot.store.base import MentionWindow
from callsbot.tasks import HOME_WITHIN_SECONDS, Home, HomeTimeout

log = logging.getLogger("callsbot.web")


class Checked(Protocol):
    """Anything that can say why it is not ready (every service does)."""

    @property
    def name(self) -> str: ...

    def health(self) -> list[str]: ...


#: Adds views to the application; returns the paths among them that need no token.
Extension = Callable[[web.Application], Collection[str]]

#: The policy every response carries. No 'unsafe-inline' anywhere: the dashboard's script and
#: style are files; Trusted Types make an accidental ``innerHTML = string`` throw.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; "
    "object-src 'none'; require-trusted-types-for 'script'; trusted-types 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
#: Views that answer without a token: liveness says nothing but "ok".
PUBLIC_PATHS = frozenset({"/healthz"})


@attrs.define(eq=False)
class WebContext:
    """What the web views read: the services to ask about readiness, and the window.

    Attributes:
        services: asked for :meth:`health` on every ``/readyz``; named by none of the views.
        window: the mention window behind ``/api/consensus``.
        clock: "now".
        metrics: rendered by ``/metrics``.
        token: the bearer token every non-public view needs; ``None``: loopback only.
        extensions: more views (the dashboard), added by :func:`build_app`.
        home: the loop the services and the window belong to, when the server runs on
            another one (by default: the same loop).
        home_within: how long that loop has to answer a view (seconds).
    """

    services: Sequence[Checked]
    window: MentionWindow
    clock: Clock
    metrics: Metrics
    token: str | None = attrs.field(default=None, repr=False)
    extensions: Sequence[Extension] = ()
    home: Home = attrs.Factory(Home)
    home_within: float = HOME_WITHIN_SECONDS


CONTEXT: web.AppKey[WebContext] = web.AppKey("context")
_PUBLIC: web.AppKey[frozenset[str]] = web.AppKey("public-paths")


def build_app(ctx: WebContext) -> web.Application:
    """The aiohttp application (also used directly by tests)."""
    app = web.Application(middlewares=[_guard])
    app[CONTEXT] = ctx
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/consensus", consensus)
    public = set(PUBLIC_PATHS)
    for extend in ctx.extensions:
        public |= set(extend(app))
    app[_PUBLIC] = frozenset(public)
    app.on_response_prepare.append(_security_headers)
    return app


def authorised(header: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header value carries ``token`` as a bearer token."""
    if header is None:
        return False
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


@web.middleware
async def _guard(request: web.Request, handler: Any) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    if ctx.token is None:
        host = request.url.host or ""
        if not is_loopback(host):
            return web.json_response(
                {"error": "this server answers loopback hosts only"}, status=421
            )
    elif request.path not in request.app[_PUBLIC] and not authorised(
        request.headers.get("Authorization"), ctx.token
    ):
        return web.json_response(
            {"error": "bearer token required"},
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="callsbot"'},
        )
    response: web.StreamResponse = await handler(request)
    return response


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the home event loop answers within the context's ``home_within`` seconds.
    No dependency is checked."""
    ctx = request.app[CONTEXT]
    try:
        await ctx.home.call(lambda: None, within=ctx.home_within)
    except HomeTimeout as exc:
        return web.json_response(
            {"status": "event loop not answering", "reason": str(exc)}, status=503
        )
    return web.json_response({"status": "ok"})


def readiness(ctx: WebContext) -> list[str]:
    """Reasons the process is not ready, from every service's cached health; empty when ready."""
    return [reason for service in ctx.services for reason in service.health()]


async def readyz(request: web.Request) -> web.Response:
    """Readiness: every service's reasons; 503 with them when there are any."""
    ctx = request.app[CONTEXT]
    try:
        problems = await ctx.home.call(lambda: readiness(ctx), within=ctx.home_within)
    except HomeTimeout as exc:
        problems = [f"event loop not answering: {exc}"]
    if problems:
        return web.json_response({"status": "not ready", "reasons": problems}, status=503)
    return web.json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition."""
    ctx = request.app[CONTEXT]
    try:
        # Rendered on the home loop: some gauges are callbacks reading the services' state.
        body = await ctx.home.call(ctx.metrics.render, within=ctx.home_within)
    except HomeTimeout as exc:
        return web.json_response({"error": f"event loop not answering: {exc}"}, status=503)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def consensus(request: web.Request) -> web.Response:
    """Tokens active in the window with their groups and call times."""
    ctx = request.app[CONTEXT]
    try:
        snapshot = await ctx.home.run(ctx.window.snapshot, within=ctx.home_within)
    except (StoreError, HomeTimeout) as exc:
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
        self._listening: asyncio.Event | None = None
        self._listening_loop: asyncio.AbstractEventLoop | None = None
        self._port_bound: int | None = None

    @property
    def context(self) -> WebContext:
        """What the views read (tests serve it with :func:`build_app`)."""
        return self._ctx

    @property
    def port(self) -> int | None:
        """The port listened on (the one the OS chose for port 0), once listening."""
        return self._port_bound

    async def listening(self) -> int:
        """Wait until the server listens; return its port."""
        await self._listening_event().wait()
        assert self._port_bound is not None
        return self._port_bound

    def _listening_event(self) -> asyncio.Event:
        # One per loop: after a restart the server may run on another thread's loop, and an
        # asyncio.Event belongs to the loop it was first awaited on.
        loop = asyncio.get_running_loop()
        if self._listening is None or self._listening_loop is not loop:
            self._listening, self._listening_loop = asyncio.Event(), loop
        return self._listening

    def health(self) -> list[str]:
        """The server itself never holds readiness back."""
        return []

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set.

        Raises:
            ConfigError: bound beyond loopback without a token (settings loaded by
                :func:`~callsbot.config.load_settings` never get here).
        """
        if not is_loopback(self._host) and not self._ctx.token:
            raise ConfigError(
                env_name("web", "token"), f"required to serve on {self._host!r} (not loopback)"
            )
        listening = self._listening_event()
        runner = web.AppRunner(
            build_app(self._ctx), access_log=None, handle_signals=False, shutdown_timeout=5.0
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port)
            await site.start()
            self._port_bound = int(runner.addresses[0][1])
            listening.set()
            log.info("http on %s:%d", self._host, self._port_bound)
            await stop.wait()
        finally:
            listening.clear()
            await runner.cleanup()
