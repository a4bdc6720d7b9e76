"""``callsbot token ADDRESS...`` against the fake DexScreener: one JSON line per address."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from callsbot.cli.token import token_command
from callsbot.clock import FakeClock
from callsbot.config import DexScreenerSettings, Settings
from callsbot.testing.dexscreener import ClockSleep, FakeDexScreener

TOKEN = "7GCihgDB8fe6KNjn2MYtkzZcRjQy3t9GHdC8uHYmW2hr"
THIN = "DezXAZ8z7PnrnRJjz3wXBoRgixCaB1yy6tdBvHNMDi3o"
POOLED = "EKpQGSJtjMFqKZ9KQanSqYXRcF8fBopzLHYxdM65zcjm"
POOL = "Pool1111111111111111111111111111111111111111"
NOTHING = "Nothing111111111111111111111111111111111111"


@pytest.fixture
async def dex(clock: FakeClock) -> AsyncIterator[FakeDexScreener]:
    async with FakeDexScreener(clock=clock) as server:
        server.add_token(TOKEN, base_symbol="GOOD", liquidity=52_000, volume_h24=310_000)
        server.add_token(THIN, base_symbol="THIN", liquidity=3_200)
        server.add_token(POOLED, base_symbol="WIF", pair_address=POOL)
        yield server


def settings_for(dex: FakeDexScreener, **overrides: Any) -> Settings:
    return Settings(dexscreener=DexScreenerSettings(url=dex.url, **overrides))


async def run(settings: Settings, addresses: list[str], clock: FakeClock) -> tuple[int, list[Any]]:
    out = io.StringIO()
    code = await token_command(settings, addresses, out, clock=clock, sleep=ClockSleep(clock))
    return code, [json.loads(line) for line in out.getvalue().splitlines()]


async def test_prints_one_json_line_per_address(dex: FakeDexScreener, clock: FakeClock) -> None:
    code, lines = await run(settings_for(dex), [TOKEN, THIN, NOTHING, POOL], clock)
    assert code == 0
    assert [line["address"] for line in lines] == [TOKEN, THIN, NOTHING, POOL]
    good, thin, nothing, pool = lines
    assert good["chain"] == "solana"
    assert (good["verdict"], good["reason"]) == ("valid", "ok")
    assert good["detail"] == "liquidity $52,000, 24h volume $310,000"
    assert good["snapshot"]["symbol"] == "GOOD"
    assert good["snapshot"]["liquidity_usd"] == 52_000
    assert good["snapshot"]["price_usd"] == pytest.approx(0.0012)
    assert good["snapshot"]["pair_created_at"] == pytest.approx(1_699_990_000.0)
    assert "token" not in good
    assert (thin["verdict"], thin["reason"]) == ("invalid", "low_liquidity")
    assert thin["detail"] == "liquidity $3,200 < $10,000"
    assert (nothing["verdict"], nothing["reason"], nothing["snapshot"]) == (
        "invalid",
        "no_pairs",
        None,
    )
    # A pair address is resolved to its base token and judged as that token.
    assert (pool["verdict"], pool["token"]) == ("valid", POOLED)
    assert pool["snapshot"]["symbol"] == "WIF"
    assert set(good) == {"address", "chain", "verdict", "reason", "detail", "snapshot"}


async def test_unknown_now_exits_1(dex: FakeDexScreener, clock: FakeClock) -> None:
    dex.fail_next(503, times=5)
    code, lines = await run(settings_for(dex, max_attempts=1), [TOKEN], clock)
    assert code == 1
    [line] = lines
    assert (line["verdict"], line["reason"], line["snapshot"]) == ("unknown", "unknown_now", None)
    assert "503" in line["detail"]


async def test_no_addresses_exits_2(dex: FakeDexScreener, clock: FakeClock) -> None:
    code, lines = await run(settings_for(dex), ["", "  "], clock)
    assert (code, lines) == (2, [])
    assert dex.requests == []
