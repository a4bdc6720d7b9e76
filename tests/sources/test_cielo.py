"""CieloFeed against a local fake of the feed API (real schema, real errors)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import pytest

from callsbot.clock import FakeClock
from callsbot.config import CieloSettings
from callsbot.errors import StoreError
from callsbot.metrics import Metrics
from callsbot.models import Buy
from callsbot.sources.cielo import (
    CieloAuthError,
    CieloFeed,
    MalformedItem,
    classify_item,
    parse_amount,
)
from callsbot.store.base import SignalStore
from callsbot.store.memory import MemoryStore
from callsbot.testing.cielo import (
    API_KEY,
    CREDITS,
    PENDING,
    USDC,
    WALLET,
    FakeCielo,
    Reply,
    envelope,
    sell,
    swap,
    transfer,
)
from callsbot.testing.redis_server import free_port
from tests.conftest import make_redis_store

TOKEN_A = "7GCihgDB8fe6KNjn2MYtkzZcRjQy3t9GHdC8uHYmW2hr"
TOKEN_B = "HeLp6NuQkmYB4pYWo2zYs22mESHXPQYzXbB8n4V98jwC"
TOKEN_PUMP = "9BB6NFEcjBCtnNLFko2FqVQBq8HHM13kCyYcdQbgpump"
WETH_MIXED = "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2"
EVM_TOKEN = "0x6982508145454Ce325dDbE47a25d4ec3d2311933"


class Sleeps:
    """An injected sleep that returns at once and remembers what it was asked."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
async def fake() -> AsyncIterator[FakeCielo]:
    server = await FakeCielo().start()
    yield server
    await server.close()


def settings_for(fake: FakeCielo, **kw: Any) -> CieloSettings:
    return CieloSettings(url=fake.url, api_key=API_KEY, **kw)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics.create()


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(f"callsbot_{name}_total", labels)
    return 0.0 if value is None else value


async def make_feed(
    fake: FakeCielo,
    store: SignalStore,
    clock: FakeClock,
    metrics: Metrics,
    sleeps: Sleeps | None = None,
    **kw: Any,
) -> CieloFeed:
    return CieloFeed(
        settings_for(fake, **kw), store, clock=clock, metrics=metrics, sleep=sleeps or Sleeps()
    )


@pytest.fixture
def store(clock: FakeClock) -> MemoryStore:
    return MemoryStore(window=3600, clock=clock)


# -- request shape ----------------------------------------------------------------------------


async def test_request_carries_key_header_and_documented_params(
    fake: FakeCielo, store: MemoryStore, clock: FakeClock, metrics: Metrics
) -> None:
    feed = await make_feed(
        fake,
        store,
        clock,
        metrics,
        limit=50,
        chains=("solana", "base"),
        tx_types=("swap",),
        min_usd=250.0,
        list_id=42,
        new_trades=True,
    )
    await feed.poll()
    await feed.aclose()
    req = fake.requests[0]
    assert req.headers["X-API-KEY"] == API_KEY
    assert req.headers["accept"] == "application/json"
    assert req.query == {
        "limit": "50",
        "chains": "solana,base",
        "txTypes": "swap",
        "minUSD": "250",
        "list": "42",
        "newTrades": "true",
    }


def test_missing_key_names_the_env_var(store: MemoryStore, clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="CALLSBOT_CIELO_API_KEY"):
        CieloFeed(CieloSettings(), store, clock=clock, metrics=Metrics.create())


# -- items ------------------------------------------------------------------------------------


async def test_keeps_buys_and_counts_skips_by_reason(
    fake: FakeCielo, store: MemoryStore, clock: FakeClock, metrics: Metrics
) -> None:
    items = [
        swap("tx1", TOKEN_A, usd=1500.5, label="Smart Whale", first=True, ts=T(30)),
        swap("tx2", TOKEN_B, given=USDC, usd="900.25", ts=T(10)),
        sell("tx3", TOKEN_A),
        transfer("tx4", TOKEN_A),
        {**swap("tx5", TOKEN_A), "tx_type": "lp"},
        swap("tx6", TOKEN_PUMP, given=TOKEN_A, ts=T(20)),  # token for token: a buy
        swap("tx7", USDC, given="native"),
    ]
    fake.serve(items)
    feed = await make_feed(fake, store, clock, metrics)
    result = await feed.poll()
    await feed.aclose()
    assert result.outcome == "ok"
    assert [b.tx_hash for b in result.buys] == ["tx2", "tx6", "tx1"]  # oldest first
    first = result.buys[2]
    assert first == Buy(
        tx_hash="tx1",
        wallet=WALLET,
        wallet_label="Smart Whale",
        token=TOKEN_A,
        symbol="TKN",
        name="Token",
        usd=1500.5,
        ts=T(30),
        dex="raydium",
        chain="solana",
        first_interaction=True,
    )
    assert result.buys[0].usd == 900.25
    assert result.skipped == {
        "sell": 1,
        "transfer": 1,
        "other_type": 1,
        "quote_swap": 1,
    }
    assert sample(metrics, "feed_items", outcome="buy") == 3
    assert sample(metrics, "feed_items", outcome="sell") == 1
    assert sample(metrics, "feed_polls", outcome="ok") == 1


def T(offset: float) -> float:
    return 1_700_000_000.0 + offset


async def test_missing_and_bad_fields_skip_only_that_item_and_log_once(
    fake: FakeCielo,
    store: MemoryStore,
    clock: FakeClock,
    metrics: Metrics,
    caplog: pytest.LogCaptureFixture,
) -> None:
    no_wallet = swap("txbad1", TOKEN_A)
    del no_wallet["wallet"]
    no_hash = swap("", TOKEN_A)
    del no_hash["tx_hash"]
    items = [
        no_wallet,
        no_hash,
        {**swap("txbad2", TOKEN_A), "token0_amount_usd": "NaN"},
        {**swap("txbad3", TOKEN_A), "token1_amount_usd": float("inf")},
        {**swap("txbad4", TOKEN_A), "timestamp": None},
        "not an object",
        swap("txgood", TOKEN_B, usd=None),
    ]
    fake.serve(items)
    feed = await make_feed(fake, store, clock, metrics)
    caplog.set_level(logging.WARNING, logger="callsbot.sources.cielo")
    first = await feed.poll()
    second = await feed.poll()
    await feed.aclose()
    assert [b.tx_hash for b in first.buys] == ["txgood"]
    assert first.buys[0].usd is None
    assert first.skipped == {"malformed": 6}
    assert second.buys == ()
    malformed_logs = [r for r in caplog.records if "malformed item" in r.getMessage()]
    assert len(malformed_logs) == 6  # each logged once, although the page came twice
    assert any("txbad1" in r.getMessage() for r in malformed_logs)
    assert sample(metrics, "feed_items", outcome="malformed") == 6 + 2  # hash-less ones recur


def test_parse_amount() -> None:
    assert parse_amount(None) is None
    assert parse_amount("") is None
    assert parse_amount("12.5") == 12.5
    assert parse_amount(3) == 3.0
    for bad in ("nan", "inf", "-1", float("nan"), float("-inf"), True, "1e400", [1], "abc"):
        with pytest.raises(MalformedItem):
            parse_amount(bad)


def test_evm_buy_with_mixed_case_weth() -> None:
    item = swap("0x" + "ab" * 32, EVM_TOKEN, given=WETH_MIXED, chain="ethereum")
    reason, buy = classify_item(item)
    assert reason == "buy"
    assert buy is not None
    assert buy.token == EVM_TOKEN.lower()
    assert buy.chain == "ethereum"


def test_millisecond_timestamps_are_read_as_seconds() -> None:
    _, buy = classify_item(swap("tx", TOKEN_A, ts=1_700_000_000_000))
    assert buy is not None
    assert buy.ts == 1_700_000_000.0


# -- paging and dedupe ------------------------------------------------------------------------


async def test_follows_next_object_while_every_item_is_new(
    fake: FakeCielo, store: MemoryStore, clock: FakeClock, metrics: Metrics
) -> None:
    fake.serve(
        [swap("p1a", TOKEN_A, ts=T(9)), swap("p1b", TOKEN_B, ts=T(8))],
        [swap("p2a", TOKEN_A, ts=T(7))],
        [swap("p3a", TOKEN_A, ts=T(6))],
        [swap("p4a", TOKEN_A, ts=T(5))],
    )
    feed = await make_feed(fake, store, clock, metrics, max_pages=3)
    result = await feed.poll()
    assert result.pages == 3
    assert [b.tx_hash for b in result.buys] == ["p3a", "p2a", "p1b", "p1a"]
    assert [r.query.get("startFrom") for r in fake.requests] == [None, "c1", "c2"]

    # The same newest page again: nothing new, and no second request.
    fake.requests.clear()
    again = await feed.poll()
    await feed.aclose()
    assert again.buys == ()
    assert again.skipped == {"seen": 2}
    assert len(fake.requests) == 1


async def test_stops_paging_at_a_page_with_a_seen_item(
    fake: FakeCielo, store: MemoryStore, clock: FakeClock, metrics: Metrics
) -> None:
    fake.serve([swap("old", TOKEN_A)])
    feed = await make_feed(fake, store, clock, metrics)
    await feed.poll()
    fake.serve([swap("new", TOKEN_B), swap("old", TOKEN_A)], [swap("older", TOKEN_A)])
    fake.requests.clear()
    result = await feed.poll()
    await feed.aclose()
    assert [b.tx_hash for b in result.buys] == ["new"]
    assert len(fake.requests) == 1


async def test_empty_page(
    fake: FakeCielo, store: MemoryStore, clock: FakeClock, metrics: Metrics
) -> None:
    fake.serve([])
    feed = await make_feed(fake, store, clock, metrics)
    result = await feed.poll()
    await feed.aclose()
    assert (result.outcome, result.buys, result.pages) == ("ok", (), 1)


async def test_seen_hashes_survive_a_restart_through_redis(
    fake: FakeCielo, redis_url: str, clock: FakeClock, metrics: Metrics
) -> None:
    fake.serve([swap("r1", TOKEN_A), swap("r2", TOKEN_B)])
    for expected in (["r1", "r2"], []):
        store = make_redis_store(redis_url, clock)
        feed = await make_feed(fake, store, clock, metrics)
        result = await feed.poll()
        await feed.aclose()
        await store.aclose()
        assert sorted(b.tx_hash for b in result.buys) == expected


async def test_store_down_dedupes_in_memory(
    fake: FakeCielo, clock: FakeClock, metrics: Metrics
) -> None:
    store = make_redis_store(f"redis://127.0.0.1:{free_port()}/0", clock)
    fake.serve([swap("d1", TOKEN_A)])
    feed = await make_feed(fake, store, clock, metrics)
    first = await feed.poll()
    second = await feed.poll()
    await feed.aclose()
    await store.aclose()
    assert [b.tx_hash for b in first.buys] == ["d1"]
    assert second.buys == ()
    # The second poll knows d1 from this process's memory; it does not even ask the store.
    assert sample(metrics, "store_errors", op="claim") == 1


async def test_buys_handled_before_an_outage_stay_handled_during_it(
    fake: FakeCielo, clock: FakeClock, metrics: Metrics, redis_url: str
) -> None:
    from callsbot.testing.redis_server import RedisServer

    server = RedisServer()
    server.start()
    store = make_redis_store(server.url, clock)
    fake.serve([swap("old1", TOKEN_A)])
    feed = await make_feed(fake, store, clock, metrics)
    try:
        assert [b.tx_hash for b in (await feed.poll()).buys] == ["old1"]
        server.stop()
        fake.serve([swap("new1", TOKEN_A), swap("old1", TOKEN_A)])  # the page still holds old1
        assert [b.tx_hash for b in (await feed.poll()).buys] == ["new1"]
    finally:
        await feed.aclose()
        await store.aclose()
        server.stop()


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply", [Reply(200, PENDING), Reply(202, {"status": "ok"})], ids=["status", "http202"]
)
async def test_pending_means_try_later(
    fake: FakeCielo, store: MemoryStore, clock: FakeClock, metrics: Metrics, reply: Reply
) -> None:
    fake.script = [reply]
    fake.serve([swap("after", TOKEN_A)])
    feed = await make_feed(fake, store, clock, metrics)
    pending = await feed.poll()
    later = await feed.poll()
    await feed.aclose()
    assert (pending.outcome, pending.buys, pending.retry_after) == ("pending", (), None)
    assert [b.tx_hash for b in later.buys] == ["after"]
    assert sample(metrics, "feed_polls", outcome="pending") == 1


async def test_429_honours_retry_after_seconds_and_http_date(
    fake: FakeCielo, store: MemoryStore, clock: FakeClock, metrics: Metrics
) -> None:
    date = format_datetime(datetime.fromtimestamp(clock.time() + 90, UTC), usegmt=True)
    fake.script = [
        Reply(429, CREDITS, {"Retry-After": "17"}),
        Reply(429, CREDITS, {"Retry-After": date}),
        Reply(429, CREDITS, {"Retry-After": "99999"}),
    ]
    sleeps = Sleeps()
    feed = await make_feed(fake, store, clock, metrics, sleeps, backoff_max_seconds=600)
    results = [await feed.poll() for _ in range(3)]
    await feed.aclose()
    assert [r.outcome for r in results] == ["rate_limited"] * 3
    assert [r.retry_after for r in results] == [17.0, 90.0, 600.0]
    assert sleeps.calls == []  # the feed never blocks on a 429: the caller waits
    assert len(fake.requests) == 3


async def test_429_without_retry_after_backs_off_exponentially(
    fake: FakeCielo, store: MemoryStore, clock: FakeClock, metrics: Metrics
) -> None:
    fake.script = [Reply(429, CREDITS)] * 4
    fake.serve([swap("x", TOKEN_A)])
    feed = await make_feed(fake, store, clock, metrics, poll_seconds=30, backoff_max_seconds=100)
    delays = [(await feed.poll()).retry_after for _ in range(4)]
    ok = await feed.poll()
    assert delays == [30, 60, 100, 100]
    assert ok.retry_after is None
    fake.script = [Reply(429, CREDITS)]
    assert (await feed.poll()).retry_after == 30  # the back-off starts over after a success
    await feed.aclose()


@pytest.mark.parametrize("status", [401, 403])
async def test_rejected_key_is_fatal_and_names_the_env_var(
    fake: FakeCielo,
    store: MemoryStore,
    clock: FakeClock,
    metrics: Metrics,
    status: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake.script = [Reply(status, {"status": "error", "message": "invalid api key"})]
    feed = await make_feed(fake, store, clock, metrics)
    with pytest.raises(CieloAuthError, match="CALLSBOT_CIELO_API_KEY") as info:
        await feed.poll()
    await feed.aclose()
    assert API_KEY not in str(info.value)
    assert API_KEY not in caplog.text


async def test_wrong_key_gets_401_from_the_fake(
    fake: FakeCielo, store: MemoryStore, clock: FakeClock, metrics: Metrics
) -> None:
    feed = CieloFeed(
        CieloSettings(url=fake.url, api_key="wrong"), store, clock=clock, metrics=metrics
    )
    with pytest.raises(CieloAuthError):
        await feed.poll()
    await feed.aclose()


async def test_5xx_is_retried_with_bounded_attempts(
    fake: FakeCielo, store: MemoryStore, clock: FakeClock, metrics: Metrics
) -> None:
    fake.script = [Reply(500, "oops"), Reply(503, "")]
    fake.serve([swap("x", TOKEN_A)])
    sleeps = Sleeps()
    feed = await make_feed(fake, store, clock, metrics, sleeps, max_attempts=3)
    result = await feed.poll()
    assert [b.tx_hash for b in result.buys] == ["x"]
    assert len(sleeps.calls) == 2
    assert all(0 < s <= 11 for s in sleeps.calls)  # jittered exponential wait

    fake.script = [Reply(500, "oops")] * 3
    fake.requests.clear()
    failed = await feed.poll()
    await feed.aclose()
    assert failed.outcome == "error"
    assert len(fake.requests) == 3
    assert sample(metrics, "feed_polls", outcome="error") == 1


async def test_dropped_connection_is_retried(
    fake: FakeCielo, store: MemoryStore, clock: FakeClock, metrics: Metrics
) -> None:
    fake.script = [Reply(200, b'{"status":"ok","data":{"ite', drop=True)]
    fake.serve([swap("x", TOKEN_A)])
    feed = await make_feed(fake, store, clock, metrics)
    result = await feed.poll()
    await feed.aclose()
    assert [b.tx_hash for b in result.buys] == ["x"]
    assert len(fake.requests) == 2


@pytest.mark.parametrize(
    "body",
    [
        b'{"status":"ok","data":{"items":[{"tx_hash":"a"',  # truncated
        b"<html>Bad gateway</html>",
        b"[]",
        b'{"status":"ok","data":{"items":null}}',
        b'{"status":"ok"}',
        b'{"status":"error","message":"internal"}',
        b"\xff\xfe\x00",
    ],
    ids=["truncated", "html", "list", "null-items", "no-data", "status-error", "binary"],
)
async def test_malformed_page_is_counted_and_the_next_poll_works(
    fake: FakeCielo, store: MemoryStore, clock: FakeClock, metrics: Metrics, body: bytes
) -> None:
    fake.script = [Reply(200, body)]
    fake.serve([swap("x", TOKEN_A)])
    feed = await make_feed(fake, store, clock, metrics)
    bad = await feed.poll()
    good = await feed.poll()
    await feed.aclose()
    assert (bad.outcome, bad.buys) == ("malformed", ())
    assert [b.tx_hash for b in good.buys] == ["x"]
    assert sample(metrics, "feed_polls", outcome="malformed") == 1


async def test_other_4xx_is_an_error_not_a_crash(
    fake: FakeCielo, store: MemoryStore, clock: FakeClock, metrics: Metrics
) -> None:
    fake.script = [Reply(400, {"status": "error", "message": "bad chains"})]
    feed = await make_feed(fake, store, clock, metrics)
    result = await feed.poll()
    await feed.aclose()
    assert result.outcome == "http_error"


async def test_error_on_page_two_keeps_page_one(
    fake: FakeCielo, store: MemoryStore, clock: FakeClock, metrics: Metrics
) -> None:
    fake.pages = {None: envelope([swap("first", TOKEN_A)], "c1")}
    fake.script = []
    feed = await make_feed(fake, store, clock, metrics)
    # Page two's cursor is unknown to the fake: it answers 400.
    result = await feed.poll()
    await feed.aclose()
    assert [b.tx_hash for b in result.buys] == ["first"]
    assert result.outcome == "http_error"
    assert result.pages == 1


async def test_api_key_never_logged(
    fake: FakeCielo,
    store: MemoryStore,
    clock: FakeClock,
    metrics: Metrics,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.script = [
        Reply(500, "x"),
        Reply(500, "x"),
        Reply(500, "x"),
        Reply(429, CREDITS),
        Reply(200, b"{"),
        Reply(200, PENDING),
    ]
    fake.serve([{"tx_hash": "h"}, swap("ok", TOKEN_PUMP)])
    feed = await make_feed(fake, store, clock, metrics)
    for _ in range(5):
        await feed.poll()
    await feed.aclose()
    assert "malformed item h" in caplog.text
    assert API_KEY not in caplog.text
    assert API_KEY not in repr(feed.__dict__.get("_settings"))


async def test_store_errors_in_claim_are_store_errors(clock: FakeClock) -> None:
    """The contract the feed relies on: an unreachable store raises, never answers False."""
    store = make_redis_store(f"redis://127.0.0.1:{free_port()}/0", clock)
    with pytest.raises(StoreError):
        await store.claim("tx:x", 10)
    await store.aclose()


# -- hostile and odd items (issue 18) -----------------------------------------------------------


def _amounts(item: dict[str, Any], a0: Any, u0: Any, a1: Any, u1: Any) -> dict[str, Any]:
    return item | {
        "token0_amount": a0,
        "token0_amount_usd": u0,
        "token1_amount": a1,
        "token1_amount_usd": u1,
    }


async def test_a_token_address_invalid_for_its_chain_is_malformed_and_never_looked_up(
    fake: FakeCielo, store: MemoryStore, clock: FakeClock, metrics: Metrics
) -> None:
    items = [
        swap("ok1", TOKEN_A, ts=T(1)),
        swap("bad1", "NotBase58-0OIl-xxxxxxxxxxxxxxxxxxxxxxxxxx"),  # not base58 at all
        swap("bad2", "z" * 44),  # base58, but 33 bytes
        swap("bad3", TOKEN_A[:30]),  # truncated
        swap("bad4", "0x" + "ab" * 20),  # an EVM address on Solana
        swap("bad5", "0x" + "ab" * 19, given=WETH_MIXED, chain="base"),  # 39 bytes of hex
        swap("bad6", TOKEN_A, given=WETH_MIXED, chain="ethereum"),  # a Solana key on Ethereum
        swap("ok2", EVM_TOKEN, given=WETH_MIXED, chain="base", ts=T(2)),
    ]
    fake.serve(items)
    feed = await make_feed(fake, store, clock, metrics)
    result = await feed.poll()
    await feed.aclose()
    assert [b.tx_hash for b in result.buys] == ["ok1", "ok2"]
    assert result.skipped == {"malformed": 6}
    assert sample(metrics, "feed_items", outcome="malformed") == 6


def test_evm_tokens_are_lower_cased_like_extracted_mentions() -> None:
    _, buy = classify_item(swap("0x" + "cd" * 32, EVM_TOKEN, given=WETH_MIXED, chain="Base"))
    assert buy is not None
    # The store keys EVM mentions lower-case (extraction does); the feed must ask for the same.
    assert (buy.token, buy.chain) == (EVM_TOKEN.lower(), "base")


async def test_all_zero_amounts_are_skipped_and_a_null_usd_stays_unknown(
    fake: FakeCielo, store: MemoryStore, clock: FakeClock, metrics: Metrics
) -> None:
    items = [
        _amounts(swap("zero", TOKEN_A), 0, 0, 0, 0),
        _amounts(swap("zero_str", TOKEN_A), "0", "0.0", 0.0, None),
        _amounts(swap("null_usd", TOKEN_B, ts=T(1)), 15.2, None, "1000", None),
        _amounts(swap("zero_usd", TOKEN_PUMP, ts=T(2)), 3, 0, 7, 0),  # priced at nothing
        _amounts(swap("given_usd", TOKEN_A, ts=T(3)), 1, 150.0, 7, None),
    ]
    fake.serve(items)
    feed = await make_feed(fake, store, clock, metrics)
    result = await feed.poll()
    await feed.aclose()
    assert [(b.tx_hash, b.usd) for b in result.buys] == [
        ("null_usd", None),
        ("zero_usd", None),  # amounts traded but no USD: unknown, never $0
        ("given_usd", 150.0),
    ]
    assert result.skipped == {"zero_amounts": 2}
    assert sample(metrics, "feed_items", outcome="zero_amounts") == 2


def test_a_token_for_token_swap_buys_the_received_token_at_its_own_usd() -> None:
    item = _amounts(swap("t2t", TOKEN_B, given=TOKEN_A, symbol="BBB"), 10, 900.0, 20, 880.0)
    reason, buy = classify_item(item)
    assert reason == "buy"
    assert buy is not None
    assert (buy.token, buy.symbol, buy.usd) == (TOKEN_B, "BBB", 880.0)
    # Only the received side prices it: an unknown received USD stays unknown.
    _, unpriced = classify_item(_amounts(item, 10, 900.0, 20, None))
    assert unpriced is not None
    assert unpriced.usd is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tx_hash", "abc\ud800def"),
        ("tx_hash", "abc\x00def"),
        ("token1_address", TOKEN_A[:20] + "\udc80" + TOKEN_A[21:]),
        ("wallet", WALLET + "\x1b[2J"),
        ("wallet_label", "Smart\x07Whale"),
        ("wallet_label", "lone \udfff surrogate"),
        ("token1_symbol", "TKN\r\nX-Injected: 1"),
        ("chain", "sol\x00ana"),
    ],
)
async def test_a_lone_surrogate_or_control_character_is_a_malformed_item(
    redis_url: str,
    fake: FakeCielo,
    clock: FakeClock,
    metrics: Metrics,
    caplog: pytest.LogCaptureFixture,
    field: str,
    value: str,
) -> None:
    bad = swap("bad", TOKEN_PUMP) | {field: value}
    fake.serve([swap("before", TOKEN_A, ts=T(1)), bad, swap("after", TOKEN_B, ts=T(2))])
    store = make_redis_store(redis_url, clock)  # Redis refuses to encode a lone surrogate
    feed = await make_feed(fake, store, clock, metrics)
    caplog.set_level(logging.WARNING, logger="callsbot.sources.cielo")
    try:
        result = await feed.poll()
    finally:
        await feed.aclose()
        await store.aclose()
    assert result.outcome == "ok"
    assert [b.tx_hash for b in result.buys] == ["before", "after"]
    assert result.skipped == {"malformed": 1}
    # The log line itself must stay encodable (a lone surrogate would break the handler).
    for record in caplog.records:
        record.getMessage().encode("utf-8")


async def test_api_key_whitespace_is_trimmed(
    fake: FakeCielo, store: MemoryStore, clock: FakeClock, metrics: Metrics
) -> None:
    fake.serve([swap("x", TOKEN_A)])
    settings = CieloSettings(url=fake.url, api_key=f"  {API_KEY}\r\n")
    feed = CieloFeed(settings, store, clock=clock, metrics=metrics)
    result = await feed.poll()
    await feed.aclose()
    assert [b.tx_hash for b in result.buys] == ["x"]
    assert fake.requests[0].headers["X-API-KEY"] == API_KEY


@pytest.mark.parametrize("key", ["abc\ndef", "abc def", "abc\u00e9def", "abc\x00def"])
def test_an_api_key_unusable_as_a_header_is_refused_up_front(
    store: MemoryStore, clock: FakeClock, key: str
) -> None:
    with pytest.raises(ValueError, match="HTTP header") as info:
        CieloFeed(CieloSettings(api_key=key), store, clock=clock, metrics=Metrics.create())
    assert "abc" not in str(info.value)
