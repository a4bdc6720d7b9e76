"""The weighted sum S (outcomes.md section 7): weights, votes, decay, forwards, clusters."""

from __future__ import annotations

import math

import pytest

from callsbot.config import ConsensusSettings
from callsbot.reputation.independence import CHANNEL, FORWARD, SAME_TEXT, AtOnceVote
from callsbot.reputation.snapshot import Reputation
from callsbot.reputation.weighted import WeightedSum, decay, weighted_level, weighted_sum

NOW = 1_700_000_000.0
H = 1800.0
INF = math.inf


def s_of(
    calls: dict[str, float],
    rep: Reputation | None = None,
    *,
    h: float = INF,
    votes: dict[str, AtOnceVote] | None = None,
) -> WeightedSum:
    return weighted_sum(
        calls, now=NOW, half_life_seconds=h, reputation=rep or Reputation(0), votes=votes
    )


def test_neutral_inputs_sum_to_the_number_of_groups() -> None:
    assert s_of({f"@g{i}": NOW - 100 * i for i in range(7)}).total == 7.0
    assert s_of({}).total == 0.0


def test_terms_come_in_call_order() -> None:
    s = s_of({"@b": NOW - 10, "@a": NOW - 10, "@c": NOW - 20})
    assert [t.group for t in s.terms] == ["@c", "@a", "@b"]


def test_a_call_halves_every_half_life() -> None:
    assert decay(H, H) == pytest.approx(0.5)
    assert decay(2 * H, H) == pytest.approx(0.25)
    assert decay(-10, H) == 1.0
    assert decay(1e9, INF) == 1.0
    assert s_of({"@a": NOW - H, "@b": NOW}, h=H).total == pytest.approx(1.5)
    assert s_of({"@a": NOW + 5}, h=H).total == 1.0  # a clock ahead never adds


def test_weights_multiply() -> None:
    rep = Reputation(NOW, weights={"@a": 2.0, "@b": 0.5})
    assert s_of({"@a": NOW, "@b": NOW, "@c": NOW}, rep).total == 3.5


def test_a_copy_is_discounted_only_after_its_leader_within_ten_minutes() -> None:
    rep = Reputation(NOW, copies={("@a", "@b"): 0.8})
    after = s_of({"@a": NOW - 120, "@b": NOW - 60}, rep)
    assert after.total == pytest.approx(1.2)
    assert (after.terms[1].vote, after.terms[1].note) == (pytest.approx(0.2), "copy of @a")
    # Called first, or more than 10 minutes after, or at the same second: its own call.
    assert s_of({"@b": NOW - 120, "@a": NOW - 60}, rep).total == 2.0
    assert s_of({"@a": NOW - 700, "@b": NOW - 60}, rep).total == 2.0
    assert s_of({"@a": NOW - 60, "@b": NOW - 60}, rep).total == 2.0


def test_the_strongest_leader_sets_the_discount() -> None:
    rep = Reputation(NOW, copies={("@a", "@c"): 0.3, ("@b", "@c"): 0.9})
    s = s_of({"@a": NOW - 200, "@b": NOW - 100, "@c": NOW}, rep)
    assert s.terms[2].vote == pytest.approx(0.1)
    assert s.terms[2].note == "copy of @b"


def fwd_of(origin: str) -> AtOnceVote:
    return AtOnceVote(FORWARD, origin, origin)


def test_a_forward_is_zero_when_its_origin_called() -> None:
    s = s_of(
        {"@a": NOW - 60, "@d": NOW},
        Reputation(NOW, weights={"@a": 1.5, "@d": 1.2}),
        votes={"@d": fwd_of("@a")},
    )
    assert s.total == 1.5
    assert (s.terms[1].vote, s.terms[1].note) == (0.0, "fwd of @a")


def test_a_forward_whose_origin_left_the_window_is_credited_once_with_its_weight() -> None:
    s = s_of(
        {"@d": NOW - 60, "@e": NOW},
        Reputation(NOW, weights={"@a": 1.5, "@d": 0.5}),
        votes={"@d": fwd_of("@a"), "@e": fwd_of("@a")},
    )
    assert s.total == 1.5
    assert [(t.group, t.weight, t.vote) for t in s.terms] == [("@d", 1.5, 1.0), ("@e", 1.0, 0.0)]
    assert s.terms[1].note == "fwd of @a via @d"


def test_a_channel_forwarded_by_two_groups_counts_once() -> None:
    ch = AtOnceVote(CHANNEL, "channel:-1009")
    s = s_of({"@x": NOW - 60, "@y": NOW, "@z": NOW}, votes={"@x": ch, "@y": ch})
    assert s.total == 2.0
    assert [(t.group, t.vote) for t in s.terms] == [("@x", 1.0), ("@y", 0.0), ("@z", 1.0)]


def test_a_repeated_text_is_zero() -> None:
    s = s_of({"@a": NOW - 60, "@b": NOW}, votes={"@b": AtOnceVote(SAME_TEXT, "@b", "@a")})
    assert s.total == 1.0
    assert s.terms[1].note == "same text as @a"


def test_votes_of_groups_outside_the_window_change_nothing() -> None:
    assert s_of({"@a": NOW}, votes={"@gone": fwd_of("@a")}).total == 1.0


def test_a_cluster_counts_as_its_strongest_member() -> None:
    rep = Reputation(NOW, weights={"@e": 1.2, "@f": 1.6}, clusters=(("@e", "@f"),))
    s = s_of({"@e": NOW - 30, "@f": NOW, "@g": NOW}, rep)
    assert s.total == pytest.approx(2.6)
    assert (s.terms[0].value, s.terms[0].note) == (0.0, "cluster with @f")
    alone = s_of({"@e": NOW - 30, "@g": NOW}, rep)
    assert alone.total == pytest.approx(2.2)


@pytest.mark.parametrize(
    ("total_s", "groups", "level"),
    [(0.0, 0, 0), (0.0, 1, 1), (1.99, 2, 1), (2.0, 2, 2), (2.99, 5, 2), (3.0, 3, 3), (9.0, 1, 3)],
)
def test_levels(total_s: float, groups: int, level: int) -> None:
    assert weighted_level(total_s, groups, ConsensusSettings()) == level
