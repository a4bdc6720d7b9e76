"""Per-group weights by empirical-Bayes shrinkage of the hit rate (outcomes.md section 5).

A group's label says whether its first call of a token reached 2× within 24 h. At a moment
``at`` only labels resolved at or before ``at`` are used (no leakage), each weighing
2^(−age/forgetting_days) with age = ``at`` − the call's date. With k and n the weighted hits
and calls of a group and p0 = Σk/Σn over every group (the pooled rate):

    p̃ = (k + p0·m0) / (n + m0),    w = clip(p̃ / p0, weight_min, weight_max)

m0 is ``prior_strength`` (20 calls): a group with few labels stays near 1, one with many moves
towards its own rate. A group without labels weighs 1. Groups are *ranked* for people by the
Wilson lower bound of their raw hit rate (:func:`rank_key`), never *weighted* by it: the lower
bound of a new group is near 0, which would silence every group that just joined.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import attrs

from callsbot.config import ConsensusSettings
from callsbot.reputation.inputs import Label
from callsbot.reputation.wilson import wilson_lower

DAY = 86400.0


def forgetting(age_seconds: float, days: float) -> float:
    """2^(−age/days): how much a label of that age still counts (1 for age ≤ 0)."""
    return math.pow(2.0, -max(0.0, age_seconds) / (days * DAY))


def shrunk_weight(
    hits: float, calls: float, pooled: float, *, prior_strength: float, low: float, high: float
) -> float:
    """clip(((hits + pooled·m0) / (calls + m0)) / pooled, low, high).

    The outcomes.md examples (pooled 0.25, m0 20): 3/5 → 1.28, 1/10 → 0.80, 12/30 → 1.36,
    2/40 → 0.50. A pooled rate of 0 or 1 (no contrast between groups), or no calls and no
    prior, gives 1.
    """
    if not 0.0 < pooled < 1.0 or calls + prior_strength <= 0:
        return 1.0
    posterior = (hits + pooled * prior_strength) / (calls + prior_strength)
    return min(high, max(low, posterior / pooled))


@attrs.frozen
class GroupWeight:
    """One group's labels and weight at a moment.

    Attributes:
        group: the group.
        calls: resolved labels used (raw count).
        hits: of which hits (raw count).
        weighted_calls: Σ forgetting weights of its labels (n).
        weighted_hits: Σ forgetting weights of its hits (k).
        weight: the shrunk weight.
    """

    group: str
    calls: int
    hits: int
    weighted_calls: float
    weighted_hits: float
    weight: float

    @property
    def hit_rate(self) -> float | None:
        """Raw hits / calls, ``None`` without calls."""
        return self.hits / self.calls if self.calls else None


@attrs.frozen
class Weights:
    """Every group's weight at ``at``.

    Attributes:
        at: the moment: labels resolved after it were not used.
        pooled: p0, the forgetting-weighted hit rate of every label; ``None`` without labels.
        groups: the groups that had labels (every other group weighs 1).
    """

    at: float
    pooled: float | None
    groups: dict[str, GroupWeight] = attrs.field(factory=dict)

    def weight(self, group: str) -> float:
        """The group's weight; 1 for a group without labels."""
        entry = self.groups.get(group)
        return 1.0 if entry is None else entry.weight


def usable(labels: Iterable[Label], at: float) -> list[Label]:
    """The labels known at ``at``: resolved at or before it, one per (group, token).

    A second label of the same (group, token) is a duplicate from the source; the one of the
    earliest call is kept (the label is about the group's *first* mention).
    """
    kept: dict[tuple[str, str], Label] = {}
    for label in labels:
        if label.resolved_at > at:
            continue
        key = (label.group, label.token)
        seen = kept.get(key)
        if seen is None or label.called_at < seen.called_at:
            kept[key] = label
    return list(kept.values())


def compute_weights(labels: Iterable[Label], *, at: float, settings: ConsensusSettings) -> Weights:
    """Every labelled group's weight at ``at`` (section 5), from labels resolved by then.

    Args:
        labels: hit labels; those resolved after ``at`` are ignored, whatever the source sent.
        at: the moment of use (unix seconds).
        settings: ``prior_strength``, ``forgetting_days``, ``weight_min``, ``weight_max``.
    """
    sums: dict[str, list[float]] = {}
    raw: dict[str, list[int]] = {}
    for label in usable(labels, at):
        f = forgetting(at - label.called_at, settings.forgetting_days)
        s = sums.setdefault(label.group, [0.0, 0.0])
        r = raw.setdefault(label.group, [0, 0])
        s[0] += f
        r[0] += 1
        if label.hit:
            s[1] += f
            r[1] += 1
    total_n = sum(s[0] for s in sums.values())
    total_k = sum(s[1] for s in sums.values())
    pooled = total_k / total_n if total_n > 0 else None
    groups: dict[str, GroupWeight] = {}
    for group in sorted(sums):
        n, k = sums[group]
        weight = (
            1.0
            if pooled is None
            else shrunk_weight(
                k,
                n,
                pooled,
                prior_strength=settings.prior_strength,
                low=settings.weight_min,
                high=settings.weight_max,
            )
        )
        groups[group] = GroupWeight(group, raw[group][0], raw[group][1], n, k, weight)
    return Weights(at, pooled, groups)


def rank_key(entry: GroupWeight) -> tuple[float, int]:
    """Sort key for people (descending): the Wilson lower bound of the raw rate, then calls."""
    return (wilson_lower(entry.hits, entry.calls), entry.calls)
