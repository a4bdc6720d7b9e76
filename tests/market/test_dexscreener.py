"""DexScreener client: parsing, limits, cooldown, retries, failures, against a local fake."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import attrs
import pytest

from callsbot.clock import FakeClock
from callsbot.config import DexScreenerSettings
from callsbot.market.dexscreener import (
    BadResponse,
    ConnectionFailed,
    CoolingDown,
    DexScreenerClient,
    HttpError,
    RateLimited,
    RequestTimeout,
    ServerError,
    address_key,
    build_limiter,
    parse_pair,
    parse_pairs,
    same_address,
)
from callsbot.metrics import Metrics
from callsbot.testing.dexscreener import WSOL, ClockSleep, FakeDexScreener, http_date, make_pair

TOKEN = "7GCihgDB8fe6KNjn2MYtkzZcRjQy3t9GHdC8uHYmW2hr"
OTHER = "DezXAZ8z7PnrnRJjz3wXBoRgixCaB1yy6tdBvHNMDi3o"


@pytest.fixture
async def dex(clock: FakeClock) -> AsyncIterator[FakeDexScreener]:
    async with FakeDexScreener(clock=clock) as server:
        yield server


@pytest.fixture
def sleep(clock: FakeClock) -> ClockSleep:
    return ClockSleep(clock)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics.create()


def settings_for(dex: FakeDexScreener, **overrides: Any) -> DexScreenerSettings:
    base = DexScreenerSettings(url=dex.url, requests_per_minute=100_000)
    return attrs.evolve(base, **overrides)


@pytest.fixture
async def make_client(
    dex: FakeDexScreener, clock: FakeClock, sleep: ClockSleep, metrics: Metrics
) -> AsyncIterator[Callable[..., DexScreenerClient]]:
    clients: list[DexScreenerClient] = []

    def make(**overrides: Any) -> DexScreenerClient:
        client = DexScreenerClient(
            settings_for(dex, **overrides), metrics=metrics, clock=clock, sleep=sleep
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


def outcome(metrics: Metrics, name: str) -> float:
    value = metrics.registry.get_sample_value("callsbot_market_requests_total", {"outcome": name})
    return value or 0.0


def gap(dex: FakeDexScreener) -> float:
    """Injected-clock time between the first two requests the fake received."""
    first, second = dex.requests[:2]
    assert first.clock_at is not None
    assert second.clock_at is not None
    return second.clock_at - first.clock_at


# -- parsing ----------------------------------------------------------------------------------


def test_parse_pair_reads_strings_milliseconds_and_absent_numbers() -> None:
    raw = make_pair(
        TOKEN,
        price_usd="0.00012345",
        price_native="0.0000009",
        liquidity=None,
        market_cap=None,
        price_change={"m5": 1.0},
        created_at_ms=1_700_000_123_456,
    )
    pair = parse_pair(raw)
    assert pair is not None
    assert pair.price_usd == pytest.approx(0.00012345)
    assert pair.price_native == pytest.approx(0.0000009)
    assert pair.liquidity_usd is None
    assert pair.market_cap is None
    assert pair.price_change_h1 is None
    assert pair.price_change_h24 is None
    assert pair.pair_created_at == pytest.approx(1_700_000_123.456)
    assert pair.volume_h24 == 120_000.0
    assert (pair.buys_h24, pair.sells_h24) == (420, 380)
    assert pair.base.address == TOKEN
    assert pair.quote.address == WSOL


def test_parse_pairs_accepts_bare_array_and_envelopes() -> None:
    one, two = make_pair(TOKEN), make_pair(OTHER)
    assert [p.base.address for p in parse_pairs([one, two])] == [TOKEN, OTHER]
    assert parse_pairs([]) == []
    assert parse_pairs({"schemaVersion": "1.0.0", "pairs": None}) == []
    assert parse_pairs({"schemaVersion": "1.0.0", "pairs": None, "pair": None}) == []
    both = parse_pairs({"schemaVersion": "1.0.0", "pairs": [one], "pair": one})
    assert [p.base.address for p in both] == [TOKEN]  # "pair" repeats pairs[0]
    assert [p.base.address for p in parse_pairs({"pairs": None, "pair": two})] == [OTHER]


def test_parse_pairs_skips_malformed_items_and_rejects_other_shapes() -> None:
    good = make_pair(TOKEN)
    broken = {"chainId": "solana", "pairAddress": "x", "baseToken": {"symbol": "NOADDR"}}
    assert [p.base.address for p in parse_pairs([good, broken, 7, None])] == [TOKEN]
    with pytest.raises(BadResponse):
        parse_pairs({"schemaVersion": "1.0.0"})
    with pytest.raises(BadResponse):
        parse_pairs({"pairs": "nope"})
    with pytest.raises(BadResponse):
        parse_pairs("[]")


def test_parse_pair_ignores_garbage_numbers() -> None:
    raw = make_pair(TOKEN, price_usd="n/a")
    raw["liquidity"] = {"usd": "lots"}
    raw["volume"] = {"h24": float("nan")}
    raw["marketCap"] = True
    pair = parse_pair(raw)
    assert pair is not None
    assert (pair.price_usd, pair.liquidity_usd, pair.volume_h24, pair.market_cap) == (
        None,
        None,
        None,
        None,
    )


def test_address_matching_is_exact_for_solana_and_case_insensitive_for_evm() -> None:
    assert same_address("0xAbCdEF0000000000000000000000000000000001", "0xabcdef" + "0" * 33 + "1")
    assert address_key("0XABCD") == "0xabcd"
    assert not same_address(TOKEN, TOKEN.lower())
    assert address_key(TOKEN) == TOKEN


@pytest.mark.parametrize("rpm", [1, 2, 3, 5, 10, 11, 250, 300, 6000])
def test_limiter_never_admits_more_than_the_budget_per_window(rpm: int) -> None:
    limiter = build_limiter(rpm)
    # A leaky bucket admits its capacity at once plus one per drained unit in the window.
    drained = 60.0 * limiter.max_rate / limiter.time_period
    assert limiter.max_rate + math.floor(drained + 1e-9) <= rpm
    per_minute = limiter.max_rate + drained
    if rpm >= 3:
        assert per_minute == pytest.approx(rpm - 1)  # one request of slack for jitter
        assert limiter.max_rate == max(rpm // 10, 1)


# -- requests ---------------------------------------------------------------------------------


async def test_token_pairs_uses_tokens_v1_and_splits_batches(
    dex: FakeDexScreener, make_client: Any
) -> None:
    addresses = [f"Tok{i:040d}" for i in range(35)]
    for address in addresses:
        dex.add_token(address)
    client = make_client()
    pairs = await client.token_pairs("solana", addresses)
    assert {p.base.address for p in pairs} == set(addresses)
    reqs = dex.requests_of("tokens_v1")
    assert sorted(len(r.addresses) for r in reqs) == [5, 30]
    assert all(r.path.startswith("/tokens/v1/solana/") for r in reqs)


async def test_tokens_any_chain_and_pairs_endpoints(dex: FakeDexScreener, make_client: Any) -> None:
    dex.add_token(TOKEN, pair_address="PairA")
    dex.add_token(TOKEN, chain="base", dex="aerodrome", pair_address="0xpair")
    client = make_client()
    assert {p.chain for p in await client.tokens_any_chain([TOKEN])} == {"solana", "base"}
    assert await client.tokens_any_chain([OTHER]) == []  # "pairs": null
    [pair] = await client.pairs("solana", ["PairA"])
    assert pair.base.address == TOKEN
    assert await client.pairs("solana", ["Nope"]) == []  # "pairs": null, "pair": null


async def test_429_with_retry_after_seconds_pauses_then_succeeds(
    dex: FakeDexScreener, make_client: Any, sleep: ClockSleep, metrics: Metrics
) -> None:
    dex.add_token(TOKEN)
    dex.fail_next(429, retry_after=7)
    client = make_client()
    pairs = await client.token_pairs("solana", [TOKEN])
    assert [p.base.address for p in pairs] == [TOKEN]
    assert [r.status for r in dex.requests] == [429, 200]
    assert gap(dex) >= 7.0
    assert outcome(metrics, "rate_limited") == 1
    assert outcome(metrics, "ok") == 1


async def test_429_with_retry_after_http_date(
    dex: FakeDexScreener, make_client: Any, clock: FakeClock
) -> None:
    dex.add_token(TOKEN)
    dex.fail_next(429, retry_after=http_date(clock.time() + 9))
    client = make_client()
    await client.token_pairs("solana", [TOKEN])
    assert gap(dex) >= 9.0 - 1.0  # HTTP-dates have whole seconds


async def test_429_without_retry_after_uses_default_backoff(
    dex: FakeDexScreener, make_client: Any
) -> None:
    dex.add_token(TOKEN)
    dex.fail_next(429)
    client = make_client(backoff_seconds=4.0)
    await client.token_pairs("solana", [TOKEN])
    assert gap(dex) >= 4.0


async def test_429_cooldown_is_shared_by_later_requests(
    dex: FakeDexScreener, make_client: Any
) -> None:
    dex.add_token(TOKEN)
    dex.fail_next(429, retry_after=6)
    client = make_client(max_attempts=1)
    with pytest.raises(RateLimited) as info:
        await client.token_pairs("solana", [TOKEN])
    assert info.value.retry_after == 6.0
    assert client.cooldown_remaining == pytest.approx(6.0)
    await client.token_pairs("solana", [OTHER])  # a different request waits it out too
    assert gap(dex) >= 6.0


async def test_cooldown_beyond_the_deadline_fails_fast_without_a_request(
    dex: FakeDexScreener, make_client: Any, clock: FakeClock, metrics: Metrics
) -> None:
    dex.add_token(TOKEN)
    dex.fail_next(429, retry_after=3600)
    client = make_client(max_cooldown_seconds=60.0, retry_deadline_seconds=20.0)
    with pytest.raises(RateLimited):  # no retry: the cooldown outlasts the deadline
        await client.token_pairs("solana", [TOKEN])
    assert client.cooldown_remaining == pytest.approx(60.0)  # capped
    assert len(dex.requests) == 1
    with pytest.raises(CoolingDown):
        await client.token_pairs("solana", [TOKEN])
    assert len(dex.requests) == 1
    assert outcome(metrics, "cooldown") == 1  # counted, though nothing was sent
    clock.advance(61)
    assert len(await client.token_pairs("solana", [TOKEN])) == 1


async def test_500_is_retried_up_to_max_attempts(
    dex: FakeDexScreener, make_client: Any, sleep: ClockSleep, metrics: Metrics
) -> None:
    dex.add_token(TOKEN)
    dex.fail_next(500, times=5)
    client = make_client(max_attempts=3, retry_wait_seconds=0.5)
    with pytest.raises(ServerError):
        await client.token_pairs("solana", [TOKEN])
    assert len(dex.requests) == 3
    assert len(sleep.calls) == 2  # waits between attempts, jittered, all short
    assert all(0 < s <= 9 for s in sleep.calls)
    assert outcome(metrics, "server_error") == 3


async def test_500_then_success(dex: FakeDexScreener, make_client: Any) -> None:
    dex.add_token(TOKEN)
    dex.fail_next(503)
    client = make_client()
    assert len(await client.token_pairs("solana", [TOKEN])) == 1
    assert [r.status for r in dex.requests] == [503, 200]


async def test_retry_deadline_bounds_the_total_wait(
    dex: FakeDexScreener, make_client: Any, sleep: ClockSleep
) -> None:
    dex.fail_next(500, times=50)
    client = make_client(max_attempts=50, retry_wait_seconds=1.0, retry_deadline_seconds=10.0)
    with pytest.raises(ServerError):
        await client.token_pairs("solana", [TOKEN])
    assert sleep.total < 10.0
    assert len(dex.requests) < 50


async def test_truncated_json_is_bad_response(
    dex: FakeDexScreener, make_client: Any, metrics: Metrics
) -> None:
    dex.add_token(TOKEN)
    dex.truncate_next(times=3)
    client = make_client(max_attempts=3)
    with pytest.raises(BadResponse):
        await client.token_pairs("solana", [TOKEN])
    assert outcome(metrics, "bad_body") == 3


async def test_connection_cut_mid_body_is_bad_response_then_retried(
    dex: FakeDexScreener, make_client: Any
) -> None:
    dex.add_token(TOKEN)
    dex.disconnect_next()
    client = make_client(max_attempts=2)
    assert len(await client.token_pairs("solana", [TOKEN])) == 1
    assert len(dex.requests) == 2


async def test_slow_response_times_out(
    dex: FakeDexScreener, make_client: Any, metrics: Metrics
) -> None:
    dex.slow_next(times=2)
    client = make_client(timeout_seconds=0.05, max_attempts=2)
    with pytest.raises(RequestTimeout):
        await client.token_pairs("solana", [TOKEN])
    assert outcome(metrics, "timeout") == 2
    dex.release()


async def test_other_4xx_is_not_retried(dex: FakeDexScreener, make_client: Any) -> None:
    dex.fail_next(404, times=3)
    client = make_client(max_attempts=3)
    with pytest.raises(HttpError):
        await client.token_pairs("solana", [TOKEN])
    assert len(dex.requests) == 1


async def test_connection_refused(clock: FakeClock, sleep: ClockSleep, metrics: Metrics) -> None:
    async with FakeDexScreener() as gone:
        url = gone.url
    settings = DexScreenerSettings(url=url, max_attempts=2)
    async with DexScreenerClient(settings, metrics=metrics, clock=clock, sleep=sleep) as client:
        with pytest.raises(ConnectionFailed):
            await client.token_pairs("solana", [TOKEN])
    assert outcome(metrics, "connection_error") == 2


async def test_session_ownership(dex: FakeDexScreener, clock: FakeClock, metrics: Metrics) -> None:
    dex.add_token(TOKEN)
    settings = settings_for(dex)
    async with aiohttp.ClientSession() as session:
        client = DexScreenerClient(settings, session=session, metrics=metrics, clock=clock)
        await client.token_pairs("solana", [TOKEN])
        await client.aclose()
        assert not session.closed  # the caller's session stays open
    owned = DexScreenerClient(settings, metrics=metrics, clock=clock)
    await owned.token_pairs("solana", [TOKEN])
    session_made = owned.http.session
    assert session_made is not None
    await owned.aclose()
    assert session_made.closed
    with pytest.raises(RuntimeError):
        await owned.token_pairs("solana", [TOKEN])


async def test_every_attempt_consults_the_limiter(
    dex: FakeDexScreener, clock: FakeClock, sleep: ClockSleep, metrics: Metrics
) -> None:
    acquired: list[float] = []
    limiter = build_limiter(250)
    original = limiter.acquire

    async def acquire(amount: float = 1) -> None:
        acquired.append(amount)
        await original(amount)

    limiter.acquire = acquire  # type: ignore[method-assign]
    dex.add_token(TOKEN)
    dex.fail_next(500)
    client = DexScreenerClient(
        settings_for(dex), metrics=metrics, clock=clock, sleep=sleep, limiter=limiter
    )
    async with client:
        await client.token_pairs("solana", [TOKEN])
    assert len(acquired) == len(dex.requests) == 2


async def test_real_pacing_never_exceeds_the_budget_in_a_sliding_window(
    dex: FakeDexScreener, clock: FakeClock, sleep: ClockSleep, metrics: Metrics
) -> None:
    # The limiter's period is scaled from 60 s down to 0.3 s so real pacing takes about 0.4 s;
    # 10 per window spaces requests ~37 ms apart, far above loopback jitter.
    rpm, period, count = 10, 0.3, 12
    client = DexScreenerClient(
        settings_for(dex, batch_size=1),
        metrics=metrics,
        clock=clock,
        sleep=sleep,
        limiter=build_limiter(rpm, period=period),
    )
    async with client:
        await asyncio.gather(*(client.token_pairs("solana", [f"T{i}"]) for i in range(count)))
    assert len(dex.requests) == count
    assert dex.max_in_window(period) <= rpm
