"""The recorded demo: real components, simulated clock, same outcome on every backend."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import attrs
import pytest

from callsbot.config import Settings, StoreSettings
from callsbot.demo import Serve, demo_command, load_session, open_demo
from callsbot.demo.tracking import HISTORY_FILE
from callsbot.history.sql import SQLHistory
from callsbot.outcomes.ledger import OutcomeLedger
from callsbot.outcomes.path import OutcomeStatus
from callsbot.outcomes.report import EventKind

ALERTS = "$MOONCAT, $GIGA2, $LATEDOG, $PAIRFROG, $FROGGY"


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo leaves its history database in the current directory: not the repository's."""
    monkeypatch.chdir(tmp_path)


async def run_demo(settings: Settings) -> str:
    out = io.StringIO()
    assert await demo_command(settings, out=out) == 0
    return out.getvalue()


def summary_line(text: str, label: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(label))[len(label) :].strip()


async def test_demo_tells_the_story_on_the_memory_store() -> None:
    text = await run_demo(Settings())
    assert summary_line(text, "alerts") == ALERTS
    assert summary_line(text, "Telegram messages replayed") == "286"
    assert summary_line(text, "mentions recorded") == "17 (mint 16, pair 1)"
    assert summary_line(text, "mentions rejected") == (
        "6 (duplicate 2, low_liquidity 3, no_pairs 1)"
    )
    # Late consensus: LATEDOG was bought before any group called it, and alerted once three did.
    assert "$LATEDOG   alerted" in text
    assert "+2 (3 groups: @MarksGems, @SouthParkCall, -1001500000006)" in text
    # A token nobody called stays a solo signal; the window slid past OLDNEWS's first call.
    assert "$SOLOPEPE  watching        score  4.0  ⚠️ SOLO SIGNAL: -1" in text
    assert "$OLDNEWS   watching        score  5.0  👤 ONE GROUP: +0 (1 group: @batman_gem)" in text
    # Each alert is printed as the Telegram group would show it.
    assert text.count("──── alert at") == 5
    assert "🤝 MULTI-BOT CONSENSUS: +2 (4 groups:" in text


async def test_demo_follows_the_day_after_and_leaves_its_history(tmp_path: Path) -> None:
    text = await run_demo(Settings())
    # Every alert got its +1 h and +24 h reply, from the recorded GeckoTerminal answers.
    assert text.count("──── reply to the $") == 10
    assert "📈 +24h 4.53× · peak 11.53× at 7 h 55 · drawdown 0 %" in text  # FROGGY's 10×
    assert "$LATEDOG   resolved   peak  5.19×" in text
    report = text[text.index("──── report ────") :]
    assert "level_reached 3+" in report
    assert "scored        0" in report
    assert "deployed targets:" in report
    # The history database is left behind, and said where.
    path = tmp_path / "callsbot-demo-history.sqlite3"
    assert summary_line(text, "history:") == str(path)
    history = SQLHistory(f"sqlite:///{path}")
    try:
        counts = await history.counts()
        records = await OutcomeLedger(history).records(window=3600, latency=60)
    finally:
        await history.aclose()
    assert counts["mentions"] == 17
    assert counts["alerts"] == 5
    assert counts["followups"] == 10
    assert {r.outcome.status for r in records} == {OutcomeStatus.RESOLVED, OutcomeStatus.DEAD}
    assert sum(r.kind is EventKind.ALERT for r in records) == 5


async def test_demo_over_redis_gives_the_same_alerts_twice_in_a_row(redis_url: str) -> None:
    settings = attrs.evolve(Settings(), store=StoreSettings(url=redis_url))
    for _ in range(2):  # a second run on the same Redis is not silenced by the first one's keys
        text = await run_demo(settings)
        assert summary_line(text, "alerts") == ALERTS
        assert text.count("──── reply to the $") == 10  # follow-up claims are the run's own


async def test_the_session_plays_on_the_engine_without_a_socket(no_network: list[object]) -> None:
    async with open_demo(Settings(), out=io.StringIO(), quiet=True) as demo:
        while await demo.step():
            pass
        text = await demo.finish()
    # Market data and the feed come from the recording, in-process.
    assert summary_line(text, "alerts") == ALERTS
    assert no_network == []


async def test_the_served_demo_is_ready_while_it_plays() -> None:
    async with open_demo(Settings(), out=io.StringIO(), quiet=True, serve=Serve(port=0)) as demo:
        port = await demo.listening()
        while demo.t <= 600 and await demo.step():
            pass
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/readyz") as response,
        ):
            body = await response.json()
    # The scorer is polled as the live loop polls it: its feed is fresh.
    assert body == {"status": "ready"}


def test_session_payloads_use_the_real_schemas() -> None:
    session = load_session()
    assert len(session["telegram"]["messages"]) >= 200
    for item in (f["item"] for f in session["cielo"]):
        assert {"tx_hash", "tx_type", "chain", "timestamp", "wallet"} <= item.keys()
    for pair in session["dexscreener"]["pairs"]:
        assert {"chainId", "pairAddress", "baseToken", "quoteToken", "priceNative"} <= pair.keys()


@pytest.mark.timeout(60)
def test_make_demo_command_runs_without_credentials(tmp_path: Path) -> None:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "callsbot", "demo", "--quiet"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "──── summary ────" in result.stdout
    assert summary_line(result.stdout, "alerts") == ALERTS
    assert summary_line(result.stdout, "history:") == str(tmp_path / HISTORY_FILE)
    assert (tmp_path / HISTORY_FILE).stat().st_size > 0
