"""The weighted consensus sum (outcomes.md section 7).

    S(T, t) = Σ over distinct groups g that called T in the window of w_g · v_g · 2^(−(t − ts_g)/h)

- w_g: the group's reputation weight (1 until a job published weights).
- v_g: its independence: 0 for a message that repeats a vote already cast (at once, section 6),
  else 1 − max c(A→g) over the groups A that called the token 0 < Δ ≤ 10 min before g; groups
  of one cluster together count at most as their strongest member.
- ts_g: the group's latest call in the window (what the window store keeps); h: the half-life.

:func:`weighted_level` maps S onto the tiers' levels: 3 if S ≥ θ3, 2 if S ≥ θ2, 1 if any group
called, 0 only when no group called at all (a weak group never makes a token "solo").
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import attrs

from callsbot.config import ConsensusSettings
from callsbot.reputation.independence import (
    CHANNEL,
    FOLLOW_SECONDS,
    FORWARD,
    OWN,
    AtOnceVote,
    own_vote,
)
from callsbot.reputation.snapshot import NEUTRAL, Reputation


@attrs.frozen
class GroupCall:
    """One group's call of a token in the window.

    Attributes:
        group: the group.
        ts: its latest mention of the token in the window, unix seconds.
        vote: its at-once vote for the token; ``None`` is its own, independent call.
    """

    group: str
    ts: float
    vote: AtOnceVote | None = None


@attrs.frozen
class Term:
    """One group's part of S.

    Attributes:
        group: the group.
        ts: its call's time.
        weight: w, the reputation weight of whoever the vote is counted for (the group, or the
            origin of a forward credited to it).
        vote: v, 0..1: the at-once vote times 1 − c.
        decay: 2^(−age/h).
        value: ``weight · vote · decay``.
        note: why ``vote`` is below 1 (``copy of @a``, ``fwd of @a``, ``same text as @b``,
            ``cluster with @a``), or ``""``.
    """

    group: str
    ts: float
    weight: float
    vote: float
    decay: float
    value: float
    note: str = ""

    @property
    def factor(self) -> float:
        """w · v: what the consensus line shows after ``×``."""
        return self.weight * self.vote


@attrs.frozen
class WeightedSum:
    """S and its terms (one per group, in call order)."""

    total: float
    terms: tuple[Term, ...]


def decay(age_seconds: float, half_life_seconds: float) -> float:
    """2^(−age/h); 1 for age ≤ 0 or an infinite half-life."""
    return math.pow(2.0, -max(0.0, age_seconds) / half_life_seconds)


def weighted_sum(
    calls: Sequence[GroupCall],
    *,
    now: float,
    half_life_seconds: float,
    reputation: Reputation = NEUTRAL,
) -> WeightedSum:
    """S(T, now) over ``calls`` (distinct groups; a repeated group keeps its latest call).

    Args:
        calls: the groups that called the token in the window.
        now: t, unix seconds.
        half_life_seconds: h (``math.inf``: no decay).
        reputation: published weights, copy probabilities and clusters.
    """
    latest: dict[str, GroupCall] = {}
    for call in calls:
        seen = latest.get(call.group)
        if seen is None or call.ts > seen.ts:
            latest[call.group] = call
    ordered = sorted(latest.values(), key=lambda c: (c.ts, c.group))
    votes = {c.group: c.vote or own_vote(c.group) for c in ordered}

    # At once: who counts for each voter, and whose weight it carries.
    counted: dict[str, tuple[float, str, str]] = {}  # group → (0/1, weight holder, note)
    by_voter: dict[str, list[GroupCall]] = {}
    for call in ordered:
        by_voter.setdefault(votes[call.group].voter, []).append(call)
    for voter, members in by_voter.items():
        if voter in latest:
            # The origin called it itself: it alone speaks for its voter.
            for call in members:
                vote = votes[call.group]
                if call.group == voter:
                    counted[call.group] = (1.0 if vote.kind == OWN else 0.0, voter, vote.describe())
                else:
                    counted[call.group] = (0.0, call.group, vote.describe())
            continue
        first: GroupCall | None = None
        for call in members:
            vote = votes[call.group]
            if vote.kind in (FORWARD, CHANNEL) and first is None:
                first = call
                holder = voter if vote.kind == FORWARD else call.group
                counted[call.group] = (1.0, holder, vote.describe())
            elif vote.kind in (FORWARD, CHANNEL) and first is not None:
                counted[call.group] = (0.0, call.group, f"fwd of {voter} via {first.group}")
            else:
                counted[call.group] = (0.0, call.group, vote.describe())

    terms: list[Term] = []
    for call in ordered:
        base, holder, note = counted[call.group]
        v = base
        if base > 0:
            leader, c = _strongest_leader(call, ordered, holder, reputation)
            if c > 0:
                v = base * (1.0 - c)
                note = note or f"copy of {leader}"
        w = reputation.weight(holder)
        d = decay(now - call.ts, half_life_seconds)
        terms.append(Term(call.group, call.ts, w, v, d, w * v * d, note))

    terms = _one_per_cluster(terms, counted, reputation)
    return WeightedSum(sum(t.value for t in terms), tuple(terms))


def _strongest_leader(
    call: GroupCall, ordered: Sequence[GroupCall], holder: str, reputation: Reputation
) -> tuple[str, float]:
    best, best_c = "", 0.0
    for other in ordered:
        lag = call.ts - other.ts
        if other.group == call.group or not 0 < lag <= FOLLOW_SECONDS:
            continue
        c = reputation.copy(other.group, holder)
        if c > best_c:
            best, best_c = other.group, c
    return best, best_c


def _one_per_cluster(
    terms: list[Term], counted: dict[str, tuple[float, str, str]], reputation: Reputation
) -> list[Term]:
    if not reputation.clusters:
        return terms
    cluster = reputation.cluster_of()
    strongest: dict[int, Term] = {}
    for term in terms:
        index = cluster.get(counted[term.group][1])
        if index is None or term.value <= 0:
            continue
        best = strongest.get(index)
        if best is None or term.value > best.value:
            strongest[index] = term
    out: list[Term] = []
    for term in terms:
        index = cluster.get(counted[term.group][1])
        best = strongest.get(index) if index is not None else None
        if best is None or best is term or term.value <= 0:
            out.append(term)
        else:
            out.append(attrs.evolve(term, vote=0.0, value=0.0, note=f"cluster with {best.group}"))
    return out


def weighted_level(total: float, n_groups: int, settings: ConsensusSettings) -> int:
    """The level S reaches: 3 (S ≥ θ3), 2 (S ≥ θ2), 1 (a group called), 0 (none called)."""
    if n_groups == 0:
        return 0
    if total >= settings.level3_threshold:
        return 3
    if total >= settings.level2_threshold:
        return 2
    return 1
