"""The JSONL file sink and the log sink."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import stat
from pathlib import Path

import attrs
import pytest

from callsbot.errors import SinkError
from callsbot.sinks.jsonl import JsonlSink
from callsbot.sinks.log import LogSink
from tests.sinks.test_telegram_bot import HOSTILE, PUMP_MINT, make_alert


async def test_appends_one_object_per_alert_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "alerts.jsonl"
    sink = JsonlSink(path)
    await sink.send(make_alert())
    await sink.send(make_alert(name=HOSTILE, groups=()))
    await sink.aclose()
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 2
    first = rows[0]
    assert first["token"] == PUMP_MINT
    assert first["score"] == 7.0
    assert first["consensus"]["groups"] == ["@a", "@b", "@c"]
    assert first["consensus"]["reason"] == "🤝 MULTI-BOT CONSENSUS: +2 (3 groups: @a, @b, @c)"
    assert {"points": 2, "reason": "smart-money buy"} in first["lines"]
    assert first["links"]["pump.fun"] == f"https://pump.fun/coin/{PUMP_MINT}"
    assert first["buy"]["usd"] == 6200.0
    assert first["market"]["liquidity_usd"] == 85_000.0
    assert rows[1]["name"] == HOSTILE  # data, not markup: kept verbatim
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


async def test_existing_file_is_appended_to(tmp_path: Path) -> None:
    path = tmp_path / "alerts.jsonl"
    path.write_text('{"old": true}\n')
    await JsonlSink(path).send(make_alert())
    assert len(path.read_text().splitlines()) == 2


async def test_concurrent_alerts_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "alerts.jsonl"
    sink = JsonlSink(path)
    await asyncio.gather(*(sink.send(make_alert(name=f"T{i}" * 200)) for i in range(20)))
    names = sorted(json.loads(line)["name"][:3] for line in path.read_text().splitlines())
    assert len(names) == 20


async def test_unwritable_path_is_a_sink_error(tmp_path: Path) -> None:
    sink = JsonlSink(tmp_path / "missing-dir" / "alerts.jsonl")
    with pytest.raises(SinkError, match="cannot write"):
        await sink.send(make_alert())


async def test_nan_is_a_sink_error_not_invalid_json(tmp_path: Path) -> None:
    alert = make_alert()
    bad = attrs.evolve(alert, snapshot=attrs.evolve(alert.snapshot, price_usd=math.nan))
    path = tmp_path / "a.jsonl"
    with pytest.raises(SinkError, match="not valid JSON"):
        await JsonlSink(path).send(bad)
    assert not path.exists() or path.read_text() == ""


async def test_log_sink_writes_one_clean_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="callsbot.alerts")
    await LogSink().send(make_alert(name="evil\nALERT fake line\x1b[31m"))
    [record] = [r for r in caplog.records if r.name == "callsbot.alerts"]
    message = record.getMessage()
    assert "\n" not in message
    assert "\x1b" not in message
    assert "🤝 MULTI-BOT CONSENSUS: +2 (3 groups: @a, @b, @c)" in message
    assert "score 7.0/10" in message
