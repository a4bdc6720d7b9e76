"""DexScreener HTTP client: one shared session, rate limited, bounded jittered retries.

The client only talks HTTP and parses pairs; batching across callers, caching and the quality
gate live in :mod:`callsbot.market.gate`. Every failure it cannot recover from is raised as a
subclass of :class:`~callsbot.market.models.MarketUnavailable`, so callers can tell "could not
ask right now" apart from "the API said there is nothing".
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import quote

import aiohttp
import attrs
from aiolimiter import AsyncLimiter

from callsbot.clock import Clock
from callsbot.config import DexScreenerSettings
from callsbot.errors import MarketUnavailable
from callsbot.metrics import Metrics
from callsbot.net.http import CooldownPolicy, ErrorMap, JsonClient, Outcome
from callsbot.net.retry import Attempt, RetryPolicy, Sleep, retry_call
from callsbot.tasks import Closing

log = logging.getLogger(__name__)

#: Ceiling of one exponential retry wait (the 429 cooldown is separate and may be longer).
_MAX_RETRY_WAIT = 8.0


# --------------------------------------------------------------------------------------------
# Errors. All are MarketUnavailable: the answer is "unknown now", never "no such token".


class DexScreenerError(MarketUnavailable):
    """A DexScreener request failed; the caller should ask again later."""


class RateLimited(DexScreenerError):
    """HTTP 429.

    Attributes:
        retry_after: the server's Retry-After in seconds, ``None`` when it sent none.
    """

    def __init__(self, retry_after: float | None) -> None:
        hint = "no Retry-After" if retry_after is None else f"Retry-After {retry_after:g}s"
        super().__init__(f"rate limited (429, {hint})")
        self.retry_after = retry_after


class CoolingDown(DexScreenerError):
    """A previous 429 cooldown outlasts this lookup's time budget; no request was sent."""

    def __init__(self, remaining: float) -> None:
        super().__init__(f"cooling down after 429 for another {remaining:.1f}s")
        self.remaining = remaining


class ServerError(DexScreenerError):
    """HTTP 5xx."""

    def __init__(self, status: int) -> None:
        super().__init__(f"server error (HTTP {status})")
        self.status = status


class HttpError(DexScreenerError):
    """Another non-200 status (not retried: asking again would get the same answer)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"unexpected HTTP {status}")
        self.status = status


class RequestTimeout(DexScreenerError):
    """No complete response within ``timeout_seconds``."""


class ConnectionFailed(DexScreenerError):
    """Could not connect, or the connection broke."""


class BadResponse(DexScreenerError):
    """The body was truncated, not JSON, or not shaped like a DexScreener answer."""


#: Failures worth another attempt. HttpError (4xx) and CoolingDown are final.
RETRYABLE: tuple[type[DexScreenerError], ...] = (
    RateLimited,
    ServerError,
    RequestTimeout,
    ConnectionFailed,
    BadResponse,
)


# --------------------------------------------------------------------------------------------
# Addresses.


def is_evm_address(address: str) -> bool:
    """Whether ``address`` looks like an EVM (hex, ``0x``-prefixed) address."""
    return address[:2].lower() == "0x"


def address_key(address: str) -> str:
    """The form used to compare addresses: EVM lower-cased, everything else exact.

    Solana addresses are base58 and case matters; EVM hex addresses are case-insensitive
    (mixed case is only a checksum).
    """
    return address.lower() if is_evm_address(address) else address


def same_address(a: str, b: str) -> bool:
    """Whether two addresses name the same account (see :func:`address_key`)."""
    return address_key(a) == address_key(b)


# --------------------------------------------------------------------------------------------
# Parsed pairs.


@attrs.frozen
class TokenRef:
    """One side of a pair."""

    address: str
    name: str
    symbol: str


@attrs.frozen
class Pair:
    """One DexScreener pair (pool), numbers parsed, absent values ``None``.

    ``price_usd`` and ``price_native`` are the *base* token's price (in USD, in quote units).
    """

    chain: str
    dex: str
    pair_address: str
    base: TokenRef
    quote: TokenRef
    price_usd: float | None
    price_native: float | None
    liquidity_usd: float | None
    volume_h24: float | None
    volume_h1: float | None
    market_cap: float | None
    fdv: float | None
    pair_created_at: float | None  # unix seconds
    price_change_h1: float | None
    price_change_h24: float | None
    buys_h24: int | None
    sells_h24: int | None
    url: str = ""


def _num(value: Any) -> float | None:
    """A finite float from a JSON number or numeric string, else ``None``."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        out = float(value)
    elif isinstance(value, str):
        try:
            out = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return out if math.isfinite(out) else None


def _int(value: Any) -> int | None:
    out = _num(value)
    return int(out) if out is not None else None


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _token_ref(obj: Any) -> TokenRef | None:
    address = _get(obj, "address")
    if not isinstance(address, str) or not address:
        return None
    name = _get(obj, "name")
    symbol = _get(obj, "symbol")
    return TokenRef(
        address=address,
        name=name if isinstance(name, str) else "",
        symbol=symbol if isinstance(symbol, str) else "",
    )


def parse_pair(obj: Any) -> Pair | None:
    """Parse one pair object; ``None`` when it lacks a chain, pair address or token address."""
    chain = _get(obj, "chainId")
    pair_address = _get(obj, "pairAddress")
    base = _token_ref(_get(obj, "baseToken"))
    quote_ = _token_ref(_get(obj, "quoteToken"))
    if not isinstance(chain, str) or not isinstance(pair_address, str) or base is None:
        return None
    if quote_ is None:
        quote_ = TokenRef("", "", "")
    created_ms = _num(_get(obj, "pairCreatedAt"))
    dex = _get(obj, "dexId")
    url = _get(obj, "url")
    return Pair(
        chain=chain.lower(),
        dex=dex if isinstance(dex, str) else "",
        pair_address=pair_address,
        base=base,
        quote=quote_,
        price_usd=_num(_get(obj, "priceUsd")),
        price_native=_num(_get(obj, "priceNative")),
        liquidity_usd=_num(_get(obj, "liquidity", "usd")),
        volume_h24=_num(_get(obj, "volume", "h24")),
        volume_h1=_num(_get(obj, "volume", "h1")),
        market_cap=_num(_get(obj, "marketCap")),
        fdv=_num(_get(obj, "fdv")),
        pair_created_at=created_ms / 1000.0 if created_ms is not None else None,
        price_change_h1=_num(_get(obj, "priceChange", "h1")),
        price_change_h24=_num(_get(obj, "priceChange", "h24")),
        buys_h24=_int(_get(obj, "txns", "h24", "buys")),
        sells_h24=_int(_get(obj, "txns", "h24", "sells")),
        url=url if isinstance(url, str) else "",
    )


def parse_pairs(body: Any) -> list[Pair]:
    """Pairs from any of the response shapes DexScreener uses.

    Accepts the bare array of ``/tokens/v1`` and the ``{"pairs": [...] | null, "pair": {...} |
    null}`` envelope of ``/latest/dex/...``. Malformed pair objects are skipped.

    Raises:
        BadResponse: ``body`` is neither shape.
    """
    items: list[Any]
    if isinstance(body, list):
        items = body
    elif isinstance(body, dict) and ("pairs" in body or "pair" in body):
        raw_pairs = body.get("pairs")
        if raw_pairs is None:
            items = []
        elif isinstance(raw_pairs, list):
            items = list(raw_pairs)
        else:
            raise BadResponse(f"'pairs' is a {type(raw_pairs).__name__}, not a list")
        single = body.get("pair")
        if isinstance(single, dict):
            items.append(single)
    else:
        raise BadResponse(f"unexpected body shape: {type(body).__name__}")
    out: list[Pair] = []
    seen: set[tuple[str, str]] = set()
    skipped = 0
    for item in items:
        pair = parse_pair(item)
        if pair is None:
            skipped += 1
            continue
        ident = (pair.chain, address_key(pair.pair_address))
        if ident not in seen:
            seen.add(ident)
            out.append(pair)
    if skipped:
        log.debug("dexscreener: skipped %d malformed pair object(s)", skipped)
    return out


# --------------------------------------------------------------------------------------------
# Rate limiting.


def build_limiter(requests_per_minute: int, *, period: float = 60.0) -> AsyncLimiter:
    """A leaky bucket that never lets more than ``requests_per_minute`` through per ``period``.

    A bucket of capacity ``b`` draining ``r`` per second admits up to ``b + r * period``
    requests in a window of ``period`` seconds; a plain ``AsyncLimiter(rpm, 60)`` therefore
    allows almost ``2 * rpm``. Here ``b`` is a tenth of the budget (a small burst) and ``r`` is
    set so that ``b + r * period = rpm - 1``: the one request of slack absorbs network jitter
    between our clock and the server's.

    Args:
        requests_per_minute: the budget per ``period``.
        period: the window in seconds (60; tests shrink it).
    """
    rpm = requests_per_minute
    if rpm < 3:
        return AsyncLimiter(1, period / (rpm - 0.5))
    burst = max(rpm // 10, 1)
    return AsyncLimiter(burst, period * burst / (rpm - 1 - burst))


# --------------------------------------------------------------------------------------------
# The client.


def _quote_all(parts: Iterable[str]) -> str:
    return ",".join(quote(p, safe="") for p in parts)


def _describe(path: str) -> str:
    """``/tokens/v1/solana (30 addresses)``: log lines stay short however long the batch."""
    head, _, tail = path.rpartition("/")
    count = len([p for p in tail.split(",") if p])
    return f"{head} ({count} address{'es' if count != 1 else ''})"


def _chunks(items: Sequence[str], size: int) -> list[Sequence[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def retry_policy(settings: DexScreenerSettings) -> RetryPolicy:
    """Retries of one DexScreener lookup: exponential waits from ``retry_wait_seconds`` (capped
    at 8 s) plus up to ``retry_wait_seconds`` of jitter, ``max_attempts`` attempts, and no retry
    that could not start within ``retry_deadline_seconds``."""
    return RetryPolicy(
        attempts=settings.max_attempts,
        deadline=settings.retry_deadline_seconds,
        wait_initial=settings.retry_wait_seconds,
        wait_max=_MAX_RETRY_WAIT,
        wait_jitter=settings.retry_wait_seconds,
    )


#: How the HTTP client names each failure in this module's vocabulary.
_ERRORS = ErrorMap(
    timeout=RequestTimeout,
    connection=ConnectionFailed,
    bad_body=BadResponse,
    rate_limited=RateLimited,
    cooling_down=CoolingDown,
    server_error=lambda response: ServerError(response.status),
    status=lambda response: HttpError(response.status),
)


class DexScreenerClient(Closing):
    """Async DexScreener client over one :class:`~callsbot.net.http.JsonClient`.

    Every HTTP attempt waits out the shared 429 cooldown and passes the rate limiter first.
    Retryable failures (:data:`RETRYABLE`) are retried per :func:`retry_policy`: at most
    ``max_attempts`` times and within ``retry_deadline_seconds`` (cooldown waits included).

    Args:
        settings: the ``[dexscreener]`` section.
        session: a session to use; the client creates (and then owns and closes) one lazily
            when ``None``.
        metrics: ``market_requests{outcome}`` is counted per HTTP attempt.
        clock: source of "now" for cooldowns and the retry deadline.
        sleep: how to wait (retry waits and cooldowns); tests pass one that moves a FakeClock.
        limiter: the rate limiter; :func:`build_limiter` of the settings when ``None``.
        retry: the retry policy; :func:`retry_policy` of the settings when ``None``.
    """

    def __init__(
        self,
        settings: DexScreenerSettings,
        *,
        session: aiohttp.ClientSession | None = None,
        metrics: Metrics,
        clock: Clock,
        sleep: Sleep = asyncio.sleep,
        limiter: AsyncLimiter | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.settings = settings
        self._metrics = metrics
        self._clock = clock
        self._sleep = sleep
        self._retry = retry if retry is not None else retry_policy(settings)
        self.limiter = (
            limiter if limiter is not None else build_limiter(settings.requests_per_minute)
        )
        self._http = JsonClient(
            base_url=settings.url,
            name="dexscreener",
            timeout=settings.timeout_seconds,
            clock=clock,
            sleep=sleep,
            session=session,
            headers={"Accept": "application/json", "User-Agent": "callsbot"},
            limiter=self.limiter,
            cooldown=CooldownPolicy(
                default_seconds=settings.backoff_seconds,
                max_seconds=settings.max_cooldown_seconds,
            ),
            errors=_ERRORS,
            on_outcome=self._count,
        )

    # -- lifecycle ------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the session if this client created it. Idempotent."""
        await self._http.aclose()

    @property
    def http(self) -> JsonClient:
        """The underlying HTTP client (its session, cooldown and limiter)."""
        return self._http

    @property
    def cooldown_until(self) -> float:
        """Clock time at which the shared 429 cooldown ends (in the past when none)."""
        return self._http.cooldown_until

    @property
    def cooldown_remaining(self) -> float:
        """Seconds until the shared 429 cooldown ends (0 when none)."""
        return self._http.cooldown_remaining

    # -- endpoints --------------------------------------------------------------------------

    async def token_pairs(self, chain: str, addresses: Sequence[str]) -> list[Pair]:
        """Pairs of ``addresses`` on ``chain`` via ``/tokens/v1/{chain}/{a,b,...}``.

        More than ``batch_size`` addresses are split into several requests. Unknown tokens are
        simply absent from the result.

        Raises:
            DexScreenerError: could not get an answer now.
        """
        return await self._gather(f"/tokens/v1/{quote(chain, safe='')}/", addresses)

    async def tokens_any_chain(self, addresses: Sequence[str]) -> list[Pair]:
        """Pairs of ``addresses`` on every chain via ``/latest/dex/tokens/{a,b,...}``.

        Raises:
            DexScreenerError: could not get an answer now.
        """
        return await self._gather("/latest/dex/tokens/", addresses)

    async def pairs(self, chain: str, pair_addresses: Sequence[str]) -> list[Pair]:
        """The pairs named by ``pair_addresses`` via ``/latest/dex/pairs/{chain}/{a,...}``.

        Raises:
            DexScreenerError: could not get an answer now.
        """
        return await self._gather(f"/latest/dex/pairs/{quote(chain, safe='')}/", pair_addresses)

    async def _gather(self, prefix: str, addresses: Sequence[str]) -> list[Pair]:
        unique = list(dict.fromkeys(a for a in addresses if a))
        if not unique:
            return []
        batches = _chunks(unique, self.settings.batch_size)
        bodies = await asyncio.gather(*(self.get_json(prefix + _quote_all(b)) for b in batches))
        return [pair for body in bodies for pair in parse_pairs(body)]

    # -- HTTP -------------------------------------------------------------------------------

    async def get_json(self, path: str) -> Any:
        """GET ``path`` (relative to the base URL) with limits and retries; the decoded JSON.

        Raises:
            DexScreenerError: the last failure once attempts or time ran out, or at once for a
                non-retryable one.
        """
        what = _describe(path)

        async def attempt(state: Attempt) -> Any:
            return await self._http.get_json(path, deadline=state.deadline, what=what)

        try:
            return await retry_call(
                attempt,
                on=RETRYABLE,
                policy=self._retry,
                clock=self._clock,
                sleep=self._sleep,
                wait_hint=self._http.cooldown_hint,
                name="dexscreener",
            )
        except CoolingDown:
            raise  # counted as outcome="cooldown"; a line per lookup would flood a long pause
        except DexScreenerError as exc:
            log.warning("dexscreener: %s failed: %s", what, exc)
            raise

    def _count(self, outcome: Outcome) -> None:
        self._metrics.market_requests.labels(outcome=outcome).inc()
