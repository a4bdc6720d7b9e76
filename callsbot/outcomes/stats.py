"""Interval maths for honest rates (outcomes.md section 4), pure.

- :func:`wilson`: the Wilson (1927) score interval of a proportion, with the method's formula.
- :func:`poisson_score`: the score interval of a Poisson rate (counts per week or per month),
  the same construction applied to a count.
- :func:`bootstrap_median`: the median with a seeded percentile-bootstrap interval.
- :func:`display_for`: the n ≥ 30 / "low n" / hidden rule for people.
- :func:`events_to_separate`: how many events per bucket tell two rates apart (≈ 330 for 25 %
  vs 35 %).
"""

from __future__ import annotations

import enum
import math
import random
import statistics
from collections.abc import Sequence

import attrs

#: The method's z for 95 % intervals.
Z95 = 1.96
#: Events per bucket that tell 25 % from 35 % (section 4; :func:`events_to_separate` gives 323).
EVENTS_PER_BUCKET = 330
#: Bootstrap resamples of a median (section 4).
RESAMPLES = 2000
#: A rate is shown to people from this many events...
SHOW_MIN_N = 30
#: ...marked "low n" from this many, and hidden below.
LOW_MIN_N = 10


@attrs.frozen
class Interval:
    """A closed interval ``[low, high]``."""

    low: float
    high: float

    def __contains__(self, value: float) -> bool:
        return self.low <= value <= self.high

    @property
    def half_width(self) -> float:
        """Half the width (the "±" of a symmetric reading)."""
        return (self.high - self.low) / 2.0

    def as_list(self) -> list[float]:
        """``[low, high]`` for JSON."""
        return [self.low, self.high]


class Display(enum.Enum):
    """How a bucket's rate may be shown to people (machine output always carries it)."""

    SHOWN = "ok"
    LOW_N = "low_n"
    HIDDEN = "hidden"


def display_for(n: int) -> Display:
    """Show a rate at n ≥ 30, mark it "low n" at 10–29, hide it below 10."""
    if n >= SHOW_MIN_N:
        return Display.SHOWN
    if n >= LOW_MIN_N:
        return Display.LOW_N
    return Display.HIDDEN


def wilson(successes: int, n: int, *, z: float = Z95) -> Interval:
    """The Wilson score interval of ``successes`` out of ``n``.

    centre = (p + z²/2n) / (1 + z²/n); half-width = z·√(p(1−p)/n + z²/4n²) / (1 + z²/n).
    ``n = 0`` says nothing: ``[0, 1]``.

    Raises:
        ValueError: ``successes`` outside ``0..n``.
    """
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got {successes}/{n}")
    if n == 0:
        return Interval(0.0, 1.0)
    raw = _wilson_at(successes / n, n, z)
    return Interval(max(raw.low, 0.0), min(raw.high, 1.0))


def poisson_score(count: int, exposure: float = 1.0, *, z: float = Z95) -> Interval:
    """The score interval of a Poisson rate: ``count`` events in ``exposure`` units of time.

    (x + z²/2 ± z·√(x + z²/4)) / exposure: the Poisson analogue of Wilson's interval, never
    negative, and not degenerate at a count of 0 (upper bound z² ≈ 3.84).

    Raises:
        ValueError: a negative count or a non-positive exposure.
    """
    if count < 0 or exposure <= 0:
        raise ValueError(f"need count >= 0 and exposure > 0, got {count}, {exposure}")
    z2 = z * z
    centre = count + z2 / 2
    half = z * math.sqrt(count + z2 / 4)
    return Interval(max(centre - half, 0.0) / exposure, (centre + half) / exposure)


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of already sorted values, linear between order statistics.

    (The ``(n − 1)·q`` rule, numpy's default.)
    """
    if not sorted_values:
        raise ValueError("quantile of no values")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be in [0, 1], got {q}")
    position = (len(sorted_values) - 1) * q
    lo = math.floor(position)
    hi = min(lo + 1, len(sorted_values) - 1)
    frac = position - lo
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac


def bootstrap_median(
    values: Sequence[float],
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, Interval] | None:
    """The median of ``values`` and its percentile-bootstrap interval.

    ``resamples`` times, draw ``len(values)`` values with replacement (``random.Random(seed)``)
    and take the median; the interval is the ``(1 − level)/2`` and ``(1 + level)/2`` quantiles
    of those medians. The same values and seed always give the same interval.

    Returns:
        ``(median, interval)``, or ``None`` for no values.
    """
    if not values:
        return None
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    rng = random.Random(seed)
    data = list(values)
    k = len(data)
    medians = sorted(statistics.median(rng.choices(data, k=k)) for _ in range(resamples))
    tail = (1.0 - level) / 2.0
    interval = Interval(quantile(medians, tail), quantile(medians, 1.0 - tail))
    return statistics.median(data), interval


def events_to_separate(p1: float, p2: float, *, z: float = Z95, limit: int = 100_000) -> int:
    """The fewest events per bucket for which the Wilson intervals at ``p1`` and ``p2`` part.

    ``events_to_separate(0.25, 0.35)`` is 323: the method's "about 330".

    Raises:
        ValueError: ``p1 == p2`` or no ``n`` up to ``limit`` separates them.
    """
    lo, hi = sorted((p1, p2))
    if lo == hi:
        raise ValueError("equal rates never separate")

    def parted(n: int) -> bool:
        return _wilson_at(lo, n, z).high < _wilson_at(hi, n, z).low

    if not parted(limit):
        raise ValueError(f"{p1} and {p2} do not separate within {limit} events")
    low_n, high_n = 1, limit  # parted() is monotone in n: bisect
    while low_n < high_n:
        mid = (low_n + high_n) // 2
        if parted(mid):
            high_n = mid
        else:
            low_n = mid + 1
    return low_n


def _wilson_at(p: float, n: int, z: float) -> Interval:
    """Wilson's interval for a rate ``p`` observed on ``n`` events (``p·n`` need not be whole)."""
    z2 = z * z
    denominator = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denominator
    return Interval(centre - half, centre + half)
