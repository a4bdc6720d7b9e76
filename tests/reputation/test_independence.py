"""Independence (outcomes.md section 6): votes at once, and copy probabilities from history."""

from __future__ import annotations

import random

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callsbot.config import ConsensusSettings
from callsbot.models import ForwardHeader
from callsbot.reputation.fingerprint import fingerprint
from callsbot.reputation.independence import (
    CHANNEL,
    COPY,
    FORWARD,
    MUTUAL,
    OWN,
    SAME_SENDER,
    SAME_TEXT,
    SLOW,
    AtOnceVote,
    CopyRules,
    VoteBook,
    copy_model,
    message_votes,
)
from callsbot.reputation.inputs import Mention
from callsbot.reputation.snapshot import build_reputation
from callsbot.reputation.weighted import weighted_sum
from tests.synthetic import AT, CHATS, START, synthetic_history

T0 = 1_700_000_000.0
TEXT = "🚀 NEW GEM ALERT 🚀 LP locked, dev doxxed, community takeover starting now"


def text_mention(ts: float, group: str, chat: int, text: str, **kw: object) -> Mention:
    fp = fingerprint(text)
    assert fp is not None
    return Mention(ts, group, "TOK", chat, 1, sha1=fp.sha1, simhash=fp.simhash, **kw)  # type: ignore[arg-type]


# -- at once ------------------------------------------------------------------------------------


def test_a_forward_of_a_monitored_group_votes_zero_and_credits_the_origin() -> None:
    votes = message_votes(
        [
            Mention(T0, "@a", "TOK", -1001, 5),
            Mention(T0 + 60, "@d", "TOK", -1004, 9, forward=ForwardHeader(-1001, None, 5, 1)),
        ]
    )
    assert [(v.value, v.vote.kind, v.vote.voter) for v in votes] == [
        (1.0, OWN, "@a"),
        (0.0, FORWARD, "@a"),
    ]
    assert votes[1].vote.describe() == "fwd of @a"


def test_a_forward_of_a_monitored_group_counts_even_before_its_origin_posts_in_the_log() -> None:
    # The monitored groups are known up front (the listener's resolved groups).
    book = VoteBook({-1001: "@a"})
    vote = book.add(Mention(T0, "@d", "TOK", -1004, 9, forward=ForwardHeader(-1001)))
    assert (vote.value, vote.vote.kind, vote.vote.voter) == (0.0, FORWARD, "@a")


def test_an_unmonitored_channel_forwarded_by_two_groups_is_one_vote() -> None:
    fwd = ForwardHeader(origin_peer=-1009999, origin_message_id=3)
    votes = message_votes(
        [
            Mention(T0, "@x", "TOK", -1001, 1, forward=fwd),
            Mention(T0 + 30, "@y", "TOK", -1002, 1, forward=fwd),
            Mention(T0 + 40, "@y", "OTHER", -1002, 2, forward=fwd),  # another token: counts
        ]
    )
    assert [(v.value, v.vote.kind, v.vote.voter, v.vote.of) for v in votes] == [
        (1.0, CHANNEL, "channel:-1009999", None),
        (0.0, CHANNEL, "channel:-1009999", "@x"),
        (1.0, CHANNEL, "channel:-1009999", None),
    ]


def test_a_forward_from_a_hidden_origin_votes_once_under_its_name() -> None:
    fwd = ForwardHeader(origin_name="Alpha Whale")
    votes = message_votes(
        [
            Mention(T0, "@x", "TOK", -1001, 1, forward=fwd),
            Mention(T0, "@y", "TOK", -1002, 1, forward=fwd),
        ]
    )
    assert [v.value for v in votes] == [1.0, 0.0]
    assert votes[1].vote.voter == "hidden:Alpha Whale"


def test_the_same_text_from_another_group_votes_zero_within_a_day_only() -> None:
    votes = message_votes(
        [
            text_mention(T0, "@a", -1001, TEXT),
            text_mention(T0 + 300, "@b", -1002, TEXT.upper() + "!!"),  # near copy: 2 bits
            text_mention(T0 + 400, "@a", -1001, TEXT),  # its own text again: not a copy
            text_mention(T0 + 86_401, "@c", -1003, TEXT),  # more than 24 h after both
        ]
    )
    assert [(v.value, v.vote.kind, v.vote.of) for v in votes] == [
        (1.0, OWN, None),
        (0.0, SAME_TEXT, "@a"),
        (1.0, OWN, None),
        (0.0, SAME_TEXT, "@a"),  # @a's second message is 86,001 s earlier
    ]
    late = message_votes(
        [text_mention(T0, "@a", -1001, TEXT), text_mention(T0 + 86_401, "@c", -1003, TEXT)]
    )
    assert [v.value for v in late] == [1.0, 1.0]


def test_a_sender_who_already_voted_through_another_group_votes_zero() -> None:
    votes = message_votes(
        [
            Mention(T0, "@a", "TOK", -1001, 1, sender_id=77),
            Mention(T0 + 5, "@b", "TOK", -1002, 1, sender_id=77),
            Mention(T0 + 6, "@b", "OTHER", -1002, 2, sender_id=77),
            Mention(T0 + 7, "@c", "TOK", -1003, 1, sender_id=78),
        ]
    )
    assert [(v.value, v.vote.kind) for v in votes] == [
        (1.0, OWN),
        (0.0, SAME_SENDER),
        (1.0, OWN),
        (1.0, OWN),
    ]


def test_a_group_s_own_call_beats_its_repeat() -> None:
    book = VoteBook()
    book.add(text_mention(T0, "@a", -1001, TEXT))
    book.add(text_mention(T0 + 5, "@b", -1002, TEXT))
    assert book.group_vote("TOK", "@b").kind == SAME_TEXT
    book.add(Mention(T0 + 9, "@b", "TOK", -1002, 2))
    assert book.group_vote("TOK", "@b") == AtOnceVote(OWN, "@b")


def test_votes_survive_json() -> None:
    for vote in (AtOnceVote(FORWARD, "@a", "@a"), AtOnceVote(OWN, "@b")):
        assert AtOnceVote.from_json(vote.to_json()) == vote
    with pytest.raises(ValueError, match="not a vote"):
        AtOnceVote.from_json({"kind": "nonsense", "voter": "@a"})


# -- from history: the synthetic month ----------------------------------------------------------


@pytest.fixture(scope="module")
def history():  # type: ignore[no-untyped-def]
    return synthetic_history()


def test_synthetic_b_copies_a(history) -> None:  # type: ignore[no-untyped-def]
    model = copy_model(history.mentions, at=AT)
    copies = model.copies()
    assert copies[("@A", "@B")] >= 0.6
    assert copies.get(("@B", "@A"), 0.0) == 0.0
    assert copies.get(("@A", "@C"), 0.0) == 0.0
    assert copies.get(("@C", "@A"), 0.0) == 0.0
    assert set(copies) == {("@A", "@B")}
    [ab] = [r for r in model.relations if (r.leader, r.follower) == ("@A", "@B")]
    assert ab.verdict == COPY
    assert 40 <= ab.median_lag <= 80
    assert ab.reverse_follows == 0
    assert ab.lift >= 3
    assert model.clusters == ()


def test_synthetic_d_forwards_a_and_votes_zero(history) -> None:  # type: ignore[no-untyped-def]
    votes = message_votes(history.mentions)
    d = [v for v in votes if v.mention.group == "@D"]
    assert d
    assert all(v.value == 0 and v.vote.voter == "@A" for v in d)
    # ... and the forwards are no evidence in the copy test (the at-once rule handled them).
    model = copy_model(history.mentions, at=AT)
    assert all("@D" not in (r.leader, r.follower) for r in model.relations)


def test_synthetic_c_keeps_weight_one_and_full_votes(history) -> None:  # type: ignore[no-untyped-def]
    computed = build_reputation(
        history.mentions, history.labels, at=AT, settings=ConsensusSettings()
    )
    rep = computed.reputation
    assert rep.weight("@C") == 1.0
    assert rep.weight("@A") > 1.0 > rep.weight("@B")
    votes = message_votes(history.mentions)
    assert all(v.value == 1 for v in votes if v.mention.group == "@C")
    # On a token @A and @C both called, @C's part of S is its whole call.
    s = weighted_sum(
        {"@A": AT - 120, "@C": AT - 60},
        now=AT,
        half_life_seconds=float("inf"),
        reputation=rep,
    )
    assert s.terms[1].group == "@C"
    assert (s.terms[1].weight, s.terms[1].vote, s.terms[1].note) == (1.0, 1.0, "")


def test_the_copy_test_is_seeded_and_order_free(history) -> None:  # type: ignore[no-untyped-def]
    shuffled = list(history.mentions)
    random.Random(3).shuffle(shuffled)
    assert copy_model(shuffled, at=AT) == copy_model(history.mentions, at=AT)
    other_seed = copy_model(history.mentions, at=AT, rules=CopyRules(seed=99))
    assert other_seed.copies().keys() == copy_model(history.mentions, at=AT).copies().keys()


def test_mentions_after_the_moment_or_before_the_month_are_not_used(history) -> None:  # type: ignore[no-untyped-def]
    model = copy_model(history.mentions, at=AT)
    late = [attrs.evolve(m, ts=AT + 10, token=f"late-{i}") for i, m in enumerate(history.mentions)]
    early = [
        attrs.evolve(m, ts=START - 10, token=f"early-{i}") for i, m in enumerate(history.mentions)
    ]
    assert copy_model([*history.mentions, *late, *early], at=AT) == model


# -- from history: the other verdicts -----------------------------------------------------------


def pair_history(lag: float, n: int = 40, *, both_ways: bool = False) -> list[Mention]:
    rng = random.Random(5)
    out: list[Mention] = []
    for i in range(n):
        ts = START + rng.uniform(0, 29 * 86400)
        first, second = ("@E", "@F") if not both_ways or i % 2 else ("@F", "@E")
        out.append(Mention(ts, first, f"T{i}", CHATS["@A"] - 10 if first == "@E" else -2020))
        out.append(
            Mention(ts + lag, second, f"T{i}", CHATS["@A"] - 10 if second == "@E" else -2020)
        )
    return out


def test_a_slow_follower_is_no_copy() -> None:
    model = copy_model(pair_history(lag=420), at=AT)
    [ef] = [r for r in model.relations if (r.leader, r.follower) == ("@E", "@F")]
    assert (ef.verdict, ef.c) == (SLOW, 0.0)


def test_groups_that_follow_each_other_both_ways_form_a_cluster() -> None:
    model = copy_model(pair_history(lag=30, both_ways=True), at=AT)
    assert model.copies() == {}
    assert {r.verdict for r in model.relations} == {MUTUAL}
    assert model.clusters == (("@E", "@F"),)


def test_fewer_than_five_follows_say_nothing() -> None:
    model = copy_model(pair_history(lag=30, n=4), at=AT)
    assert model.relations == ()


def test_independent_groups_answering_the_same_launches_form_no_cluster() -> None:
    # Each calls 200 tokens of its own and 30 shared launches within ±3 min, in random order:
    # follows both ways, fast, but a small share of their calls (docs/consensus.md D23).
    rng = random.Random(11)
    mentions: list[Mention] = []
    for i in range(200):
        for group, chat in (("@x", -1), ("@y", -2)):
            ts = START + rng.uniform(0, 29 * 86400)
            mentions.append(Mention(ts, group, f"{group}{i}", chat))
    for i in range(30):
        ts = START + rng.uniform(0, 29 * 86400)
        mentions.append(Mention(ts, "@x", f"S{i}", -1))
        mentions.append(Mention(ts + rng.uniform(-180, 180), "@y", f"S{i}", -2))
    model = copy_model(mentions, at=AT)
    assert model.clusters == ()
    assert all(r.c < 0.1 for r in model.relations)


def test_the_book_forgets_what_is_older_than_a_day() -> None:
    book = VoteBook()
    for i in range(5000):
        book.add(Mention(T0 + 60 * i, f"@g{i % 7}", f"T{i % 900}", -(i % 7) - 1, i))
    # 5000 messages a minute apart: the last 24 h are 1441 of them.
    assert book.remembered == 1441
    assert len(book._best) < 2 * 4096


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["@p", "@q", "@r"]),
            st.integers(0, 40),
            st.floats(0, 29 * 86400),
            st.floats(0, 900),
        ),
        max_size=120,
    )
)
def test_copy_relations_are_one_way_and_mirrors_are_mutual(
    rows: list[tuple[str, int, float, float]],
) -> None:
    mentions: list[Mention] = []
    for group, token, launch, delay in rows:
        mentions.append(Mention(START + launch // 3600 * 3600 + delay, group, f"T{token}", None))
    model = copy_model(mentions, at=AT, rules=CopyRules(min_follows=2))
    copies = model.copies()
    for (a, b), c in copies.items():
        assert 0 < c <= 1
        assert (b, a) not in copies
    verdicts = {(r.leader, r.follower): r.verdict for r in model.relations}
    for (a, b), verdict in verdicts.items():
        if verdict == MUTUAL:
            assert verdicts[(b, a)] == MUTUAL
            assert (a, b) not in copies
    assert copy_model(list(reversed(mentions)), at=AT, rules=CopyRules(min_follows=2)) == model
