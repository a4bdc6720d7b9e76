"""The Wilson (1927) score interval of a proportion (docs/outcomes.md section 4)."""

from __future__ import annotations

import math

#: z of a two-sided 95 % interval.
Z95 = 1.96


def wilson_interval(successes: float, n: float, *, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of ``successes`` out of ``n``.

    centre = (p + z²/2n)/(1 + z²/n), half-width = z·√(p(1−p)/n + z²/4n²)/(1 + z²/n).
    Counts may be fractional (rarity-weighted or forgetting-weighted sums, with ``n`` an
    effective sample size). ``n = 0`` says nothing: ``(0, 1)``.

    Raises:
        ValueError: ``n < 0`` or ``successes`` outside ``0..n``.
    """
    if n < 0 or not 0 <= successes <= n * (1 + 1e-12):
        raise ValueError(f"need 0 <= successes <= n, got {successes!r} of {n!r}")
    if n == 0:
        return (0.0, 1.0)
    p = min(1.0, successes / n)
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def wilson_lower(successes: float, n: float, *, z: float = Z95) -> float:
    """The lower end of :func:`wilson_interval` (ranking and copy probabilities)."""
    return wilson_interval(successes, n, z=z)[0]
