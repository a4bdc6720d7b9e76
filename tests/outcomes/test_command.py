"""``callsbot outcome`` end to end against the local GeckoTerminal."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from callsbot.cli import _parser
from callsbot.clock import FakeClock
from callsbot.config import GeckoTerminalSettings, OutcomesSettings, Settings
from callsbot.market.prices import Timeframe
from callsbot.models import Candle
from callsbot.outcomes.command import Fetch, fetch_plan, outcome_command, parse_time
from callsbot.outcomes.path import CHECKPOINTS
from callsbot.testing.dexscreener import ClockSleep
from callsbot.testing.geckoterminal import WSOL, FakeGeckoTerminal

MINT = "7GCihgDB8fe6KNjn2MYtkzZcRjQy3t9GHdC8uHYmW2hr"
POOL = "Pool1111111111111111111111111111111111111111"
NEW_POOL = "Pool2222222222222222222222222222222222222222"
NOW = 1_700_000_000
T = (NOW - 30 * 3600) // 300 * 300  # an event 30 h ago, on a 5-minute boundary
SECTION_3 = [name for name, _ in CHECKPOINTS] + [
    "entry", "peak", "peak_close", "t_2x", "t_5x", "t_10x", "max_drawdown",
    "drawdown_before_peak", "win", "win_before_stop", "status",
]  # fmt: skip


def flat(ts: int, price: float, *, high: float | None = None, close: float | None = None) -> Candle:
    return Candle(ts, price, high or price, price, close or price, 100.0)


def day_of_candles(event: int) -> list[Candle]:
    """Flat 1.0; 2.5× at 40 min; 6× at 5 h closing at 5.0 for 5 min, then 0.4; none after 20 h."""
    out = []
    for i in range(-10, 20 * 60):
        ts = event + 60 * i
        if i == 40:
            out.append(flat(ts, 1.0, high=2.5))
        elif i == 300:
            out.append(flat(ts, 1.0, high=6.0, close=5.0))
        elif 300 < i < 305:
            out.append(flat(ts, 5.0))
        elif i >= 305:
            out.append(flat(ts, 0.4))
        else:
            out.append(flat(ts, 1.0))
    return out


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(float(NOW))


async def run(
    gecko: FakeGeckoTerminal, clock: FakeClock, *, pool: str = POOL, at: int = T, **kw: Any
) -> tuple[int, dict[str, Any] | None, str]:
    settings = Settings(geckoterminal=GeckoTerminalSettings(url=gecko.url))
    out, err = io.StringIO(), io.StringIO()
    code = await outcome_command(
        settings,
        MINT,
        pool=pool,
        at=at,
        latency=kw.pop("latency", None),
        out=out,
        err=err,
        clock=clock,
        sleep=ClockSleep(clock),
        **kw,
    )
    lines = out.getvalue().splitlines()
    assert len(lines) <= 1
    return code, (json.loads(lines[0]) if lines else None), err.getvalue()


async def test_a_day_old_call_prints_every_section_3_field(
    gecko: FakeGeckoTerminal, clock: FakeClock
) -> None:
    gecko.add_pool(POOL, base=MINT, candles=day_of_candles(T))
    code, line, err = await run(gecko, clock)
    assert (code, err) == (0, "")
    assert line is not None
    assert set(SECTION_3) <= set(line)
    assert (line["mint"], line["pool"], line["looked_up"]) == (MINT, POOL, False)
    assert line["status"] == "resolved"
    assert (line["entry"], line["entry_ts"]) == (1.0, T + 60)
    assert [line[name] for name, _ in CHECKPOINTS] == [1.0, 1.0, 1.0, 1.0, 0.4]
    assert line["stale"] == ["p_24h"]  # the last trade was at 20 h
    assert (line["peak"], line["peak_close"]) == (6.0, 5.0)
    assert (line["t_2x"], line["t_5x"], line["t_10x"]) == (T + 40 * 60, T + 5 * 3600, None)
    assert line["max_drawdown"] == pytest.approx(-0.6)
    assert line["drawdown_before_peak"] == 0.0
    assert (line["win"], line["win_before_stop"]) == (True, True)
    minute, five = gecko.requests_of("ohlcv")
    assert (minute.param("aggregate"), minute.param("before_timestamp")) == ("1", str(T + 14_520))
    assert minute.param("limit") == "246"  # t − 3 min … t + 4 h 02
    assert (five.param("aggregate"), five.param("before_timestamp")) == ("5", str(T + 86_520))
    assert five.param("limit") == "242"  # t + 4 h … t + 24 h 02
    assert {r.param("token") for r in (minute, five)} == {MINT}
    assert len(gecko.requests) == 2


async def test_a_fresh_call_is_tracking_from_one_request(
    gecko: FakeGeckoTerminal, clock: FakeClock
) -> None:
    event = NOW - 30 * 60
    gecko.add_pool(POOL, base=MINT, candles=day_of_candles(event))
    code, line, _ = await run(gecko, clock, at=event)
    assert code == 0
    assert line is not None
    assert line["status"] == "tracking"
    assert (line["entry"], line["peak"], line["t_2x"]) == (1.0, 1.0, None)
    assert (line["p_15m"], line["p_1h"], line["win"]) == (1.0, None, None)
    (request,) = gecko.requests
    assert request.param("before_timestamp") is None


async def test_latency_moves_the_entry(gecko: FakeGeckoTerminal, clock: FakeClock) -> None:
    gecko.add_pool(POOL, base=MINT, candles=day_of_candles(T))
    code, line, _ = await run(gecko, clock, latency=45 * 60)
    assert code == 0
    assert line is not None
    assert (line["entry_ts"], line["latency"], line["t_2x"]) == (T + 45 * 60, 2700, T + 5 * 3600)


async def test_a_quote_side_pool_that_moved_is_found_again(
    gecko: FakeGeckoTerminal, clock: FakeClock
) -> None:
    gecko.add_pool(POOL, base=MINT)
    gecko.retire_pool(POOL)
    gecko.add_pool(NEW_POOL, base=WSOL, quote=MINT, candles=[], quote_candles=day_of_candles(T))
    code, line, _ = await run(gecko, clock)
    assert code == 0
    assert line is not None
    assert (line["pool"], line["looked_up"], line["peak"]) == (NEW_POOL, True, 6.0)
    assert [r.kind for r in gecko.requests] == ["ohlcv", "pools", "ohlcv", "ohlcv"]


async def test_a_429_storm_delays_the_answer_and_changes_nothing(
    gecko: FakeGeckoTerminal, clock: FakeClock
) -> None:
    gecko.add_pool(POOL, base=MINT, candles=day_of_candles(T))
    _, calm, _ = await run(gecko, clock)
    gecko.rate_limit_next(times=3, shape="coingecko", retry_after="0")
    clock.set(float(NOW))
    code, stormy, _ = await run(gecko, clock)
    assert code == 0
    assert calm is not None
    assert stormy is not None
    assert {**stormy, "as_of": None} == {**calm, "as_of": None}
    assert clock.time() >= NOW + 15 + 30 + 60


async def test_no_pool_prints_an_unresolved_line_and_exits_1(
    gecko: FakeGeckoTerminal, clock: FakeClock
) -> None:
    code, line, err = await run(gecko, clock)
    assert code == 1
    assert line is not None
    assert line["status"] == "unresolved"
    assert line["entry"] is None
    assert line["errors"] == 1
    assert line["detail"].startswith("pool_not_found:")
    assert f"no price data for {MINT} on {POOL}" in err


async def test_a_call_older_than_the_api_serves_is_unresolved(
    gecko: FakeGeckoTerminal, clock: FakeClock
) -> None:
    gecko.add_pool(POOL, base=MINT, candles=day_of_candles(T))
    code, line, _ = await run(gecko, clock, at=NOW - 200 * 86_400)
    assert code == 1
    assert line is not None
    assert line["detail"].startswith("too_old:")


async def test_a_future_time_or_negative_latency_is_a_usage_error(
    gecko: FakeGeckoTerminal, clock: FakeClock
) -> None:
    code, line, err = await run(gecko, clock, at=NOW + 60)
    assert (code, line) == (2, None)
    assert "future" in err
    code, line, err = await run(gecko, clock, latency=-1)
    assert (code, line) == (2, None)
    assert gecko.requests == []


async def test_latency_defaults_to_the_setting(gecko: FakeGeckoTerminal, clock: FakeClock) -> None:
    gecko.add_pool(POOL, base=MINT, candles=day_of_candles(T))
    settings = Settings(
        geckoterminal=GeckoTerminalSettings(url=gecko.url),
        outcomes=OutcomesSettings(latency_seconds=600, win_multiple=7.0, stop=-0.3),
    )
    out = io.StringIO()
    code = await outcome_command(
        settings, MINT, pool=POOL, at=T, latency=None, out=out, err=io.StringIO(), clock=clock
    )
    assert code == 0
    line = json.loads(out.getvalue())
    assert (line["status"], line["entry_ts"]) == ("resolved", T + 600)
    assert (line["win"], line["win_before_stop"]) == (False, False)  # 6× < 7×; 0.4 is −60 %
    assert gecko.requests[-1].param("before_timestamp") == str(T + 600 + 86_400 + 60)


def test_fetch_plan_follows_the_section_2_windows() -> None:
    assert fetch_plan(T, T + 17 * 60) == [Fetch(Timeframe.MINUTE, 21, None)]
    minute, five = fetch_plan(T, T + 5 * 3600)
    assert minute == Fetch(Timeframe.MINUTE, 246, T + 14_520)
    assert five == Fetch(Timeframe.FIVE_MINUTES, 13, None)  # t + 4 h … now
    assert fetch_plan(T, T + 2 * 86_400)[1] == Fetch(Timeframe.FIVE_MINUTES, 242, T + 86_520)


def test_parse_time() -> None:
    assert parse_time("1714521600") == 1_714_521_600
    assert parse_time("2024-05-01T00:00:00Z") == 1_714_521_600
    assert parse_time("2024-05-01 02:00:00+02:00") == 1_714_521_600
    assert parse_time("2024-05-01T00:00") == 1_714_521_600  # naive = UTC
    for bad in ("yesterday", "-5", "nan"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_time(bad)


def test_the_cli_declares_the_command() -> None:
    args = _parser().parse_args(
        ["outcome", MINT, "--pool", POOL, "--at", "2024-05-01T00:00:00Z", "--latency", "30"]
    )
    assert (args.command, args.mint, args.pool, args.at, args.latency) == (
        "outcome",
        MINT,
        POOL,
        1_714_521_600,
        30,
    )


async def test_python_m_callsbot_outcome_against_the_fake(tmp_path: Path) -> None:
    event = (int(time.time()) - 2 * 3600) // 60 * 60
    async with FakeGeckoTerminal() as server:  # the subprocess runs on the wall clock
        server.add_pool(POOL, base=MINT, candles=day_of_candles(event))
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "CALLSBOT_GECKOTERMINAL_URL": server.url,
            "CALLSBOT_ENV_FILE": str(tmp_path / "none.env"),
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "callsbot",
            "outcome",
            MINT,
            "--pool",
            POOL,
            "--at",
            str(event),
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, stderr.decode()
    (line,) = stdout.decode().splitlines()
    data = json.loads(line)
    assert (data["status"], data["entry"], data["entry_ts"]) == ("tracking", 1.0, event + 60)
    assert data["t_2x"] == event + 40 * 60
    assert data["peak"] == 2.5
    assert data["win"] is True
    assert data["p_4h"] is None
