"""``python -m callsbot report`` end to end: the tracker fills a history, the CLI reads it."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from callsbot.cli import main
from callsbot.clock import FakeClock
from callsbot.history.sql import SQLHistory
from callsbot.outcomes.report import CSV_COLUMNS
from callsbot.testing.geckoterminal import FakeGeckoTerminal
from tests.outcomes.rig import (
    AFTER,
    T,
    alert,
    day_of_candles,
    flat,
    level,
    mention,
    open_rig,
    scored,
    sqlite_url,
    verdict,
)
from tests.tg import mint

TOKENS = 12


async def cli(monkeypatch: pytest.MonkeyPatch, url: str, *argv: str) -> int:
    """``python -m callsbot ARGV`` with the history at ``url`` (main runs its own loop)."""
    monkeypatch.setenv("CALLSBOT_HISTORY_URL", url)
    monkeypatch.delenv("CALLSBOT_CONFIG", raising=False)
    monkeypatch.setenv("CALLSBOT_ENV_FILE", "/nonexistent/.env")
    monkeypatch.setattr("callsbot.cli.setup_logging", lambda **_kw: None)
    return await asyncio.to_thread(main, list(argv))


@pytest.fixture(scope="module")
def history_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A history the real tracker filled: 12 tokens, a third of them losers, over 24 h."""
    path = tmp_path_factory.mktemp("report")
    url = sqlite_url(path)

    async def fill() -> None:
        clock = FakeClock(float(T))
        async with FakeGeckoTerminal(clock=clock) as gecko:
            events: list[object] = []
            for i in range(TOKENS):
                token, pool = mint(i), f"Pool{i:040d}"
                candles = day_of_candles()
                if i % 3 == 0:  # a loser: flat, 10 % down after the call
                    candles = [flat(c.ts, 1.0 if c.ts < T + 60 else 0.9) for c in candles]
                gecko.add_pool(pool, base=token, candles=candles)
                groups = ("@alpha", "@beta") if i % 2 else ("@gamma",)
                events += [verdict(token=token, pool=pool)]
                for n, group in enumerate(groups, 1):
                    events += [mention(group, T + n, token=token), level(n, T + n, token=token)]
                events += [scored(T + 30.0, () if i >= 8 else groups, token=token)]
                if i % 2:
                    events += [alert(T + 31.0, groups, token=token, pool=pool)]
            rig = await open_rig(clock, gecko, url)
            try:
                await rig.feed(*events)
                await rig.advance(AFTER)
            finally:
                await rig.close()

    asyncio.run(fill())
    return url


async def test_the_table_shows_buckets_and_the_targets_checklist(
    history_file: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await cli(monkeypatch, history_file, "report") == 0
    text = capsys.readouterr().out
    assert "by level: " in text
    assert "level_reached 1" in text
    assert "alert         2" in text
    assert "hidden (n < 10)" in text
    assert "deployed targets:" in text
    assert "consensus (2+ groups) win rate > 60 %" in text


async def test_json_has_the_documented_shape(
    history_file: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await cli(monkeypatch, history_file, "report", "--format", "json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["version"] == 1
    assert doc["split"] == "level"
    assert doc["events"] == 18 + TOKENS + TOKENS // 2  # levels (1 or 2 a token), scores, alerts
    buckets = {(b["kind"], b["bucket"]): b for b in doc["buckets"]}
    level1 = buckets[("level_reached", "1")]
    assert level1["n"] == TOKENS  # every token once, every outcome resolved
    assert level1["wins"] == 8  # a third were losers
    assert level1["display"] == "low_n"
    assert level1["win_ci"][0] < 8 / 12 < level1["win_ci"][1]
    assert buckets[("scored", "0")]["n"] == 4  # tokens 8..11 were scored with no group
    assert buckets[("alert", "2")]["n"] == TOKENS // 2
    names = [t["name"] for t in doc["targets"]]
    assert names == [
        "consensus_win_rate",
        "solo_win_rate",
        "consensus_tokens_per_week",
        "alert_2x_rate",
        "alert_10x_per_month",
    ]
    assert {b["unresolved"] for b in doc["buckets"]} == {0}


async def test_by_alerted_and_by_group_csv_and_a_plot(
    history_file: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert (
        await cli(monkeypatch, history_file, "report", "--by", "alerted", "--format", "json") == 0
    )
    doc = json.loads(capsys.readouterr().out)
    levels = {b["bucket"]: b["n"] for b in doc["buckets"] if b["kind"] == "level_reached"}
    assert levels == {"alerted": TOKENS // 2, "not_alerted": TOKENS // 2}
    plot = tmp_path / "win-rates.png"
    args = ("report", "--by", "group", "--format", "csv", "--plot", str(plot))
    assert await cli(monkeypatch, history_file, *args) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert tuple(rows[0]) == CSV_COLUMNS
    groups = {(r["kind"], r["bucket"]): int(r["n"]) for r in rows}
    assert groups[("level_reached", "@alpha")] == TOKENS // 2
    assert groups[("level_reached", "@gamma")] == TOKENS // 2
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


async def test_since_and_until_select_on_event_time(
    history_file: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ("report", "--since", str(T + 2), "--until", str(T + 31), "--format", "json")
    assert await cli(monkeypatch, history_file, *args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {b["kind"] for b in doc["buckets"] if b["n"]} == {"level_reached", "scored"}
    assert doc["since"] == T + 2
    assert doc["until"] == T + 31
    assert (
        await cli(
            monkeypatch, history_file, "report", "--since", "2030-01-01", "--until", "2029-01-01"
        )
        == 2
    )


async def test_a_history_without_or_with_another_schema_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = sqlite_url(tmp_path / "empty")
    assert await cli(monkeypatch, empty, "report") == 1
    assert "no schema yet" in capsys.readouterr().err
    history = SQLHistory(empty)
    try:
        await history.upgrade()
        async with history.engine.begin() as conn:
            await conn.execute(sa.text("UPDATE alembic_version SET version_num = '0001'"))
    finally:
        await history.aclose()
    assert await cli(monkeypatch, empty, "report") == 2
    assert "run: python -m callsbot db upgrade" in capsys.readouterr().err
