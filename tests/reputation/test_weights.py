"""Group weights (outcomes.md section 5): the worked examples, forgetting, no leakage."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callsbot.config import ConsensusSettings
from callsbot.reputation.inputs import Label
from callsbot.reputation.weights import (
    DAY,
    compute_weights,
    forgetting,
    rank_key,
    shrunk_weight,
)
from callsbot.reputation.wilson import wilson_interval, wilson_lower

T = 1_700_000_000.0
S = ConsensusSettings()


def shrunk(k: float, n: float, p0: float) -> float:
    return shrunk_weight(k, n, p0, prior_strength=20, low=0.5, high=2.0)


@pytest.mark.parametrize(
    ("hits", "calls", "printed"), [(3, 5, 1.28), (1, 10, 0.80), (12, 30, 1.36), (2, 40, 0.50)]
)
def test_the_worked_examples_come_out_as_printed(hits: int, calls: int, printed: float) -> None:
    assert round(shrunk(hits, calls, 0.25), 2) == printed


def labels_for(group: str, hits: int, calls: int, *, at: float = T) -> list[Label]:
    """``calls`` labels of ``group`` called and resolved at ``at`` (age 0: no forgetting)."""
    return [Label(group, f"{group}-{i}", at, i < hits, at) for i in range(calls)]


def test_the_worked_examples_through_labels_with_a_pooled_rate_of_a_quarter() -> None:
    labels = [
        *labels_for("@g35", 3, 5),
        *labels_for("@g110", 1, 10),
        *labels_for("@g1230", 12, 30),
        *labels_for("@g240", 2, 40),
        *labels_for("@rest", 7, 15),  # makes the pool 25 of 100
    ]
    w = compute_weights(labels, at=T, settings=S)
    assert w.pooled == pytest.approx(0.25)
    assert [round(w.weight(g), 2) for g in ("@g35", "@g110", "@g1230", "@g240")] == [
        1.28,
        0.80,
        1.36,
        0.50,
    ]


def test_a_group_without_labels_weighs_one() -> None:
    w = compute_weights(labels_for("@a", 9, 10), at=T, settings=S)
    assert w.weight("@new") == 1.0
    assert compute_weights([], at=T, settings=S).weight("@a") == 1.0


def test_no_contrast_gives_one() -> None:
    assert compute_weights(labels_for("@a", 0, 10), at=T, settings=S).weight("@a") == 1.0
    assert compute_weights(labels_for("@a", 10, 10), at=T, settings=S).weight("@a") == 1.0


def test_clip_bounds_are_settings() -> None:
    narrow = ConsensusSettings(weight_min=0.9, weight_max=1.1)
    labels = [*labels_for("@good", 30, 30), *labels_for("@bad", 0, 70)]
    w = compute_weights(labels, at=T, settings=narrow)
    assert (w.weight("@good"), w.weight("@bad")) == (1.1, 0.9)


def test_a_label_counts_half_after_thirty_days() -> None:
    assert forgetting(30 * DAY, 30) == pytest.approx(0.5)
    assert forgetting(0, 30) == 1.0
    assert forgetting(-5, 30) == 1.0
    old = [Label("@a", "t", T - 30 * DAY, True, T - 30 * DAY + 60)]
    w = compute_weights(old, at=T, settings=S)
    assert w.groups["@a"].weighted_calls == pytest.approx(0.5, rel=1e-4)
    assert (w.groups["@a"].calls, w.groups["@a"].hits) == (1, 1)


def test_duplicate_labels_count_once() -> None:
    twice = [Label("@a", "t", T - 10, True, T - 5), Label("@a", "t", T - 20, False, T - 5)]
    entry = compute_weights(twice, at=T, settings=S).groups["@a"]
    assert (entry.calls, entry.hits) == (1, 0)  # the label of the earliest call


label_strategy = st.builds(
    lambda g, t, called, hit, delay: Label(g, t, called, hit, called + delay),
    st.sampled_from(["@a", "@b", "@c", "@d"]),
    st.sampled_from([f"T{i}" for i in range(12)]),
    st.floats(T - 60 * DAY, T + 2 * DAY),
    st.booleans(),
    st.floats(60, DAY),
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(label_strategy, max_size=40),
    st.lists(label_strategy, max_size=20),
    st.floats(T - 30 * DAY, T),
)
def test_no_leakage_a_label_resolving_later_never_changes_a_weight(
    known: list[Label], later: list[Label], at: float
) -> None:
    before = [lb for lb in known if lb.resolved_at <= at]
    after_event = [lb for lb in later if lb.resolved_at > at]
    # Duplicates of a (group, token) already labelled are the source's business: a later
    # label of the same call is a different, later fact and is left out here.
    seen = {(lb.group, lb.token) for lb in before}
    after_event = [lb for lb in after_event if (lb.group, lb.token) not in seen]
    alone = compute_weights(before, at=at, settings=S)
    with_later = compute_weights([*before, *after_event], at=at, settings=S)
    assert with_later == alone


def test_wilson_interval_matches_the_method() -> None:
    low, high = wilson_interval(5, 10)
    assert (round(low, 4), round(high, 4)) == (0.2366, 0.7634)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_lower(0, 10) == 0.0
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(3, 2)


def test_people_rank_by_the_wilson_lower_bound_not_by_the_raw_rate() -> None:
    labels = [
        *labels_for("@lucky", 1, 1),
        *labels_for("@steady", 40, 100),
        *labels_for("@x", 5, 50),
    ]
    w = compute_weights(labels, at=T, settings=S)
    ranked = sorted(w.groups.values(), key=rank_key, reverse=True)
    assert [e.group for e in ranked] == ["@steady", "@lucky", "@x"]
    assert w.groups["@lucky"].hit_rate == 1.0  # the best raw rate, from one call
    # ... and a weight near 1, never the near-zero Wilson bound of a new group.
    assert 1.0 < w.weight("@lucky") < w.weight("@steady")
