"""Outcome records → rates per bucket and the deployed targets, as a table, JSON or CSV. Pure.

A bucket is one event kind and one value of the split (level 0/1/2/3+, alerted or not, or a
group). Each token counts at most once per bucket (its earliest event there). ``n`` counts the
decided events (resolved or dead); unresolved and still-tracking events are counted beside it,
never folded in and never dropped.
"""

from __future__ import annotations

import csv
import datetime as dt
import enum
import io
import json
import statistics
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs

from callsbot.outcomes.path import Outcome, OutcomeStatus
from callsbot.outcomes.stats import (
    EVENTS_PER_BUCKET,
    RESAMPLES,
    Z95,
    Display,
    Interval,
    bootstrap_median,
    display_for,
    poisson_score,
    wilson,
)

#: JSON shape version (docs/outcomes.md documents it).
REPORT_VERSION = 1
WEEK = 7 * 86_400
MONTH = 30 * 86_400
LEVEL_BUCKETS = ("0", "1", "2", "3+")
ALERTED_BUCKETS = ("alerted", "not_alerted")
SPLITS = ("level", "alerted", "group")


class EventKind(enum.Enum):
    """What gets an outcome (section 1)."""

    #: A token's distinct-group count first reached ``level`` in a window.
    LEVEL_REACHED = "level_reached"
    #: The scorer first scored the token in a window (level 0 = solo).
    SCORED = "scored"
    #: An alert was sent.
    ALERT = "alert"


@attrs.frozen
class OutcomeRecord:
    """One event and its outcome: what the history stores and the report reads.

    Attributes:
        kind: the event kind.
        token: the token's address.
        level: distinct groups as of the event (0 = solo).
        alerted: whether the token was alerted (always true for an alert).
        groups: the groups that had called it as of the event, earliest first.
        outcome: the section-3 fields.
    """

    kind: EventKind
    token: str
    level: int
    alerted: bool
    groups: tuple[str, ...]
    outcome: Outcome

    @property
    def event_ts(self) -> int:
        """The event's time."""
        return self.outcome.event_ts


def level_bucket(level: int) -> str:
    """``"0"``, ``"1"``, ``"2"`` or ``"3+"``."""
    return str(level) if level < 3 else "3+"


@attrs.frozen
class Rate:
    """``count`` of ``n`` with its Wilson interval."""

    count: int
    n: int

    @property
    def rate(self) -> float | None:
        """``count / n``, ``None`` when ``n`` is 0."""
        return self.count / self.n if self.n else None

    @property
    def interval(self) -> Interval:
        """Wilson 95 %."""
        return wilson(self.count, self.n)

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "rate": self.rate, "ci": self.interval.as_list()}


@attrs.frozen
class Median:
    """A median with its bootstrap interval."""

    value: float
    interval: Interval

    def as_dict(self) -> dict[str, Any]:
        return {"value": self.value, "ci": self.interval.as_list()}


@attrs.frozen(kw_only=True)
class BucketStats:
    """Every number section 4 asks for, for one bucket."""

    kind: EventKind
    split: str
    bucket: str
    n: int
    wins: Rate
    win_before_stop: Rate
    x5: Rate
    x10: Rate
    median_peak_close: Median | None
    median_return_1h: float | None
    median_return_4h: float | None
    median_return_24h: float | None
    unresolved: int
    tracking: int

    @property
    def display(self) -> Display:
        """The display rule for people."""
        return display_for(self.n)

    @property
    def short_of(self) -> int:
        """Events still missing to tell 25 % from 35 % (0 when there are enough)."""
        return max(EVENTS_PER_BUCKET - self.n, 0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "split": self.split,
            "bucket": self.bucket,
            "n": self.n,
            "wins": self.wins.count,
            "win_rate": self.wins.rate,
            "win_ci": self.wins.interval.as_list(),
            "display": self.display.value,
            "win_before_stop": self.win_before_stop.as_dict(),
            "x5": self.x5.as_dict(),
            "x10": self.x10.as_dict(),
            "median_peak_close": (
                self.median_peak_close.as_dict() if self.median_peak_close is not None else None
            ),
            "median_return_1h": self.median_return_1h,
            "median_return_4h": self.median_return_4h,
            "median_return_24h": self.median_return_24h,
            "unresolved": self.unresolved,
            "tracking": self.tracking,
            "short_of": self.short_of,
        }


class Verdict(enum.Enum):
    """Whether a target is met, judged on its interval, not its point estimate."""

    MET = "met"
    NOT_MET = "not_met"
    UNDECIDED = "undecided"
    TOO_FEW = "too_few"


@attrs.frozen(kw_only=True)
class TargetCheck:
    """One promise of the deployed system, checked with its interval.

    Attributes:
        name: machine name (``consensus_win_rate``...).
        text: what was promised, for people.
        comparison: ``>``, ``<`` or ``>=``.
        threshold: the promised value (a rate, or events per week / month).
        unit: ``rate``, ``per_week`` or ``per_month``.
        count: the events counted (wins, tokens, 10× catches).
        n: the events it is a rate of (for rates), else ``None``.
        estimate: the point estimate (``None`` when there is nothing to estimate).
        interval: its 95 % interval (Wilson for rates, Poisson score for per-time counts).
        verdict: met / not met / undecided (the interval straddles the threshold) / too few.
    """

    name: str
    text: str
    comparison: str
    threshold: float
    unit: str
    count: int
    n: int | None
    estimate: float | None
    interval: Interval | None
    verdict: Verdict

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "text": self.text,
            "comparison": self.comparison,
            "threshold": self.threshold,
            "unit": self.unit,
            "count": self.count,
            "n": self.n,
            "estimate": self.estimate,
            "ci": self.interval.as_list() if self.interval is not None else None,
            "verdict": self.verdict.value,
        }


@attrs.frozen(kw_only=True)
class Report:
    """What :func:`build_report` found; render with :func:`render_table`, ``_json``, ``_csv``."""

    split: str
    since: int | None
    until: int | None
    period_seconds: int
    events: int
    seed: int
    resamples: int
    buckets: tuple[BucketStats, ...]
    targets: tuple[TargetCheck, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": REPORT_VERSION,
            "split": self.split,
            "since": self.since,
            "until": self.until,
            "period_days": self.period_seconds / 86_400,
            "events": self.events,
            "z": Z95,
            "bootstrap": {"resamples": self.resamples, "seed": self.seed},
            "events_per_bucket": EVENTS_PER_BUCKET,
            "buckets": [b.as_dict() for b in self.buckets],
            "targets": [t.as_dict() for t in self.targets],
        }


# --------------------------------------------------------------------------------------------
# Building.


def build_report(
    records: Iterable[OutcomeRecord],
    *,
    split: str = "level",
    since: int | None = None,
    until: int | None = None,
    seed: int = 0,
    resamples: int = RESAMPLES,
) -> Report:
    """Rates per bucket and the target checklist over the records with ``since ≤ t < until``.

    Args:
        records: outcome records, any order.
        split: ``level`` (0, 1, 2, 3+), ``alerted`` (alerted, not_alerted) or ``group`` (one
            bucket per group; a record counts in each of its groups' buckets).
        since: first event time included (unix s); ``None``: the earliest record's.
        until: first event time excluded; ``None``: just after the latest record's.
        seed: the bootstrap's seed.
        resamples: the bootstrap's resamples.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    kept = sorted(
        (
            r
            for r in records
            if (since is None or r.event_ts >= since) and (until is None or r.event_ts < until)
        ),
        key=lambda r: (r.event_ts, r.kind.value, r.token),
    )
    start = since if since is not None else (kept[0].event_ts if kept else 0)
    end = until if until is not None else (kept[-1].event_ts + 1 if kept else start)
    period = max(end - start, 0)

    buckets: list[BucketStats] = []
    for kind in EventKind:
        of_kind = [r for r in kept if r.kind is kind]
        if not of_kind:
            continue
        for name in _bucket_names(kind, split, of_kind):
            members = _first_per_token(r for r in of_kind if name in _keys(r, split))
            buckets.append(_bucket_stats(kind, split, name, members, seed, resamples))
    return Report(
        split=split,
        since=since,
        until=until,
        period_seconds=period,
        events=len(kept),
        seed=seed,
        resamples=resamples,
        buckets=tuple(buckets),
        targets=_targets(kept, period),
    )


def _keys(record: OutcomeRecord, split: str) -> tuple[str, ...]:
    if split == "level":
        return (level_bucket(record.level),)
    if split == "alerted":
        return ("alerted" if record.alerted else "not_alerted",)
    return tuple(dict.fromkeys(record.groups))


def _bucket_names(kind: EventKind, split: str, records: Sequence[OutcomeRecord]) -> list[str]:
    if split == "level":
        # A level is reached by a group calling: level_reached never has a level 0.
        return list(LEVEL_BUCKETS[1:] if kind is EventKind.LEVEL_REACHED else LEVEL_BUCKETS)
    if split == "alerted":
        return list(ALERTED_BUCKETS)
    return sorted({g for r in records for g in r.groups})


def _first_per_token(records: Iterable[OutcomeRecord]) -> list[OutcomeRecord]:
    """The earliest record of each token (records come sorted by time)."""
    seen: dict[str, OutcomeRecord] = {}
    for record in records:
        seen.setdefault(record.token, record)
    return list(seen.values())


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _bucket_stats(
    kind: EventKind,
    split: str,
    name: str,
    members: Sequence[OutcomeRecord],
    seed: int,
    resamples: int,
) -> BucketStats:
    decided = [r.outcome for r in members if r.outcome.decided]
    n = len(decided)

    def rate(test: Callable[[Outcome], bool]) -> Rate:
        return Rate(sum(1 for o in decided if test(o)), n)

    peaks = [o.peak_close for o in decided if o.peak_close is not None]
    boot = bootstrap_median(peaks, resamples=resamples, seed=seed)

    def returns(checkpoint: str) -> float | None:
        values = [o.close_return(checkpoint) for o in decided]
        return _median([v for v in values if v is not None])

    return BucketStats(
        kind=kind,
        split=split,
        bucket=name,
        n=n,
        wins=rate(lambda o: o.win is True),
        win_before_stop=rate(lambda o: o.win_before_stop is True),
        x5=rate(lambda o: o.reached(5)),
        x10=rate(lambda o: o.reached(10)),
        median_peak_close=Median(boot[0], boot[1]) if boot is not None else None,
        median_return_1h=returns("p_1h"),
        median_return_4h=returns("p_4h"),
        median_return_24h=returns("p_24h"),
        unresolved=sum(1 for r in members if r.outcome.status is OutcomeStatus.UNRESOLVED),
        tracking=sum(1 for r in members if r.outcome.status is OutcomeStatus.TRACKING),
    )


# --------------------------------------------------------------------------------------------
# Targets.


def _rate_check(name: str, text: str, comparison: str, threshold: float, rate: Rate) -> TargetCheck:
    interval = rate.interval if rate.n else None
    if rate.n < 10 or interval is None:
        verdict = Verdict.TOO_FEW
    else:
        verdict = _judge(comparison, threshold, interval)
    return TargetCheck(
        name=name,
        text=text,
        comparison=comparison,
        threshold=threshold,
        unit="rate",
        count=rate.count,
        n=rate.n,
        estimate=rate.rate,
        interval=interval,
        verdict=verdict,
    )


def _count_check(
    name: str, text: str, threshold: float, count: int, period: int, unit_seconds: int
) -> TargetCheck:
    if period <= 0:
        estimate, interval, verdict = None, None, Verdict.TOO_FEW
    else:
        exposure = period / unit_seconds
        estimate = count / exposure
        interval = poisson_score(count, exposure)
        verdict = _judge(">=", threshold, interval)
    return TargetCheck(
        name=name,
        text=text,
        comparison=">=",
        threshold=threshold,
        unit="per_week" if unit_seconds == WEEK else "per_month",
        count=count,
        n=None,
        estimate=estimate,
        interval=interval,
        verdict=verdict,
    )


def _judge(comparison: str, threshold: float, interval: Interval) -> Verdict:
    if comparison == ">":
        met, missed = interval.low > threshold, interval.high <= threshold
    elif comparison == "<":
        met, missed = interval.high < threshold, interval.low >= threshold
    else:
        met, missed = interval.low >= threshold, interval.high < threshold
    if met:
        return Verdict.MET
    return Verdict.NOT_MET if missed else Verdict.UNDECIDED


def _targets(records: Sequence[OutcomeRecord], period: int) -> tuple[TargetCheck, ...]:
    consensus = _first_per_token(
        r for r in records if r.kind is EventKind.LEVEL_REACHED and r.level >= 2
    )
    solo = _first_per_token(r for r in records if r.kind is EventKind.SCORED and r.level == 0)
    alerts = _first_per_token(r for r in records if r.kind is EventKind.ALERT)

    def decided_rate(members: Sequence[OutcomeRecord], test: Callable[[Outcome], bool]) -> Rate:
        outcomes = [r.outcome for r in members if r.outcome.decided]
        return Rate(sum(1 for o in outcomes if test(o)), len(outcomes))

    def won(o: Outcome) -> bool:
        return o.win is True

    return (
        _rate_check(
            "consensus_win_rate",
            "consensus (2+ groups) win rate > 60 %",
            ">",
            0.60,
            decided_rate(consensus, won),
        ),
        _rate_check("solo_win_rate", "solo win rate < 40 %", "<", 0.40, decided_rate(solo, won)),
        _count_check(
            "consensus_tokens_per_week",
            "at least 10 tokens with 2+ groups per week",
            10.0,
            len(consensus),
            period,
            WEEK,
        ),
        _rate_check(
            "alert_2x_rate",
            "alerts reaching 2× ≥ 40 % (up from 30 %)",
            ">=",
            0.40,
            decided_rate(alerts, lambda o: o.reached(2)),
        ),
        _count_check(
            "alert_10x_per_month",
            "one or two 10× alerts a month (≥ 1)",
            1.0,
            sum(1 for r in alerts if r.outcome.reached(10)),
            period,
            MONTH,
        ),
    )


# --------------------------------------------------------------------------------------------
# Rendering.


def render_json(report: Report) -> str:
    """The report as one JSON document (shape in docs/outcomes.md)."""
    return json.dumps(report.as_dict(), ensure_ascii=False)


CSV_COLUMNS = (
    "kind",
    "split",
    "bucket",
    "n",
    "wins",
    "win_rate",
    "win_ci_low",
    "win_ci_high",
    "display",
    "win_before_stop",
    "win_before_stop_rate",
    "win_before_stop_ci_low",
    "win_before_stop_ci_high",
    "x5",
    "x5_rate",
    "x5_ci_low",
    "x5_ci_high",
    "x10",
    "x10_rate",
    "x10_ci_low",
    "x10_ci_high",
    "median_peak_close",
    "median_peak_close_ci_low",
    "median_peak_close_ci_high",
    "median_return_1h",
    "median_return_4h",
    "median_return_24h",
    "unresolved",
    "tracking",
    "short_of",
)


def render_csv(report: Report) -> str:
    """One CSV row per bucket, every bucket (hidden ones too), with :data:`CSV_COLUMNS`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for b in report.buckets:
        row: list[Any] = [b.kind.value, b.split, b.bucket, b.n]
        row += [b.wins.count, b.wins.rate, *b.wins.interval.as_list(), b.display.value]
        for r in (b.win_before_stop, b.x5, b.x10):
            row += [r.count, r.rate, *r.interval.as_list()]
        if b.median_peak_close is not None:
            m = b.median_peak_close
            row += [m.value, m.interval.low, m.interval.high]
        else:
            row += [None, None, None]
        row += [b.median_return_1h, b.median_return_4h, b.median_return_24h]
        row += [b.unresolved, b.tracking, b.short_of]
        writer.writerow(["" if v is None else v for v in row])
    return buffer.getvalue()


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.0f} %"


def _signed_pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:+.0f} %"


def _ci(interval: Interval) -> str:
    return f"{interval.low * 100:.0f}–{interval.high * 100:.0f} %"


def _date(ts: int | None) -> str:
    if ts is None:
        return "…"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M")


def render_table(report: Report) -> str:
    """The report for people: rates only where the display rule allows, then the checklist."""
    lines = [
        f"outcomes {_date(report.since)} → {_date(report.until)}, by {report.split}: "
        f"{report.events} events; n = resolved + dead, each token once per bucket",
        "",
    ]
    header = (
        f"{'kind':<14}{'bucket':<12}{'n':>5}{'wins':>6}  {'win rate (95 % CI)':<24}"
        f"{'w/o stop':>9}{'5×':>6}{'10×':>6}  {'median peak_close (CI)':<24}"
        f"{'+1h':>7}{'+4h':>7}{'+24h':>7}{'unres':>7}{'track':>7}{'to 330':>8}"
    )
    lines.append(header)
    for b in report.buckets:
        start = f"{b.kind.value:<14}{b.bucket:<12}{b.n:>5}"
        tail = f"{b.unresolved:>7}{b.tracking:>7}{b.short_of:>8}"
        if b.display is Display.HIDDEN:
            blank = f"{'hidden (n < 10)':<24}{'':>21}  {'':<24}{'':>21}"
            lines.append(f"{start}{'':>6}  {blank}{tail}")
            continue
        mark = " low n" if b.display is Display.LOW_N else ""
        win = f"{_pct(b.wins.rate)} ({_ci(b.wins.interval)}){mark}"
        peak = "–"
        if b.median_peak_close is not None:
            m = b.median_peak_close
            peak = f"{m.value:.2f}× ({m.interval.low:.2f}–{m.interval.high:.2f})"
        lines.append(
            f"{start}{b.wins.count:>6}  {win:<24}"
            f"{_pct(b.win_before_stop.rate):>9}{_pct(b.x5.rate):>6}{_pct(b.x10.rate):>6}"
            f"  {peak:<24}{_signed_pct(b.median_return_1h):>7}"
            f"{_signed_pct(b.median_return_4h):>7}{_signed_pct(b.median_return_24h):>7}{tail}"
        )
    lines += ["", "deployed targets:"]
    for t in report.targets:
        lines.append(f"  [{t.verdict.value:<9}] {t.text:<45} {_target_value(t)}")
    return "\n".join(lines) + "\n"


def _target_value(t: TargetCheck) -> str:
    if t.estimate is None or t.interval is None:
        return "no data"
    if t.unit == "rate":
        return f"{_pct(t.estimate)} ({_ci(t.interval)}), n = {t.n}"
    per = "week" if t.unit == "per_week" else "month"
    return f"{t.estimate:.1f}/{per} ({t.interval.low:.1f}–{t.interval.high:.1f}), count = {t.count}"
