"""A local Cielo feed API (aiohttp.web) speaking the documented schema, errors included.

Pages are served by ``startFrom`` cursor; ``script`` replies (429, 500, pending, truncated
JSON, dropped connections...) are served first, one per request, in order. Once items are
:meth:`FakeCielo.add`-ed, the feed is served from that history instead (newest first, ``limit``
per page, ``fromTimestamp`` honoured), as the WebSocket fake does when it shares it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict

from callsbot.clock import Clock

API_KEY = "cielo-test-key-0123456789"
WSOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
WALLET = "5tzFkiKscXHK5ZXCGbXZxdw7gTjjD1mBwuoFbhUvuAi9"
T0 = 1_700_000_000


@attrs.define
class Reply:
    """One scripted response."""

    status: int = 200
    body: Any = None  # dict/list → JSON; bytes/str → sent as is
    headers: dict[str, str] = attrs.field(factory=dict)
    drop: bool = False  # promise a body, send part of it, close the connection


@attrs.define
class Request:
    """What the fake saw."""

    query: dict[str, str]
    headers: CIMultiDict[str]
    at: float | None = None  # the test's clock when the request arrived, if given one


def swap(
    tx: str,
    token: str,
    *,
    usd: Any = 2500.0,
    given: str = WSOL,
    wallet: str = WALLET,
    label: str | None = None,
    chain: str = "solana",
    ts: Any = T0,
    symbol: str = "TKN",
    name: str = "Token",
    first: bool = False,
    dex: str = "raydium",
) -> dict[str, Any]:
    """A buy: the wallet gives ``given`` (token0) and receives ``token`` (token1)."""
    return {
        "wallet": wallet,
        "wallet_label": label,
        "tx_hash": tx,
        "tx_type": "swap",
        "chain": chain,
        "index": 0,
        "timestamp": ts,
        "block": 250_000_000,
        "dex": dex,
        "from": wallet,
        "to": "5Q544fKrFoe6tsEbD7S8EmxGTJYAKtTVhAW5Q5pge4j1",
        "token0_address": given,
        "token0_amount": 15.2,
        "token0_amount_usd": usd,
        "token0_price_usd": 164.5,
        "token0_name": "Wrapped SOL",
        "token0_symbol": "SOL",
        "token0_icon_link": "https://example.invalid/sol.png",
        "token1_address": token,
        "token1_amount": "1234567.89",
        "token1_amount_usd": usd,
        "token1_price_usd": None,
        "token1_name": name,
        "token1_symbol": symbol,
        "token1_icon_link": None,
        "first_interaction": first,
    }


def sell(tx: str, token: str, **kw: Any) -> dict[str, Any]:
    """The wallet gives ``token`` and receives SOL."""
    item = swap(tx, token, **kw)
    item["token0_address"], item["token1_address"] = token, WSOL
    item["token0_symbol"], item["token1_symbol"] = item["token1_symbol"], "SOL"
    return item


def transfer(tx: str, token: str) -> dict[str, Any]:
    """A plain transfer item (its own field set)."""
    return {
        "wallet": WALLET,
        "wallet_label": None,
        "tx_hash": tx,
        "tx_type": "transfer",
        "chain": "solana",
        "timestamp": T0,
        "contract_address": token,
        "amount": 1000,
        "amount_usd": 12.5,
        "name": "Token",
        "symbol": "TKN",
        "token_icon_link": None,
        "from": WALLET,
        "to": "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin",
    }


def envelope(items: list[Any], next_object: str | None = None) -> dict[str, Any]:
    """The documented ``{"status":"ok","data":{"items","paging"}}`` envelope."""
    return {
        "status": "ok",
        "data": {
            "items": items,
            "paging": {
                "total_rows_in_page": len(items),
                "has_next_page": next_object is not None,
                "next_object": next_object,
            },
        },
    }


PENDING = {"status": "pending", "message": "Wallet is being indexed, try again shortly"}
CREDITS = {"status": "error", "message": "You have exceeded your API credits"}


class FakeCielo:
    """The fake server. ``pages[None]`` is the newest page; ``pages[cursor]`` the older ones."""

    def __init__(self, api_key: str = API_KEY, clock: Clock | None = None) -> None:
        self.api_key = api_key
        self.clock = clock
        self.pages: dict[str | None, Any] = {None: envelope([])}
        self.script: list[Reply] = []
        self.requests: list[Request] = []
        self.history: list[Any] | None = None
        app = web.Application()
        app.router.add_get("/api/v1/feed", self._feed)
        self._server = TestServer(app, host="127.0.0.1")

    @property
    def url(self) -> str:
        return str(self._server.make_url("")).rstrip("/")

    async def start(self) -> FakeCielo:
        await self._server.start_server(access_log=None)
        return self

    async def close(self) -> None:
        await self._server.close()

    def serve(self, *pages: list[Any]) -> None:
        """Serve ``pages`` newest first, chained by cursors ``c1``, ``c2``, ..."""
        self.pages = {}
        for i, items in enumerate(pages):
            cursor = None if i == 0 else f"c{i}"
            nxt = f"c{i + 1}" if i + 1 < len(pages) else None
            self.pages[cursor] = envelope(items, nxt)

    def add(self, *items: Any) -> None:
        """Add items to the history the feed is served from (oldest first, like events)."""
        if self.history is None:
            self.history = []
        self.history.extend(items)

    def _from_history(self, history: list[Any], query: Mapping[str, str]) -> web.Response:
        try:
            since = float(query.get("fromTimestamp", "0"))
            limit = int(query.get("limit", "100"))
            start = int(query.get("startFrom", "h0").removeprefix("h"))
        except ValueError:
            return web.json_response({"status": "error", "message": "bad query"}, status=400)
        items = [
            item
            for item in reversed(history)
            if not isinstance(item, dict) or float(item.get("timestamp") or 0) >= since
        ]
        page = items[start : start + limit]
        more = start + limit < len(items)
        return web.json_response(envelope(page, f"h{start + limit}" if more else None))

    async def _feed(self, request: web.Request) -> web.StreamResponse:
        at = self.clock.time() if self.clock is not None else None
        self.requests.append(Request(dict(request.query), CIMultiDict(request.headers), at))
        if request.headers.get("x-api-key") != self.api_key:
            return web.json_response({"status": "error", "message": "Unauthorized"}, status=401)
        if self.script:
            return await self._reply(request, self.script.pop(0))
        if self.history is not None:
            return self._from_history(self.history, request.query)
        cursor = request.query.get("startFrom")
        if cursor not in self.pages:
            return web.json_response({"status": "error", "message": "bad cursor"}, status=400)
        return web.json_response(self.pages[cursor])

    async def _reply(self, request: web.Request, reply: Reply) -> web.StreamResponse:
        body = reply.body
        if isinstance(body, dict | list):
            data = json.dumps(body).encode()
        elif isinstance(body, str):
            data = body.encode()
        else:
            data = body or b""
        if reply.drop:
            resp = web.StreamResponse(status=reply.status, headers=reply.headers)
            resp.content_length = len(data) + 100
            await resp.prepare(request)
            await resp.write(data)
            assert request.transport is not None
            request.transport.close()
            return resp
        headers = {"Content-Type": "application/json", **reply.headers}
        return web.Response(status=reply.status, body=data, headers=headers)
