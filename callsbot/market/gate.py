"""The market quality gate and :class:`MarketValidator`, the :class:`MarketData` implementation.

``MarketValidator`` turns many small, concurrent questions ("is this token tradeable?") into few
DexScreener requests:

- cache: verdicts are kept ``positive_ttl_seconds`` (valid) or ``negative_ttl_seconds`` (no pairs,
  low liquidity, low volume); "unknown now" is never kept;
- in-flight sharing: a token already being asked about is not asked about again, the callers
  share one future;
- coalescing: tokens asked for in the same event-loop tick, or while all request slots are busy,
  go out together in batches of up to ``batch_size``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Generic, TypeVar

import aiohttp
import attrs

from callsbot.clock import Clock
from callsbot.config import DexScreenerSettings, MarketSettings, Settings
from callsbot.errors import MarketUnavailable
from callsbot.events import EventHub, VerdictMade
from callsbot.market.dexscreener import (
    DexScreenerClient,
    Pair,
    address_key,
    same_address,
)
from callsbot.metrics import Metrics
from callsbot.models import MarketSnapshot, Reason, Status, Verdict
from callsbot.net.retry import Sleep

log = logging.getLogger(__name__)

R = TypeVar("R")
V = TypeVar("V")

#: Cache entries kept before expired ones are swept (and, past that, the oldest dropped).
_CACHE_MAX = 50_000
#: What an address can look like on any chain DexScreener serves (Sui's ``0x2::sui::SUI``
#: included): printable ASCII without URL or list syntax. Anything else never joins a batch,
#: where it would fail the request (or be split by the server) for every token in it.
_ASKABLE = re.compile(r"[A-Za-z0-9:_.\-]{1,128}")
NOT_AN_ADDRESS = "not an address"


# --------------------------------------------------------------------------------------------
# Picking the pair and judging it (pure functions).


def best_pair(token: str, chain: str, pairs: Sequence[Pair]) -> Pair | None:
    """The most liquid pair of ``token`` on ``chain``, matched by address, never by symbol.

    Pairs on other chains are ignored. Missing liquidity counts as 0. On a tie a pair where the
    token is the base token wins (its numbers are the token's own), then the higher volume.
    """
    chain = chain.lower()
    candidates = [
        p
        for p in pairs
        if p.chain == chain
        and (same_address(p.base.address, token) or same_address(p.quote.address, token))
    ]
    if not candidates:
        return None
    return max(
        candidates,
        key=lambda p: (
            p.liquidity_usd or 0.0,
            same_address(p.base.address, token),
            p.volume_h24 or 0.0,
        ),
    )


def snapshot_of(token: str, chain: str, pairs: Sequence[Pair]) -> MarketSnapshot | None:
    """A :class:`MarketSnapshot` of ``token`` from its best pair; ``None`` when it has none.

    When the token is the pair's *quote* token, DexScreener's price, market cap, FDV and price
    change describe the base token; the USD price is then derived as ``priceUsd / priceNative``
    and the other base-token numbers are left out. Liquidity, volume and trade counts belong to
    the pair and are kept.
    """
    pair = best_pair(token, chain, pairs)
    if pair is None:
        return None
    if same_address(pair.base.address, token):
        return MarketSnapshot(
            chain=pair.chain,
            token=pair.base.address,
            pair_address=pair.pair_address,
            dex=pair.dex,
            name=pair.base.name,
            symbol=pair.base.symbol,
            price_usd=pair.price_usd,
            liquidity_usd=pair.liquidity_usd,
            volume_h24=pair.volume_h24,
            volume_h1=pair.volume_h1,
            market_cap=pair.market_cap,
            fdv=pair.fdv,
            pair_created_at=pair.pair_created_at,
            price_change_h1=pair.price_change_h1,
            price_change_h24=pair.price_change_h24,
            buys_h24=pair.buys_h24,
            sells_h24=pair.sells_h24,
        )
    price: float | None = None
    if pair.price_usd and pair.price_native:
        price = pair.price_usd / pair.price_native
    return MarketSnapshot(
        chain=pair.chain,
        token=pair.quote.address,
        pair_address=pair.pair_address,
        dex=pair.dex,
        name=pair.quote.name,
        symbol=pair.quote.symbol,
        price_usd=price,
        liquidity_usd=pair.liquidity_usd,
        volume_h24=pair.volume_h24,
        volume_h1=pair.volume_h1,
        market_cap=None,
        fdv=None,
        pair_created_at=pair.pair_created_at,
        price_change_h1=None,
        price_change_h24=None,
        buys_h24=pair.buys_h24,
        sells_h24=pair.sells_h24,
        side="quote",
    )


def usd(value: float | None) -> str:
    """``$12,345`` (whole dollars), or ``n/a``."""
    return "n/a" if value is None else f"${value:,.0f}"


def judge(
    token: str, snapshot: MarketSnapshot | None, settings: MarketSettings, *, chain: str
) -> Verdict:
    """Apply the quality gate to one token's snapshot.

    Args:
        token: the address asked about.
        snapshot: its best pair, ``None`` when DexScreener knows no pair on ``chain``.
        settings: the ``[market]`` thresholds.
        chain: the chain asked about (for the detail text).
    """
    if snapshot is None:
        return Verdict(token, Status.INVALID, Reason.NO_PAIRS, None, f"no pairs on {chain}")
    liquidity = snapshot.liquidity_usd or 0.0
    if liquidity < settings.min_liquidity_usd:
        detail = f"liquidity {usd(snapshot.liquidity_usd)} < {usd(settings.min_liquidity_usd)}"
        return Verdict(token, Status.INVALID, Reason.LOW_LIQUIDITY, snapshot, detail)
    volume = snapshot.volume_h24 or 0.0
    if volume < settings.min_volume_h24_usd:
        detail = f"24h volume {usd(snapshot.volume_h24)} < {usd(settings.min_volume_h24_usd)}"
        return Verdict(token, Status.INVALID, Reason.LOW_VOLUME, snapshot, detail)
    detail = f"liquidity {usd(snapshot.liquidity_usd)}, 24h volume {usd(snapshot.volume_h24)}"
    return Verdict(token, Status.VALID, Reason.OK, snapshot, detail)


def unknown(token: str, why: str) -> Verdict:
    """The "ask again later" verdict."""
    return Verdict(token, Status.UNKNOWN, Reason.UNKNOWN_NOW, None, why)


# --------------------------------------------------------------------------------------------
# Cache and batcher.


class TtlCache(Generic[V]):
    """A dict with per-entry expiry on an injected clock, bounded in size."""

    def __init__(self, clock: Clock, *, max_entries: int = _CACHE_MAX) -> None:
        self._clock = clock
        self._max = max_entries
        self._data: dict[tuple[str, str], tuple[float, V]] = {}

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: tuple[str, str]) -> V | None:
        """The live value for ``key``, or ``None`` (expired entries are dropped)."""
        entry = self._data.get(key)
        if entry is None:
            return None
        if entry[0] <= self._clock.time():
            del self._data[key]
            return None
        return entry[1]

    def put(self, key: tuple[str, str], value: V, ttl: float) -> None:
        """Keep ``value`` for ``ttl`` seconds (not at all when ``ttl <= 0``)."""
        if ttl <= 0:
            return
        self._data.pop(key, None)
        self._data[key] = (self._clock.time() + ttl, value)
        if len(self._data) > self._max:
            self._sweep()

    def clear(self) -> None:
        """Forget everything."""
        self._data.clear()

    def _sweep(self) -> None:
        now = self._clock.time()
        self._data = {k: e for k, e in self._data.items() if e[0] > now}
        while len(self._data) > self._max:
            del self._data[next(iter(self._data))]  # oldest insertion first


Fetch = Callable[[str, Sequence[str]], Awaitable[Mapping[str, R]]]


class Batcher(Generic[R]):
    """Coalesces concurrent lookups of ``(chain, key)`` into batched fetches.

    A key already pending or in flight returns the existing future. A single flusher task
    takes up to ``batch_size`` keys of one chain per request slot; it yields once to the event
    loop before taking, so everything submitted in the same tick joins, and while all
    ``concurrency`` slots are busy keys keep accumulating into the next, fuller batch.

    Args:
        fetch: ``fetch(chain, keys)`` returns a value for every key, or raises.
        batch_size: most keys per fetch.
        concurrency: most fetches in flight.
        fallback: when given, a failed fetch resolves each future with
            ``fallback(key, exc)`` instead of the exception.
    """

    def __init__(
        self,
        fetch: Fetch[R],
        *,
        batch_size: int,
        concurrency: int,
        fallback: Callable[[str, BaseException], R] | None = None,
    ) -> None:
        self._fetch = fetch
        self._batch_size = batch_size
        self._slots = asyncio.Semaphore(concurrency)
        self._fallback = fallback
        self._pending: dict[str, list[str]] = {}
        self._inflight: dict[tuple[str, str], asyncio.Future[R]] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self.fetches = 0

    def submit(self, chain: str, key: str) -> tuple[asyncio.Future[R], bool]:
        """The future for ``(chain, key)`` and whether this call created it."""
        fut = self._inflight.get((chain, key))
        if fut is not None:
            return fut, False
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        if self._closed:
            self._settle_failed(fut, key, MarketUnavailable("market data closed"))
            return fut, True
        self._inflight[(chain, key)] = fut
        self._pending.setdefault(chain, []).append(key)
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush())
        return fut, True

    async def _flush(self) -> None:
        try:
            while self._pending:
                await self._slots.acquire()
                try:
                    # One yield: callers woken in this same tick get into this batch.
                    await asyncio.sleep(0)
                    chain, keys = self._take()
                except BaseException:
                    self._slots.release()
                    raise
                task = asyncio.get_running_loop().create_task(self._run(chain, keys))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        finally:
            self._flusher = None

    def _take(self) -> tuple[str, list[str]]:
        chain = next(iter(self._pending))
        queue = self._pending[chain]
        keys, rest = queue[: self._batch_size], queue[self._batch_size :]
        if rest:
            self._pending[chain] = rest
        else:
            del self._pending[chain]
        return chain, keys

    async def _run(self, chain: str, keys: list[str]) -> None:
        try:
            self.fetches += 1
            results = await self._fetch(chain, keys)
        except asyncio.CancelledError as exc:
            self._fail(chain, keys, exc)
            raise
        except Exception as exc:
            if not isinstance(exc, MarketUnavailable):
                log.exception("market: lookup of %d key(s) on %s crashed", len(keys), chain)
            self._fail(chain, keys, exc)
        else:
            for key in keys:
                fut = self._inflight.pop((chain, key), None)
                if fut is None or fut.done():
                    continue
                if key in results:
                    fut.set_result(results[key])
                else:
                    self._settle_failed(fut, key, MarketUnavailable(f"no answer for {key}"))
        finally:
            self._slots.release()

    def _fail(self, chain: str, keys: list[str], exc: BaseException) -> None:
        for key in keys:
            fut = self._inflight.pop((chain, key), None)
            if fut is not None and not fut.done():
                self._settle_failed(fut, key, exc)

    def _settle_failed(self, fut: asyncio.Future[R], key: str, exc: BaseException) -> None:
        if self._fallback is not None:
            fut.set_result(self._fallback(key, exc))
            return
        if isinstance(exc, asyncio.CancelledError):
            fut.cancel()
            return
        fut.set_exception(exc)
        # Waiters that were cancelled never read it; asyncio would log it as "never retrieved".
        fut.exception()

    async def aclose(self) -> None:
        """Cancel the flusher and every fetch in flight (their futures fail), refuse new keys."""
        self._closed = True
        tasks = list(self._tasks)
        if self._flusher is not None:
            tasks.append(self._flusher)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for (_chain, key), fut in list(self._inflight.items()):
            if not fut.done():
                self._settle_failed(fut, key, MarketUnavailable("market data closed"))
        self._inflight.clear()
        self._pending.clear()


# --------------------------------------------------------------------------------------------
# The validator.


def _for_caller(verdict: Verdict, token: str) -> Verdict:
    return verdict if verdict.token == token else attrs.evolve(verdict, token=token)


class MarketValidator:
    """Batched, cached, rate-limited market verdicts: the :class:`MarketData` implementation.

    Args:
        client: the DexScreener client (rate limiting, cooldown and retries live there).
        settings: the ``[market]`` gate thresholds.
        cache_settings: the ``[dexscreener]`` section (TTLs, batch size, concurrency).
        clock: source of "now" for cache expiry.
        metrics: ``market_cache{result}`` counts ``hit``, ``miss`` and ``shared`` (joined a
            lookup already in flight).
        events: where a :class:`~callsbot.events.VerdictMade` goes for every verdict fetched
            (not for cache hits: the history keeps what was observed, when).
    """

    def __init__(
        self,
        client: DexScreenerClient,
        settings: MarketSettings,
        cache_settings: DexScreenerSettings,
        *,
        clock: Clock,
        metrics: Metrics,
        events: EventHub | None = None,
    ) -> None:
        self._client = client
        self._events = events
        self._settings = settings
        self._cache_settings = cache_settings
        self._clock = clock
        self._metrics = metrics
        self._verdicts: TtlCache[Verdict] = TtlCache(clock)
        self._pairs: TtlCache[tuple[str | None]] = TtlCache(clock)
        self._token_batcher: Batcher[Verdict] = Batcher(
            self._fetch_verdicts,
            batch_size=cache_settings.batch_size,
            concurrency=cache_settings.max_concurrency,
            fallback=lambda key, exc: unknown(key, _why(exc)),
        )
        self._pair_batcher: Batcher[str | None] = Batcher(
            self._fetch_pair_bases,
            batch_size=cache_settings.batch_size,
            concurrency=cache_settings.max_concurrency,
        )
        self._chains: TtlCache[tuple[str | None]] = TtlCache(clock)
        self._chain_batcher: Batcher[str | None] = Batcher(
            self._fetch_chains,
            batch_size=cache_settings.batch_size,
            concurrency=cache_settings.max_concurrency,
        )

    @property
    def requests_started(self) -> int:
        """Batched lookups started so far (token and pair lookups)."""
        return (
            self._token_batcher.fetches + self._pair_batcher.fetches + self._chain_batcher.fetches
        )

    def _cache_metric(self, result: str) -> None:
        self._metrics.market_cache.labels(result=result).inc()

    async def verdicts(
        self, tokens: Sequence[str], *, chain: str = "solana"
    ) -> Mapping[str, Verdict]:
        """A verdict for every distinct token in ``tokens``, keyed as given.

        Never raises for market trouble: tokens that could not be checked now get
        ``Status.UNKNOWN`` / ``Reason.UNKNOWN_NOW``, which is not cached.
        """
        chain = chain.lower()
        cached, waiting = await self._lookup(self._verdicts, self._token_batcher, chain, tokens)
        out = {token: _for_caller(v, token) for token, v in cached.items()}
        for token, fut in waiting.items():
            out[token] = _for_caller(fut.result(), token)
        refused = Verdict("", Status.INVALID, Reason.NO_PAIRS, None, NOT_AN_ADDRESS)
        return {
            token: out.get(token) or _for_caller(refused, token) for token in dict.fromkeys(tokens)
        }

    async def _lookup(
        self, cache: TtlCache[V], batcher: Batcher[R], chain: str, items: Sequence[str]
    ) -> tuple[dict[str, V], dict[str, asyncio.Future[R]]]:
        """Split ``items`` into cache hits and settled batched lookups (joined or started)."""
        cached: dict[str, V] = {}
        waiting: dict[str, asyncio.Future[R]] = {}
        for item in dict.fromkeys(items):
            if _ASKABLE.fullmatch(item) is None:
                self._cache_metric("refused")
                log.warning("market: %s is %s; not asked about", ascii(item[:80]), NOT_AN_ADDRESS)
                continue
            key = address_key(item)
            hit = cache.get((chain, key))
            if hit is not None:
                self._cache_metric("hit")
                cached[item] = hit
                continue
            fut, created = batcher.submit(chain, key)
            self._cache_metric("miss" if created else "shared")
            waiting[item] = fut
        if waiting:
            # wait() rather than gather(): a cancelled caller must not cancel shared futures.
            await asyncio.wait(set(waiting.values()))
        return cached, waiting

    def _ttl(self, ok: bool) -> float:
        s = self._cache_settings
        return s.positive_ttl_seconds if ok else s.negative_ttl_seconds

    async def verdict(self, token: str, *, chain: str = "solana") -> Verdict:
        """The verdict for one token (see :meth:`verdicts`)."""
        return (await self.verdicts([token], chain=chain))[token]

    async def _fetch_verdicts(self, chain: str, keys: Sequence[str]) -> Mapping[str, Verdict]:
        pairs = await self._client.token_pairs(chain, keys)
        out: dict[str, Verdict] = {}
        for key in keys:
            verdict = judge(key, snapshot_of(key, chain, pairs), self._settings, chain=chain)
            self._verdicts.put((chain, key), verdict, self._ttl(verdict.valid))
            out[key] = verdict
            if self._events is not None:
                self._events.publish(
                    VerdictMade(at=self._clock.time(), chain=chain, verdict=verdict)
                )
        return out

    async def resolve_pairs(
        self, pairs: Sequence[str], *, chain: str = "solana"
    ) -> Mapping[str, str | None]:
        """Base token of each pair address; ``None`` when DexScreener knows no such pair.

        Raises:
            MarketUnavailable: could not ask right now (the caller retries later).
        """
        chain = chain.lower()
        cached, waiting = await self._lookup(self._pairs, self._pair_batcher, chain, pairs)
        out: dict[str, str | None] = {pair: hit[0] for pair, hit in cached.items()}
        for pair, fut in waiting.items():
            exc = fut.exception()
            if exc is not None:
                raise MarketUnavailable(_why(exc)) from exc
            out[pair] = fut.result()
        return {pair: out.get(pair) for pair in dict.fromkeys(pairs)}

    async def _fetch_pair_bases(self, chain: str, keys: Sequence[str]) -> Mapping[str, str | None]:
        found = await self._client.pairs(chain, keys)
        out: dict[str, str | None] = {}
        for key in keys:
            match = next(
                (p for p in found if p.chain == chain and same_address(p.pair_address, key)),
                None,
            )
            base = match.base.address if match is not None else None
            self._pairs.put((chain, key), (base,), self._ttl(base is not None))
            out[key] = base
        return out

    async def locate(self, tokens: Sequence[str]) -> Mapping[str, str | None]:
        """The chain of each token's most liquid pair on any chain; ``None`` when it has none.

        For an EVM address no message placed on a chain: one chain-agnostic request
        (``/latest/dex/tokens/{a,b,...}``) per batch. Its answer also judges each token on the
        chain found, so the verdict that usually follows is a cache hit.

        Raises:
            MarketUnavailable: could not ask right now (the caller retries later).
        """
        cached, waiting = await self._lookup(self._chains, self._chain_batcher, ANY_CHAIN, tokens)
        out: dict[str, str | None] = {token: hit[0] for token, hit in cached.items()}
        for token, fut in waiting.items():
            exc = fut.exception()
            if exc is not None:
                raise MarketUnavailable(_why(exc)) from exc
            out[token] = fut.result()
        return {token: out.get(token) for token in dict.fromkeys(tokens)}

    async def _fetch_chains(self, _any: str, keys: Sequence[str]) -> Mapping[str, str | None]:
        pairs = await self._client.tokens_any_chain(keys)
        out: dict[str, str | None] = {}
        for key in keys:
            chains = {p.chain for p in pairs if _trades(p, key)}
            best = max((best_pair(key, c, pairs) for c in chains), key=_depth, default=None)
            chain = best.chain if best is not None else None
            if chain is not None:
                verdict = judge(key, snapshot_of(key, chain, pairs), self._settings, chain=chain)
                self._verdicts.put((chain, key), verdict, self._ttl(verdict.valid))
            self._chains.put((ANY_CHAIN, key), (chain,), self._ttl(chain is not None))
            out[key] = chain
        return out

    def clear_cache(self) -> None:
        """Forget every cached verdict, pair resolution and chain."""
        self._verdicts.clear()
        self._pairs.clear()
        self._chains.clear()

    async def aclose(self) -> None:
        """Stop background batching; pending lookups resolve as unknown / unavailable."""
        await self._token_batcher.aclose()
        await self._pair_batcher.aclose()
        await self._chain_batcher.aclose()


#: The batcher and cache key of chain-agnostic lookups.
ANY_CHAIN = "*"


def _trades(pair: Pair, token: str) -> bool:
    return same_address(pair.base.address, token) or same_address(pair.quote.address, token)


def _depth(pair: Pair | None) -> tuple[float, float]:
    if pair is None:
        return (-1.0, -1.0)
    return (pair.liquidity_usd or 0.0, pair.volume_h24 or 0.0)


def _why(exc: BaseException) -> str:
    if isinstance(exc, MarketUnavailable):
        return str(exc) or type(exc).__name__
    if isinstance(exc, asyncio.CancelledError):
        return "lookup cancelled"
    return f"internal error ({type(exc).__name__})"


async def open_market(
    settings: Settings,
    *,
    clock: Clock,
    metrics: Metrics,
    session: aiohttp.ClientSession | None = None,
    sleep: Sleep = asyncio.sleep,
    events: EventHub | None = None,
) -> tuple[DexScreenerClient, MarketValidator]:
    """Build the DexScreener client and the validator from ``settings``.

    The caller closes both: ``await validator.aclose()`` then ``await client.aclose()``.
    """
    client = DexScreenerClient(
        settings.dexscreener, session=session, metrics=metrics, clock=clock, sleep=sleep
    )
    validator = MarketValidator(
        client, settings.market, settings.dexscreener, clock=clock, metrics=metrics, events=events
    )
    return client, validator
