"""GeckoTerminal client against the local fake: shapes, order, pools, limits, 429s, failures."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
import pytest

from callsbot.clock import FakeClock
from callsbot.config import GeckoTerminalSettings
from callsbot.market.prices import (
    Candles,
    GeckoTerminalClient,
    NoDataReason,
    NoDataYet,
    SlidingWindowLimiter,
    Timeframe,
    parse_row,
    rate_limit_body,
)
from callsbot.models import Candle
from callsbot.testing.dexscreener import ClockSleep
from callsbot.testing.geckoterminal import RATE_LIMIT_BODIES, FakeGeckoTerminal

MINT = "7GCihgDB8fe6KNjn2MYtkzZcRjQy3t9GHdC8uHYmW2hr"
OTHER = "DezXAZ8z7PnrnRJjz3wXBoRgixCaB1yy6tdBvHNMDi3o"
POOL = "Pool1111111111111111111111111111111111111111"
NEW_POOL = "Pool2222222222222222222222222222222222222222"
SMALL_POOL = "Pool3333333333333333333333333333333333333333"
START = 1_699_990_200  # a 5-minute boundary, 2 h 43 min before the fixture clock


def series(
    n: int, *, start: int = START, skip: tuple[int, ...] = (), price: float = 1.0
) -> list[Candle]:
    """``n`` one-minute candles rising 1 % a minute, minus the minutes in ``skip`` (gaps)."""
    out = []
    for i in range(n):
        if i in skip:
            continue
        o = price * 1.01**i
        out.append(Candle(start + 60 * i, o, o * 1.02, o * 0.99, o * 1.01, 10.0 + i))
    return out


@pytest.fixture
async def gecko(clock: FakeClock) -> AsyncIterator[FakeGeckoTerminal]:
    async with FakeGeckoTerminal(clock=clock) as server:
        yield server


@pytest.fixture
def sleep(clock: FakeClock) -> ClockSleep:
    return ClockSleep(clock)


@pytest.fixture
async def make_client(
    gecko: FakeGeckoTerminal, clock: FakeClock, sleep: ClockSleep
) -> AsyncIterator[Callable[..., GeckoTerminalClient]]:
    clients: list[GeckoTerminalClient] = []

    def make(**overrides: Any) -> GeckoTerminalClient:
        settings = attrs.evolve(GeckoTerminalSettings(url=gecko.url), **overrides)
        client = GeckoTerminalClient(settings, clock=clock, sleep=sleep)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


async def fetch(client: GeckoTerminalClient, pool: str = POOL, **kwargs: Any) -> Candles:
    kwargs.setdefault("limit", 100)
    result = await client.fetch_candles(
        pool, MINT, kwargs.pop("timeframe", Timeframe.MINUTE), **kwargs
    )
    assert isinstance(result, Candles), result
    return result


def gaps(gecko: FakeGeckoTerminal) -> list[float]:
    """Clock time between consecutive requests the fake received."""
    times = [r.clock_at for r in gecko.requests]
    return [round(b - a, 6) for a, b in itertools.pairwise(times)]


# -- shapes and order -------------------------------------------------------------------------


async def test_asks_usd_prices_of_the_mint_and_returns_ascending_candles(
    gecko: FakeGeckoTerminal, make_client: Callable[..., GeckoTerminalClient], clock: FakeClock
) -> None:
    candles = series(30)
    gecko.add_pool(POOL, base=MINT, candles=candles)
    got = await fetch(make_client(), limit=20, before=START + 25 * 60)
    assert got.candles == tuple(candles[5:25])  # the 20 before the timestamp, oldest first
    assert (got.pool, got.mint, got.looked_up, got.skipped) == (POOL, MINT, False, 0)
    assert got.fetched_at == clock.time()
    assert got.complete_until == START + 25 * 60
    (request,) = gecko.requests
    assert request.path == f"/api/v2/networks/solana/pools/{POOL}/ohlcv/minute"
    assert dict(request.params) == {
        "aggregate": "1",
        "limit": "20",
        "currency": "usd",
        "token": MINT,
        "before_timestamp": str(START + 25 * 60),
    }


@pytest.mark.parametrize("order", ["newest_first", "oldest_first", "shuffled"])
async def test_rows_in_any_order_with_gaps_and_a_duplicated_in_progress_candle(
    gecko: FakeGeckoTerminal, make_client: Callable[..., GeckoTerminalClient], order: str
) -> None:
    candles = series(40, skip=(3, 4, 5, 17))
    gecko.add_pool(POOL, base=MINT, candles=candles)
    gecko.order = order
    gecko.duplicate_in_progress = True
    got = await fetch(make_client())
    assert got.candles == tuple(candles)  # sorted, the duplicate's last copy kept, gaps kept
    assert [c.ts for c in got.candles[:4]] == [START, START + 60, START + 120, START + 360]


async def test_five_minute_candles(
    gecko: FakeGeckoTerminal, make_client: Callable[..., GeckoTerminalClient]
) -> None:
    gecko.add_pool(POOL, base=MINT, candles=series(20, start=START + 240))  # 4 min into a bucket
    got = await fetch(make_client(), timeframe=Timeframe.FIVE_MINUTES)
    assert [c.ts - START for c in got.candles] == [0, 300, 600, 900, 1200]
    first = got.candles[0]
    assert first.open == 1.0  # only one minute in the first bucket
    assert gecko.requests[0].param("aggregate") == "5"


async def test_a_quote_side_pool_prices_the_mint(
    gecko: FakeGeckoTerminal, make_client: Callable[..., GeckoTerminalClient]
) -> None:
    mint_prices = series(10, price=0.002)
    gecko.add_pool(
        POOL, base=OTHER, quote=MINT, candles=series(10, price=150.0), quote_candles=mint_prices
    )
    got = await fetch(make_client())
    assert got.candles == tuple(mint_prices)


async def test_prices_of_another_token_are_rejected_not_returned(
    gecko: FakeGeckoTerminal, make_client: Callable[..., GeckoTerminalClient]
) -> None:
    gecko.add_pool(POOL, base=OTHER, quote=MINT, candles=series(10, price=150.0), ignore_token=True)
    result = await make_client().fetch_candles(POOL, MINT, Timeframe.MINUTE, limit=10)
    assert isinstance(result, NoDataYet)
    assert result.reason is NoDataReason.WRONG_TOKEN
    assert result.permanent
    assert len(gecko.requests) == 1


async def test_a_dead_pool_answers_no_candles_not_no_data(
    gecko: FakeGeckoTerminal, make_client: Callable[..., GeckoTerminalClient]
) -> None:
    gecko.add_pool(POOL, base=MINT)
    got = await fetch(make_client())
    assert got.candles == ()


async def test_malformed_rows_are_dropped_as_gaps(
    gecko: FakeGeckoTerminal, make_client: Callable[..., GeckoTerminalClient]
) -> None:
    good = series(5)
    broken = Candle(START + 300, 0.0, 0.0, 0.0, 0.0, 1.0)
    gecko.add_pool(POOL, base=MINT, candles=[*good, broken])
    got = await fetch(make_client())
    assert (got.candles, got.skipped) == (tuple(good), 1)


def test_parse_row_accepts_only_sane_candles() -> None:
    assert parse_row([START, 1, 2, 0.5, 1.5, 0]) == Candle(START, 1.0, 2.0, 0.5, 1.5, 0.0)
    assert parse_row([START, "1", "2", "0.5", "1.5", "3"]) == Candle(START, 1.0, 2.0, 0.5, 1.5, 3.0)
    for bad in (
        [START, 1, 2, 0.5, 1.5],  # five values
        [START + 0.5, 1, 2, 0.5, 1.5, 0],  # not a whole second
        [START, 1, 0.4, 0.5, 1.5, 0],  # low above high
        [START, 0, 2, 0.5, 1.5, 0],  # zero price
        [START, 1, 2, 0.5, 1.5, -1],  # negative volume
        [START, float("nan"), 2, 0.5, 1.5, 0],
        [START, None, 2, 0.5, 1.5, 0],
        [START, True, 2, 0.5, 1.5, 0],
        "row",
    ):
        assert parse_row(bad) is None, bad


# -- pools ------------------------------------------------------------------------------------


async def test_a_404_looks_the_pool_up_again_and_follows_the_deepest(
    gecko: FakeGeckoTerminal, make_client: Callable[..., GeckoTerminalClient]
) -> None:
    gecko.add_pool(POOL, base=MINT, candles=series(5))
    gecko.add_pool(SMALL_POOL, base=MINT, candles=series(5, price=9.0), reserve_usd=5_000)
    after = series(8, price=3.0)
    gecko.add_pool(NEW_POOL, base=MINT, candles=after, dex="raydium", reserve_usd=400_000)
    gecko.retire_pool(POOL)  # graduated: the old pool is gone
    got = await fetch(make_client())
    assert (got.pool, got.looked_up, got.candles) == (NEW_POOL, True, tuple(after))
    assert [(r.kind, r.status) for r in gecko.requests] == [
        ("ohlcv", 404),
        ("pools", 200),
        ("ohlcv", 200),
    ]
    assert gecko.requests[1].path == f"/api/v2/networks/solana/tokens/{MINT}/pools"


async def test_a_404_without_another_pool_is_no_data_not_a_crash(
    gecko: FakeGeckoTerminal, make_client: Callable[..., GeckoTerminalClient]
) -> None:
    result = await make_client().fetch_candles(POOL, MINT, Timeframe.MINUTE, limit=10)
    assert isinstance(result, NoDataYet)
    assert result.reason is NoDataReason.POOL_NOT_FOUND
    assert (result.pool, result.status) == (POOL, 404)
    assert [r.kind for r in gecko.requests] == ["ohlcv", "pools"]


# -- 429 --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "status"), [("coingecko", 429), ("jsonapi", 429), ("coingecko", 200)]
)
async def test_a_429_storm_delays_but_loses_nothing(
    gecko: FakeGeckoTerminal,
    make_client: Callable[..., GeckoTerminalClient],
    clock: FakeClock,
    shape: str,
    status: int,
) -> None:
    candles = series(60)
    gecko.add_pool(POOL, base=MINT, candles=candles)
    started = clock.time()
    if status == 429:
        gecko.rate_limit_next(times=4, shape=shape, retry_after="0")  # "0" means nothing
    else:  # a 200 whose body says 429
        gecko.fail_next(200, times=4, body=RATE_LIMIT_BODIES[shape])
    got = await fetch(make_client())
    assert got.candles == tuple(candles)
    assert gaps(gecko) == [15, 30, 60, 120]  # 15 s doubling
    assert got.fetched_at == started + 225


async def test_the_cool_down_is_capped_and_the_time_budget_ends_the_storm(
    gecko: FakeGeckoTerminal, make_client: Callable[..., GeckoTerminalClient]
) -> None:
    gecko.add_pool(POOL, base=MINT, candles=series(5))
    gecko.rate_limit_next(times=8, shape="jsonapi")
    result = await make_client().fetch_candles(POOL, MINT, Timeframe.MINUTE, limit=5)
    assert isinstance(result, NoDataYet)
    assert result.reason is NoDataReason.RATE_LIMITED
    assert not result.permanent
    # 585 s in, the eighth 429 asks for a pause ending past the 600 s budget.
    assert gaps(gecko) == [15, 30, 60, 120, 120, 120, 120]


async def test_retry_after_above_the_step_is_honoured_and_a_success_resets_the_step(
    gecko: FakeGeckoTerminal, make_client: Callable[..., GeckoTerminalClient]
) -> None:
    gecko.add_pool(POOL, base=MINT, candles=series(5))
    client = make_client()
    gecko.rate_limit_next(retry_after="45")
    await fetch(client)
    gecko.rate_limit_next()
    await fetch(client)
    assert gaps(gecko) == [45, 0, 15]


async def test_concurrent_429s_share_one_cool_down(
    gecko: FakeGeckoTerminal, make_client: Callable[..., GeckoTerminalClient]
) -> None:
    gecko.add_pool(POOL, base=MINT, candles=series(5))
    client = make_client()
    gecko.rate_limit_next(times=3)
    results = await asyncio.gather(*(fetch(client) for _ in range(3)))
    assert all(r.candles == tuple(series(5)) for r in results)
    assert client.cooldown_remaining == 0
    assert gaps(gecko) == [15, 30, 60, 0, 0]  # one request in flight at a time


# -- the limiter ------------------------------------------------------------------------------


async def test_the_limiter_never_exceeds_20_a_minute_or_bursts_of_3(
    gecko: FakeGeckoTerminal, make_client: Callable[..., GeckoTerminalClient], clock: FakeClock
) -> None:
    pools = [f"Pool{i:040d}" for i in range(45)]
    for pool in pools:
        gecko.add_pool(pool, base=MINT, candles=series(3))
    client = make_client()
    started = clock.time()
    results = await asyncio.gather(*(fetch(client, pool) for pool in pools))
    assert [r.pool for r in results] == pools
    assert gecko.max_in_window(60.0) == 20
    assert gecko.max_in_window(9.0) == 3
    assert clock.time() - started <= 45 / 20 * 60 + 10  # limited, not starved


async def test_sliding_window_limiter_alone(clock: FakeClock) -> None:
    limiter = SlidingWindowLimiter(20, 3, clock=clock, sleep=ClockSleep(clock))
    times = []
    for _ in range(100):
        await limiter.acquire()
        times.append(clock.time())
    assert times[:4] == [times[0]] * 3 + [times[0] + 9]
    for window, most in ((60.0, 20), (9.0, 3)):
        assert max(sum(1 for u in times if t - window < u <= t) for t in times) == most
    assert times[-1] - times[0] >= (100 - 20) / 20 * 60  # sustained 20/min


# -- other failures ---------------------------------------------------------------------------


async def test_older_than_180_days_is_401_and_no_data_at_once(
    gecko: FakeGeckoTerminal, make_client: Callable[..., GeckoTerminalClient], clock: FakeClock
) -> None:
    gecko.add_pool(POOL, base=MINT, candles=series(5))
    old = int(clock.time()) - 200 * 86_400
    result = await make_client().fetch_candles(POOL, MINT, Timeframe.MINUTE, limit=5, before=old)
    assert isinstance(result, NoDataYet)
    assert (result.reason, result.status, result.permanent) == (NoDataReason.TOO_OLD, 401, True)
    assert len(gecko.requests) == 1


async def test_server_errors_are_retried_then_no_data(
    gecko: FakeGeckoTerminal, make_client: Callable[..., GeckoTerminalClient]
) -> None:
    gecko.add_pool(POOL, base=MINT, candles=series(5))
    gecko.fail_next(503)
    assert (await fetch(make_client())).candles == tuple(series(5))
    gecko.requests.clear()
    gecko.fail_next(500, times=3)
    result = await make_client(max_attempts=3).fetch_candles(POOL, MINT, Timeframe.MINUTE, limit=5)
    assert isinstance(result, NoDataYet)
    assert (result.reason, result.status) == (NoDataReason.SERVER_ERROR, 500)
    assert gaps(gecko) == [2, 4]


@pytest.mark.parametrize("kind", ["truncated", "not_json", "disconnect"])
async def test_broken_bodies_are_retried_then_no_data(
    gecko: FakeGeckoTerminal, make_client: Callable[..., GeckoTerminalClient], kind: str
) -> None:
    gecko.add_pool(POOL, base=MINT, candles=series(5))
    gecko.break_next(kind)
    assert (await fetch(make_client())).candles == tuple(series(5))
    gecko.break_next(kind, times=3)
    result = await make_client(max_attempts=3).fetch_candles(POOL, MINT, Timeframe.MINUTE, limit=5)
    assert isinstance(result, NoDataYet)
    assert result.reason is NoDataReason.BAD_RESPONSE


async def test_a_body_of_the_wrong_shape_is_no_data(
    gecko: FakeGeckoTerminal, make_client: Callable[..., GeckoTerminalClient]
) -> None:
    gecko.add_pool(POOL, base=MINT, candles=series(5))
    gecko.break_next("wrong_shape")
    result = await make_client().fetch_candles(POOL, MINT, Timeframe.MINUTE, limit=5)
    assert isinstance(result, NoDataYet)
    assert result.reason is NoDataReason.BAD_RESPONSE


async def test_other_client_errors_are_not_retried(
    gecko: FakeGeckoTerminal, make_client: Callable[..., GeckoTerminalClient]
) -> None:
    gecko.add_pool(POOL, base=MINT, candles=series(5))
    gecko.fail_next(422)
    result = await make_client().fetch_candles(POOL, MINT, Timeframe.MINUTE, limit=5)
    assert isinstance(result, NoDataYet)
    assert (result.reason, result.status, result.permanent) == (NoDataReason.HTTP_ERROR, 422, True)
    assert len(gecko.requests) == 1


async def test_an_unreachable_server_is_no_data(clock: FakeClock, sleep: ClockSleep) -> None:
    async with FakeGeckoTerminal(clock=clock) as server:
        url = server.url
    client = GeckoTerminalClient(GeckoTerminalSettings(url=url), clock=clock, sleep=sleep)
    try:
        result = await client.fetch_candles(POOL, MINT, Timeframe.MINUTE, limit=5)
    finally:
        await client.aclose()
    assert isinstance(result, NoDataYet)
    assert result.reason is NoDataReason.UNREACHABLE
    assert sleep.calls == [2, 4, 8, 16, 32, 64, 120]  # 8 attempts, waits capped at 120 s


def test_rate_limit_bodies_in_both_shapes() -> None:
    assert rate_limit_body(RATE_LIMIT_BODIES["coingecko"])
    assert rate_limit_body(RATE_LIMIT_BODIES["jsonapi"])
    assert not rate_limit_body({"errors": [{"status": "404", "title": "Not Found"}]})
    assert not rate_limit_body({"data": {}})


async def test_limit_outside_the_api_range_is_a_programming_error() -> None:
    async with GeckoTerminalClient(GeckoTerminalSettings(), clock=FakeClock()) as client:
        with pytest.raises(ValueError, match="limit"):
            await client.ohlcv(POOL, MINT, Timeframe.MINUTE, limit=1001)
