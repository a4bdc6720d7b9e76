"""The deployed configuration, replayed, sends the alerts the recorded run sent.

A live-style run of the demo's session (every adapter over its local fake server, the
pipeline's own workers, the listener over real Telethon messages: :mod:`tests.replay.rig`)
is recorded as a ``history export``. The engine, with none of those adapters, must find the
same alerts (token, time, score, consensus line) from that export and from the session file.
Nothing may open a socket while the engine plays.
"""

from __future__ import annotations

import io
from typing import Any

import pytest

from callsbot.alert import Alert
from callsbot.config import Settings
from callsbot.demo import load_session
from callsbot.replay.engine import replay
from callsbot.replay.load import tape_from_history, tape_from_session
from tests.replay.rig import LiveRun, live_run


def summary(alerts: list[Alert] | tuple[Alert, ...]) -> list[tuple[str, float, float, str]]:
    return [(a.token, a.created_at, a.card.total, a.card.consensus.reason) for a in alerts]


@pytest.fixture(scope="module")
def live() -> LiveRun:
    import asyncio

    return asyncio.run(live_run(load_session()))


def test_the_live_style_run_alerts_as_the_demo_does(live: LiveRun) -> None:
    symbols = [a.symbol for a in live.alerts]
    assert symbols == ["MOONCAT", "GIGA2", "LATEDOG", "PAIRFROG", "FROGGY"]


async def test_the_session_replayed_gives_the_live_alerts(
    live: LiveRun, no_network: list[Any]
) -> None:
    result = await replay(tape_from_session(load_session()), Settings())
    assert summary([e.alert for e in result.alerts]) == summary(live.alerts)
    assert no_network == []


async def test_the_history_export_replayed_gives_the_live_alerts(
    live: LiveRun, no_network: list[Any]
) -> None:
    tape = tape_from_history(io.StringIO(live.export()))
    assert [(a.token, a.at) for a in tape.recorded_alerts] == [
        (a.token, a.created_at) for a in live.alerts
    ]
    result = await replay(tape, Settings())
    assert summary([e.alert for e in result.alerts]) == summary(live.alerts)
    # The alerts carry the same cards, line for line, and the same snapshots.
    assert [e.alert.card for e in result.alerts] == [a.card for a in live.alerts]
    assert [e.alert.snapshot for e in result.alerts] == [a.snapshot for a in live.alerts]
    assert no_network == []


async def test_the_export_replayed_finds_the_same_levels(live: LiveRun) -> None:
    from callsbot.events import LevelReached

    recorded = [(e.token, e.level, e.ts) for e in live.events if isinstance(e, LevelReached)]
    result = await replay(tape_from_history(io.StringIO(live.export())), Settings())
    assert [(e.token, e.level, e.ts) for e in result.levels] == recorded


async def test_another_threshold_changes_the_alerts(live: LiveRun) -> None:
    """The replay answers "what if": a threshold of 10 keeps only the 10-point alerts."""
    import attrs

    s = Settings()
    strict = attrs.evolve(s, scoring=attrs.evolve(s.scoring, alert_threshold=10.0))
    result = await replay(tape_from_history(io.StringIO(live.export())), strict)
    assert [e.alert.symbol for e in result.alerts] == ["MOONCAT", "PAIRFROG"]


def test_the_engine_builds_no_http_client(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    import aiohttp

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the replay built an HTTP client")

    monkeypatch.setattr(aiohttp.ClientSession, "__init__", refuse)
    result = asyncio.run(replay(tape_from_session(load_session()), Settings()))
    assert len(result.alerts) == 5
