"""Buckets, the display rule, the target checklist and the three renderings."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from callsbot.outcomes.path import Outcome, OutcomeStatus, unresolved_outcome
from callsbot.outcomes.plot import build_figure, write_plot
from callsbot.outcomes.report import (
    CSV_COLUMNS,
    EventKind,
    OutcomeRecord,
    Verdict,
    build_report,
    level_bucket,
    render_csv,
    render_json,
    render_table,
)
from callsbot.outcomes.stats import wilson

T0 = 1_714_521_600  # 2024-05-01 00:00 UTC
WEEK = 7 * 86_400

LR, SC, AL = EventKind.LEVEL_REACHED, EventKind.SCORED, EventKind.ALERT


def outcome(
    ts: int,
    *,
    peak: float = 1.5,
    peak_close: float | None = None,
    p_1h: float | None = 1.1,
    stopped: bool = False,
    status: OutcomeStatus = OutcomeStatus.RESOLVED,
) -> Outcome:
    """A resolved outcome with entry 1.0 reaching ``peak``."""
    if status is OutcomeStatus.UNRESOLVED:
        return unresolved_outcome(ts, errors=3, detail="no pool")
    decided = status is not OutcomeStatus.TRACKING
    won = peak >= 2.0
    return Outcome(
        event_ts=ts,
        latency=60,
        status=status,
        entry=1.0,
        entry_ts=ts + 60,
        p_1h=p_1h,
        peak=peak,
        peak_close=peak_close if peak_close is not None else peak * 0.8,
        t_2x=ts + 600 if peak >= 2 else None,
        t_5x=ts + 900 if peak >= 5 else None,
        t_10x=ts + 1200 if peak >= 10 else None,
        max_drawdown=-0.6 if stopped else -0.1,
        drawdown_before_peak=-0.6 if stopped else -0.1,
        win=won if (decided or won) else None,
        win_before_stop=(won and not stopped) if decided else None,
    )


_counter = iter(range(1_000_000))


def record(
    kind: EventKind,
    level: int,
    *,
    token: str | None = None,
    alerted: bool = False,
    groups: tuple[str, ...] = ("@a",),
    ts: int | None = None,
    **fields: object,
) -> OutcomeRecord:
    i = next(_counter)
    at = ts if ts is not None else T0 + i * 60
    return OutcomeRecord(
        kind=kind,
        token=token if token is not None else f"Tok{i}",
        level=level,
        alerted=alerted,
        groups=groups,
        outcome=outcome(at, **fields),  # type: ignore[arg-type]
    )


def bucket(report, kind: EventKind, name: str):  # type: ignore[no-untyped-def]
    (found,) = [b for b in report.buckets if b.kind is kind and b.bucket == name]
    return found


def test_level_buckets() -> None:
    assert [level_bucket(k) for k in (0, 1, 2, 3, 4, 17)] == ["0", "1", "2", "3+", "3+", "3+"]


def test_rates_per_level_with_wilson_intervals_and_each_token_once_per_bucket() -> None:
    records = [record(LR, 2, peak=3.0) for _ in range(12)] + [record(LR, 2) for _ in range(20)]
    records += [
        record(LR, 3, token="Same", peak=12.0),  # reaches 3 then 4: one row in "3+"
        record(LR, 4, token="Same", peak=1.0),
        record(LR, 1, token="Same", peak=12.0),  # but it also counts in "1"
    ]
    report = build_report(records)
    two = bucket(report, LR, "2")
    assert (two.n, two.wins.count) == (32, 12)
    assert two.wins.interval == wilson(12, 32)
    assert two.x5.count == 0
    three = bucket(report, LR, "3+")
    assert (three.n, three.wins.count, three.x10.count) == (1, 1, 1)
    assert bucket(report, LR, "1").n == 1
    assert [b.bucket for b in report.buckets] == ["1", "2", "3+"]  # no level 0 for level_reached


def test_unresolved_and_tracking_are_counted_beside_n_and_dead_is_a_loss() -> None:
    records = [
        record(SC, 0, peak=2.5),
        record(SC, 0, peak=1.0, status=OutcomeStatus.DEAD),
        record(SC, 0, status=OutcomeStatus.UNRESOLVED),
        record(SC, 0, status=OutcomeStatus.UNRESOLVED),
        record(SC, 0, peak=4.0, status=OutcomeStatus.TRACKING),
    ]
    solo = bucket(build_report(records), SC, "0")
    assert (solo.n, solo.wins.count, solo.unresolved, solo.tracking) == (2, 1, 2, 1)


def test_win_before_stop_multiples_medians_and_returns() -> None:
    records = [
        record(AL, 2, alerted=True, peak=2.5, stopped=True, p_1h=1.5),
        record(AL, 2, alerted=True, peak=6.0, peak_close=4.0, p_1h=0.5),
        record(AL, 2, alerted=True, peak=11.0, peak_close=9.0, p_1h=None),
        record(AL, 2, alerted=True, peak=1.2, peak_close=1.0, p_1h=1.0),
    ]
    b = bucket(build_report(records), AL, "2")
    assert (b.wins.count, b.win_before_stop.count, b.x5.count, b.x10.count) == (3, 2, 2, 1)
    assert b.median_peak_close is not None
    assert b.median_peak_close.value == pytest.approx((2.0 + 4.0) / 2)  # 1.0, 2.0, 4.0, 9.0
    assert b.median_return_1h == pytest.approx(0.0)  # of +50 %, −50 %, 0 %
    assert b.median_return_4h is None


def test_display_rule_and_distance_to_330_per_bucket() -> None:
    records = [record(SC, 1) for _ in range(9)] + [record(SC, 2) for _ in range(10)]
    records += [record(SC, 3) for _ in range(30)]
    report = build_report(records)
    flags = {b.bucket: (b.display.value, b.short_of) for b in report.buckets}
    assert flags == {
        "0": ("hidden", 330),
        "1": ("hidden", 321),
        "2": ("low_n", 320),
        "3+": ("ok", 300),
    }


def test_split_by_alerted_and_by_group() -> None:
    records = [
        record(SC, 1, alerted=True, groups=("@a", "@b"), peak=3.0),
        record(SC, 1, alerted=False, groups=("@b",)),
        record(SC, 0, alerted=False, groups=()),
    ]
    by_alert = build_report(records, split="alerted")
    assert [(b.bucket, b.n) for b in by_alert.buckets] == [("alerted", 1), ("not_alerted", 2)]
    by_group = build_report(records, split="group")
    assert [(b.bucket, b.n, b.wins.count) for b in by_group.buckets] == [
        ("@a", 1, 1),
        ("@b", 2, 1),
    ]
    with pytest.raises(ValueError, match="split"):
        build_report(records, split="colour")


def test_since_until_select_events_by_their_time() -> None:
    records = [record(SC, 0, ts=T0 + k * 86_400) for k in range(10)]
    report = build_report(records, since=T0 + 2 * 86_400, until=T0 + 5 * 86_400)
    assert report.events == 3
    assert report.period_seconds == 3 * 86_400


def test_targets_are_judged_on_their_intervals() -> None:
    records = [record(LR, 2, peak=3.0, ts=T0 + i * 600) for i in range(90)]
    records += [record(LR, 2, ts=T0 + i * 600 + 1) for i in range(10)]
    records += [record(SC, 0, peak=3.0 if i % 2 else 1.0, ts=T0 + i * 60) for i in range(100)]
    records += [record(AL, 2, alerted=True, peak=12.0, ts=T0 + i) for i in range(5)]
    report = build_report(records, since=T0, until=T0 + WEEK)
    targets = {t.name: t for t in report.targets}
    consensus = targets["consensus_win_rate"]
    assert (consensus.count, consensus.n, consensus.verdict) == (90, 100, Verdict.MET)
    assert consensus.interval == wilson(90, 100)
    solo = targets["solo_win_rate"]  # 50 % (40.3–59.7 %): cannot be under 40 %
    assert (solo.estimate, solo.verdict) == (0.5, Verdict.NOT_MET)
    per_week = targets["consensus_tokens_per_week"]
    assert (per_week.count, per_week.estimate, per_week.verdict) == (100, 100.0, Verdict.MET)
    assert targets["alert_2x_rate"].verdict is Verdict.TOO_FEW  # 5 alerts
    tenx = targets["alert_10x_per_month"]
    assert tenx.count == 5
    assert tenx.estimate == pytest.approx(5 / (7 / 30))
    assert tenx.verdict is Verdict.MET


def test_a_straddling_interval_is_undecided() -> None:
    records = [record(SC, 0, peak=3.0 if i < 7 else 1.0) for i in range(20)]  # 35 %, n = 20
    (solo,) = [t for t in build_report(records).targets if t.name == "solo_win_rate"]
    assert solo.verdict is Verdict.UNDECIDED


def test_json_carries_every_bucket_with_n_wins_and_interval_even_hidden_ones() -> None:
    records = [record(SC, 0, peak=3.0), record(SC, 0), record(LR, 1)]
    data = json.loads(render_json(build_report(records, seed=5)))
    assert data["version"] == 1
    assert data["bootstrap"] == {"resamples": 2000, "seed": 5}
    assert data["events_per_bucket"] == 330
    solo = next(b for b in data["buckets"] if b["kind"] == "scored" and b["bucket"] == "0")
    assert (solo["n"], solo["wins"], solo["display"]) == (2, 1, "hidden")
    assert solo["win_ci"] == pytest.approx(wilson(1, 2).as_list())
    assert set(solo) >= {
        "win_rate", "win_before_stop", "x5", "x10", "median_peak_close", "median_return_1h",
        "median_return_4h", "median_return_24h", "unresolved", "tracking", "short_of",
    }  # fmt: skip
    assert [t["name"] for t in data["targets"]] == [
        "consensus_win_rate",
        "solo_win_rate",
        "consensus_tokens_per_week",
        "alert_2x_rate",
        "alert_10x_per_month",
    ]


def test_csv_has_one_row_per_bucket() -> None:
    records = [record(SC, k % 4) for k in range(40)]
    rows = list(csv.DictReader(io.StringIO(render_csv(build_report(records)))))
    assert len(rows) == 4
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [(r["bucket"], r["n"], r["display"]) for r in rows] == [
        ("0", "10", "low_n"),
        ("1", "10", "low_n"),
        ("2", "10", "low_n"),
        ("3+", "10", "low_n"),
    ]


def test_table_hides_small_buckets_marks_low_n_and_lists_targets() -> None:
    records = [record(SC, 0) for _ in range(5)] + [record(SC, 1, peak=3.0) for _ in range(12)]
    records += [record(SC, 2, peak=3.0 if i % 3 == 0 else 1.0) for i in range(30)]
    table = render_table(build_report(records))
    lines = table.splitlines()
    (zero,) = [line for line in lines if line.startswith("scored        0 ")]
    assert "hidden (n < 10)" in zero
    assert "%" not in zero
    (one,) = [line for line in lines if line.startswith("scored        1 ")]
    assert "100 % (" in one
    assert "low n" in one
    (two,) = [line for line in lines if line.startswith("scored        2 ")]
    assert "33 % (19–51 %)" in two
    assert "low n" not in two
    assert "deployed targets:" in lines
    assert any("solo win rate < 40 %" in line and "too_few" in line for line in lines)


def test_plot_draws_shown_and_low_n_buckets_only(tmp_path: Path) -> None:
    records = [record(SC, 0) for _ in range(5)] + [record(SC, 1, peak=3.0) for _ in range(12)]
    records += [record(SC, 2) for _ in range(30)] + [record(LR, 2) for _ in range(30)]
    report = build_report(records)
    figure = build_figure(report)
    (axes,) = figure.axes
    drawn = sorted(
        (round(float(x), 2), float(y), container.get_label())
        for container in axes.containers
        for x, y in zip(*container.lines[0].get_data(), strict=True)
    )
    # Level 2 of both kinds, scored 1 (low n, hollow); scored 0 is hidden (n = 5).
    assert drawn == [
        (1.06, 1.0, "scored (low n)"),
        (1.94, 0.0, "level_reached"),
        (2.06, 0.0, "scored"),
    ]
    labels = [t.get_text() for t in axes.get_xticklabels()]
    assert labels[0] == "0\nn=5\n(n<10)"
    target = tmp_path / "win-rates.png"
    write_plot(report, target)
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
