"""A run's alerts measured on their price paths, and one configuration's row of figures.

:func:`measure` gives every alert of a run its outcome, from the cached candles through the
live tracker's own :func:`~callsbot.outcomes.path.compute_outcome` (no cached path:
``unresolved``, counted and never dropped), and the trade the exit rule would have made
(:mod:`callsbot.replay.exits`). :func:`figures` turns the alerts of a period into the row the
backtest prints; rates and medians follow outcomes.md section 4 (Wilson intervals, seeded
percentile bootstrap, ``n`` = decided events only).
"""

from __future__ import annotations

import random
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence

import attrs

from callsbot.config import OutcomesSettings
from callsbot.events import AlertSent
from callsbot.outcomes.path import Outcome, OutcomeRules, compute_outcome, unresolved_outcome
from callsbot.outcomes.stats import (
    RESAMPLES,
    Display,
    Interval,
    bootstrap_median,
    display_for,
    quantile,
    wilson,
)
from callsbot.replay.exits import ExitResult, ExitRule, simulate_exit
from callsbot.replay.tape import PricePath

DAY = 86400.0


@attrs.frozen
class AlertOutcome:
    """One alert of a run with what followed it.

    Attributes:
        token: the alerted token.
        symbol: its symbol.
        at: when the alert was sent (the event's time ``t``).
        total: its score.
        groups: the groups its consensus counted.
        outcome: the section-3 outcome.
        exit: the trade the exit rule made (``open`` when unresolved or still running).
    """

    token: str
    symbol: str
    at: float
    total: float
    groups: int
    outcome: Outcome
    exit: ExitResult


def outcome_rules(settings: OutcomesSettings) -> OutcomeRules:
    """The path rules ``[outcomes]`` sets (the others are the method's)."""
    return OutcomeRules(
        win_multiple=settings.win_multiple,
        horizon_seconds=settings.horizon_seconds,
        stop=settings.stop,
    )


def measure(
    alerts: Sequence[AlertSent],
    paths: Mapping[str, PricePath],
    *,
    settings: OutcomesSettings,
    rule: ExitRule,
) -> tuple[AlertOutcome, ...]:
    """The outcome and the simulated trade of every alert."""
    rules = outcome_rules(settings)
    latency = settings.latency_seconds
    out: list[AlertOutcome] = []
    for event in alerts:
        alert = event.alert
        t = int(alert.created_at)
        path = paths.get(alert.token)
        if path is None:
            outcome = unresolved_outcome(t, latency=latency, errors=0, detail="no cached candles")
            trade = ExitResult("open")
        else:
            outcome = compute_outcome(
                t, path.minute, path.five_minute, as_of=path.as_of, latency=latency, rules=rules
            )
            trade = simulate_exit(
                t,
                path.minute,
                path.five_minute,
                as_of=path.as_of,
                latency=latency,
                rule=rule,
                rules=rules,
            )
        out.append(
            AlertOutcome(
                token=alert.token,
                symbol=alert.symbol,
                at=event.at,
                total=alert.card.total,
                groups=len(alert.card.consensus.groups),
                outcome=outcome,
                exit=trade,
            )
        )
    return tuple(out)


@attrs.frozen
class Rate:
    """A count out of ``n`` decided alerts, its rate and Wilson 95 % interval."""

    count: int
    n: int
    rate: float | None
    ci: Interval


def _rate(count: int, n: int) -> Rate:
    return Rate(count, n, count / n if n else None, wilson(count, n))


@attrs.frozen
class Figures:
    """One configuration's figures over one period (the backtest's row).

    Attributes:
        since: the period's start (unix seconds, inclusive).
        until: its end (exclusive).
        alerts: alerts sent in the period.
        alerts_per_day: alerts ÷ the period's days.
        n: alerts decided (resolved or dead): what every rate and median is over.
        unresolved: alerts without a price path.
        tracking: alerts whose path does not cover the horizon yet.
        display: the section-4 display rule for ``n``.
        win: reached the win multiple (2×) within the horizon.
        x5: reached 5×.
        x10: reached 10×.
        win_before_stop: reached 2× before −50 %.
        median_peak: median ``peak_close`` with its bootstrap interval.
        median_return_1h: median close return at +1 h (likewise 4 h, 24 h).
        median_time_to_2x: median seconds from the alert to the 2× candle, over those that got
            there.
        ev: mean net return per alert under the exit rule, over the decided trades.
        ev_ci: its percentile-bootstrap interval.
        ev_n: decided trades.
        exits: trades by exit reason.
    """

    since: float
    until: float
    alerts: int
    alerts_per_day: float
    n: int
    unresolved: int
    tracking: int
    display: Display
    win: Rate
    x5: Rate
    x10: Rate
    win_before_stop: Rate
    median_peak: float | None
    median_peak_ci: Interval | None
    median_return_1h: float | None
    median_return_4h: float | None
    median_return_24h: float | None
    median_time_to_2x: float | None
    ev: float | None
    ev_ci: Interval | None
    ev_n: int
    exits: tuple[tuple[str, int], ...]

    @property
    def days(self) -> float:
        """The period's length in days."""
        return max(self.until - self.since, 0.0) / DAY


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def bootstrap_mean(
    values: Sequence[float], *, resamples: int = RESAMPLES, seed: int = 0
) -> Interval | None:
    """A seeded percentile-bootstrap 95 % interval of the mean (``None`` for no values)."""
    if not values:
        return None
    rng = random.Random(seed)
    data = list(values)
    means = sorted(statistics.fmean(rng.choices(data, k=len(data))) for _ in range(resamples))
    return Interval(quantile(means, 0.025), quantile(means, 0.975))


def figures(
    outcomes: Sequence[AlertOutcome],
    *,
    since: float,
    until: float,
    seed: int = 0,
    resamples: int = RESAMPLES,
) -> Figures:
    """The figures of the alerts sent in ``[since, until)``."""
    chosen = [a for a in outcomes if since <= a.at < until]
    decided = [a.outcome for a in chosen if a.outcome.decided]
    unresolved = sum(1 for a in chosen if a.outcome.status.value == "unresolved")
    tracking = sum(1 for a in chosen if a.outcome.status.value == "tracking")
    n = len(decided)
    peaks = [o.peak_close for o in decided if o.peak_close is not None]
    peak = bootstrap_median(peaks, resamples=resamples, seed=seed)

    def returns(name: str) -> float | None:
        return _median([r for o in decided if (r := o.close_return(name)) is not None])

    trades = [a.exit for a in chosen if a.exit.decided and a.exit.net is not None]
    nets = [t.net for t in trades if t.net is not None]
    days = max(until - since, 0.0) / DAY
    return Figures(
        since=since,
        until=until,
        alerts=len(chosen),
        alerts_per_day=len(chosen) / days if days > 0 else 0.0,
        n=n,
        unresolved=unresolved,
        tracking=tracking,
        display=display_for(n),
        win=_rate(sum(1 for o in decided if o.win), n),
        x5=_rate(sum(1 for o in decided if o.t_5x is not None), n),
        x10=_rate(sum(1 for o in decided if o.t_10x is not None), n),
        win_before_stop=_rate(sum(1 for o in decided if o.win_before_stop), n),
        median_peak=peak[0] if peak else None,
        median_peak_ci=peak[1] if peak else None,
        median_return_1h=returns("p_1h"),
        median_return_4h=returns("p_4h"),
        median_return_24h=returns("p_24h"),
        median_time_to_2x=_median(
            [float(o.t_2x - o.event_ts) for o in decided if o.t_2x is not None]
        ),
        ev=statistics.fmean(nets) if nets else None,
        ev_ci=bootstrap_mean(nets, resamples=resamples, seed=seed),
        ev_n=len(nets),
        exits=tuple(sorted(Counter(t.reason for t in trades).items())),
    )
