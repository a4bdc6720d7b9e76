"""A local GeckoTerminal: an aiohttp.web server that speaks the real OHLCV and pools schemas.

Reusable by tests, the bench and the demo::

    async with FakeGeckoTerminal(clock=clock) as gecko:
        gecko.add_pool(POOL, base=MINT, candles=one_minute_candles)
        gecko.rate_limit_next(times=3, shape="coingecko", retry_after="0")
        settings = GeckoTerminalSettings(url=gecko.url)

Serves ``/networks/{network}/pools/{pool}/ohlcv/{timeframe}`` (``ohlcv_request_response`` with
``meta.base``/``meta.quote``, rows newest first) and ``/networks/{network}/tokens/{mint}/pools``
(a JSON:API list). Candles are stored per pool and per token as 1-minute candles;
``aggregate=5`` and ``15`` are built from them, ``token=<address>`` / ``base`` / ``quote``
picks the side (and flips ``meta`` the way the real API does), ``before_timestamp`` and
``limit`` page, and with a clock no candle that starts after "now" is served.

On demand: oldest-first or shuffled rows, a duplicated in-progress candle, a pool that ignores
``token=`` (prices the base whatever is asked), a retired pool (404, gone from the lookup),
429 storms in both body shapes with or without ``retry-after``, 401 for ranges older than
``max_age_days``, any status, and broken bodies (truncated, not JSON, wrong shape, cut
mid-body). Every request is recorded with the injected clock's time, so tests can check the
client's rate.
"""

from __future__ import annotations

import asyncio
import collections
import json
import random
import time
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
from aiohttp import web

from callsbot.clock import Clock
from callsbot.models import Candle, candle_series
from callsbot.testing.loopback import LoopbackServer, most_within

WSOL = "So11111111111111111111111111111111111111112"
#: Beyond this many days back the public API answers 401.
MAX_AGE_DAYS = 180
ALLOWED_AGGREGATES = {"minute": (1, 5, 15), "hour": (1, 4, 12), "day": (1,)}
RATE_LIMIT_BODIES: dict[str, Any] = {
    "coingecko": {
        "status": {
            "error_code": 429,
            "error_message": "You've exceeded the Rate Limit. Please visit "
            "https://www.coingecko.com/en/api/pricing to subscribe to our API plans for "
            "higher rate limits.",
        }
    },
    "jsonapi": {"errors": [{"status": "429", "title": "Too Many Requests"}]},
}


def error_body(status: int, title: str, detail: str | None = None) -> dict[str, Any]:
    """A JSON:API error body, the shape GeckoTerminal uses for 4xx."""
    error: dict[str, Any] = {"status": str(status), "title": title}
    if detail is not None:
        error["detail"] = detail
    return {"errors": [error]}


def _token_meta(address: str, symbol: str) -> dict[str, Any]:
    return {"address": address, "name": symbol, "symbol": symbol, "coingecko_coin_id": None}


def ohlcv_body(
    rows: Iterable[Candle], *, base: str, quote: str, base_symbol: str = "TOKEN"
) -> dict[str, Any]:
    """An ``ohlcv_request_response`` body with ``rows`` in the order given."""
    return {
        "data": {
            "id": "bc786b99-7205-4c80-aaa1-b9634d97c926",
            "type": "ohlcv_request_response",
            "attributes": {
                "ohlcv_list": [[c.ts, c.open, c.high, c.low, c.close, c.volume] for c in rows]
            },
        },
        "meta": {
            "base": _token_meta(base, base_symbol),
            "quote": _token_meta(quote, "SOL" if quote == WSOL else "QUOTE"),
        },
    }


def aggregate(candles: Iterable[Candle], seconds: int) -> tuple[Candle, ...]:
    """``seconds``-long candles from shorter ones (open first, high max, low min, close last)."""
    groups: dict[int, list[Candle]] = collections.defaultdict(list)
    for c in candle_series(candles):
        groups[c.ts // seconds * seconds].append(c)
    return tuple(
        Candle(
            start,
            group[0].open,
            max(c.high for c in group),
            min(c.low for c in group),
            group[-1].close,
            sum(c.volume for c in group),
        )
        for start, group in sorted(groups.items())
    )


@attrs.define
class FakePool:
    """One pool the fake serves.

    Attributes:
        address: the pool address.
        base: the base token's address.
        quote: the quote token's address.
        candles: 1-minute candles per token address, priced in USD for that token.
        five_minute: recorded 5-minute candles per token address, served for ``aggregate=5``
            where no 1-minute candle of theirs is held (recordings keep 5-minute candles only
            where 1-minute ones are not needed).
        dex: the dex id (``pumpswap``, ``raydium``...).
        reserve_usd: liquidity, for the pools lookup.
        volume_h24: 24 h volume, for the pools lookup.
        ignore_token: price the base token whatever ``token=`` asks (a misbehaving API).
        retired: answer 404 and leave the lookup (a pool abandoned after a graduation).
    """

    address: str
    base: str
    quote: str
    candles: dict[str, tuple[Candle, ...]] = attrs.field(factory=dict)
    five_minute: dict[str, tuple[Candle, ...]] = attrs.field(factory=dict)
    dex: str = "pumpswap"
    reserve_usd: float = 50_000.0
    volume_h24: float = 120_000.0
    ignore_token: bool = False
    retired: bool = False


@attrs.frozen
class Recorded:
    """One request the fake received."""

    kind: str  # "ohlcv" | "pools" | "other"
    path: str
    params: tuple[tuple[str, str], ...]
    pool: str | None
    token: str | None
    at: float  # event-loop time
    clock_at: float  # the injected clock's time (wall time without one)
    status: int

    def param(self, name: str) -> str | None:
        """The query parameter ``name``, if sent."""
        return dict(self.params).get(name)


@attrs.frozen
class Fault:
    """What to answer instead of the data, once."""

    kind: str  # "status" | "rate_limit" | "truncated" | "not_json" | "wrong_shape" | "disconnect"
    status: int = 200
    body: Any = None
    headers: Mapping[str, str] = attrs.field(factory=dict)


class FakeGeckoTerminal(LoopbackServer):
    """The fake server. Start with ``async with`` or :meth:`start`; then use :attr:`url`.

    Args:
        clock: "now" for hiding future candles, the 401 horizon and the request log.
        host: interface to bind (loopback).
        network: the only network id served.
        max_age_days: ranges ending further back than this answer 401.
    """

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        host: str = "127.0.0.1",
        network: str = "solana",
        max_age_days: float = MAX_AGE_DAYS,
    ) -> None:
        super().__init__(host=host, path="/api/v2")
        self.clock = clock
        self.network = network
        self.max_age_days = max_age_days
        self.pools: dict[str, FakePool] = {}
        self.requests: list[Recorded] = []
        #: ``newest_first`` (the real API), ``oldest_first`` or ``shuffled``.
        self.order = "newest_first"
        #: Serve the newest row twice: an earlier snapshot of it first, then the real one.
        self.duplicate_in_progress = False
        self._faults: collections.deque[Fault] = collections.deque()
        self._shuffle = random.Random(0)

    # -- data -------------------------------------------------------------------------------

    def add_pool(
        self,
        address: str,
        *,
        base: str,
        quote: str = WSOL,
        candles: Iterable[Candle] = (),
        quote_candles: Iterable[Candle] = (),
        five_minute_candles: Iterable[Candle] = (),
        **kwargs: Any,
    ) -> FakePool:
        """Serve a pool; ``candles`` price ``base``, ``quote_candles`` price ``quote`` (1-min);
        ``five_minute_candles`` are recorded 5-minute candles of ``base``.

        A quote-side pool of a mint is ``add_pool(pool, base=OTHER, quote=MINT,
        quote_candles=...)``: only ``token=<mint>`` (or ``quote``) gets the mint's prices.
        """
        pool = FakePool(address, base, quote, **kwargs)
        pool.candles[base] = candle_series(candles)
        pool.candles[quote] = candle_series(quote_candles)
        pool.five_minute[base] = candle_series(five_minute_candles)
        self.pools[address] = pool
        return pool

    def retire_pool(self, address: str) -> None:
        """From now on the pool answers 404 and the lookup no longer lists it."""
        self.pools[address].retired = True

    # -- faults -----------------------------------------------------------------------------

    def rate_limit_next(
        self, *, times: int = 1, shape: str = "coingecko", retry_after: str | None = None
    ) -> None:
        """Answer the next ``times`` requests 429 with a ``coingecko`` or ``jsonapi`` body."""
        headers = {"retry-after": retry_after} if retry_after is not None else {}
        body = RATE_LIMIT_BODIES[shape]
        self._faults.extend(Fault("rate_limit", 429, body, headers) for _ in range(times))

    def fail_next(self, status: int = 500, *, times: int = 1, body: Any = None) -> None:
        """Answer the next ``times`` requests with ``status`` (a JSON:API error body)."""
        body = body if body is not None else error_body(status, f"HTTP {status}")
        self._faults.extend(Fault("status", status, body) for _ in range(times))

    def break_next(self, kind: str = "truncated", *, times: int = 1) -> None:
        """Send a broken 200: ``truncated``, ``not_json``, ``wrong_shape`` or ``disconnect``."""
        if kind not in ("truncated", "not_json", "wrong_shape", "disconnect"):
            raise ValueError(f"unknown broken body {kind!r}")
        self._faults.extend(Fault(kind) for _ in range(times))

    # -- inspection -------------------------------------------------------------------------

    def requests_of(self, kind: str) -> list[Recorded]:
        """Recorded requests of one kind (``ohlcv``, ``pools``)."""
        return [r for r in self.requests if r.kind == kind]

    def max_in_window(self, window: float) -> int:
        """Most requests whose clock times fall in any half-open ``window`` seconds."""
        return most_within((r.clock_at for r in self.requests), window)

    # -- lifecycle --------------------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        """OHLCV, the token's pools, and a 404 for anything else (as the real API answers)."""
        app.router.add_get("/api/v2/networks/{network}/pools/{pool}/ohlcv/{timeframe}", self._ohlcv)
        app.router.add_get("/api/v2/networks/{network}/tokens/{mint}/pools", self._pools)
        app.router.add_get("/{tail:.*}", self._other)

    # -- handlers ---------------------------------------------------------------------------

    def _now(self) -> float:
        return self.clock.time() if self.clock is not None else time.time()

    def _record(
        self, request: web.Request, kind: str, pool: str | None, token: str | None, status: int
    ) -> None:
        self.requests.append(
            Recorded(
                kind=kind,
                path=request.path,
                params=tuple(request.query.items()),
                pool=pool,
                token=token,
                at=asyncio.get_running_loop().time(),
                clock_at=self._now(),
                status=status,
            )
        )

    async def _other(self, request: web.Request) -> web.StreamResponse:
        self._record(request, "other", None, None, 404)
        return web.json_response(error_body(404, "Not Found"), status=404)

    async def _pools(self, request: web.Request) -> web.StreamResponse:
        mint = request.match_info["mint"]
        fault = self._faults.popleft() if self._faults else None
        known = request.match_info["network"] == self.network
        status = fault.status if fault is not None else (200 if known else 404)
        self._record(request, "pools", None, mint, status)
        if fault is not None:
            return await self._fault(request, fault)
        if not known:
            return web.json_response(error_body(404, "Not Found"), status=404)
        found = [p for p in self.pools.values() if not p.retired and mint in (p.base, p.quote)]
        found.sort(key=lambda p: -p.reserve_usd)
        net = self.network
        data = [
            {
                "id": f"{net}_{p.address}",
                "type": "pool",
                "attributes": {
                    "address": p.address,
                    "name": f"{p.base[:4]} / {p.quote[:4]}",
                    "reserve_in_usd": f"{p.reserve_usd:.4f}",
                    "volume_usd": {"m5": "0.0", "h1": "0.0", "h24": f"{p.volume_h24:.4f}"},
                },
                "relationships": {
                    "base_token": {"data": {"id": f"{net}_{p.base}", "type": "token"}},
                    "quote_token": {"data": {"id": f"{net}_{p.quote}", "type": "token"}},
                    "dex": {"data": {"id": p.dex, "type": "dex"}},
                },
            }
            for p in found
        ]
        return web.json_response({"data": data})

    async def _ohlcv(self, request: web.Request) -> web.StreamResponse:
        pool_address = request.match_info["pool"]
        query = request.query
        token_param = query.get("token")
        fault = self._faults.popleft() if self._faults else None
        status, payload = (fault.status, None) if fault is not None else self._answer(request)
        self._record(request, "ohlcv", pool_address, token_param, status)
        if fault is not None:
            return await self._fault(request, fault)
        assert payload is not None
        if status != 200:
            return web.json_response(payload, status=status)
        return web.json_response(payload)

    def _answer(self, request: web.Request) -> tuple[int, Any]:
        """(status, body) of an OHLCV request without faults."""
        pool = self.pools.get(request.match_info["pool"])
        if request.match_info["network"] != self.network or pool is None or pool.retired:
            return 404, error_body(404, "Not Found")
        timeframe = request.match_info["timeframe"]
        query = request.query
        try:
            agg = int(query.get("aggregate", "1"))
            limit = int(query.get("limit", "100"))
            before = int(query["before_timestamp"]) if "before_timestamp" in query else None
        except ValueError:
            return 400, error_body(400, "Invalid parameter")
        allowed = ALLOWED_AGGREGATES.get(timeframe)
        if allowed is None or agg not in allowed:
            values = ", ".join(map(str, allowed or ()))
            return 400, error_body(400, f"Invalid aggregate. Allowed values: {values}")
        if not 1 <= limit <= 1000:
            return 400, error_body(400, "Invalid limit. Allowed values: 1..1000")
        now = self._now()
        end = before if before is not None else now
        if end < now - self.max_age_days * 86_400:
            return 401, error_body(
                401, "Unauthorized", f"Historical data older than {self.max_age_days:g} days"
            )
        token = query.get("token", "base")
        side = {"base": pool.base, "quote": pool.quote}.get(token, token)
        if pool.ignore_token:
            side = pool.base
        if side not in (pool.base, pool.quote):
            return 400, error_body(400, "Invalid token: not in this pool")
        other = pool.quote if side == pool.base else pool.base
        seconds = {"minute": 60, "hour": 3600, "day": 86_400}[timeframe] * agg
        visible = [c for c in pool.candles.get(side, ()) if c.ts <= now]
        built = aggregate(visible, seconds)
        recorded = pool.five_minute.get(side, ()) if seconds == 300 else ()
        if recorded:
            held = {c.ts for c in built}
            extra = [c for c in recorded if c.ts <= now and c.ts not in held]
            built = candle_series([*extra, *built])
        rows = [c for c in built if before is None or c.ts < before]
        rows = rows[-limit:]
        return 200, ohlcv_body(self._ordered(rows), base=side, quote=other)

    def _ordered(self, rows: list[Candle]) -> list[Candle]:
        if self.order == "oldest_first":
            out = list(rows)
        elif self.order == "shuffled":
            out = list(rows)
            self._shuffle.shuffle(out)
        else:
            out = list(reversed(rows))
        if self.duplicate_in_progress and rows:
            # The in-progress candle twice: an earlier snapshot of it, then (later in the list
            # whatever the order) the real one.
            newest = rows[-1]
            snapshot = attrs.evolve(
                newest, high=newest.open, low=newest.open, close=newest.open, volume=0.0
            )
            out.insert(out.index(newest), snapshot)
        return out

    async def _fault(self, request: web.Request, fault: Fault) -> web.StreamResponse:
        if fault.kind in ("status", "rate_limit"):
            return web.json_response(fault.body, status=fault.status, headers=dict(fault.headers))
        if fault.kind == "not_json":
            return web.Response(text="<html>502 Bad Gateway</html>", content_type="text/html")
        if fault.kind == "wrong_shape":
            return web.json_response({"data": None, "meta": None})
        payload = json.dumps(ohlcv_body([], base=WSOL, quote=WSOL) | {"pad": "x" * 64}).encode()
        if fault.kind == "truncated":
            return web.Response(body=payload[: len(payload) // 2], content_type="application/json")
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.content_length = len(payload)
        await resp.prepare(request)
        await resp.write(payload[: len(payload) // 2])
        if request.transport is not None:
            request.transport.close()
        return resp
