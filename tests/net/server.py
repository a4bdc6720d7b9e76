"""A scripted local HTTP server and a sleep that moves the FakeClock, for the net tests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict

from callsbot.clock import FakeClock


@attrs.define
class ClockSleep:
    """An injectable sleep that moves the FakeClock instead of waiting, and remembers."""

    clock: FakeClock
    calls: list[float] = attrs.field(factory=list)

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        self.clock.advance(max(seconds, 0.0))
        await asyncio.sleep(0)


@attrs.define
class Reply:
    """One scripted answer.

    ``body`` is sent as is when bytes, JSON-encoded otherwise. ``cut`` promises more body than
    it sends and closes the connection; ``hang`` never answers (until the server closes).
    ``before`` is awaited before answering (to order concurrent requests).
    """

    status: int = 200
    body: Any = attrs.field(factory=lambda: {"ok": True})
    headers: dict[str, str] = attrs.field(factory=dict)
    cut: bool = False
    hang: bool = False
    before: Callable[[], Awaitable[object]] | None = None


@attrs.frozen
class Seen:
    """One request the server received."""

    method: str
    path: str
    query: dict[str, str]
    headers: CIMultiDict[str]
    body: bytes
    at: float


class ScriptedServer:
    """Answers each path from its own script (then ``200 {"ok": true}``); records requests."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.scripts: dict[str, list[Reply]] = {}
        self.requests: list[Seen] = []
        self._hanging = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._server = TestServer(app, host="127.0.0.1")

    @property
    def url(self) -> str:
        return str(self._server.make_url("")).rstrip("/")

    def script(self, path: str, *replies: Reply) -> None:
        self.scripts.setdefault(path, []).extend(replies)

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    async def start(self) -> ScriptedServer:
        await self._server.start_server(access_log=None)
        return self

    async def close(self) -> None:
        self._hanging.set()
        await self._server.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(
            Seen(
                request.method,
                request.path,
                dict(request.query),
                CIMultiDict(request.headers),
                await request.read(),
                self.clock.time(),
            )
        )
        queue = self.scripts.get(request.path)
        reply = queue.pop(0) if queue else Reply()
        if reply.before is not None:
            await reply.before()
        if reply.hang:
            await self._hanging.wait()
        data = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
        if reply.cut:
            resp = web.StreamResponse(status=reply.status, headers=reply.headers)
            resp.content_length = len(data) + 100
            await resp.prepare(request)
            await resp.write(data)
            assert request.transport is not None
            request.transport.close()
            return resp
        headers = {"Content-Type": "application/json", **reply.headers}
        return web.Response(status=reply.status, body=data, headers=headers)
