"""db upgrade, history export/import (through the real CLI entry point) and backfill's seeding."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from callsbot.cli import main
from callsbot.cli.backfill import backfill_command
from callsbot.clock import FakeClock
from callsbot.config import DexScreenerSettings, HistorySettings, Settings
from callsbot.events import MentionRecorded
from callsbot.history.sql import SQLHistory, head_revision
from callsbot.metrics import Metrics
from callsbot.testing.dexscreener import FakeDexScreener, make_pair
from callsbot.testing.pg_server import PostgresServer
from tests.cli.test_backfill import EXPECTED, EXPORT
from tests.history import factory as f
from tests.history.conftest import both_backends, new_database
from tests.tg import mint


async def cli(monkeypatch: pytest.MonkeyPatch, url: str, *argv: str) -> int:
    """``python -m callsbot ARGV`` with the history at ``url`` (main runs its own loop)."""
    monkeypatch.setenv("CALLSBOT_HISTORY_URL", url)
    monkeypatch.delenv("CALLSBOT_CONFIG", raising=False)
    monkeypatch.setenv("CALLSBOT_ENV_FILE", "/nonexistent/.env")
    monkeypatch.setattr("callsbot.cli.setup_logging", lambda **_kw: None)
    return await asyncio.to_thread(main, list(argv))


@both_backends()
async def test_db_upgrade_migrates_once_then_says_so(
    history_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await cli(monkeypatch, history_url, "db", "upgrade") == 0
    assert f"upgraded from empty to schema revision {head_revision()}" in capsys.readouterr().out
    assert await cli(monkeypatch, history_url, "db", "upgrade") == 0
    assert "already at schema revision" in capsys.readouterr().out


@pytest.mark.parametrize("history_url", ["sqlite"], indirect=True)
async def test_db_upgrade_of_a_newer_database_exits_2(
    history: SQLHistory, history_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with history.engine.begin() as conn:
        await conn.execute(sa.text("UPDATE alembic_version SET version_num = 'zz_future'"))
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    assert await cli(monkeypatch, history_url, "db", "upgrade") == 2
    assert "newer than this callsbot" in err.getvalue()
    assert await cli(monkeypatch, history_url, "history", "export") == 2


async def test_export_import_moves_a_span_from_sqlite_to_postgresql(
    tmp_path: Path,
    pg_server: PostgresServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source_url = f"sqlite:///{tmp_path / 'source.sqlite3'}"
    source = SQLHistory(source_url)
    await source.upgrade()
    events = [e for i in range(5) for e in f.one_of_each(10 * i + 1, at=f.T0 + 100 * i)]
    await source.record(events)
    await source.aclose()

    capsys.readouterr()
    args = ("history", "export", "--since", str(f.T0 + 100), "--until", "2023-11-14T22:20:00")
    assert await cli(monkeypatch, source_url, *args) == 0
    recording = capsys.readouterr().out
    lines = recording.splitlines()
    assert json.loads(lines[0]) == {"format": "callsbot-history", "version": 1}
    span = [e for e in events if f.T0 + 100 <= e.at < 1_700_000_400]
    assert len(lines) == 1 + len(span)

    rec = tmp_path / "rec.jsonl"
    rec.write_text(recording)
    target_url = await new_database(pg_server)
    for _ in range(2):  # importing twice changes nothing
        assert await cli(monkeypatch, target_url, "history", "import", str(rec)) == 0
    target = SQLHistory(target_url)
    try:
        assert [e async for e in target.events()] == span
    finally:
        await target.aclose()

    capsys.readouterr()
    assert await cli(monkeypatch, target_url, "history", "export") == 0
    assert capsys.readouterr().out == recording  # the same bytes back


async def test_import_of_something_else_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"format": "callsbot-history", "version": 1}\n{"kind": "nope", "at": 1}\n')
    url = f"sqlite:///{tmp_path / 'h.sqlite3'}"
    assert await cli(monkeypatch, url, "history", "import", str(bad)) == 1
    assert "line 2: unknown kind 'nope'" in capsys.readouterr().err
    missing = str(tmp_path / "missing.jsonl")
    assert await cli(monkeypatch, url, "history", "import", missing) == 1


async def _backfill(settings: Settings, clock: FakeClock, *, dry_run: bool) -> int:
    async with FakeDexScreener(clock=clock) as dex:
        dex.add_pair(make_pair(mint(41), pair_address=mint(40)))
        settings = Settings(dexscreener=DexScreenerSettings(url=dex.url), history=settings.history)
        err = io.StringIO()
        status = await backfill_command(
            settings,
            export=str(EXPORT),
            group="@alpha_calls",
            since=None,
            validate=False,
            dry_run=dry_run,
            out=io.StringIO(),
            err=err,
            clock=clock,
            metrics=Metrics.create(),
        )
    assert status == 0, err.getvalue()
    return status


@both_backends()
async def test_backfill_seeds_the_history_once_with_original_dates(
    history_url: str, clock: FakeClock
) -> None:
    settings = Settings(history=HistorySettings(url=history_url))
    await _backfill(settings, clock, dry_run=False)
    await _backfill(settings, clock, dry_run=False)  # the same export again: no new row
    history = SQLHistory(history_url)
    try:
        got = [e async for e in history.events()]
        counts = await history.counts()
    finally:
        await history.aclose()
    assert counts["mentions"] == len(EXPECTED) == len(got)
    assert all(isinstance(e, MentionRecorded) for e in got)
    mentions = [e for e in got if isinstance(e, MentionRecorded)]
    assert {(e.ref.message_id, e.token, e.mention_kind) for e in mentions} == EXPECTED
    first = next(e for e in mentions if e.ref.message_id == 1001)
    assert first.at == first.ref.ts == 1732521660  # the message's own date, not "now"
    assert first.ref.source == "backfill"
    assert first.ref.group == "@alpha_calls"
    assert first.ref.chat_id < 0
    assert first.text  # kept for fingerprints and replay
    assert {e.chain for e in mentions} == {"solana", "base"}


async def test_backfill_dry_run_writes_no_history(tmp_path: Path, clock: FakeClock) -> None:
    db = tmp_path / "never.sqlite3"
    await _backfill(Settings(history=HistorySettings(url=f"sqlite:///{db}")), clock, dry_run=True)
    assert not db.exists()
