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

Requests go through the shared :class:`~callsbot.net.http.JsonClient` (session, timeout,
error mapping) and :func:`~callsbot.net.retry.retry_call` (attempts, deadline, backoff on the
injected clock). What is GeckoTerminal's own stays here: the limiter (20 in any minute, 3 in
any 9 s), the cool-down that doubles from 15 s to 120 s, 429s announced in a 200's body, and
one request in flight at a time.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import logging
import math
from typing import Any
from urllib.parse import quote

import aiohttp
import attrs

from callsbot.clock import Clock
from callsbot.config import GeckoTerminalSettings
from callsbot.errors import MarketUnavailable
from callsbot.market.dexscreener import same_address
from callsbot.models import Candle, candle_series
from callsbot.net.http import ErrorMap, JsonClient, Response
from callsbot.net.retry import Attempt, RetryPolicy, Sleep, retry_call
from callsbot.tasks import Closing

log = logging.getLogger(__name__)


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


class GeckoTerminalError(MarketUnavailable):
    """A request, or what it answered, gave no usable candles (the client turns it into
    :class:`NoDataYet`; it never reaches callers).

    Attributes:
        reason: the kind of failure.
        detail: one line.
        status: the HTTP status, when there was one.
    """

    def __init__(self, reason: NoDataReason, detail: str, status: int | None = None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.status = status


class TransientError(GeckoTerminalError):
    """5xx, timeouts, connection failures, broken bodies: worth another attempt."""


class RateLimited(GeckoTerminalError):
    """A 429 (status or body); every request pauses before the next attempt."""

    def __init__(self, retry_after: float | None = None, status: int = 429) -> None:
        super().__init__(NoDataReason.RATE_LIMITED, "rate limited (429)", status)
        self.retry_after = retry_after


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
        GeckoTerminalError: not shaped like an OHLCV answer, or ``meta.base.address`` is not
            ``mint``.
    """
    rows = _get(body, "data", "attributes", "ohlcv_list")
    if not isinstance(rows, list):
        raise GeckoTerminalError(NoDataReason.BAD_RESPONSE, "no data.attributes.ohlcv_list list")
    base = _get(body, "meta", "base", "address")
    if not isinstance(base, str):
        raise GeckoTerminalError(NoDataReason.BAD_RESPONSE, "no meta.base.address")
    if not same_address(base, mint):
        raise GeckoTerminalError(
            NoDataReason.WRONG_TOKEN, f"meta.base.address is {base}, not the mint"
        )
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
        GeckoTerminalError: no ``data`` list.
    """
    items = _get(body, "data")
    if not isinstance(items, list):
        raise GeckoTerminalError(NoDataReason.BAD_RESPONSE, "no data list in the pools answer")
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


def retry_policy(settings: GeckoTerminalSettings) -> RetryPolicy:
    """One fetch's retries: ``max_attempts`` attempts (429s included) within
    ``retry_deadline_seconds``; after a 429 the wait is the cool-down, after another transient
    failure ``retry_wait_seconds`` doubling."""
    return RetryPolicy(
        attempts=settings.max_attempts,
        deadline=settings.retry_deadline_seconds,
        wait_initial=settings.retry_wait_seconds,
        wait_max=settings.max_cooldown_seconds,
    )


def _error_title(response: Response) -> str:
    """``": <title>"`` of a JSON:API error body, else empty."""
    try:
        errors = response.json().get("errors")
    except (ValueError, AttributeError):
        return ""
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        title = errors[0].get("title") or errors[0].get("detail")
        return f": {title}" if isinstance(title, str) else ""
    return ""


def _status_error(response: Response) -> GeckoTerminalError:
    status, said = response.status, _error_title(response)
    if status == 401:
        detail = f"HTTP 401 (beyond what the public API serves, ~180 days){said}"
        return GeckoTerminalError(NoDataReason.TOO_OLD, detail, status)
    if status == 404:
        return GeckoTerminalError(NoDataReason.POOL_NOT_FOUND, f"HTTP 404{said}", status)
    return GeckoTerminalError(NoDataReason.HTTP_ERROR, f"HTTP {status}{said}", status)


#: How the shared HTTP client names each failure here.
_ERRORS = ErrorMap(
    timeout=lambda message: TransientError(NoDataReason.UNREACHABLE, message),
    connection=lambda message: TransientError(NoDataReason.UNREACHABLE, message),
    bad_body=lambda message: TransientError(NoDataReason.BAD_RESPONSE, message, 200),
    rate_limited=RateLimited,
    cooling_down=lambda remaining: GeckoTerminalError(
        NoDataReason.RATE_LIMITED, f"cooling down {remaining:.0f}s, past the time budget", 429
    ),
    server_error=lambda r: TransientError(NoDataReason.SERVER_ERROR, f"HTTP {r.status}", r.status),
    status=_status_error,
)


class GeckoTerminalClient(Closing):
    """Pool OHLCV and pool lookups over the shared :class:`~callsbot.net.http.JsonClient`.

    Every attempt, one at a time, waits out the 429 cool-down and takes a limiter slot; retries
    follow :func:`retry_policy` through :func:`~callsbot.net.retry.retry_call`.

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
        self._network = quote(settings.network, safe="")
        self._clock = clock
        self._sleep = sleep
        self._retry = retry_policy(settings)
        if limiter is None:
            limiter = SlidingWindowLimiter(
                settings.requests_per_minute, settings.burst, clock=clock, sleep=sleep
            )
        self.limiter = limiter
        # The limiter and the doubling cool-down are this module's: the shared client's are a
        # leaky bucket on loop time and a fixed pause.
        self._http = JsonClient(
            base_url=settings.url,
            name="geckoterminal",
            timeout=settings.timeout_seconds,
            clock=clock,
            sleep=sleep,
            session=session,
            headers={"Accept": ACCEPT, "User-Agent": "callsbot"},
            errors=_ERRORS,
        )
        self._cooldown_until = 0.0
        self._cooldown_step = settings.cooldown_seconds
        # One request in flight at a time: at 20/min requests are seconds apart anyway, and so
        # the limiter's times are the send times and no wait overlaps a request.
        self._in_flight = asyncio.Lock()

    async def aclose(self) -> None:
        """Close the session if this client created it. Idempotent."""
        await self._http.aclose()

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
        try:
            body = await self.get_json(path, params)
            candles, skipped = parse_ohlcv(body, mint)
        except GeckoTerminalError as exc:
            return NoDataYet(exc.reason, exc.detail, pool, mint, exc.status)
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
        try:
            return parse_pools(await self.get_json(path, {"page": "1"}))
        except GeckoTerminalError as exc:
            return NoDataYet(exc.reason, exc.detail, "", mint, exc.status)

    # -- policy -----------------------------------------------------------------------------

    async def get_json(self, path: str, params: dict[str, str]) -> Any:
        """GET ``path`` with the cool-down, the limiter and :func:`retry_policy`.

        Raises:
            GeckoTerminalError: the failure that ended it: at once for a 401, 404 or other
                4xx; once attempts or time ran out for 429s, 5xx, timeouts, connection errors
                and broken bodies.
        """

        async def attempt(state: Attempt) -> Any:
            async with self._in_flight:
                return await self._attempt(path, params, state.deadline)

        try:
            return await retry_call(
                attempt,
                on=(RateLimited, TransientError),
                policy=self._retry,
                clock=self._clock,
                sleep=self._sleep,
                wait_hint=self._cooldown_hint,
                name="geckoterminal",
            )
        except GeckoTerminalError as exc:
            log.warning("geckoterminal: %s failed: %s", path, exc.detail)
            raise

    def _cooldown_hint(self, exc: BaseException) -> float | None:
        """After a 429 the next attempt waits the cool-down out (and the deadline sees it)."""
        remaining = self.cooldown_remaining
        return remaining if remaining > 0 else None

    async def _attempt(self, path: str, params: dict[str, str], deadline: float | None) -> Any:
        while (remaining := self.cooldown_remaining) > 0:
            # Another fetch drew a 429 while this one waited for its turn.
            if deadline is not None and self._clock.time() + remaining > deadline:
                raise _ERRORS.cooling_down(remaining)
            await self._sleep(remaining)
        await self.limiter.acquire()
        try:
            body = await self._http.get_json(path, params=params, what=path)
        except RateLimited as exc:
            self._start_cooldown(exc.retry_after, path)
            raise
        if rate_limit_body(body):
            self._start_cooldown(None, path)
            raise RateLimited(status=200)
        if not isinstance(body, dict):
            raise GeckoTerminalError(NoDataReason.BAD_RESPONSE, "body is not a JSON object", 200)
        self._cooldown_step = self.settings.cooldown_seconds
        return body

    def _start_cooldown(self, retry_after: float | None, path: str) -> None:
        """Pause every request: 15 s, doubling per 429 in a row up to the cap.

        A Retry-After longer than the step is honoured up to the cap; ``0`` (which the API
        sends with real 429s) is no advice at all.
        """
        now = self._clock.time()
        cap = self.settings.max_cooldown_seconds
        step = min(self._cooldown_step, cap)
        self._cooldown_step = min(step * 2, cap)
        wait = step if not retry_after else max(step, min(retry_after, cap))
        self._cooldown_until = max(self._cooldown_until, now + wait)
        log.warning("geckoterminal: 429 on %s; every request pauses %.0fs", path, wait)
