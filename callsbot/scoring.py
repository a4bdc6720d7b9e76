"""Pure scoring: the consensus adjustment (and the base-score rules).

Nothing here does I/O: callers read the store and market data, then pass plain values in.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from callsbot.config import ConsensusSettings, Tier


@attrs.frozen
class Consensus:
    """The consensus adjustment of one token.

    Attributes:
        points: added to the base score.
        groups: the groups that called the token in the window (empty when degraded).
        degraded: the store or the aggregator could not be trusted, so ``points`` is 0.
        reason: one line for the alert.
    """

    points: int
    groups: tuple[str, ...]
    degraded: bool
    reason: str


def consensus(
    groups: Sequence[str] | None,
    *,
    heartbeat_age: float | None,
    settings: ConsensusSettings,
) -> Consensus:
    """Turn the groups that called a token into points (design.md's tier table).

    Args:
        groups: distinct groups in the window, or ``None`` when the store could not be asked.
        heartbeat_age: seconds since the aggregator's last beat, ``None`` if it has none.
        settings: the tiers and the staleness limit.

    Returns:
        The tier's points; 0 and ``degraded`` when the store is unreachable or the aggregator's
        heartbeat is missing or older than ``settings.heartbeat_stale_seconds`` — an absent
        aggregator must never turn into a "solo" penalty.
    """
    if groups is None:
        return Consensus(0, (), True, "⚠️ CONSENSUS UNKNOWN: 0 (signal store unreachable)")
    if heartbeat_age is None or heartbeat_age > settings.heartbeat_stale_seconds:
        age = (
            "no heartbeat" if heartbeat_age is None else f"last heartbeat {heartbeat_age:.0f}s ago"
        )
        return Consensus(0, tuple(groups), True, f"⚠️ CONSENSUS UNKNOWN: 0 (aggregator {age})")
    n = len(groups)
    points = tier_points(n, settings.tiers)
    return Consensus(points, tuple(groups), False, _consensus_line(points, tuple(groups)))


def tier_points(n_groups: int, tiers: Sequence[Tier]) -> int:
    """Points of the highest tier whose ``min_groups`` is at most ``n_groups``."""
    eligible = [t for t in tiers if t.min_groups <= n_groups]
    if not eligible:
        raise ValueError(f"no consensus tier covers {n_groups} groups")
    return max(eligible, key=lambda t: t.min_groups).points


def _consensus_line(points: int, groups: tuple[str, ...]) -> str:
    n = len(groups)
    if n == 0:
        return f"⚠️ SOLO SIGNAL: {points:+d} (no other groups)"
    names = ", ".join(groups)
    label = "MULTI-BOT CONSENSUS" if n >= 2 else "ONE GROUP"
    icon = "🤝" if n >= 2 else "👤"
    return f"{icon} {label}: {points:+d} ({n} group{'s' if n != 1 else ''}: {names})"
