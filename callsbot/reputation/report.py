"""The per-group report of ``python -m callsbot groups``: pure, from mentions and labels.

Per group: its calls in the period, the calls with a resolved label, the hits, the hit rate with
its Wilson 95 % interval, its weight now, the share of its calls where it was the first group,
the median delay when it followed another group, how many of its first mentions voted 0 at once
(forwards, the same text, the same sender), and each copy relation where it is the follower.
Without any label the hit columns say :data:`NO_OUTCOMES`; the copy relations need none.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections.abc import Sequence
from typing import Any

import attrs

from callsbot.config import ConsensusSettings
from callsbot.reputation.independence import (
    COPY,
    MUTUAL,
    CopyModel,
    CopyRelation,
    CopyRules,
    copy_model,
    message_votes,
)
from callsbot.reputation.inputs import Label, Mention, first_of_each
from callsbot.reputation.weights import Weights, compute_weights, usable
from callsbot.reputation.wilson import wilson_interval

#: What the hit columns say when no label exists at all.
NO_OUTCOMES = "no outcomes yet"
#: The table lists copies from this c on; below it they are chance co-calls of groups that
#: answer the same launches (c of a few thousandths), and only the JSON lists them.
SHOWN_MIN_C = 0.05


@attrs.frozen
class GroupRow:
    """One group's line.

    Attributes:
        group: the group.
        calls: tokens it called in the period (first mentions).
        resolved: of those, calls with a resolved label.
        hits: of those, hits.
        interval: the Wilson 95 % interval of ``hits / resolved`` (``None`` without labels).
        weight: its weight at the end of the period.
        first_share: share of its calls where no group called the token before it.
        follow_delay: median seconds after the token's first caller, over its other calls.
        zero_votes: its first mentions that voted 0 at once.
        copies: relations where it is the follower that the table shows (a copy with
            c ≥ :data:`SHOWN_MIN_C`, or a mirror).
    """

    group: str
    calls: int
    resolved: int
    hits: int
    interval: tuple[float, float] | None
    weight: float
    first_share: float | None
    follow_delay: float | None
    zero_votes: int
    copies: tuple[CopyRelation, ...] = ()

    @property
    def hit_rate(self) -> float | None:
        """``hits / resolved``, ``None`` without resolved calls."""
        return self.hits / self.resolved if self.resolved else None


@attrs.frozen
class GroupsReport:
    """The whole report.

    Attributes:
        since: start of the period, unix seconds.
        at: its end (exclusive), and the moment weights are taken at.
        labels: resolved labels in the period (0: no outcomes yet).
        pooled: the pooled hit rate p0 (``None`` without labels).
        rows: one per group, best first (Wilson lower bound, then calls).
        relations: every candidate pair of the copy test, copies or not.
        clusters: groups that mirror each other.
    """

    since: float
    at: float
    labels: int
    pooled: float | None
    rows: tuple[GroupRow, ...]
    relations: tuple[CopyRelation, ...]
    clusters: tuple[tuple[str, ...], ...]


def groups_report(
    mentions: Sequence[Mention],
    labels: Sequence[Label],
    *,
    since: float,
    at: float,
    settings: ConsensusSettings,
    rules: CopyRules | None = None,
) -> GroupsReport:
    """The report over ``since <= ts < at`` (weights as of ``at``, no label resolved later)."""
    rules = attrs.evolve(rules or CopyRules(), lookback_seconds=max(0.0, at - since))
    firsts = first_of_each(m for m in mentions if since <= m.ts < at)
    known = [lb for lb in usable(labels, at) if since <= lb.called_at < at]
    weights = compute_weights(known, at=at, settings=settings)
    model = copy_model(firsts, at=at, rules=rules)
    rows = _rows(firsts, known, weights, model)
    return GroupsReport(
        since, at, len(known), weights.pooled, rows, model.relations, model.clusters
    )


def _rows(
    firsts: Sequence[Mention], known: Sequence[Label], weights: Weights, model: CopyModel
) -> tuple[GroupRow, ...]:
    first_ts: dict[str, float] = {}
    for m in firsts:
        first_ts.setdefault(m.token, m.ts)  # firsts are in time order
    zero: dict[str, int] = {}
    for decision in message_votes(firsts):
        if decision.value == 0:
            zero[decision.mention.group] = zero.get(decision.mention.group, 0) + 1
    by_group: dict[str, list[Mention]] = {}
    for m in firsts:
        by_group.setdefault(m.group, []).append(m)
    labelled: dict[str, list[Label]] = {}
    for lb in known:
        labelled.setdefault(lb.group, []).append(lb)
    relations: dict[str, list[CopyRelation]] = {}
    for r in model.relations:
        if _shown(r):
            relations.setdefault(r.follower, []).append(r)

    rows: list[GroupRow] = []
    for group in sorted(set(by_group) | set(labelled)):
        calls = by_group.get(group, [])
        delays = [m.ts - first_ts[m.token] for m in calls if m.ts > first_ts[m.token]]
        own = labelled.get(group, [])
        hits = sum(1 for lb in own if lb.hit)
        rows.append(
            GroupRow(
                group=group,
                calls=len(calls),
                resolved=len(own),
                hits=hits,
                interval=wilson_interval(hits, len(own)) if own else None,
                weight=weights.weight(group),
                first_share=(len(calls) - len(delays)) / len(calls) if calls else None,
                follow_delay=statistics.median(delays) if delays else None,
                zero_votes=zero.get(group, 0),
                copies=tuple(sorted(relations.get(group, []), key=lambda r: -r.c)),
            )
        )
    rows.sort(key=lambda r: (-(r.interval[0] if r.interval else -1.0), -r.calls, r.group))
    return tuple(rows)


# -- rendering ---------------------------------------------------------------------------------


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def _secs(x: float | None) -> str:
    if x is None:
        return "-"
    if x < 120:
        return f"{x:.0f}s"
    return f"{x / 60:.0f}m" if x < 7200 else f"{x / 3600:.1f}h"


def _lift(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.1f}"


def _shown(r: CopyRelation) -> bool:
    return r.verdict == MUTUAL or (r.verdict == COPY and r.c >= SHOWN_MIN_C)


def _relation_words(r: CopyRelation) -> str:
    if r.verdict == MUTUAL:
        return f"mirrors {r.leader}"
    return f"copy of {r.leader}"


def render_table(report: GroupsReport) -> str:
    """The report as text tables for people (groups best first, then the copy relations)."""
    none = report.labels == 0
    head = f"groups {_when(report.since)} → {_when(report.at)}: " + (
        NO_OUTCOMES
        if none
        else f"{report.labels} resolved calls, pooled hit rate {_pct(report.pooled)}"
    )
    header = (
        "group",
        "calls",
        "resolved",
        "hits",
        "hit rate (95% CI)",
        "weight",
        "first",
        "follow delay",
        "zero votes",
        "copies",
    )
    body: list[tuple[str, ...]] = []
    for r in report.rows:
        if none:
            resolved, hits, rate = "-", "-", NO_OUTCOMES
        elif r.interval is None:
            resolved, hits, rate = "0", "-", "-"
        else:
            resolved, hits = str(r.resolved), str(r.hits)
            rate = f"{_pct(r.hit_rate)} ({_pct(r.interval[0])}–{_pct(r.interval[1])})"
        body.append(
            (
                r.group,
                str(r.calls),
                resolved,
                hits,
                rate,
                f"{r.weight:.2f}",
                _pct(r.first_share),
                _secs(r.follow_delay),
                str(r.zero_votes),
                "; ".join(_relation_words(c) for c in r.copies) or "-",
            )
        )
    lines = [head, "", *_table(header, body)]
    counted = [r for r in report.relations if _shown(r)]
    weak = sum(1 for r in report.relations if r.verdict == COPY and not _shown(r))
    if counted:
        rel_header = ("follower", "of", "c", "lift", "median lag", "shared", "follows", "verdict")
        rel_body = [
            (
                r.follower,
                r.leader,
                f"{r.c:.2f}",
                _lift(r.lift),
                _secs(r.median_lag),
                str(r.shared),
                f"{r.follows} of {r.follower_calls}",
                r.verdict,
            )
            for r in sorted(counted, key=lambda r: (-r.c, r.follower, r.leader))
        ]
        lines += ["", "copy relations", "", *_table(rel_header, rel_body)]
    else:
        lines += ["", "copy relations: none"]
    if weak:
        lines.append(f"(and {weak} with c < {SHOWN_MIN_C:g}: chance co-calls; --format json)")
    return "\n".join(lines)


def _table(header: Sequence[str], body: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(row) for row in body)]


def _relation_json(r: CopyRelation) -> dict[str, Any]:
    return {
        "leader": r.leader,
        "follower": r.follower,
        "c": round(r.c, 4),
        "verdict": r.verdict,
        "follows": r.follows,
        "weighted_follows": round(r.weighted_follows, 4),
        "reverse_follows": r.reverse_follows,
        "shared": r.shared,
        "follower_calls": r.follower_calls,
        "share": round(r.share, 4),
        "effective_calls": round(r.effective_calls, 2),
        "null_follows": round(r.null_follows, 4),
        "lift": None if math.isinf(r.lift) else round(r.lift, 3),
        "median_lag": r.median_lag,
    }


def report_json(report: GroupsReport) -> dict[str, Any]:
    """The report as a JSON-ready dict (every candidate relation, not only the copies)."""
    none = report.labels == 0
    return {
        "since": report.since,
        "at": report.at,
        "outcomes": NO_OUTCOMES if none else "ok",
        "labels": report.labels,
        "pooled_hit_rate": report.pooled,
        "groups": [
            {
                "group": r.group,
                "calls": r.calls,
                "resolved": r.resolved,
                "hits": None if none else r.hits,
                "hit_rate": r.hit_rate,
                "interval": None if r.interval is None else list(r.interval),
                "outcomes": NO_OUTCOMES if none else ("ok" if r.resolved else "no resolved calls"),
                "weight": r.weight,
                "first_share": r.first_share,
                "follow_delay": r.follow_delay,
                "zero_votes": r.zero_votes,
                "copies": [_relation_json(c) for c in r.copies],
            }
            for r in report.rows
        ],
        "relations": [_relation_json(r) for r in report.relations],
        "clusters": [list(c) for c in report.clusters],
    }
