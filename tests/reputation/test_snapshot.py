"""The published reputation: its wire form, and what goes into it."""

from __future__ import annotations

import pytest

from callsbot.config import ConsensusSettings
from callsbot.reputation.inputs import Label, Mention
from callsbot.reputation.snapshot import NEUTRAL, Reputation, build_reputation, label_lookback
from tests.synthetic import AT, synthetic_history


def test_the_wire_form_round_trips() -> None:
    rep = Reputation(
        AT,
        weights={"@a": 1.2800000001, "-100123": 0.5},
        copies={("@a", "@b"): 0.97},
        clusters=(("@e", "@f"),),
    )
    assert Reputation.from_json(rep.to_json()) == rep
    assert Reputation.from_json(NEUTRAL.to_json()) == NEUTRAL


@pytest.mark.parametrize(
    "text",
    [
        "",
        "[]",
        '{"format": 2}',
        '{"format": 1, "computed_at": 1, "weights": {"@a": "x"}, "copies": [], "clusters": []}',
        '{"format": 1, "computed_at": 1, "weights": {}, "copies": [["@a"]], "clusters": []}',
        '{"format": 1, "computed_at": NaN, "weights": {}, "copies": [], "clusters": []}',
    ],
)
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"reputation|number|format"):
        Reputation.from_json(text)


def test_neutral_weighs_everyone_one_and_copies_nobody() -> None:
    assert (NEUTRAL.weight("@any"), NEUTRAL.copy("@a", "@b"), NEUTRAL.clusters) == (1.0, 0.0, ())


def test_build_uses_nothing_dated_after_the_moment() -> None:
    history = synthetic_history()
    s = ConsensusSettings()
    base = build_reputation(history.mentions, history.labels, at=AT, settings=s)
    later_mentions = [Mention(AT + i, "@Z", f"A{i:04d}", -1099, i) for i in range(20)]
    later_labels = [Label("@A", f"late{i}", AT - 10, False, AT + 1) for i in range(50)]
    again = build_reputation(
        [*history.mentions, *later_mentions], [*history.labels, *later_labels], at=AT, settings=s
    )
    assert again.reputation == base.reputation


def test_labels_are_read_over_six_half_lives() -> None:
    assert label_lookback(ConsensusSettings(forgetting_days=30)) == 180 * 86400
