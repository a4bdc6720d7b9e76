"""Interval maths against published values; the bootstrap, display rule and bucket size."""

from __future__ import annotations

import statistics

import pytest

from callsbot.outcomes.stats import (
    EVENTS_PER_BUCKET,
    RESAMPLES,
    Display,
    Interval,
    bootstrap_median,
    display_for,
    events_to_separate,
    poisson_score,
    quantile,
    wilson,
)


@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    [
        # Newcombe (1998), "Two-sided confidence intervals for the single proportion", Table II,
        # method 3 (Wilson score, no continuity correction).
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0000, 0.1611),
        (1, 29, 0.0061, 0.1718),
        # The textbook boundary cases.
        (0, 10, 0.0000, 0.2775),
        (10, 10, 0.7225, 1.0000),
    ],
)
def test_wilson_matches_published_intervals(
    successes: int, n: int, low: float, high: float
) -> None:
    interval = wilson(successes, n)
    assert interval.low == pytest.approx(low, abs=5e-5)
    assert interval.high == pytest.approx(high, abs=5e-5)


@pytest.mark.parametrize(
    ("successes", "n", "half"), [(3, 10, 0.25), (15, 50, 0.12), (90, 300, 0.05)]
)
def test_wilson_widths_at_thirty_percent_are_the_ones_section_4_quotes(
    successes: int, n: int, half: float
) -> None:
    assert round(wilson(successes, n).half_width, 2) == half


def test_wilson_edges() -> None:
    assert wilson(0, 0) == Interval(0.0, 1.0)
    assert wilson(0, 5).low == 0.0  # clamped, never −0.0 or below
    assert wilson(5, 5).high == 1.0
    with pytest.raises(ValueError, match="successes"):
        wilson(6, 5)
    with pytest.raises(ValueError, match="successes"):
        wilson(-1, 5)


def test_poisson_score_interval() -> None:
    zero = poisson_score(0)
    assert zero.low == 0.0
    assert zero.high == pytest.approx(1.96**2)
    ten = poisson_score(10)
    assert (ten.low, ten.high) == (
        pytest.approx(5.4319, abs=1e-4),
        pytest.approx(18.4097, abs=1e-4),
    )
    assert ten.high == pytest.approx(18.39, abs=0.05)  # the exact (Garwood) upper bound
    per_week = poisson_score(10, exposure=2.0)  # 10 events in two weeks
    assert per_week.low == pytest.approx(ten.low / 2)
    with pytest.raises(ValueError, match="exposure"):
        poisson_score(1, exposure=0)


def test_telling_25_from_35_percent_takes_about_330_events() -> None:
    assert events_to_separate(0.25, 0.35) == 323
    assert events_to_separate(0.35, 0.25) == 323
    assert abs(EVENTS_PER_BUCKET - 323) <= 10
    assert wilson(25, 100).high > wilson(35, 100).low  # at 100 events they still overlap
    with pytest.raises(ValueError, match="equal"):
        events_to_separate(0.3, 0.3)


@pytest.mark.parametrize(
    ("n", "display"),
    [
        (0, Display.HIDDEN),
        (9, Display.HIDDEN),
        (10, Display.LOW_N),
        (29, Display.LOW_N),
        (30, Display.SHOWN),
        (500, Display.SHOWN),
    ],
)
def test_display_rule(n: int, display: Display) -> None:
    assert display_for(n) is display


def test_quantile_is_linear_between_order_statistics() -> None:
    values = [1.0, 2.0, 4.0, 8.0]
    assert quantile(values, 0.0) == 1.0
    assert quantile(values, 1.0) == 8.0
    assert quantile(values, 0.5) == 3.0
    assert quantile(values, 0.25) == pytest.approx(1.75)
    with pytest.raises(ValueError, match="no values"):
        quantile([], 0.5)


def test_bootstrap_median_is_seeded_and_brackets_the_median() -> None:
    values = [float(v) for v in range(1, 102)]
    result = bootstrap_median(values, seed=3)
    assert result is not None
    median, interval = result
    assert median == 51.0
    assert bootstrap_median(values, seed=3) == result
    other = bootstrap_median(values, seed=4)
    assert other is not None
    assert other[1] != interval
    # The sample median of 101 uniform values has a standard error near 7.
    assert 38 <= interval.low < median < interval.high <= 64
    assert RESAMPLES == 2000


def test_bootstrap_median_uses_the_percentiles_of_the_resampled_medians() -> None:
    import random

    values = [0.5, 0.9, 1.0, 1.1, 1.4, 2.0, 3.5, 8.0]
    rng = random.Random(11)
    medians = sorted(statistics.median(rng.choices(values, k=8)) for _ in range(2000))
    result = bootstrap_median(values, seed=11)
    assert result is not None
    assert result[1] == Interval(quantile(medians, 0.025), quantile(medians, 0.975))


def test_bootstrap_median_edges() -> None:
    assert bootstrap_median([]) is None
    assert bootstrap_median([2.0, 2.0, 2.0]) == (2.0, Interval(2.0, 2.0))
    with pytest.raises(ValueError, match="resamples"):
        bootstrap_median([1.0], resamples=0)
