"""The weighted consensus sum (outcomes.md section 7).

    S(T, t) = Σ over distinct groups g that called T in the window of w_g · v_g · 2^(−(t − ts_g)/h)

- w_g: the group's reputation weight (1 until a job published weights).
- v_g: its independence: 0 for a message that repeats a vote already cast (at once, section 6),
  else 1 − max c(A→g) over the groups A that called the token 0 < Δ ≤ 10 min before g; groups
  of one cluster together count at most as their strongest member.
- ts_g: the group's latest call in the window (what the window store keeps); h: the half-life.

Groups are taken in call order (time, then name), as the count mode's line lists them.

:func:`weighted_level` maps S onto the tiers' levels: 3 if S ≥ θ3, 2 if S ≥ θ2, 1 if any group
called, 0 only when no group called at all (a weak group never makes a token "solo").
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

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
    calls: Mapping[str, float],
    *,
    now: float,
    half_life_seconds: float,
    reputation: Reputation = NEUTRAL,
    votes: Mapping[str, AtOnceVote] | None = None,
) -> WeightedSum:
    """S(T, now) over the groups that called T in the window.

    Args:
        calls: group → its latest call of the token in the window (unix seconds), as the window
            store's ``groups(token)`` answers.
        now: t, unix seconds.
        half_life_seconds: h (``math.inf``: no decay).
        reputation: published weights, copy probabilities and clusters.
        votes: the at-once votes of groups whose call repeats a vote already cast; a group
            without one made its own call.
    """
    ordered = sorted(calls.items(), key=_by_time)
    counted = _at_once(ordered, votes) if votes else {g: (1.0, g, "") for g, _ in ordered}

    weights = reputation.weights
    all_leaders = reputation.leaders
    terms: list[Term] = []
    for i, (group, ts) in enumerate(ordered):
        base, holder, note = counted[group]
        v = base
        if base > 0 and holder in all_leaders:
            leader, c = _strongest_leader(ordered, i, all_leaders[holder])
            if c > 0:
                v = base * (1.0 - c)
                note = note or f"copy of {leader}"
        w = weights.get(holder, 1.0)
        age = now - ts
        d = math.pow(2.0, -age / half_life_seconds) if age > 0 else 1.0
        terms.append(Term(group, ts, w, v, d, w * v * d, note))

    if reputation.cluster_index:
        terms = _one_per_cluster(terms, counted, reputation.cluster_index)
    return WeightedSum(math.fsum([t.value for t in terms]), tuple(terms))


def _by_time(call: tuple[str, float]) -> tuple[float, str]:
    return (call[1], call[0])


def _at_once(
    ordered: Sequence[tuple[str, float]], given: Mapping[str, AtOnceVote]
) -> dict[str, tuple[float, str, str]]:
    """group → (0 or 1, whose weight the vote carries, note): one vote per voter."""
    votes = {g: given.get(g) or own_vote(g) for g, _ in ordered}
    counted: dict[str, tuple[float, str, str]] = {}
    by_voter: dict[str, list[str]] = {}
    for group, _ in ordered:
        by_voter.setdefault(votes[group].voter, []).append(group)
    for voter, members in by_voter.items():
        if voter in votes:
            # The origin called it itself: it alone speaks for its voter.
            for group in members:
                vote = votes[group]
                if group == voter:
                    counted[group] = (1.0 if vote.kind == OWN else 0.0, voter, vote.describe())
                else:
                    counted[group] = (0.0, group, vote.describe())
            continue
        first: str | None = None
        for group in members:
            vote = votes[group]
            if vote.kind in (FORWARD, CHANNEL) and first is None:
                first = group
                # A forward of a monitored group carries the origin's weight; a channel's one
                # vote carries the weight of the group that brought it first.
                counted[group] = (1.0, voter if vote.kind == FORWARD else group, vote.describe())
            elif vote.kind in (FORWARD, CHANNEL):
                counted[group] = (0.0, group, f"fwd of {voter} via {first}")
            else:
                counted[group] = (0.0, group, vote.describe())
    return counted


def _strongest_leader(
    ordered: Sequence[tuple[str, float]], i: int, leaders: Mapping[str, float]
) -> tuple[str, float]:
    """The earlier group within 10 min that ``ordered[i]`` copies most, and that c."""
    _, ts = ordered[i]
    best, best_c = "", 0.0
    for j in range(i):
        other, other_ts = ordered[j]
        c = leaders.get(other)
        if c is not None and c > best_c and 0 < ts - other_ts <= FOLLOW_SECONDS:
            best, best_c = other, c
    return best, best_c


def _one_per_cluster(
    terms: list[Term], counted: dict[str, tuple[float, str, str]], cluster: dict[str, int]
) -> list[Term]:
    index: dict[str, int] = {}
    seen: set[int] = set()
    shared = False
    for t in terms:
        i = cluster.get(counted[t.group][1])
        if i is not None and t.value > 0:
            index[t.group] = i
            shared = shared or i in seen
            seen.add(i)
    if not shared:
        return terms
    strongest: dict[int, Term] = {}
    for term in terms:
        i = index.get(term.group)
        if i is not None and (i not in strongest or term.value > strongest[i].value):
            strongest[i] = term
    out: list[Term] = []
    for term in terms:
        i = index.get(term.group)
        best = strongest.get(i) if i is not None else None
        if best is None or best is term:
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
