"""The per-group report: counts, hit rates with intervals, first share, delays, copies."""

from __future__ import annotations

from callsbot.config import ConsensusSettings
from callsbot.reputation.independence import COPY
from callsbot.reputation.inputs import Label, Mention
from callsbot.reputation.report import NO_OUTCOMES, groups_report, render_table, report_json
from tests.synthetic import AT, START, synthetic_history

S = ConsensusSettings()


def test_the_synthetic_month() -> None:
    h = synthetic_history()
    report = groups_report(h.mentions, h.labels, since=START, at=AT, settings=S)
    rows = {r.group: r for r in report.rows}
    assert set(rows) == {"@A", "@B", "@C", "@D"}
    a, b, c, d = rows["@A"], rows["@B"], rows["@C"], rows["@D"]
    assert a.first_share is not None
    assert a.first_share > 0.9
    assert b.first_share == 0.0
    assert b.follow_delay is not None
    assert 40 <= b.follow_delay <= 80
    assert [(r.leader, r.verdict) for r in b.copies] == [("@A", COPY)]
    assert b.copies[0].c >= 0.6
    assert a.copies == ()
    assert c.copies == ()
    assert d.zero_votes == d.calls > 0
    assert (c.resolved, c.interval, c.weight) == (0, None, 1.0)
    assert a.resolved > 0
    assert a.interval is not None
    assert a.interval[0] < a.hit_rate < a.interval[1]
    assert report.rows[0].group == "@A"  # ranked by the Wilson lower bound
    text = render_table(report)
    assert "copy of @A" in text
    assert "copy relations" in text
    js = report_json(report)
    assert js["outcomes"] == "ok"
    assert any(r["follower"] == "@B" and r["c"] >= 0.6 for r in js["relations"])


def test_without_labels_the_hit_columns_say_no_outcomes_yet() -> None:
    h = synthetic_history()
    report = groups_report(h.mentions, [], since=START, at=AT, settings=S)
    assert report.labels == 0
    text = render_table(report)
    assert NO_OUTCOMES in text.splitlines()[0]
    assert text.count(NO_OUTCOMES) == 1 + len(report.rows)
    js = report_json(report)
    assert js["outcomes"] == NO_OUTCOMES
    assert all(g["hits"] is None and g["outcomes"] == NO_OUTCOMES for g in js["groups"])
    assert [c["leader"] for g in js["groups"] for c in g["copies"]] == ["@A"]  # still there


def test_labels_resolved_after_the_end_are_not_shown() -> None:
    mentions = [Mention(AT - 100, "@a", "T", -1)]
    labels = [Label("@a", "T", AT - 100, True, AT + 1)]
    report = groups_report(mentions, labels, since=START, at=AT, settings=S)
    assert report.labels == 0
    assert report.rows[0].resolved == 0
