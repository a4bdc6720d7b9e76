"""Quality gate and MarketValidator: pair choice, verdicts, caching, batching, failures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
import pytest
from aiolimiter import AsyncLimiter

from callsbot.clock import FakeClock
from callsbot.config import DexScreenerSettings, MarketSettings
from callsbot.errors import MarketUnavailable
from callsbot.market.dexscreener import DexScreenerClient, build_limiter, parse_pairs
from callsbot.market.gate import MarketValidator, best_pair, judge, snapshot_of
from callsbot.metrics import Metrics
from callsbot.models import Reason, Status
from callsbot.testing.dexscreener import (
    USDC,
    WSOL,
    ClockSleep,
    FakeDexScreener,
    http_date,
    make_pair,
)

TOKEN = "7GCihgDB8fe6KNjn2MYtkzZcRjQy3t9GHdC8uHYmW2hr"
OTHER = "DezXAZ8z7PnrnRJjz3wXBoRgixCaB1yy6tdBvHNMDi3o"
EVM = "0x6982508145454Ce325dDbE47a25d4ec3d2311933"  # checksummed (mixed case)

#: Generous enough that ordinary tests never wait on the limiter.
FAST_RPM = 100_000


class CountingLimiter(AsyncLimiter):
    """An AsyncLimiter that counts acquisitions."""

    def __init__(self, inner: AsyncLimiter) -> None:
        super().__init__(inner.max_rate, inner.time_period)
        self.acquired = 0

    async def acquire(self, amount: float = 1) -> None:
        self.acquired += 1
        await super().acquire(amount)


@pytest.fixture
async def dex(clock: FakeClock) -> AsyncIterator[FakeDexScreener]:
    async with FakeDexScreener(clock=clock) as server:
        yield server


@pytest.fixture
def metrics() -> Metrics:
    return Metrics.create()


Factory = Callable[..., MarketValidator]


@pytest.fixture
async def make_validator(
    dex: FakeDexScreener, clock: FakeClock, metrics: Metrics
) -> AsyncIterator[Factory]:
    opened: list[tuple[DexScreenerClient, MarketValidator]] = []

    def make(
        *, limiter: AsyncLimiter | None = None, market: MarketSettings | None = None, **kw: Any
    ) -> MarketValidator:
        settings = attrs.evolve(
            DexScreenerSettings(url=dex.url, requests_per_minute=FAST_RPM), **kw
        )
        client = DexScreenerClient(
            settings, metrics=metrics, clock=clock, sleep=ClockSleep(clock), limiter=limiter
        )
        validator = MarketValidator(
            client, market or MarketSettings(), settings, clock=clock, metrics=metrics
        )
        opened.append((client, validator))
        return validator

    yield make
    for client, validator in opened:
        await validator.aclose()
        await client.aclose()


def cache_count(metrics: Metrics, result: str) -> float:
    value = metrics.registry.get_sample_value("callsbot_market_cache_total", {"result": result})
    return value or 0.0


# -- choosing the pair ------------------------------------------------------------------------


def test_best_pair_is_the_most_liquid_on_the_tokens_own_chain() -> None:
    pairs = parse_pairs(
        [
            make_pair(TOKEN, dex="raydium", pair_address="Ray", liquidity=20_000),
            make_pair(TOKEN, dex="meteora", pair_address="Met", liquidity=80_000, labels=["DLMM"]),
            make_pair(TOKEN, dex="pumpfun", pair_address="Pump", liquidity=None),
            make_pair(TOKEN, chain="base", dex="aerodrome", pair_address="0xb", liquidity=9e6),
            make_pair(TOKEN, chain="bsc", dex="pancakeswap", pair_address="0xc", liquidity=5e6),
        ]
    )
    best = best_pair(TOKEN, "solana", pairs)
    assert best is not None
    assert best.pair_address == "Met"
    chosen = best_pair(TOKEN, "base", pairs)
    assert chosen is not None
    assert chosen.pair_address == "0xb"
    assert best_pair(TOKEN, "ethereum", pairs) is None


def test_missing_liquidity_counts_as_zero_when_choosing() -> None:
    pairs = parse_pairs(
        [
            make_pair(TOKEN, pair_address="NoLiq", liquidity=None, volume_h24=9e9),
            make_pair(TOKEN, pair_address="Tiny", liquidity=1.0),
        ]
    )
    best = best_pair(TOKEN, "solana", pairs)
    assert best is not None
    assert best.pair_address == "Tiny"


def test_matching_is_by_address_never_by_symbol() -> None:
    impostor = make_pair(OTHER, base_symbol="TEST", base_name="Test Token", liquidity=1e7)
    assert snapshot_of(TOKEN, "solana", parse_pairs([impostor])) is None
    assert snapshot_of(TOKEN.lower(), "solana", parse_pairs([make_pair(TOKEN)])) is None


def test_token_only_seen_as_quote_gets_a_derived_price_and_no_base_numbers() -> None:
    # WSOL/TOKEN pool: priceUsd is SOL's price, priceNative is TOKEN per SOL.
    pool = make_pair(
        WSOL,
        base_name="Wrapped SOL",
        base_symbol="SOL",
        quote_address=TOKEN,
        quote_name="Quoted",
        quote_symbol="QTD",
        price_usd="150.0",
        price_native="1500000",
        liquidity=40_000,
        volume_h24=60_000,
        market_cap=70e9,
    )
    snap = snapshot_of(TOKEN, "solana", parse_pairs([pool]))
    assert snap is not None
    assert snap.side == "quote"
    assert snap.token == TOKEN
    assert snap.symbol == "QTD"
    assert snap.price_usd == pytest.approx(0.0001)
    assert (snap.market_cap, snap.fdv, snap.price_change_h24) == (None, None, None)
    assert (snap.liquidity_usd, snap.volume_h24) == (40_000, 60_000)  # the pair's own numbers


def test_base_side_wins_a_liquidity_tie() -> None:
    pairs = parse_pairs(
        [
            make_pair(WSOL, quote_address=TOKEN, pair_address="AsQuote", liquidity=50_000),
            make_pair(TOKEN, pair_address="AsBase", liquidity=50_000),
        ]
    )
    snap = snapshot_of(TOKEN, "solana", pairs)
    assert snap is not None
    assert snap.pair_address == "AsBase"
    assert snap.side == "base"


def test_snapshot_numbers() -> None:
    raw = make_pair(
        TOKEN,
        pair_address="P1",
        price_usd="0.0042",
        created_at_ms=1_699_999_000_000,
        price_change={"h1": -3.5},
    )
    snap = snapshot_of(TOKEN, "solana", parse_pairs([raw]))
    assert snap is not None
    assert snap.price_usd == pytest.approx(0.0042)
    assert snap.pair_created_at == pytest.approx(1_699_999_000.0)
    assert snap.price_change_h1 == -3.5
    assert snap.price_change_h24 is None
    assert snap.market_cap == 1_200_000.0


# -- the gate ---------------------------------------------------------------------------------


def test_gate_reasons_and_details() -> None:
    gate = MarketSettings(min_liquidity_usd=10_000, min_volume_h24_usd=5_000)

    def verdict_for(**kw: Any) -> Any:
        snap = snapshot_of(TOKEN, "solana", parse_pairs([make_pair(TOKEN, **kw)]))
        return judge(TOKEN, snap, gate, chain="solana")

    ok = verdict_for(liquidity=52_000, volume_h24=310_000)
    assert (ok.status, ok.reason, ok.valid) == (Status.VALID, Reason.OK, True)
    assert ok.detail == "liquidity $52,000, 24h volume $310,000"
    low = verdict_for(liquidity=3_200)
    assert (low.status, low.reason) == (Status.INVALID, Reason.LOW_LIQUIDITY)
    assert low.detail == "liquidity $3,200 < $10,000"
    assert low.snapshot is not None
    missing = verdict_for(liquidity=None)
    assert missing.reason is Reason.LOW_LIQUIDITY
    assert missing.detail == "liquidity n/a < $10,000"
    quiet = verdict_for(volume_h24=1_200)
    assert (quiet.status, quiet.reason) == (Status.INVALID, Reason.LOW_VOLUME)
    assert quiet.detail == "24h volume $1,200 < $5,000"
    none = judge(TOKEN, None, gate, chain="solana")
    assert (none.status, none.reason, none.detail) == (
        Status.INVALID,
        Reason.NO_PAIRS,
        "no pairs on solana",
    )


# -- the validator ----------------------------------------------------------------------------


async def test_verdicts_pick_best_pair_and_judge(
    dex: FakeDexScreener, make_validator: Factory
) -> None:
    dex.add_token(TOKEN, dex="raydium", pair_address="Ray", liquidity=8_000)
    dex.add_token(TOKEN, dex="meteora", pair_address="Met", liquidity=80_000)
    dex.add_token(TOKEN, chain="base", dex="aerodrome", pair_address="0xb", liquidity=9e6)
    dex.add_token(OTHER, liquidity=3_200)
    validator = make_validator()
    result = await validator.verdicts([TOKEN, OTHER, "Unknown1111111111111111111111111111"])
    assert result[TOKEN].status is Status.VALID
    snap = result[TOKEN].snapshot
    assert snap is not None
    assert snap.pair_address == "Met"
    assert result[OTHER].reason is Reason.LOW_LIQUIDITY
    unknown = result["Unknown1111111111111111111111111111"]
    assert (unknown.status, unknown.reason, unknown.snapshot) == (
        Status.INVALID,
        Reason.NO_PAIRS,
        None,
    )
    assert len(dex.requests) == 1  # one batch
    assert dex.requests[0].path.startswith("/tokens/v1/solana/")


async def test_verdicts_dedupe_and_keep_caller_order(
    dex: FakeDexScreener, make_validator: Factory
) -> None:
    dex.add_token(TOKEN)
    validator = make_validator()
    result = await validator.verdicts([OTHER, TOKEN, OTHER])
    assert list(result) == [OTHER, TOKEN]
    assert dex.requests[0].addresses == (OTHER, TOKEN)
    assert await validator.verdicts([]) == {}


async def test_evm_token_matches_case_insensitively(
    dex: FakeDexScreener, make_validator: Factory, metrics: Metrics
) -> None:
    dex.add_token(EVM, chain="ethereum", dex="uniswap", quote_address="0xC02aaA39b223FE8D0A0e")
    validator = make_validator()
    asked = EVM.lower()
    verdict = await validator.verdict(asked, chain="ethereum")
    assert verdict.status is Status.VALID
    assert verdict.token == asked  # keyed as the caller spelled it
    assert verdict.snapshot is not None
    assert verdict.snapshot.token == EVM
    again = await validator.verdict(EVM.upper().replace("0X", "0x"), chain="ethereum")
    assert again.valid
    assert len(dex.requests) == 1  # the same cache entry
    assert cache_count(metrics, "hit") == 1


async def test_solana_addresses_are_case_sensitive(
    dex: FakeDexScreener, make_validator: Factory
) -> None:
    dex.add_token(TOKEN)
    validator = make_validator()
    assert (await validator.verdict(TOKEN.lower())).reason is Reason.NO_PAIRS


async def test_resolve_pairs(dex: FakeDexScreener, make_validator: Factory) -> None:
    dex.add_token(TOKEN, pair_address="PairOfToken")
    dex.add_token(EVM, chain="base", pair_address="0xAbCdEf0000000000000000000000000000000001")
    validator = make_validator()
    bases = await validator.resolve_pairs(["PairOfToken", "NoSuchPair"])
    assert bases == {"PairOfToken": TOKEN, "NoSuchPair": None}
    assert dex.requests_of("pairs")[0].path.startswith("/latest/dex/pairs/solana/")
    evm = await validator.resolve_pairs(
        ["0xabcdef0000000000000000000000000000000001"], chain="base"
    )
    assert evm == {"0xabcdef0000000000000000000000000000000001": EVM}
    count = len(dex.requests)
    assert await validator.resolve_pairs(["PairOfToken", "NoSuchPair"]) == bases
    assert len(dex.requests) == count  # both answers cached


async def test_resolve_pairs_raises_when_unavailable(
    dex: FakeDexScreener, make_validator: Factory
) -> None:
    dex.add_token(TOKEN, pair_address="PairOfToken")
    dex.fail_next(500)
    validator = make_validator(max_attempts=1)
    with pytest.raises(MarketUnavailable):
        await validator.resolve_pairs(["PairOfToken"])
    assert await validator.resolve_pairs(["PairOfToken"]) == {"PairOfToken": TOKEN}


async def test_429_then_success_is_valid_and_the_failure_was_not_cached(
    dex: FakeDexScreener, make_validator: Factory, clock: FakeClock
) -> None:
    dex.add_token(TOKEN)
    dex.fail_next(429, retry_after=5)
    validator = make_validator(max_attempts=1)
    first = await validator.verdict(TOKEN)
    assert (first.status, first.reason) == (Status.UNKNOWN, Reason.UNKNOWN_NOW)
    assert not first.valid
    assert "429" in first.detail
    second = await validator.verdict(TOKEN)  # waits out the cooldown on the fake clock
    assert (second.status, second.reason) == (Status.VALID, Reason.OK)
    assert [r.status for r in dex.requests] == [429, 200]


async def test_429_then_success_within_one_call_when_retries_allow(
    dex: FakeDexScreener, make_validator: Factory
) -> None:
    dex.add_token(TOKEN)
    dex.fail_next(429)
    validator = make_validator(max_attempts=3)
    assert (await validator.verdict(TOKEN)).status is Status.VALID
    assert [r.status for r in dex.requests] == [429, 200]


@pytest.mark.parametrize(
    ("fault", "detail"),
    [
        ("500", "HTTP 500"),
        ("429-date", "429"),
        ("truncated", "not JSON"),
        ("disconnect", "broken body"),
        ("slow", "timed out"),
    ],
)
async def test_failures_are_unknown_now_and_never_cached(
    dex: FakeDexScreener, make_validator: Factory, clock: FakeClock, fault: str, detail: str
) -> None:
    dex.add_token(TOKEN)
    if fault == "500":
        dex.fail_next(500)
    elif fault == "429-date":
        dex.fail_next(429, retry_after=http_date(clock.time() + 3))
    elif fault == "truncated":
        dex.truncate_next()
    elif fault == "disconnect":
        dex.disconnect_next()
    else:
        dex.slow_next()
    validator = make_validator(max_attempts=1, timeout_seconds=0.05)
    verdict = await validator.verdict(TOKEN)
    assert (verdict.status, verdict.reason, verdict.snapshot) == (
        Status.UNKNOWN,
        Reason.UNKNOWN_NOW,
        None,
    )
    assert detail in verdict.detail
    dex.release()
    assert (await validator.verdict(TOKEN)).status is Status.VALID
    assert len(dex.requests) == 2


async def test_positive_cache_lasts_positive_ttl(
    dex: FakeDexScreener, make_validator: Factory, clock: FakeClock, metrics: Metrics
) -> None:
    dex.add_token(TOKEN)
    validator = make_validator(positive_ttl_seconds=600)
    assert (await validator.verdict(TOKEN)).valid
    clock.advance(599)
    assert (await validator.verdict(TOKEN)).valid
    assert len(dex.requests) == 1
    assert cache_count(metrics, "hit") == 1
    clock.advance(2)
    dex.clear()  # delisted meanwhile
    assert (await validator.verdict(TOKEN)).reason is Reason.NO_PAIRS
    assert len(dex.requests) == 2


async def test_negative_cache_expires_after_negative_ttl(
    dex: FakeDexScreener, make_validator: Factory, clock: FakeClock
) -> None:
    pair = dex.add_token(TOKEN, liquidity=3_000)
    validator = make_validator(negative_ttl_seconds=120)
    assert (await validator.verdict(TOKEN)).reason is Reason.LOW_LIQUIDITY
    assert (await validator.verdict(OTHER)).reason is Reason.NO_PAIRS
    pair["liquidity"]["usd"] = 90_000
    dex.add_token(OTHER)
    clock.advance(119)
    assert (await validator.verdict(TOKEN)).reason is Reason.LOW_LIQUIDITY
    assert (await validator.verdict(OTHER)).reason is Reason.NO_PAIRS
    assert len(dex.requests) == 2
    clock.advance(2)
    result = await validator.verdicts([TOKEN, OTHER])
    assert all(v.valid for v in result.values())
    assert len(dex.requests) == 3


async def test_burst_of_mentions_is_batched_and_rate_limited(
    dex: FakeDexScreener, make_validator: Factory, metrics: Metrics
) -> None:
    tokens = [f"Burst{i:03d}{'x' * 34}" for i in range(100)]
    for token in tokens:
        dex.add_token(token)
    limiter = CountingLimiter(build_limiter(250))
    validator = make_validator(limiter=limiter, requests_per_minute=250)
    mentions = [tokens[i % 100] for i in range(1000)]
    results = await asyncio.gather(*(validator.verdicts([t]) for t in mentions))
    assert all(r[t].valid for r, t in zip(results, mentions, strict=True))
    assert len(dex.requests) <= 10
    assert len(dex.requests) == 4  # ceil(100 / 30)
    assert all(len(r.addresses) <= 30 for r in dex.requests)
    assert sorted(a for r in dex.requests for a in r.addresses) == sorted(tokens)
    # Every request went through the limiter, which holds the configured 250/min.
    assert limiter.acquired == len(dex.requests)
    per_minute = limiter.max_rate + 60.0 * limiter.max_rate / limiter.time_period
    assert per_minute <= 250
    assert cache_count(metrics, "miss") == 100
    assert cache_count(metrics, "shared") == 900


async def test_lookups_in_flight_are_shared(
    dex: FakeDexScreener, make_validator: Factory, metrics: Metrics
) -> None:
    dex.add_token(TOKEN)
    dex.slow_next()
    validator = make_validator()
    first = asyncio.create_task(validator.verdict(TOKEN))
    await asyncio.wait_for(dex.wait_for_requests(1), 5)
    second = asyncio.create_task(validator.verdicts([TOKEN, OTHER]))
    await asyncio.wait_for(dex.wait_for_requests(2), 5)  # OTHER goes out on its own
    dex.release()
    assert (await first).valid
    assert (await second)[TOKEN].valid
    assert dex.requests[1].addresses == (OTHER,)
    assert cache_count(metrics, "shared") == 1


async def test_a_cancelled_caller_does_not_cancel_the_shared_lookup(
    dex: FakeDexScreener, make_validator: Factory
) -> None:
    dex.add_token(TOKEN)
    dex.slow_next()
    validator = make_validator()
    impatient = asyncio.create_task(validator.verdict(TOKEN))
    patient = asyncio.create_task(validator.verdict(TOKEN))
    await asyncio.wait_for(dex.wait_for_requests(1), 5)
    impatient.cancel()
    dex.release()
    assert (await patient).valid
    with pytest.raises(asyncio.CancelledError):
        await impatient


async def test_aclose_resolves_pending_lookups_as_unknown(
    dex: FakeDexScreener, make_validator: Factory
) -> None:
    dex.add_token(TOKEN)
    dex.slow_next()
    validator = make_validator()
    waiting = asyncio.create_task(validator.verdict(TOKEN))
    await asyncio.wait_for(dex.wait_for_requests(1), 5)
    await validator.aclose()
    verdict = await waiting
    assert verdict.status is Status.UNKNOWN
    after = await validator.verdict(OTHER)
    assert (after.status, after.detail) == (Status.UNKNOWN, "market data closed")
    with pytest.raises(MarketUnavailable):
        await validator.resolve_pairs(["SomePair"])
    assert len(dex.requests) == 1


async def test_many_distinct_tokens_in_one_call_use_full_batches(
    dex: FakeDexScreener, make_validator: Factory
) -> None:
    tokens = [f"Many{i:03d}{'y' * 35}" for i in range(65)]
    validator = make_validator()
    result = await validator.verdicts(tokens)
    assert all(v.reason is Reason.NO_PAIRS for v in result.values())
    assert sorted(len(r.addresses) for r in dex.requests) == [5, 30, 30]


async def test_cache_and_fetch_mix(
    dex: FakeDexScreener, make_validator: Factory, metrics: Metrics
) -> None:
    dex.add_token(TOKEN)
    dex.add_token(USDC, base_symbol="USDC")
    validator = make_validator()
    await validator.verdict(TOKEN)
    result = await validator.verdicts([TOKEN, USDC])
    assert all(v.valid for v in result.values())
    assert dex.requests[-1].addresses == (USDC,)
    assert (cache_count(metrics, "hit"), cache_count(metrics, "miss")) == (1, 2)


async def test_an_unexpected_error_is_unknown_not_a_crash(
    dex: FakeDexScreener,
    make_validator: Factory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(self: DexScreenerClient, chain: str, addresses: Any) -> Any:
        raise ValueError("a bug")

    monkeypatch.setattr(DexScreenerClient, "token_pairs", broken)
    validator = make_validator()
    verdict = await validator.verdict(TOKEN)
    assert (verdict.status, verdict.detail) == (Status.UNKNOWN, "internal error (ValueError)")
    assert "crashed" in caplog.text


@pytest.mark.parametrize(
    "hostile",
    ["7GCi\ud800W2hr", "abc\x00def", "a,b", "../../x", "x" * 300, "", "a b"],
    ids=["surrogate", "nul", "comma", "path", "long", "empty", "space"],
)
async def test_a_hostile_address_never_poisons_the_batch_it_would_join(
    dex: FakeDexScreener, make_validator: Factory, hostile: str
) -> None:
    dex.add_token(TOKEN)
    dex.add_token(OTHER)
    validator = make_validator()
    verdicts = await validator.verdicts([TOKEN, hostile, OTHER])
    assert verdicts[TOKEN].valid
    assert verdicts[OTHER].valid
    assert (verdicts[hostile].status, verdicts[hostile].reason) == (
        Status.INVALID,
        Reason.NO_PAIRS,
    )
    assert verdicts[hostile].detail == "not an address"
    assert [r.addresses for r in dex.requests] == [(TOKEN, OTHER)]
    assert await validator.resolve_pairs([hostile]) == {hostile: None}
    assert len(dex.requests) == 1


async def test_locate_takes_the_chain_of_the_most_liquid_pair_anywhere(
    dex: FakeDexScreener, make_validator: Factory
) -> None:
    dex.add_token(EVM, chain="ethereum", liquidity=40_000)
    dex.add_token(EVM, chain="base", liquidity=70_000, quote_address=WSOL)
    unknown = "0x" + "34" * 20
    validator = make_validator()
    assert await validator.locate([EVM, unknown]) == {EVM: "base", unknown: None}
    assert [r.kind for r in dex.requests] == ["latest_tokens"]
    # Cached, and the lookup already judged the token on that chain.
    assert await validator.locate([EVM]) == {EVM: "base"}
    assert (await validator.verdict(EVM, chain="base")).valid
    assert len(dex.requests) == 1
