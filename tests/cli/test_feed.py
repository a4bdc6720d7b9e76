"""``python -m callsbot feed --once`` (feed_command) against the local Cielo fake."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator

import pytest

from callsbot.cli.feed import feed_command
from callsbot.clock import FakeClock
from callsbot.config import CieloSettings, Settings, StoreSettings
from callsbot.metrics import Metrics
from callsbot.testing.cielo import API_KEY, CREDITS, FakeCielo, Reply, sell, swap, transfer

TOKEN = "9BB6NFEcjBCtnNLFko2FqVQBq8HHM13kCyYcdQbgpump"


async def no_sleep(_seconds: float) -> None:
    return None


@pytest.fixture
async def cielo() -> AsyncIterator[FakeCielo]:
    server = await FakeCielo().start()
    yield server
    await server.close()


async def run(settings: Settings, clock: FakeClock) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = await feed_command(
        settings, out, err, clock=clock, metrics=Metrics.create(), sleep=no_sleep
    )
    return code, out.getvalue(), err.getvalue()


def settings_for(cielo: FakeCielo, key: str | None = API_KEY) -> Settings:
    return Settings(cielo=CieloSettings(url=cielo.url, api_key=key))


async def test_prints_one_json_line_per_buy_and_a_summary(
    cielo: FakeCielo, clock: FakeClock
) -> None:
    no_wallet = swap("bad", TOKEN)
    del no_wallet["wallet"]
    cielo.serve(
        [
            swap("b1", TOKEN, usd="1234.5", symbol="MDOG", ts=1_700_000_100),
            sell("s1", TOKEN),
            transfer("t1", TOKEN),
            no_wallet,
        ],
        [swap("b2", TOKEN, usd=None, ts=1_700_000_000)],
    )
    code, out, err = await run(settings_for(cielo), clock)
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert rows == [
        {
            "tx_hash": "b2",
            "wallet": rows[0]["wallet"],
            "token": TOKEN,
            "symbol": "TKN",
            "usd": None,
            "ts": 1_700_000_000,
            "dex": "raydium",
        },
        {
            "tx_hash": "b1",
            "wallet": rows[0]["wallet"],
            "token": TOKEN,
            "symbol": "MDOG",
            "usd": 1234.5,
            "ts": 1_700_000_100,
            "dex": "raydium",
        },
    ]
    assert "2 page(s), 2 buy(s) kept" in err
    assert "skipped: malformed=1, sell=1, transfer=1" in err
    assert API_KEY not in out + err


async def test_missing_key_exits_2_naming_the_variable(cielo: FakeCielo, clock: FakeClock) -> None:
    code, out, err = await run(settings_for(cielo, key=None), clock)
    assert code == 2
    assert "CALLSBOT_CIELO_API_KEY" in err
    assert out == ""
    assert cielo.requests == []


async def test_rejected_key_exits_1(cielo: FakeCielo, clock: FakeClock) -> None:
    code, _, err = await run(settings_for(cielo, key="wrong-key"), clock)
    assert code == 1
    assert "CALLSBOT_CIELO_API_KEY" in err
    assert "wrong-key" not in err


async def test_rate_limited_exits_1_with_the_wait(cielo: FakeCielo, clock: FakeClock) -> None:
    cielo.script = [Reply(429, CREDITS, {"Retry-After": "45"})]
    code, _, err = await run(settings_for(cielo), clock)
    assert code == 1
    assert "rate_limited" in err
    assert "retry in 45s" in err


async def test_pending_is_not_a_failure(cielo: FakeCielo, clock: FakeClock) -> None:
    cielo.script = [Reply(200, {"status": "pending", "message": "indexing"})]
    code, out, err = await run(settings_for(cielo), clock)
    assert (code, out) == (0, "")
    assert "pending" in err


async def test_never_claims_in_the_configured_store(
    cielo: FakeCielo, clock: FakeClock, redis_url: str
) -> None:
    cielo.serve([swap("b1", TOKEN)])
    settings = Settings(
        cielo=CieloSettings(url=cielo.url, api_key=API_KEY), store=StoreSettings(url=redis_url)
    )
    for _ in range(2):  # both runs see the buy: nothing was claimed in the shared Redis
        code, out, _ = await run(settings, clock)
        assert code == 0
        assert json.loads(out)["tx_hash"] == "b1"
