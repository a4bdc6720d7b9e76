"""A local Cielo feed WebSocket (aiohttp.web) speaking the documented commands and events.

``GET /api/v1/ws`` with the ``X-API-KEY`` header upgrades to a WebSocket. The client sends
commands, one JSON object per message (``subscribe_feed`` with an optional ``filter`` and
``list_id``, ``unsubscribe_feed``...); the server sends ``{"type": ..., "data": {...}}`` events:
``feed_subscribed`` after a subscription, ``tx`` with a feed item in the REST item shape, and
``error``. Everything the fake received is recorded.

Faults on demand: a rejected key (401 at the upgrade, or an ``error`` event naming the key),
another HTTP status at the upgrade, refused connections (nothing listens on the port), dropped
connections (no close frame), unknown and malformed events, a server that stops answering pings.

Given the REST fake (:class:`~callsbot.testing.cielo.FakeCielo`), every published item also
lands in its history, so a REST gap fill finds what the socket missed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web
from multidict import CIMultiDict

from callsbot.testing.cielo import API_KEY, FakeCielo
from callsbot.testing.redis_server import free_port

WS_PATH = "/api/v1/ws"
#: The event type of a feed item. Cielo's reference does not name it; public clients read "tx".
TX_EVENT = "tx"


class FakeCieloWs:
    """The fake WebSocket server.

    Args:
        api_key: the key the ``X-API-KEY`` header must carry.
        rest: the REST fake whose history published items join, if any.

    Attributes:
        reject_key: answer every upgrade with 401, whatever the key.
        auth_error_event: accept the upgrade, answer ``subscribe_feed`` with an ``error`` event
            saying the key is invalid and close.
        upgrade_status: answer every upgrade with this HTTP status instead (e.g. 503).
        subscribe_error: answer ``subscribe_feed`` with an ``error`` event with this message
            (and no subscription), keeping the connection open.
        ack: answer ``subscribe_feed`` with ``feed_subscribed``.
        answer_pings: answer the client's pings; when ``False`` the server goes silent.
        commands: every command received, in order (non-JSON messages as ``{"raw": text}``).
        upgrade_headers: the headers of every upgrade request.
        connections: upgrades accepted.
        pings: pings received.
    """

    def __init__(self, api_key: str = API_KEY, *, rest: FakeCielo | None = None) -> None:
        self.api_key = api_key
        self.rest = rest
        self.reject_key = False
        self.auth_error_event = False
        self.upgrade_status: int | None = None
        self.subscribe_error: str | None = None
        self.ack = True
        self.answer_pings = True
        self.commands: list[dict[str, Any]] = []
        self.upgrade_headers: list[CIMultiDict[str]] = []
        self.connections = 0
        self.pings = 0
        self.port = free_port()
        self._open: dict[web.WebSocketResponse, web.Request] = {}
        self._subscribed: set[web.WebSocketResponse] = set()
        self._changed = asyncio.Condition()
        app = web.Application()
        app.router.add_get(WS_PATH, self._upgrade)
        self._runner = web.AppRunner(app, access_log=None)
        self._site: web.TCPSite | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{WS_PATH}"

    @property
    def subscribed(self) -> int:
        """Connections subscribed to the feed right now."""
        return len(self._subscribed)

    async def start(self) -> FakeCieloWs:
        await self._runner.setup()
        await self.accept()
        return self

    async def close(self) -> None:
        await self.drop()
        await self._runner.cleanup()

    async def __aenter__(self) -> FakeCieloWs:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- connection faults -------------------------------------------------------------------

    async def refuse(self) -> None:
        """Stop listening and drop every connection: connecting is refused until :meth:`accept`."""
        if self._site is not None:
            await self._site.stop()
            self._site = None
        await self.drop()

    async def accept(self) -> None:
        """Listen (again) on the same port."""
        if self._site is None:
            self._site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
            await self._site.start()

    async def drop(self) -> None:
        """Cut every connection without a close frame, as a network failure does."""
        for request in list(self._open.values()):
            if request.transport is not None:
                request.transport.abort()
        await self.wait_for(lambda: not self._open)

    async def close_connections(self, code: int = 1001, message: bytes = b"going away") -> None:
        """Close every connection cleanly with ``code``."""
        for ws in list(self._open):
            await ws.close(code=code, message=message)
        await self.wait_for(lambda: not self._open)

    # -- sending ------------------------------------------------------------------------------

    async def publish(self, item: Any) -> int:
        """A feed item happens: into the REST history (if shared) and, as a ``tx`` event, to
        every subscribed connection. Returns how many connections it was sent to."""
        if self.rest is not None:
            self.rest.add(item)
        return await self.send_event(TX_EVENT, item)

    async def send_event(self, kind: str, data: Any) -> int:
        """Send ``{"type": kind, "data": data}`` to every subscribed connection."""
        return await self.send_raw(json.dumps({"type": kind, "data": data}))

    async def send_raw(self, text: str) -> int:
        """Send ``text`` as it is (malformed JSON, say) to every subscribed connection."""
        sent = 0
        for ws in list(self._subscribed):
            if not ws.closed:
                await ws.send_str(text)
                sent += 1
        return sent

    async def send_bytes(self, data: bytes) -> int:
        """Send a binary frame to every subscribed connection."""
        for ws in list(self._subscribed):
            await ws.send_bytes(data)
        return len(self._subscribed)

    # -- waiting ------------------------------------------------------------------------------

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds; it is checked whenever a connection or command
        changes the fake's state."""
        async with self._changed:
            await self._changed.wait_for(predicate)

    async def wait_subscribed(self, total: int = 1) -> None:
        """Wait until ``total`` ``subscribe_feed`` commands were received and one connection is
        subscribed."""
        await self.wait_for(lambda: self.subscriptions >= total and bool(self._subscribed))

    @property
    def subscriptions(self) -> int:
        """``subscribe_feed`` commands received so far."""
        return sum(1 for c in self.commands if c.get("type") == "subscribe_feed")

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # -- the handler --------------------------------------------------------------------------

    async def _upgrade(self, request: web.Request) -> web.StreamResponse:
        self.upgrade_headers.append(CIMultiDict(request.headers))
        if self.upgrade_status is not None:
            return web.json_response({"message": "unavailable"}, status=self.upgrade_status)
        if self.reject_key or request.headers.get("x-api-key") != self.api_key:
            return web.json_response({"status": "error", "message": "Unauthorized"}, status=401)
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        self.connections += 1
        self._open[ws] = request
        await self._notify()
        try:
            await self._serve(ws)
        finally:
            self._open.pop(ws, None)
            self._subscribed.discard(ws)
            await self._notify()
        return ws

    async def _serve(self, ws: web.WebSocketResponse) -> None:
        async for msg in ws:
            if msg.type == WSMsgType.PING:
                self.pings += 1
                if self.answer_pings:
                    await ws.pong(msg.data)
                continue
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                command = json.loads(msg.data)
            except ValueError:
                command = None
            if not isinstance(command, dict):
                self.commands.append({"raw": msg.data})
                await ws.send_json({"type": "error", "data": {"message": "invalid command"}})
                continue
            self.commands.append(command)
            await self._command(ws, command)
            await self._notify()
            if ws.closed:
                return

    async def _command(self, ws: web.WebSocketResponse, command: dict[str, Any]) -> None:
        kind = command.get("type")
        if kind == "subscribe_feed":
            if self.auth_error_event:
                error = {"message": "Unauthorized: invalid API key", "code": 401}
                await ws.send_json({"type": "error", "data": error})
                await ws.close(code=1008, message=b"unauthorized")
                return
            if self.subscribe_error is not None:
                await ws.send_json({"type": "error", "data": {"message": self.subscribe_error}})
                return
            self._subscribed.add(ws)
            if self.ack:
                data = {k: v for k, v in command.items() if k != "type"}
                await ws.send_json({"type": "feed_subscribed", "data": data})
        elif kind == "unsubscribe_feed":
            self._subscribed.discard(ws)
            await ws.send_json({"type": "feed_unsubscribed", "data": {}})
        else:
            await ws.send_json({"type": "error", "data": {"message": f"unknown command {kind}"}})
