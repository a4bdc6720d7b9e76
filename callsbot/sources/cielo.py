"""Cielo Finance wallet feed: poll ``/api/v1/feed`` and turn swaps into :class:`Buy` objects.

One :meth:`CieloFeed.poll` reads the newest page and follows ``startFrom`` only while every
item of the page is new, so a quiet feed costs one request per poll. Every transaction hash is
handled once across polls, restarts and scorer processes: it is leased (``tx:<hash>``,
``claim_lease_seconds``) when read and marked done (``seen_ttl_seconds``) only once it was
handled (:meth:`CieloFeed.handled`), so a buy whose scorer died before scoring it comes back on
the next poll of any scorer.

Nothing a page contains can end the loop: malformed items and pages are logged and counted,
5xx and timeouts are retried a bounded number of times, 429 and ``pending`` ask the caller to
come back later. Only a rejected API key (401/403) raises, as :class:`CieloAuthError`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import re
from collections import Counter, OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
import attrs

from callsbot.clock import Clock
from callsbot.config import CieloSettings
from callsbot.errors import CredentialsRejected, FeedUnavailable, StoreError
from callsbot.extract import is_evm_address, is_solana_address
from callsbot.metrics import Metrics
from callsbot.models import Buy
from callsbot.net.http import ErrorMap, JsonClient, Response
from callsbot.net.retry import RetryPolicy, Sleep, retry_call
from callsbot.store import keys
from callsbot.store.base import SignalStore

log = logging.getLogger(__name__)

API_KEY_ENV = "CALLSBOT_CIELO_API_KEY"
FEED_PATH = "/api/v1/feed"

WSOL = "So11111111111111111111111111111111111111112"
USDC_SOL = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
USDT_SOL = "Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCe8BenwNYB"

#: Assets a wallet pays with. EVM addresses are stored lower-case and compared that way.
QUOTE_ASSETS: frozenset[str] = frozenset(
    {
        "native",
        WSOL,
        USDC_SOL,
        USDT_SOL,
        "0x0000000000000000000000000000000000000000",
        "0xeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee",
        "0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2",  # WETH, Ethereum
        "0x4200000000000000000000000000000000000006",  # WETH, Base / OP chains
        "0xbb4cdb9cbd36b01bd1cbaebf2de08d9173bc095c",  # WBNB
        "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48",  # USDC, Ethereum
        "0x833589fcd6edb6e08f4c7c32d4f71b54bda02913",  # USDC, Base
        "0xdac17f958d2ee523a2206206994597c13d831ec7",  # USDT, Ethereum
    }
)


#: Chains whose token addresses are ``0x`` + 40 hex digits (DexScreener chain ids).
EVM_CHAINS: frozenset[str] = frozenset(
    {
        "ethereum",
        "base",
        "bsc",
        "arbitrum",
        "optimism",
        "polygon",
        "avalanche",
        "blast",
        "linea",
        "scroll",
        "zksync",
        "mantle",
        "sonic",
        "abstract",
        "unichain",
        "berachain",
        "hyperevm",
    }
)
#: What a token address on a chain this module does not know may look like: printable ASCII
#: that cannot break a comma-separated market-data batch or a URL path.
_OTHER_CHAIN_ADDRESS = re.compile(r"[A-Za-z0-9:_.\-]{1,128}")
#: Control characters (C0, DEL, C1) and lone surrogates: never part of a real field value.
_BAD_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def is_quote(address: str) -> bool:
    """Whether ``address`` is a coin wallets pay with (SOL, wSOL, USDC, USDT, WETH, ...)."""
    return address in QUOTE_ASSETS or address.lower() in QUOTE_ASSETS


def token_address(address: str, chain: str) -> str:
    """``address`` as the store and market data key it on ``chain`` (EVM lower-cased).

    Raises:
        MalformedItem: ``address`` is not a valid address for ``chain``: not the base58 text of
            32 bytes on Solana, not ``0x`` + 40 hex digits on an EVM chain.
    """
    if chain == "solana":
        if not is_solana_address(address):
            raise MalformedItem(f"token {address[:60]!a} is not a Solana address")
        return address
    if chain in EVM_CHAINS or address[:2].lower() == "0x":
        if not is_evm_address(address):
            raise MalformedItem(f"token {address[:60]!a} is not an EVM address")
        return address.lower()
    if _OTHER_CHAIN_ADDRESS.fullmatch(address) is None:
        raise MalformedItem(f"token {address[:60]!a} is not an address on {chain}")
    return address


# --------------------------------------------------------------------------------------------
# Errors.


class CieloError(FeedUnavailable):
    """Base class of the feed's errors."""


class CieloAuthError(CredentialsRejected):
    """Cielo rejected the API key (401/403). Fatal: polling again cannot help."""


class CieloTransientError(CieloError):
    """A 5xx, a timeout or a dropped connection: worth a bounded number of retries."""


class CieloRateLimited(CieloError):
    """HTTP 429. ``retry_after`` is the server's Retry-After in seconds, if it sent one."""

    def __init__(self, retry_after: float | None) -> None:
        super().__init__(f"rate limited (retry after {retry_after}s)")
        self.retry_after = retry_after


class CieloPending(CieloError):
    """HTTP 202 or ``status: "pending"``: Cielo is still indexing; ask again later."""


class CieloBadPage(CieloError):
    """The page is not the documented envelope (truncated JSON, wrong types, other 4xx)."""

    def __init__(self, message: str, *, outcome: str = "malformed") -> None:
        super().__init__(message)
        self.outcome = outcome


# --------------------------------------------------------------------------------------------
# Value objects.


@attrs.frozen
class PollResult:
    """What one poll found.

    Attributes:
        buys: new buys, oldest first.
        skipped: items not kept, by reason (``seen``, ``sell``, ``transfer``, ``malformed``...).
        outcome: ``ok``, ``pending``, ``rate_limited``, ``error`` or ``malformed``.
        pages: pages read.
        retry_after: when set, wait this many seconds before the next poll.
        newest: the newest item timestamp on the pages read (any item, seen or not), unix
            seconds; ``None`` when no item had a readable one.
    """

    buys: tuple[Buy, ...] = ()
    skipped: Mapping[str, int] = attrs.field(factory=dict)
    outcome: str = "ok"
    pages: int = 0
    retry_after: float | None = None
    newest: float | None = None


class MalformedItem(ValueError):
    """One feed item cannot be read."""


# --------------------------------------------------------------------------------------------
# Parsing (pure).


def parse_amount(value: Any) -> float | None:
    """A non-negative finite number from a JSON number or numeric string; ``None`` if absent.

    Raises:
        MalformedItem: NaN, infinity, negative numbers, booleans or non-numeric strings.
    """
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise MalformedItem(f"amount is a boolean: {value!r}")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise MalformedItem(f"amount is not a number: {value[:40]!r}") from None
    else:
        raise MalformedItem(f"amount has type {type(value).__name__}")
    if not math.isfinite(number) or number < 0:
        raise MalformedItem(f"amount out of range: {number!r}")
    return number


def _text(item: Mapping[str, Any], key: str, *, required: bool = False) -> str:
    value = item.get(key)
    if value is None:
        if required:
            raise MalformedItem(f"missing {key}")
        return ""
    if not isinstance(value, str):
        raise MalformedItem(f"{key} is not a string")
    check_chars(key, value)
    value = value.strip()
    if required and not value:
        raise MalformedItem(f"empty {key}")
    return value


def check_chars(key: str, value: str) -> None:
    """Refuse a control character or a lone surrogate in a text field.

    Such a value cannot be a hash, an address or a label; passed on, it breaks the store's
    encoding, a batched market request or a log handler, and with it the items around it.

    Raises:
        MalformedItem: naming the field and the character's code point (never the raw value).
    """
    bad = _BAD_CHARS.search(value)
    if bad is not None:
        raise MalformedItem(f"{key} holds the control character U+{ord(bad.group()):04X}")


def _timestamp(value: Any) -> float:
    ts = parse_amount(value)
    if ts is None or ts == 0:
        raise MalformedItem("missing timestamp")
    # Cielo documents seconds; a millisecond value would put the trade thousands of years ahead.
    return ts / 1000.0 if ts > 1e11 else ts


def item_timestamp(item: Any) -> float | None:
    """The item's ``timestamp`` in unix seconds, or ``None`` when it has no readable one."""
    if not isinstance(item, Mapping):
        return None
    try:
        return _timestamp(item.get("timestamp"))
    except MalformedItem:
        return None


def classify_item(item: Any) -> tuple[str, Buy | None]:
    """Classify one feed item.

    A buy is a swap that received a token: paid with a quote asset (USD = the larger of the two
    sides), or paid with another token (a token-for-token swap; USD = the received side's
    only, since the side given away may be priced by a stale or thin market).

    Returns:
        ``("buy", Buy)`` for a buy, otherwise ``(reason, None)`` with reason one of ``sell``,
        ``transfer``, ``other_type`` (any tx type but swap and transfer), ``quote_swap`` (quote
        on both sides, e.g. SOL→USDC) or ``zero_amounts`` (every amount and USD value zero).

    Raises:
        MalformedItem: a field a swap needs is missing or has the wrong type, any text field
            holds a control character or a lone surrogate, or the bought token is not a valid
            address for its chain.
    """
    if not isinstance(item, Mapping):
        raise MalformedItem("item is not an object")
    for key, value in item.items():
        if isinstance(value, str):
            check_chars(str(key), value)
    tx_type = _text(item, "tx_type", required=True).lower()
    if tx_type == "transfer":
        return "transfer", None
    if tx_type != "swap":
        return "other_type", None
    tx_hash = _text(item, "tx_hash", required=True)
    given = _text(item, "token0_address", required=True)
    got = _text(item, "token1_address", required=True)
    given_quote, got_quote = is_quote(given), is_quote(got)
    if given_quote and got_quote:
        return "quote_swap", None
    if not given_quote and got_quote:
        return "sell", None
    chain = _text(item, "chain", required=True).lower()
    token = token_address(got, chain)
    usd_given = parse_amount(item.get("token0_amount_usd"))
    usd_got = parse_amount(item.get("token1_amount_usd"))
    amounts = (parse_amount(item.get("token0_amount")), parse_amount(item.get("token1_amount")))
    reported = [v for v in (*amounts, usd_given, usd_got) if v is not None]
    if reported and not any(reported):
        return "zero_amounts", None
    priced_by = (usd_given, usd_got) if given_quote else (usd_got,)
    sizes = [u for u in priced_by if u is not None and u > 0]
    label = item.get("wallet_label")
    if label is not None and not isinstance(label, str):
        raise MalformedItem("wallet_label is not a string")
    first = item.get("first_interaction")
    buy = Buy(
        tx_hash=tx_hash,
        wallet=_text(item, "wallet", required=True),
        wallet_label=(label.strip() or None) if label else None,
        token=token,
        symbol=_text(item, "token1_symbol"),
        name=_text(item, "token1_name"),
        usd=max(sizes) if sizes else None,
        ts=_timestamp(item.get("timestamp")),
        dex=_text(item, "dex"),
        chain=chain,
        first_interaction=first is True,
    )
    return "buy", buy


@attrs.frozen
class Page:
    """One page of the feed envelope."""

    items: tuple[Any, ...]
    next_object: str | None


def parse_page(body: bytes) -> Page:
    """Parse the feed envelope ``{"status":"ok","data":{"items":[...],"paging":{...}}}``.

    Raises:
        CieloPending: ``status`` is ``pending``.
        CieloBadPage: anything else that is not the documented envelope.
    """
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CieloBadPage(
            f"body is not JSON ({exc.__class__.__name__}, {len(body)} bytes)"
        ) from None
    if not isinstance(doc, dict):
        raise CieloBadPage(f"body is a JSON {type(doc).__name__}, not an object")
    status = doc.get("status", "ok")
    if status == "pending":
        raise CieloPending(str(doc.get("message") or "pending")[:200])
    if status != "ok":
        raise CieloBadPage(f"status {str(status)[:40]!r}: {str(doc.get('message'))[:200]}")
    data = doc.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("items"), list):
        raise CieloBadPage("data.items is missing or not a list")
    paging = data.get("paging")
    next_object: str | None = None
    if isinstance(paging, dict) and paging.get("has_next_page", True) is not False:
        cursor = paging.get("next_object")
        if isinstance(cursor, str | int) and not isinstance(cursor, bool) and str(cursor):
            next_object = str(cursor)
    return Page(tuple(data["items"]), next_object)


# --------------------------------------------------------------------------------------------
# The client.


def retry_policy(settings: CieloSettings) -> RetryPolicy:
    """Retries of one feed request (5xx, timeouts, dropped connections): ``max_attempts``
    attempts within ``retry_max_seconds``, jittered exponential waits from 1 s up to 10 s."""
    return RetryPolicy(
        attempts=settings.max_attempts,
        deadline=settings.retry_max_seconds,
        wait_initial=1.0,
        wait_max=10.0,
        wait_jitter=1.0,
    )


def _rejected(response: Response) -> CieloAuthError:
    return CieloAuthError(
        f"Cielo rejected the API key (HTTP {response.status}); check {API_KEY_ENV}"
    )


def _other_status(response: Response) -> CieloBadPage:
    return CieloBadPage(f"HTTP {response.status}: {response.body[:200]!r}", outcome="http_error")


#: How the HTTP client names each failure in this module's vocabulary.
_ERRORS = ErrorMap(
    timeout=CieloTransientError,
    connection=CieloTransientError,
    bad_body=CieloTransientError,  # the connection broke mid-body: worth another attempt
    rate_limited=CieloRateLimited,
    server_error=lambda response: CieloTransientError(f"HTTP {response.status}"),
    status=_other_status,
    rejected=_rejected,
)


class CieloFeed:
    """Polls the Cielo feed.

    Args:
        settings: the ``[cielo]`` section; ``api_key`` must be set.
        store: where seen transaction hashes are claimed (shared by every scorer process).
        clock: "now" for Retry-After dates and the retry deadline.
        metrics: ``feed_polls{outcome}``, ``feed_items{outcome}``, ``store_errors{op}``.
        session: an aiohttp session to use; the feed opens (and closes) its own when ``None``.
        sleep: the retry pause; tests pass a no-op.
        retry: the retry policy of one request; :func:`retry_policy` of the settings when
            ``None``.
        owner: the name this process leases transactions under (:func:`keys.lease_owner`).

    Raises:
        ValueError: ``settings.api_key`` is not set (names ``CALLSBOT_CIELO_API_KEY``).
    """

    def __init__(
        self,
        settings: CieloSettings,
        store: SignalStore,
        *,
        clock: Clock,
        metrics: Metrics,
        session: aiohttp.ClientSession | None = None,
        sleep: Sleep = asyncio.sleep,
        retry: RetryPolicy | None = None,
        owner: str | None = None,
    ) -> None:
        if not settings.api_key:
            raise ValueError(f"the Cielo API key is not set: set {API_KEY_ENV}")
        self._settings = settings
        self._store = store
        self._owner = owner if owner is not None else keys.lease_owner("scorer")
        self._clock = clock
        self._metrics = metrics
        self._sleep = sleep
        self._retry = retry if retry is not None else retry_policy(settings)
        self._http = JsonClient(
            base_url=settings.url,
            name="cielo",
            timeout=settings.timeout_seconds,
            clock=clock,
            sleep=sleep,
            session=session,
            headers={"X-API-KEY": settings.api_key, "accept": "application/json"},
            errors=_ERRORS,
            secrets=(settings.api_key,),
        )
        self._rate_limited = 0
        # Fallback dedupe while the store is down, and "log a malformed item once" memory.
        self._local_seen: OrderedDict[str, None] = OrderedDict()
        self._logged_bad: OrderedDict[str, None] = OrderedDict()
        self._store_down = False
        # Transactions marked done while the store was away: claim -> expiry, written back later.
        self._unsynced: dict[str, float] = {}

    async def aclose(self) -> None:
        """Close the session if the feed opened it. Safe to call twice."""
        await self._http.aclose()

    def _params(self, start_from: str | None, since: float | None = None) -> dict[str, str]:
        s = self._settings
        params = {"limit": str(s.limit)}
        if s.chains:
            params["chains"] = ",".join(s.chains)
        if s.tx_types:
            params["txTypes"] = ",".join(s.tx_types)
        if s.min_usd > 0:
            params["minUSD"] = f"{s.min_usd:g}"
        if s.list_id is not None:
            params["list"] = str(s.list_id)
        if s.new_trades is not None:
            params["newTrades"] = "true" if s.new_trades else "false"
        if since is not None:
            params["fromTimestamp"] = str(int(since))
        if start_from is not None:
            params["startFrom"] = start_from
        return params

    async def _get(self, start_from: str | None, since: float | None) -> bytes:
        params = self._params(start_from, since)
        response = await self._http.request(
            "GET", FEED_PATH, params=params, expect=(200, 202), what="feed"
        )
        if response.status == 202:
            raise CieloPending("HTTP 202")
        return response.body

    async def _fetch(self, start_from: str | None, since: float | None) -> Page:
        body = await retry_call(
            lambda _: self._get(start_from, since),
            on=CieloTransientError,
            policy=self._retry,
            clock=self._clock,
            sleep=self._sleep,
            name="cielo",
        )
        return parse_page(body)

    async def _is_new(self, tx_hash: str, *, done: bool) -> bool:
        """Claim the transaction: leased while its buy is handled, or ``done`` at once."""
        key = keys.seen_tx(tx_hash)
        # This process's own memory first: when the store goes away, the buys it already handled
        # are still on the feed's newest page, and must not come back as new.
        if key in self._local_seen:
            return False
        s = self._settings
        ttl = s.seen_ttl_seconds if done else s.claim_lease_seconds
        try:
            won = await self._store.lease(key, self._owner, ttl)
        except StoreError as exc:
            # Keep scoring while the store is away, deduplicating in memory.
            self._store_away(exc)
            if done:
                self._unsynced[key] = self._clock.time() + ttl
            won = True
        else:
            await self._store_back()
        if won:
            # Not for a lease held elsewhere: a scorer that dies with it leaves the buy to us.
            self._local_seen[key] = None
            while len(self._local_seen) > 10_000:
                self._local_seen.popitem(last=False)
        return won

    def _store_away(self, exc: StoreError) -> None:
        self._metrics.store_errors.labels(op="claim").inc()
        if not self._store_down:
            log.warning("cielo: store claim failed, deduplicating in memory: %s", exc)
        self._store_down = True

    async def _store_back(self) -> None:
        if self._store_down:
            log.info("cielo: store claims work again")
            self._store_down = False
        if self._unsynced:
            await self.write_back()

    async def write_back(self) -> int:
        """Write the transactions marked done while the store was away into it; how many."""
        written = 0
        now = self._clock.time()
        for key, expires in list(self._unsynced.items()):
            if expires > now:
                try:
                    await self._store.lease(key, self._owner, expires - now)
                except StoreError:
                    self._metrics.store_errors.labels(op="claim").inc()
                    break
                written += 1
            del self._unsynced[key]
        if written:
            log.info("cielo: %d txs handled while the store was away written back", written)
        return written

    async def _done(self, tx_hash: str) -> None:
        key = keys.seen_tx(tx_hash)
        ttl = self._settings.seen_ttl_seconds
        try:
            await self._store.lease(key, self._owner, ttl)
        except StoreError as exc:
            self._store_away(exc)
            self._unsynced[key] = self._clock.time() + ttl
            return
        await self._store_back()

    async def handled(self, buys: Sequence[Buy]) -> None:
        """The scorer is done with ``buys`` (scored, parked, alerted or skipped): their
        transactions stay claimed for ``seen_ttl_seconds`` from now on."""
        for buy in buys:
            await self._done(buy.tx_hash)

    def _log_bad_once(self, item: Any, problem: str) -> None:
        tx = item.get("tx_hash") if isinstance(item, Mapping) else None
        if isinstance(tx, str) and tx:
            ident = "".join(ch for ch in tx[:100] if ch.isprintable() and not ch.isspace())
        else:
            raw = json.dumps(item, sort_keys=True, default=str).encode()
            ident = "sha1:" + hashlib.sha1(raw).hexdigest()[:16]
        if ident in self._logged_bad:
            return
        self._logged_bad[ident] = None
        while len(self._logged_bad) > 10_000:
            self._logged_bad.popitem(last=False)
        log.warning("cielo: skipping malformed item %s: %s", ident, problem)

    async def poll(self, *, since: float | None = None) -> PollResult:
        """Read the newest page(s) and return the new buys.

        Args:
            since: ask only for items from this unix time on (``fromTimestamp``, whole seconds,
                inclusive): a gap fill after a WebSocket (re)connect. Pages are then followed
                to the end of that range (at most ``max_pages``), not only while all are new:
                items delivered by the socket meanwhile may sit on the first page.

        Raises:
            CieloAuthError: the API key was rejected; every other failure is a result.
        """
        if self._unsynced:
            await self.write_back()
        buys: list[Buy] = []
        skipped: Counter[str] = Counter()
        pages = 0
        outcome = "ok"
        retry_after: float | None = None
        cursor: str | None = None
        newest: float | None = None
        while pages < self._settings.max_pages:
            try:
                page = await self._fetch(cursor, since)
            except CieloPending as exc:
                outcome = "pending"
                log.info("cielo: feed pending (%s); trying again later", exc)
                break
            except CieloRateLimited as exc:
                outcome = "rate_limited"
                retry_after = self._rate_limit_pause(exc.retry_after)
                log.warning("cielo: rate limited (429); next poll in %.0fs", retry_after)
                break
            except CieloTransientError as exc:
                outcome = "error"
                log.warning("cielo: feed unavailable after retries: %s", exc)
                break
            except CieloBadPage as exc:
                outcome = exc.outcome
                log.warning("cielo: unusable feed page: %s", exc)
                break
            pages += 1
            all_new = await self._take(page.items, buys, skipped)
            stamps = [t for t in map(item_timestamp, page.items) if t is not None]
            if stamps:
                newest = max(stamps) if newest is None else max(newest, *stamps)
            if not ((all_new or since is not None) and page.items and page.next_object):
                break
            cursor = page.next_object
        if outcome != "rate_limited":
            self._rate_limited = 0
        self._metrics.feed_polls.labels(outcome=outcome).inc()
        for reason, n in skipped.items():
            self._metrics.feed_items.labels(outcome=reason).inc(n)
        if buys:
            self._metrics.feed_items.labels(outcome="buy").inc(len(buys))
        buys.sort(key=lambda b: b.ts)
        return PollResult(tuple(buys), dict(skipped), outcome, pages, retry_after, newest)

    async def accept(self, item: Any) -> tuple[str, Buy | None]:
        """Claim and classify one feed item, from a REST page or a WebSocket event alike.

        The transaction hash is claimed (``keys.seen_tx``; in this process's memory too), so an
        item that another path or scorer process took comes back as ``seen``: an item that is
        not a buy is done at once, a buy is only leased until the scorer calls :meth:`handled`.
        Nothing is counted here: the caller counts the outcome.

        Returns:
            ``("buy", Buy)``; ``("seen", None)``; ``("malformed", None)`` (logged once per
            item); or :func:`classify_item`'s other reasons with ``None``.
        """
        tx = item.get("tx_hash") if isinstance(item, Mapping) else None
        try:
            if isinstance(tx, str):
                check_chars("tx_hash", tx)
        except MalformedItem as exc:
            self._log_bad_once(item, str(exc))
            return "malformed", None
        tx_hash = tx.strip() if isinstance(tx, str) else ""
        problem: str | None = None
        try:
            outcome, buy = classify_item(item)
        except MalformedItem as exc:
            outcome, buy, problem = "malformed", None, str(exc)
        if tx_hash and not await self._is_new(tx_hash, done=buy is None):
            return "seen", None
        if problem is not None:
            self._log_bad_once(item, problem)
        return outcome, buy

    async def _take(self, items: tuple[Any, ...], buys: list[Buy], skipped: Counter[str]) -> bool:
        """Classify a page's items into ``buys``/``skipped``; ``True`` when all were new."""
        all_new = True
        for item in items:
            outcome, buy = await self.accept(item)
            if buy is not None:
                buys.append(buy)
                continue
            skipped[outcome] += 1
            if outcome == "seen":
                all_new = False
        return all_new

    def _rate_limit_pause(self, retry_after: float | None) -> float:
        cap = self._settings.backoff_max_seconds
        self._rate_limited += 1
        if retry_after is not None:
            return min(retry_after, cap)
        backoff: float = self._settings.poll_seconds * 2.0 ** min(self._rate_limited - 1, 30)
        return min(backoff, cap)
