"""The dashboard's HTTP views, added to the web server as an extension.

- ``GET /dash``, ``/dash/app.js``, ``/dash/app.css``: the page, its one script and its one style
  sheet, shipped in this package (no CDN, nothing inline). They hold no data, so they answer
  without a token; the data views below need one whenever the server has one.
- ``GET /api/dash/snapshot``: the whole state and the id of the last event it includes.
- ``GET /api/dash/events``: server-sent events after that id (``Last-Event-ID`` header, or
  ``?last_event_id=`` for the first connection), a ``retry:`` line, keep-alive comments.

Every view is a GET: the dashboard changes nothing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Collection
from importlib import resources
from typing import Any

from aiohttp import web

from callsbot.dashboard.service import Dashboard
from callsbot.dashboard.stream import KEEPALIVE, TooManyClients

DASHBOARD: web.AppKey[Dashboard] = web.AppKey("dashboard")

#: path → (file in ``static/``, content type)
STATIC = {
    "/dash": ("index.html", "text/html; charset=utf-8"),
    "/dash/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/dash/app.css": ("app.css", "text/css; charset=utf-8"),
}
#: How often a waiting stream checks that its browser is still connected, seconds.
_LIVENESS_SECONDS = 1.0


def static_files() -> dict[str, tuple[bytes, str]]:
    """The page, script and style, read from the package once."""
    root = resources.files("callsbot.dashboard").joinpath("static")
    return {
        path: (root.joinpath(name).read_bytes(), ctype) for path, (name, ctype) in STATIC.items()
    }


def extension(dashboard: Dashboard) -> Callable[[web.Application], Collection[str]]:
    """A web extension (:data:`callsbot.web.Extension`) that adds the dashboard's views."""
    files = static_files()

    def add(app: web.Application) -> Collection[str]:
        app[DASHBOARD] = dashboard
        for path, (body, ctype) in files.items():
            app.router.add_get(path, _static(body, ctype))
        app.router.add_get("/", _home)
        app.router.add_get("/favicon.ico", _no_icon)
        app.router.add_get("/api/dash/snapshot", snapshot)
        app.router.add_get("/api/dash/events", events)
        app.on_shutdown.append(_close_streams)
        return frozenset({"/", "/favicon.ico", *files})

    return add


def _static(body: bytes, content_type: str) -> Any:
    async def serve(request: web.Request) -> web.Response:
        return web.Response(
            body=body, headers={"Content-Type": content_type, "Cache-Control": "no-cache"}
        )

    return serve


async def _home(request: web.Request) -> web.Response:
    raise web.HTTPFound("/dash")


async def _no_icon(request: web.Request) -> web.Response:
    return web.Response(status=204)


async def _close_streams(app: web.Application) -> None:
    app[DASHBOARD].broadcaster.close()


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, allow_nan=False)


async def snapshot(request: web.Request) -> web.Response:
    """The whole state, for a first load and after a ``reset``."""
    return web.json_response(
        request.app[DASHBOARD].snapshot(), dumps=_dumps, headers={"Cache-Control": "no-store"}
    )


def _last_event_id(request: web.Request) -> int | None:
    raw = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    if raw is None or raw.strip() == "":
        return None
    try:
        return int(raw.strip())
    except ValueError:
        raise web.HTTPBadRequest(
            text=_dumps({"error": "Last-Event-ID must be an integer"}),
            content_type="application/json",
        ) from None


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: what was missed after the given id, then everything new."""
    dash = request.app[DASHBOARD]
    last_id = _last_event_id(request)
    if dash.broadcaster.closed:
        return web.json_response({"error": "stopping"}, status=503)

    def abort() -> None:
        transport = request.transport
        if transport is not None:
            transport.abort()

    try:
        client, missed = dash.broadcaster.join(last_id, abort)
    except TooManyClients:
        return web.json_response(
            {"error": "too many dashboard clients; retry later"},
            status=503,
            headers={"Retry-After": "10"},
        )
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    try:
        await response.prepare(request)
        await response.write(f"retry: {dash.timing.retry_ms}\n\n".encode() + b"".join(missed))
        quiet = 0.0
        flush = dash.timing.flush_seconds
        while client.dropped is None:
            frames = await client.next(_LIVENESS_SECONDS)
            if client.dropped is not None:
                break
            if frames:
                quiet = 0.0
                await response.write(b"".join(frames))
                if flush > 0:
                    # What arrives meanwhile goes out in one write: under load one send per
                    # client per interval instead of one per event, while the first event
                    # after a quiet spell leaves at once. Each client's interval differs a
                    # little (its phase), so the writes to all clients do not fall due in the
                    # same loop iteration and hold the pipeline up together.
                    await asyncio.sleep(flush * (1 + client.phase))
                continue
            transport = request.transport
            if transport is None or transport.is_closing():
                break
            quiet += _LIVENESS_SECONDS
            if quiet >= dash.timing.keepalive_seconds:
                quiet = 0.0
                await response.write(KEEPALIVE)
    except ConnectionError:
        pass  # the browser left, or was dropped as too slow (its connection aborted under us)
    finally:
        dash.broadcaster.leave(client)
    return response
