"""``python -m callsbot groups`` over JSONL files: a backfill-only history, labels, errors."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from callsbot.cli.backfill import backfill_command
from callsbot.cli.groups import groups_command, parse_since
from callsbot.clock import FakeClock
from callsbot.config import DexScreenerSettings, Settings
from callsbot.metrics import Metrics
from callsbot.reputation.inputs import MemoryLabels, MemoryMentionLog
from callsbot.reputation.report import NO_OUTCOMES
from callsbot.sources.mention_log import label_to_json, mention_to_json, write_jsonl
from callsbot.testing.dexscreener import FakeDexScreener
from tests.synthetic import AT, START, synthetic_history

ROOT = Path(__file__).resolve().parents[2]
EXPORT = ROOT / "tests" / "sources" / "data" / "result.json"


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "callsbot", "groups", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)},
    )


def write_history(tmp_path: Path, *, labels: bool) -> tuple[Path, Path]:
    h = synthetic_history()
    mentions, label_file = tmp_path / "mentions.jsonl", tmp_path / "labels.jsonl"
    write_jsonl(mentions, [mention_to_json(m) for m in h.mentions])
    write_jsonl(label_file, [label_to_json(lb) for lb in h.labels] if labels else [])
    return mentions, label_file


def test_table_with_labels(tmp_path: Path) -> None:
    mentions, labels = write_history(tmp_path, labels=True)
    result = run_cli(tmp_path, "--mentions", str(mentions), "--labels", str(labels))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "resolved calls, pooled hit rate" in lines[0]
    assert lines[2].split()[:2] == ["group", "calls"]
    assert lines[4].startswith("@A ")  # best Wilson lower bound first
    assert any(line.startswith("@B ") and "copy of @A" in line for line in lines)


def test_json_of_a_backfill_only_history_has_copies_and_no_outcomes(tmp_path: Path) -> None:
    mentions, _ = write_history(tmp_path, labels=False)
    result = run_cli(tmp_path, "--mentions", str(mentions), "--format", "json", "--since", "30d")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["outcomes"] == NO_OUTCOMES
    by_group = {g["group"]: g for g in report["groups"]}
    assert by_group["@B"]["copies"][0]["leader"] == "@A"
    assert by_group["@B"]["copies"][0]["c"] >= 0.6
    assert by_group["@D"]["zero_votes"] == by_group["@D"]["calls"]
    assert report["at"] == pytest.approx(max(m.ts for m in synthetic_history().mentions) + 1)


async def test_what_backfill_dry_run_prints_is_a_mention_log(
    tmp_path: Path, clock: FakeClock
) -> None:
    out = io.StringIO()
    async with FakeDexScreener(clock=clock) as dex:
        status = await backfill_command(
            Settings(dexscreener=DexScreenerSettings(url=dex.url)),
            export=str(EXPORT),
            group="@alpha_calls",
            since=None,
            validate=False,
            dry_run=True,
            out=out,
            err=io.StringIO(),
            clock=clock,
            metrics=Metrics.create(),
        )
    assert status == 0
    path = tmp_path / "backfill.jsonl"
    path.write_text(out.getvalue())
    result = run_cli(tmp_path, "--mentions", str(path))
    assert result.returncode == 0, result.stderr
    assert NO_OUTCOMES in result.stdout
    assert "@alpha_calls" in result.stdout
    assert "copy relations: none" in result.stdout


async def test_the_command_only_sees_the_interfaces() -> None:
    h = synthetic_history()
    out = io.StringIO()
    status = await groups_command(
        Settings(),
        mentions=MemoryMentionLog(h.mentions),
        labels=MemoryLabels(h.labels),
        since=START,
        at=AT,
        fmt="json",
        out=out,
    )
    assert status == 0
    assert json.loads(out.getvalue())["labels"] > 0


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("not json", "mentions.jsonl:2: not JSON"),
        ('{"ts": "x", "group": "@a", "token": "T"}', "mentions.jsonl:2: ts: expected a number"),
        ('{"ts": 1, "token": "T"}', "mentions.jsonl:2: group: expected a non-empty string"),
        ("[1]", "mentions.jsonl:2: expected a JSON object"),
    ],
)
def test_a_bad_line_is_named(tmp_path: Path, line: str, problem: str) -> None:
    path = tmp_path / "mentions.jsonl"
    path.write_text('{"ts": 1, "group": "@a", "token": "T"}\n' + line + "\n")
    result = run_cli(tmp_path, "--mentions", str(path))
    assert result.returncode == 1
    assert problem in result.stderr


def test_bad_arguments_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "mentions.jsonl"
    path.write_text('{"ts": 1700000000, "group": "@a", "token": "T"}\n')
    assert run_cli(tmp_path, "--mentions", str(path), "--since", "yesterday").returncode == 2
    assert run_cli(tmp_path, "--mentions", str(path), "--since", "2030-01-01").returncode == 2
    assert run_cli(tmp_path, "--mentions", str(tmp_path / "missing.jsonl")).returncode == 1


def test_since_takes_durations_and_iso_times() -> None:
    assert parse_since("30d", at=AT) == AT - 30 * 86400
    assert parse_since("12h", at=AT) == AT - 12 * 3600
    assert parse_since("90m", at=AT) == AT - 90 * 60
    assert parse_since("2023-11-14T22:13:20", at=AT) == 1_700_000_000


async def test_the_default_source_is_the_history_database(tmp_path: Path) -> None:
    import datetime as dt

    from callsbot.events import MentionRecorded
    from callsbot.history.sql import SQLHistory
    from callsbot.models import MessageRef

    h = synthetic_history()
    url = f"sqlite:///{tmp_path / 'history.sqlite3'}"
    history = SQLHistory(url)
    await history.upgrade()
    await history.record(
        [
            MentionRecorded(
                at=m.ts,
                ref=MessageRef("backfill", m.chat_id or 0, m.group, m.message_id or i, int(m.ts)),
                token=m.token,
                mention_kind="mint",
                chain="solana",
                count=1,
                sender_id=m.sender_id,
                forward=m.forward,
            )
            for i, m in enumerate(h.mentions)
        ]
    )
    await history.aclose()
    at = dt.datetime.fromtimestamp(AT, tz=dt.UTC).isoformat()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "callsbot", "groups", "--format", "json", "--at", at,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(tmp_path),
            "CALLSBOT_HISTORY_URL": url,
        },
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, stderr.decode()
    report = json.loads(stdout)
    assert report["outcomes"] == NO_OUTCOMES
    by_group = {g["group"]: g for g in report["groups"]}
    assert by_group["@B"]["copies"][0]["leader"] == "@A"
    assert by_group["@B"]["copies"][0]["c"] >= 0.6
    assert by_group["@D"]["zero_votes"] == by_group["@D"]["calls"]
