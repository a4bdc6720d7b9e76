"""The weighted sum S (outcomes.md section 7): weights, votes, decay, forwards, clusters."""

from __future__ import annotations

import math

import pytest

from callsbot.config import ConsensusSettings
from callsbot.reputation.independence import CHANNEL, FORWARD, SAME_TEXT, AtOnceVote
from callsbot.reputation.snapshot import Reputation
from callsbot.reputation.weighted import GroupCall, decay, weighted_level, weighted_sum

NOW = 1_700_000_000.0
H = 1800.0
INF = math.inf


def total(calls: list[GroupCall], rep: Reputation | None = None, h: float = INF) -> float:
    return weighted_sum(calls, now=NOW, half_life_seconds=h, reputation=rep or Reputation(0)).total


def test_neutral_inputs_sum_to_the_number_of_groups() -> None:
    calls = [GroupCall(f"@g{i}", NOW - 100 * i) for i in range(7)]
    assert total(calls) == 7.0
    assert total([]) == 0.0


def test_a_group_counts_once_with_its_latest_call() -> None:
    s = weighted_sum([GroupCall("@a", NOW - H), GroupCall("@a", NOW)], now=NOW, half_life_seconds=H)
    assert s.total == 1.0
    assert [t.ts for t in s.terms] == [NOW]


def test_a_call_halves_every_half_life() -> None:
    assert decay(H, H) == pytest.approx(0.5)
    assert decay(2 * H, H) == pytest.approx(0.25)
    assert decay(-10, H) == 1.0
    assert decay(1e9, INF) == 1.0
    assert total([GroupCall("@a", NOW - H), GroupCall("@b", NOW)], h=H) == pytest.approx(1.5)


def test_weights_multiply() -> None:
    rep = Reputation(NOW, weights={"@a": 2.0, "@b": 0.5})
    assert total([GroupCall("@a", NOW), GroupCall("@b", NOW), GroupCall("@c", NOW)], rep) == 3.5


def test_a_copy_is_discounted_only_after_its_leader_within_ten_minutes() -> None:
    rep = Reputation(NOW, copies={("@a", "@b"): 0.8})
    after = weighted_sum(
        [GroupCall("@a", NOW - 120), GroupCall("@b", NOW - 60)],
        now=NOW,
        half_life_seconds=INF,
        reputation=rep,
    )
    assert after.total == pytest.approx(1.2)
    assert (after.terms[1].vote, after.terms[1].note) == (pytest.approx(0.2), "copy of @a")
    # Called first, or more than 10 minutes after: its own call.
    assert total([GroupCall("@b", NOW - 120), GroupCall("@a", NOW - 60)], rep) == 2.0
    assert total([GroupCall("@a", NOW - 700), GroupCall("@b", NOW - 60)], rep) == 2.0


def test_the_strongest_leader_sets_the_discount() -> None:
    rep = Reputation(NOW, copies={("@a", "@c"): 0.3, ("@b", "@c"): 0.9})
    s = weighted_sum(
        [GroupCall("@a", NOW - 200), GroupCall("@b", NOW - 100), GroupCall("@c", NOW)],
        now=NOW,
        half_life_seconds=INF,
        reputation=rep,
    )
    assert s.terms[2].vote == pytest.approx(0.1)
    assert s.terms[2].note == "copy of @b"


def fwd_of(origin: str) -> AtOnceVote:
    return AtOnceVote(FORWARD, origin, origin)


def test_a_forward_is_zero_when_its_origin_called() -> None:
    s = weighted_sum(
        [GroupCall("@a", NOW - 60), GroupCall("@d", NOW, fwd_of("@a"))],
        now=NOW,
        half_life_seconds=INF,
        reputation=Reputation(NOW, weights={"@a": 1.5, "@d": 1.2}),
    )
    assert s.total == 1.5
    assert (s.terms[1].vote, s.terms[1].note) == (0.0, "fwd of @a")


def test_a_forward_whose_origin_left_the_window_is_credited_once_with_the_origin_s_weight() -> None:
    s = weighted_sum(
        [GroupCall("@d", NOW - 60, fwd_of("@a")), GroupCall("@e", NOW, fwd_of("@a"))],
        now=NOW,
        half_life_seconds=INF,
        reputation=Reputation(NOW, weights={"@a": 1.5, "@d": 0.5}),
    )
    assert s.total == 1.5
    assert [(t.group, t.weight, t.vote) for t in s.terms] == [("@d", 1.5, 1.0), ("@e", 1.0, 0.0)]
    assert s.terms[1].note == "fwd of @a via @d"


def test_a_channel_forwarded_by_two_groups_counts_once() -> None:
    ch = AtOnceVote(CHANNEL, "channel:-1009")
    s = weighted_sum(
        [GroupCall("@x", NOW - 60, ch), GroupCall("@y", NOW, ch), GroupCall("@z", NOW)],
        now=NOW,
        half_life_seconds=INF,
    )
    assert s.total == 2.0
    assert [t.vote for t in s.terms] == [1.0, 0.0, 1.0]


def test_a_repeated_text_is_zero() -> None:
    s = weighted_sum(
        [GroupCall("@a", NOW - 60), GroupCall("@b", NOW, AtOnceVote(SAME_TEXT, "@b", "@a"))],
        now=NOW,
        half_life_seconds=INF,
    )
    assert s.total == 1.0
    assert s.terms[1].note == "same text as @a"


def test_a_cluster_counts_as_its_strongest_member() -> None:
    rep = Reputation(NOW, weights={"@e": 1.2, "@f": 1.6}, clusters=(("@e", "@f"),))
    s = weighted_sum(
        [GroupCall("@e", NOW - 30), GroupCall("@f", NOW), GroupCall("@g", NOW)],
        now=NOW,
        half_life_seconds=INF,
        reputation=rep,
    )
    assert s.total == pytest.approx(2.6)
    assert (s.terms[0].value, s.terms[0].note) == (0.0, "cluster with @f")


@pytest.mark.parametrize(
    ("total_s", "groups", "level"),
    [(0.0, 0, 0), (0.0, 1, 1), (1.99, 2, 1), (2.0, 2, 2), (2.99, 5, 2), (3.0, 3, 3), (9.0, 1, 3)],
)
def test_levels(total_s: float, groups: int, level: int) -> None:
    assert weighted_level(total_s, groups, ConsensusSettings()) == level
