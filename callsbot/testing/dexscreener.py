"""A local DexScreener: an aiohttp.web server that speaks the real response schema.

Reusable by tests, the bench and the demo::

    async with FakeDexScreener() as dex:
        dex.add_token("So1...", liquidity=50_000, volume_h24=20_000)
        dex.fail_next(429, retry_after=3)
        settings = DexScreenerSettings(url=dex.url)

Serves ``/latest/dex/tokens/{a,b,...}`` (``{"schemaVersion", "pairs": [...] | null}``),
``/tokens/v1/{chain}/{a,b,...}`` (bare array) and ``/latest/dex/pairs/{chain}/{a,...}``
(``{"schemaVersion", "pairs", "pair"}``, both ``null`` when unknown). More than 30 addresses in
one request get a 400, like a client bug would deserve.

Every request is recorded (path, addresses, loop time, injected-clock time, status). Faults are
queued and consumed one per request, in order: an HTTP status (429 with or without
Retry-After, 500...), a truncated JSON body, a connection cut mid-body, or a slow response that
hangs until :meth:`FakeDexScreener.release` (or a given delay) — so timeout tests need no sleeping
server.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import email.utils
import hashlib
import json
from collections.abc import Sequence
from typing import Any

import attrs
from aiohttp import web

from callsbot.clock import Clock, FakeClock
from callsbot.testing.loopback import LoopbackServer, most_within

WSOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
WETH = "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2"

MAX_ADDRESSES = 30


def http_date(unix: float) -> str:
    """``unix`` as an RFC 9110 HTTP-date (for Retry-After)."""
    return email.utils.formatdate(unix, usegmt=True)


def _key(address: str) -> str:
    return address.lower() if address[:2].lower() == "0x" else address


def make_pair(
    base_address: str,
    *,
    chain: str = "solana",
    dex: str = "raydium",
    pair_address: str | None = None,
    base_name: str = "Test Token",
    base_symbol: str = "TEST",
    quote_address: str = WSOL,
    quote_name: str = "Wrapped SOL",
    quote_symbol: str = "SOL",
    price_usd: str | None = "0.0012",
    price_native: str = "0.000008",
    liquidity: float | None = 50_000.0,
    volume_h24: float | None = 120_000.0,
    volume_h1: float | None = 9_000.0,
    price_change: dict[str, float] | None = None,
    market_cap: float | None = 1_200_000.0,
    fdv: float | None = 1_200_000.0,
    created_at_ms: int | None = 1_699_990_000_000,
    buys_h24: int = 420,
    sells_h24: int = 380,
    labels: Sequence[str] | None = None,
) -> dict[str, Any]:
    """A pair object with every key real responses carry; ``None`` leaves an optional key out.

    ``liquidity=None`` omits ``liquidity`` entirely (pump.fun bonding-curve pairs do that).
    """
    if pair_address is None:
        digest = hashlib.sha256(
            f"{base_address}/{quote_address}/{chain}/{dex}".encode()
        ).hexdigest()
        pair_address = "0x" + digest[:40] if base_address.startswith("0x") else "Pair" + digest[:40]
    pair: dict[str, Any] = {
        "chainId": chain,
        "dexId": dex,
        "url": f"https://dexscreener.com/{chain}/{pair_address.lower()}",
        "pairAddress": pair_address,
        "baseToken": {"address": base_address, "name": base_name, "symbol": base_symbol},
        "quoteToken": {"address": quote_address, "name": quote_name, "symbol": quote_symbol},
        "priceNative": price_native,
        "txns": {
            "m5": {"buys": 3, "sells": 2},
            "h1": {"buys": 40, "sells": 31},
            "h6": {"buys": 200, "sells": 170},
            "h24": {"buys": buys_h24, "sells": sells_h24},
        },
        "volume": {"h24": volume_h24, "h6": None, "h1": volume_h1, "m5": 150.0},
        "priceChange": (
            price_change if price_change is not None else {"m5": 0.5, "h1": 4.2, "h24": 35.0}
        ),
        "info": {
            "imageUrl": "https://dd.dexscreener.com/ds-data/tokens/x.png",
            "websites": [{"label": "Website", "url": "https://example.invalid"}],
            "socials": [{"type": "twitter", "url": "https://x.com/example"}],
        },
    }
    pair["volume"] = {k: v for k, v in pair["volume"].items() if v is not None}
    if labels is not None:
        pair["labels"] = list(labels)
    if price_usd is not None:
        pair["priceUsd"] = price_usd
    if liquidity is not None:
        pair["liquidity"] = {"usd": liquidity, "base": 1_000_000.0, "quote": 150.0}
    if fdv is not None:
        pair["fdv"] = fdv
    if market_cap is not None:
        pair["marketCap"] = market_cap
    if created_at_ms is not None:
        pair["pairCreatedAt"] = created_at_ms
    return pair


@attrs.frozen
class Recorded:
    """One request the fake received."""

    kind: str  # "tokens_v1" | "latest_tokens" | "pairs" | "other"
    path: str
    chain: str | None
    addresses: tuple[str, ...]
    at: float  # event-loop time (what aiolimiter measures)
    clock_at: float | None  # the injected clock's time, when the fake has one
    status: int


@attrs.frozen
class Fault:
    """What to do instead of answering normally."""

    kind: str  # "status" | "truncated" | "disconnect" | "slow"
    status: int = 200
    headers: dict[str, str] = attrs.field(factory=dict)
    delay: float | None = None


class FakeDexScreener(LoopbackServer):
    """The fake server. Start with ``async with`` or :meth:`start`; then use :attr:`url`.

    Args:
        clock: when given, each request also records ``clock.time()``.
        host: interface to bind (loopback).
    """

    def __init__(self, *, clock: Clock | None = None, host: str = "127.0.0.1") -> None:
        super().__init__(host=host)
        self.clock = clock
        self.pairs: list[dict[str, Any]] = []
        self.requests: list[Recorded] = []
        self._faults: collections.deque[Fault] = collections.deque()
        self._release = asyncio.Event()
        self._arrivals = asyncio.Condition()

    # -- data -------------------------------------------------------------------------------

    def add_pair(self, pair: dict[str, Any]) -> dict[str, Any]:
        """Serve ``pair`` (a :func:`make_pair` dict or any real pair object)."""
        self.pairs.append(pair)
        return pair

    def add_token(self, address: str, **kwargs: Any) -> dict[str, Any]:
        """Serve one pair with ``address`` as base token (:func:`make_pair` keywords)."""
        return self.add_pair(make_pair(address, **kwargs))

    def clear(self) -> None:
        """Forget every pair (not the recorded requests)."""
        self.pairs.clear()

    # -- faults -----------------------------------------------------------------------------

    def fail_next(
        self,
        status: int = 429,
        *,
        times: int = 1,
        retry_after: float | str | None = None,
    ) -> None:
        """Answer the next ``times`` requests with ``status``.

        Args:
            status: the HTTP status.
            times: how many requests.
            retry_after: a Retry-After header: seconds (number) or an HTTP-date (string,
                see :func:`http_date`); none when ``None``.
        """
        headers: dict[str, str] = {}
        if retry_after is not None:
            headers["Retry-After"] = (
                retry_after if isinstance(retry_after, str) else f"{retry_after:g}"
            )
        self._faults.extend(Fault("status", status, headers) for _ in range(times))

    def truncate_next(self, *, times: int = 1) -> None:
        """Send the next responses' JSON cut in half (200, consistent Content-Length)."""
        self._faults.extend(Fault("truncated") for _ in range(times))

    def disconnect_next(self, *, times: int = 1) -> None:
        """Promise a full body, send half, then close the connection."""
        self._faults.extend(Fault("disconnect") for _ in range(times))

    def slow_next(self, *, times: int = 1, delay: float | None = None) -> None:
        """Hold the next responses until :meth:`release` (or ``delay`` seconds), then answer."""
        self._faults.extend(Fault("slow", delay=delay) for _ in range(times))

    def release(self) -> None:
        """Let every held (slow) response go."""
        self._release.set()

    def heal(self) -> None:
        """Drop every fault still queued: the next requests are answered normally."""
        self._faults.clear()

    # -- inspection -------------------------------------------------------------------------

    def requests_of(self, kind: str) -> list[Recorded]:
        """Recorded requests of one kind (``tokens_v1``, ``latest_tokens``, ``pairs``)."""
        return [r for r in self.requests if r.kind == kind]

    async def wait_for_requests(self, count: int) -> None:
        """Return once at least ``count`` requests have arrived (bound it with a timeout)."""
        async with self._arrivals:
            await self._arrivals.wait_for(lambda: len(self.requests) >= count)

    def max_in_window(self, window: float) -> int:
        """Most requests that arrived within any half-open ``window`` seconds (loop time)."""
        return most_within((r.at for r in self.requests), window)

    # -- lifecycle --------------------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        """The three DexScreener endpoints callsbot asks."""
        app.router.add_get("/latest/dex/tokens/{addresses}", self._latest_tokens)
        app.router.add_get("/tokens/v1/{chain}/{addresses}", self._tokens_v1)
        app.router.add_get("/latest/dex/pairs/{chain}/{addresses}", self._pairs)

    async def close(self) -> None:
        """Release held responses and stop the server."""
        self._release.set()
        await super().close()

    # -- handlers ---------------------------------------------------------------------------

    def _matching_tokens(self, chain: str | None, addresses: Sequence[str]) -> list[dict[str, Any]]:
        wanted = {_key(a) for a in addresses}
        return [
            p
            for p in self.pairs
            if (chain is None or p["chainId"] == chain)
            and (
                _key(p["baseToken"]["address"]) in wanted
                or _key(p["quoteToken"]["address"]) in wanted
            )
        ]

    async def _tokens_v1(self, request: web.Request) -> web.StreamResponse:
        chain = request.match_info["chain"]
        addresses = _split(request.match_info["addresses"])
        return await self._answer(
            request, "tokens_v1", chain, addresses, lambda: self._matching_tokens(chain, addresses)
        )

    async def _latest_tokens(self, request: web.Request) -> web.StreamResponse:
        addresses = _split(request.match_info["addresses"])

        def body() -> Any:
            found = self._matching_tokens(None, addresses)
            return {"schemaVersion": "1.0.0", "pairs": found or None}

        return await self._answer(request, "latest_tokens", None, addresses, body)

    async def _pairs(self, request: web.Request) -> web.StreamResponse:
        chain = request.match_info["chain"]
        addresses = _split(request.match_info["addresses"])

        def body() -> Any:
            wanted = {_key(a) for a in addresses}
            found = [
                p for p in self.pairs if p["chainId"] == chain and _key(p["pairAddress"]) in wanted
            ]
            return {
                "schemaVersion": "1.0.0",
                "pairs": found or None,
                "pair": found[0] if found else None,
            }

        return await self._answer(request, "pairs", chain, addresses, body)

    async def _answer(
        self,
        request: web.Request,
        kind: str,
        chain: str | None,
        addresses: Sequence[str],
        body: Any,
    ) -> web.StreamResponse:
        fault = self._faults.popleft() if self._faults else None
        status = fault.status if fault is not None and fault.kind == "status" else 200
        if len(addresses) > MAX_ADDRESSES and fault is None:
            status = 400
        self.requests.append(
            Recorded(
                kind=kind,
                path=request.path,
                chain=chain,
                addresses=tuple(addresses),
                at=asyncio.get_running_loop().time(),
                clock_at=self.clock.time() if self.clock is not None else None,
                status=status,
            )
        )
        async with self._arrivals:
            self._arrivals.notify_all()
        if fault is not None and fault.kind == "status":
            text = json.dumps({"error": f"HTTP {fault.status}"})
            return web.Response(
                status=fault.status,
                text=text,
                content_type="application/json",
                headers=dict(fault.headers),
            )
        if status == 400:
            return web.json_response({"error": "too many addresses"}, status=400)
        if fault is not None and fault.kind == "slow":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._release.wait(), fault.delay)
        payload = json.dumps(body()).encode()
        if fault is not None and fault.kind == "truncated":
            return web.Response(body=payload[: len(payload) // 2], content_type="application/json")
        if fault is not None and fault.kind == "disconnect":
            resp = web.StreamResponse(headers={"Content-Type": "application/json"})
            resp.content_length = len(payload)
            await resp.prepare(request)
            await resp.write(payload[: len(payload) // 2])
            if request.transport is not None:
                request.transport.close()
            return resp
        return web.Response(body=payload, content_type="application/json")


def _split(raw: str) -> list[str]:
    return [a for a in raw.split(",") if a]


@attrs.define
class ClockSleep:
    """An injectable ``sleep`` that moves a FakeClock instead of waiting.

    Records every requested delay in :attr:`calls` and yields to the loop once.
    """

    clock: FakeClock
    calls: list[float] = attrs.field(factory=list)

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        self.clock.advance(max(seconds, 0.0))
        await asyncio.sleep(0)

    @property
    def total(self) -> float:
        """Sum of all requested delays."""
        return sum(self.calls)
