"""The tracker's outcomes become the reputation job's hit labels, never before they resolve."""

from __future__ import annotations

from pathlib import Path

from callsbot.history import schema
from callsbot.history.sql import SQLHistory
from callsbot.outcomes.labels import HistoryLabels
from callsbot.reputation.inputs import Label

T0 = 1_700_000_000


async def test_each_level_labels_the_group_that_made_it(tmp_path: Path) -> None:
    history = SQLHistory(f"sqlite:///{tmp_path / 'h.sqlite3'}")
    await history.upgrade()
    try:
        async with history.engine.begin() as conn:
            schedule = (
                await conn.execute(
                    schema.outcome_schedules.insert().values(
                        at=T0, chain="solana", token="TOK", first_ts=T0, last_ts=T0 + 60,
                        status="resolved", errors=0, detail="",
                    )
                )
            ).inserted_primary_key[0]  # fmt: skip
            rows = [
                # (kind, level, event_ts, groups, win, resolved at)
                ("level_reached", 1, T0, ["@a"], True, T0 + 3_000),
                ("level_reached", 2, T0 + 60, ["@a", "@b"], False, T0 + 90_000),
                ("level_reached", 3, T0 + 90, ["@a", "@b", "@c"], None, T0 + 1_000),  # undecided
                ("alert", 2, T0 + 60, ["@a", "@b"], True, T0 + 3_000),  # not a call's label
            ]
            for kind, level, ts, groups, win, at in rows:
                event = (
                    await conn.execute(
                        schema.tracked_events.insert().values(
                            schedule_id=schedule, at=ts, kind=kind, chain="solana",
                            token="TOK", level=level, event_ts=ts, groups=groups,
                        )
                    )
                ).inserted_primary_key[0]  # fmt: skip
                await conn.execute(
                    schema.outcomes.insert().values(
                        event_id=event, at=at, status="resolved", win=win, fields={}
                    )
                )
        labels = await HistoryLabels(history).labels(T0 - 1, T0 + 3_600)
    finally:
        await history.aclose()
    assert labels == [
        Label("@a", "TOK", float(T0), True, float(T0 + 3_000)),
        Label("@b", "TOK", float(T0 + 60), False, float(T0 + 90_000)),
    ]
