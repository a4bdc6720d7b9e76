"""GeckoTerminal pool OHLCV: the price paths behind outcomes (api-formats.md section f).

One client, one limiter, one cool-down, and a typed answer: :class:`Candles` when the pool
answered for the mint, :class:`NoDataYet` otherwise (rate limited past the time budget, a range
older than the public API serves, no pool, the wrong token, a server or network failure, a
broken body). It never raises for any of those and never returns a number it is not sure of:
a row that is not a finite, positive candle is dropped (a gap), and a response priced for
another token is rejected whole.

Every request asks ``currency=usd&token=<mint>``, which prices the mint whichever side of the
pool it is on, and checks that ``meta.base.address`` is the mint. Rows come newest first, may
have gaps and may repeat the in-progress candle: :func:`~callsbot.models.candle_series` sorts
them and keeps the last of each timestamp.

The request itself lives in :meth:`GeckoTerminalClient._send` (one attempt, no policy) so it
can move onto the shared HTTP client when there is one; the policy (limiter, 429 cool-down,
retries, deadline) is :meth:`GeckoTerminalClient._get_json`.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import json
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import aiohttp
import attrs

from callsbot.clock import Clock
from callsbot.config import GeckoTerminalSettings
from callsbot.market.dexscreener import same_address
from callsbot.models import Candle, candle_series
from callsbot.net.retry import parse_retry_after

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]

#: Pins the response format (api-formats.md section f).
ACCEPT = "application/json;version=20230302"
#: The API's ceiling on ``limit``.
MAX_LIMIT = 1000


class Timeframe(enum.Enum):
    """The candle lengths outcomes use."""

    MINUTE = "1m"
    FIVE_MINUTES = "5m"

    @property
    def seconds(self) -> int:
        """Length of one candle."""
        return 60 if self is Timeframe.MINUTE else 300

    @property
    def aggregate(self) -> int:
        """GeckoTerminal's ``aggregate`` for the ``minute`` timeframe."""
        return 1 if self is Timeframe.MINUTE else 5


# --------------------------------------------------------------------------------------------
# Answers.


class NoDataReason(enum.Enum):
    """Why there is no price path (yet)."""

    #: 429s kept coming until the fetch's time budget ran out.
    RATE_LIMITED = "rate_limited"
    #: 401: the range is older than the public API serves (~180 days).
    TOO_OLD = "too_old"
    #: 404 for the pool, and no other pool of the mint was found.
    POOL_NOT_FOUND = "pool_not_found"
    #: ``meta.base.address`` is not the mint: these prices are another token's.
    WRONG_TOKEN = "wrong_token"
    #: 5xx, after the retries.
    SERVER_ERROR = "server_error"
    #: Timeouts or connection failures, after the retries.
    UNREACHABLE = "unreachable"
    #: Truncated, not JSON, or not shaped like an answer, after the retries.
    BAD_RESPONSE = "bad_response"
    #: Another 4xx (400 for bad parameters, 422 for pools of more than two tokens).
    HTTP_ERROR = "http_error"


#: Reasons that asking again later will not fix.
PERMANENT = frozenset({NoDataReason.TOO_OLD, NoDataReason.WRONG_TOKEN, NoDataReason.HTTP_ERROR})


@attrs.frozen
class NoDataYet:
    """No candles: why, and what was asked.

    Attributes:
        reason: the kind of failure.
        detail: one line for logs and the CLI.
        pool: the pool asked about (the last one, after a lookup).
        mint: the token asked about.
        status: the last HTTP status, when there was one.
    """

    reason: NoDataReason
    detail: str
    pool: str = ""
    mint: str = ""
    status: int | None = None

    @property
    def permanent(self) -> bool:
        """Whether asking again later cannot help (too old, wrong token, bad request)."""
        return self.reason in PERMANENT


@attrs.frozen
class Candles:
    """The pool's candles for the mint, sorted ascending, one per start, gaps kept.

    Attributes:
        pool: the pool that answered (another one than asked when ``looked_up``).
        mint: the token the prices are for (checked against ``meta.base.address``).
        timeframe: the candle length.
        candles: the candles.
        fetched_at: the client clock's time when the answer arrived.
        before: the ``before_timestamp`` asked for, ``None`` for "up to now".
        looked_up: the asked pool answered 404 and this pool was found by the pools lookup.
        skipped: rows dropped because they were not a finite, positive candle.
    """

    pool: str
    mint: str
    timeframe: Timeframe
    candles: tuple[Candle, ...]
    fetched_at: float
    before: int | None = None
    looked_up: bool = False
    skipped: int = 0

    @property
    def complete_until(self) -> float:
        """The time up to which these candles are complete (``as_of`` for the path maths)."""
        return self.fetched_at if self.before is None else min(self.before, self.fetched_at)


@attrs.frozen
class PoolInfo:
    """One pool of a token, from ``/networks/{network}/tokens/{mint}/pools``."""

    address: str
    dex: str
    base: str
    quote: str
    reserve_usd: float | None
    volume_h24: float | None


Result = Candles | NoDataYet


# --------------------------------------------------------------------------------------------
# Parsing.


class _Rejected(Exception):
    def __init__(self, reason: NoDataReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _finite(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        out = float(value)
    elif isinstance(value, str):
        try:
            out = float(value)
        except ValueError:
            return None
    else:
        return None
    return out if math.isfinite(out) else None


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def parse_row(row: Any) -> Candle | None:
    """``[ts, open, high, low, close, volume]`` as a Candle, ``None`` unless it is a sane one.

    Sane: six finite numbers, a whole timestamp, positive prices with ``low ≤ high``, a volume
    of at least 0.
    """
    if not isinstance(row, list | tuple) or len(row) != 6:
        return None
    values = [_finite(v) for v in row]
    if any(v is None for v in values):
        return None
    ts, o, h, low, c, v = (float(x) for x in values if x is not None)
    if ts != int(ts) or ts <= 0 or min(o, h, low, c) <= 0 or low > h or v < 0:
        return None
    return Candle(int(ts), o, h, low, c, v)


def parse_ohlcv(body: Any, mint: str) -> tuple[tuple[Candle, ...], int]:
    """The candles of an ``ohlcv_request_response`` for ``mint``, and how many rows were dropped.

    Raises:
        _Rejected: not shaped like an OHLCV answer, or ``meta.base.address`` is not ``mint``.
    """
    rows = _get(body, "data", "attributes", "ohlcv_list")
    if not isinstance(rows, list):
        raise _Rejected(NoDataReason.BAD_RESPONSE, "no data.attributes.ohlcv_list list")
    base = _get(body, "meta", "base", "address")
    if not isinstance(base, str):
        raise _Rejected(NoDataReason.BAD_RESPONSE, "no meta.base.address")
    if not same_address(base, mint):
        raise _Rejected(NoDataReason.WRONG_TOKEN, f"meta.base.address is {base}, not the mint")
    parsed = [parse_row(row) for row in rows]
    candles = [c for c in parsed if c is not None]
    return candle_series(candles), len(parsed) - len(candles)


def _token_address(relationship: Any) -> str:
    ident = _get(relationship, "data", "id")
    # JSON:API ids are "<network>_<address>".
    return ident.split("_", 1)[1] if isinstance(ident, str) and "_" in ident else ""


def parse_pools(body: Any) -> list[PoolInfo]:
    """The pools of a ``/tokens/{mint}/pools`` answer; entries without an address are skipped.

    Raises:
        _Rejected: no ``data`` list.
    """
    items = _get(body, "data")
    if not isinstance(items, list):
        raise _Rejected(NoDataReason.BAD_RESPONSE, "no data list in the pools answer")
    out: list[PoolInfo] = []
    for item in items:
        address = _get(item, "attributes", "address")
        if not isinstance(address, str) or not address:
            continue
        dex = _get(item, "relationships", "dex", "data", "id")
        out.append(
            PoolInfo(
                address=address,
                dex=dex if isinstance(dex, str) else "",
                base=_token_address(_get(item, "relationships", "base_token")),
                quote=_token_address(_get(item, "relationships", "quote_token")),
                reserve_usd=_finite(_get(item, "attributes", "reserve_in_usd")),
                volume_h24=_finite(_get(item, "attributes", "volume_usd", "h24")),
            )
        )
    return out


def best_pool(pools: list[PoolInfo], mint: str, *, exclude: str = "") -> PoolInfo | None:
    """The pool to follow ``mint`` on: the deepest (reserve, then 24 h volume) holding it."""
    candidates = [
        p
        for p in pools
        if p.address != exclude and mint in (p.base, p.quote, "")  # "": side not reported
    ]
    if not candidates:
        return None
    return max(candidates, key=lambda p: (p.reserve_usd or 0.0, p.volume_h24 or 0.0))


def rate_limit_body(body: Any) -> bool:
    """Whether ``body`` is a 429 in either shape: JSON:API ``errors`` or CoinGecko ``status``."""
    code = _get(body, "status", "error_code")
    if code is not None and str(code) == "429":
        return True
    errors = _get(body, "errors")
    if isinstance(errors, list):
        return any(str(_get(e, "status")) == "429" for e in errors)
    return False


# --------------------------------------------------------------------------------------------
# Rate limiting.


class SlidingWindowLimiter:
    """At most ``requests_per_minute`` in any 60 s and at most ``burst`` in any short window.

    The short window is ``60 · burst / requests_per_minute`` seconds (9 s for 20/min and 3), so
    bursts never exceed ``burst`` and the sustained rate never exceeds the budget, in *every*
    window, not on average. (A leaky bucket such as aiolimiter admits its capacity plus a full
    period's drain within one period, and measures the event loop's time, which a FakeClock
    cannot move; this one runs on the injected clock and sleep.)

    Waiters are served in arrival order.
    """

    def __init__(
        self,
        requests_per_minute: int,
        burst: int,
        *,
        clock: Clock,
        sleep: Sleep = asyncio.sleep,
        period: float = 60.0,
    ) -> None:
        if requests_per_minute < 1 or burst < 1:
            raise ValueError("requests_per_minute and burst must be >= 1")
        self.limit = requests_per_minute
        self.burst = min(burst, requests_per_minute)
        self.period = period
        self.burst_period = period * self.burst / requests_per_minute
        self._clock = clock
        self._sleep = sleep
        self._times: collections.deque[float] = collections.deque()
        self._lock = asyncio.Lock()

    def wait_time(self) -> float:
        """Seconds until the next request may go (0 when it may go now)."""
        now = self._clock.time()
        while self._times and self._times[0] <= now - self.period:
            self._times.popleft()
        wait = 0.0
        if len(self._times) >= self.limit:
            wait = self._times[-self.limit] + self.period - now
        if len(self._times) >= self.burst:
            wait = max(wait, self._times[-self.burst] + self.burst_period - now)
        return max(wait, 0.0)

    async def acquire(self) -> None:
        """Wait (with the injected sleep) until a request may go, and count it."""
        async with self._lock:
            while (wait := self.wait_time()) > 0:
                await self._sleep(wait)
            self._times.append(self._clock.time())


# --------------------------------------------------------------------------------------------
# The client.


@attrs.frozen
class _Reply:
    status: int
    headers: Mapping[str, str]  # names lower-cased
    body: bytes


class _TransportError(Exception):
    def __init__(self, reason: NoDataReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@attrs.frozen
class _Failure:
    reason: NoDataReason
    detail: str
    status: int | None
    retry: bool


class GeckoTerminalClient:
    """Pool OHLCV and pool lookups over one session, one limiter and one 429 cool-down.

    Args:
        settings: the ``[geckoterminal]`` section.
        clock: "now" for cool-downs, deadlines and the limiter.
        sleep: how to wait (tests pass one that moves a FakeClock).
        session: a session to use; the client creates (then owns and closes) one when ``None``.
        limiter: share one limiter between clients; built from the settings when ``None``.
    """

    def __init__(
        self,
        settings: GeckoTerminalSettings,
        *,
        clock: Clock,
        sleep: Sleep = asyncio.sleep,
        session: aiohttp.ClientSession | None = None,
        limiter: SlidingWindowLimiter | None = None,
    ) -> None:
        self.settings = settings
        self._base = settings.url.rstrip("/")
        self._network = quote(settings.network, safe="")
        self._clock = clock
        self._sleep = sleep
        self._session = session
        self._owns_session = session is None
        if limiter is None:
            limiter = SlidingWindowLimiter(
                settings.requests_per_minute, settings.burst, clock=clock, sleep=sleep
            )
        self.limiter = limiter
        self._timeout = aiohttp.ClientTimeout(total=settings.timeout_seconds)
        self._cooldown_until = 0.0
        self._cooldown_step = settings.cooldown_seconds
        # One request in flight at a time: at 20/min requests are seconds apart anyway, and so
        # the limiter's times are the send times and no wait overlaps a request.
        self._in_flight = asyncio.Lock()
        self._closed = False

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the session if this client created it. Idempotent."""
        self._closed = True
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def cooldown_remaining(self) -> float:
        """Seconds until the shared 429 cool-down ends (0 when none)."""
        return max(self._cooldown_until - self._clock.time(), 0.0)

    # -- endpoints --------------------------------------------------------------------------

    async def fetch_candles(
        self,
        pool: str,
        mint: str,
        timeframe: Timeframe,
        *,
        limit: int,
        before: int | None = None,
    ) -> Result:
        """The pool's candles for ``mint``; on a 404, the mint's best other pool's.

        This is what the tracker calls: at most one OHLCV request, plus one pools lookup and one
        more OHLCV request when the pool is gone (a pump.fun graduation moves a token to a new
        pool). :attr:`Candles.pool` names the pool that answered.

        Args:
            pool: the pool address (the market snapshot's pair).
            mint: the token to price (``token=<mint>``; checked against ``meta.base``).
            timeframe: 1-minute or 5-minute candles.
            limit: how many candles (1..1000), newest back from ``before``.
            before: ``before_timestamp`` (unix s); ``None`` for up to now.
        """
        first = await self.ohlcv(pool, mint, timeframe, limit=limit, before=before)
        if not (isinstance(first, NoDataYet) and first.reason is NoDataReason.POOL_NOT_FOUND):
            return first
        found = await self.pools(mint)
        if isinstance(found, NoDataYet):
            return attrs.evolve(
                found, pool=pool, detail=f"pool {pool} answered 404; lookup: {found.detail}"
            )
        other = best_pool(found, mint, exclude=pool)
        if other is None:
            return attrs.evolve(first, detail=f"pool {pool} answered 404 and {mint} has no other")
        log.info("geckoterminal: pool %s is gone; following %s on %s", pool, mint, other.address)
        second = await self.ohlcv(other.address, mint, timeframe, limit=limit, before=before)
        return attrs.evolve(second, looked_up=True) if isinstance(second, Candles) else second

    async def ohlcv(
        self,
        pool: str,
        mint: str,
        timeframe: Timeframe,
        *,
        limit: int,
        before: int | None = None,
    ) -> Result:
        """One pool's candles for ``mint`` (no lookup: a 404 is ``POOL_NOT_FOUND``)."""
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be 1..{MAX_LIMIT}, got {limit}")
        path = f"/networks/{self._network}/pools/{quote(pool, safe='')}/ohlcv/minute"
        params = {
            "aggregate": str(timeframe.aggregate),
            "limit": str(limit),
            "currency": "usd",
            "token": mint,
        }
        if before is not None:
            params["before_timestamp"] = str(int(before))
        answer = await self._get_json(path, params)
        if isinstance(answer, _Failure):
            return NoDataYet(answer.reason, answer.detail, pool, mint, answer.status)
        try:
            candles, skipped = parse_ohlcv(answer, mint)
        except _Rejected as exc:
            log.warning("geckoterminal: %s for %s on pool %s", exc.detail, mint, pool)
            return NoDataYet(exc.reason, exc.detail, pool, mint, 200)
        if skipped:
            log.warning("geckoterminal: dropped %d malformed row(s) of pool %s", skipped, pool)
        return Candles(
            pool=pool,
            mint=mint,
            timeframe=timeframe,
            candles=candles,
            fetched_at=self._clock.time(),
            before=before,
            skipped=skipped,
        )

    async def pools(self, mint: str) -> list[PoolInfo] | NoDataYet:
        """The pools of ``mint`` (first page: the deepest ones)."""
        path = f"/networks/{self._network}/tokens/{quote(mint, safe='')}/pools"
        answer = await self._get_json(path, {"page": "1"})
        if isinstance(answer, _Failure):
            return NoDataYet(answer.reason, answer.detail, "", mint, answer.status)
        try:
            return parse_pools(answer)
        except _Rejected as exc:
            return NoDataYet(exc.reason, exc.detail, "", mint, 200)

    # -- policy -----------------------------------------------------------------------------

    async def _get_json(self, path: str, params: dict[str, str]) -> Any | _Failure:
        """GET with the limiter, the shared 429 cool-down and bounded retries.

        Returns the decoded body of a 200, or the failure that ended it: at once for a 401,
        404 or other 4xx; after ``max_attempts`` for 5xx, timeouts, connection errors and
        broken bodies; when a wait would end past ``retry_deadline_seconds``.
        """
        deadline = self._clock.time() + self.settings.retry_deadline_seconds
        failures = 0
        while True:
            async with self._in_flight:
                outcome = await self._attempt_when_allowed(path, params, deadline)
            if not isinstance(outcome, _Failure):
                self._cooldown_step = self.settings.cooldown_seconds
                return outcome
            if outcome.reason is NoDataReason.RATE_LIMITED and outcome.retry:
                continue  # the next turn waits the cool-down out, or gives up at the deadline
            if not outcome.retry:
                return outcome
            failures += 1
            wait = self.settings.retry_wait_seconds * 2 ** (failures - 1)
            if failures >= self.settings.max_attempts or self._clock.time() + wait > deadline:
                return outcome
            await self._sleep(wait)

    async def _attempt_when_allowed(
        self, path: str, params: dict[str, str], deadline: float
    ) -> Any | _Failure:
        """Wait out the cool-down and the limiter, then send once (under ``_in_flight``)."""
        while (remaining := self._cooldown_until - self._clock.time()) > 0:
            if self._cooldown_until > deadline:
                return _Failure(
                    NoDataReason.RATE_LIMITED,
                    f"rate limited: cooling down {remaining:.0f}s, past the time budget",
                    429,
                    retry=False,
                )
            await self._sleep(remaining)
        await self.limiter.acquire()
        return await self._attempt(path, params)

    async def _attempt(self, path: str, params: dict[str, str]) -> Any | _Failure:
        try:
            reply = await self._send(path, params)
        except _TransportError as exc:
            log.warning("geckoterminal: %s on %s", exc.detail, path)
            return _Failure(exc.reason, exc.detail, None, retry=True)
        body: Any = None
        decoded = True
        try:
            body = json.loads(reply.body)
        except (ValueError, UnicodeDecodeError):
            decoded = False
        if reply.status == 429 or (decoded and rate_limit_body(body)):
            wait = self._start_cooldown(reply.headers.get("retry-after"))
            log.warning("geckoterminal: 429 on %s; every request pauses %.0fs", path, wait)
            return _Failure(NoDataReason.RATE_LIMITED, "rate limited (429)", 429, retry=True)
        if reply.status == 200:
            if not decoded or not isinstance(body, dict):
                what = "not JSON" if not decoded else f"a JSON {type(body).__name__}"
                log.warning("geckoterminal: body of %s is %s", path, what)
                return _Failure(NoDataReason.BAD_RESPONSE, f"body is {what}", 200, retry=True)
            return body
        return self._http_failure(reply.status, body, path)

    def _http_failure(self, status: int, body: Any, path: str) -> _Failure:
        said = ""
        errors = _get(body, "errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            title = errors[0].get("title") or errors[0].get("detail")
            said = f": {title}" if isinstance(title, str) else ""
        if status == 401:
            reason, retry = NoDataReason.TOO_OLD, False
            detail = f"HTTP 401 (beyond what the public API serves, ~180 days){said}"
        elif status == 404:
            reason, retry, detail = NoDataReason.POOL_NOT_FOUND, False, f"HTTP 404{said}"
        elif status >= 500:
            reason, retry, detail = NoDataReason.SERVER_ERROR, True, f"HTTP {status}"
        else:
            reason, retry, detail = NoDataReason.HTTP_ERROR, False, f"HTTP {status}{said}"
        log.warning("geckoterminal: %s on %s", detail, path)
        return _Failure(reason, detail, status, retry)

    def _start_cooldown(self, retry_after_header: str | None) -> float:
        """Pause every request: 15 s, doubling per 429 in a row up to the cap.

        A Retry-After longer than the step is honoured up to the cap; ``0`` (which the API
        sends with real 429s) is no advice at all.
        """
        now = self._clock.time()
        cap = self.settings.max_cooldown_seconds
        step = min(self._cooldown_step, cap)
        self._cooldown_step = min(step * 2, cap)
        retry_after = parse_retry_after(retry_after_header, now)
        wait = step if not retry_after else max(step, min(retry_after, cap))
        self._cooldown_until = max(self._cooldown_until, now + wait)
        return self._cooldown_until - now

    # -- transport --------------------------------------------------------------------------

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("GeckoTerminalClient is closed")
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers={"Accept": ACCEPT, "User-Agent": "callsbot"}
            )
        return self._session

    async def _send(self, path: str, params: dict[str, str]) -> _Reply:
        """One GET, no policy: the status, headers and raw body, or a transport error."""
        session = self._ensure_session()
        try:
            async with session.get(
                self._base + path,
                params=params,
                headers={"Accept": ACCEPT},
                timeout=self._timeout,
            ) as resp:
                headers = {k.lower(): v for k, v in resp.headers.items()}
                return _Reply(resp.status, headers, await resp.read())
        except TimeoutError:
            raise _TransportError(
                NoDataReason.UNREACHABLE, f"no answer within {self._timeout.total:g}s"
            ) from None
        except aiohttp.ClientPayloadError as exc:
            raise _TransportError(NoDataReason.BAD_RESPONSE, f"broken body: {exc}") from None
        except aiohttp.ClientError as exc:
            raise _TransportError(NoDataReason.UNREACHABLE, f"connection failed: {exc}") from None
