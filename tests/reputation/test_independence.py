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
    _null_follows,
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


def _reference_votes(mentions: list[Mention], monitored: dict[int, str]) -> list[AtOnceVote]:
    """The at-once rules as outcomes.md states them, one list per message (no book, no pruning:
    every message here is within a day of the others)."""
    known = dict(monitored)
    out: list[tuple[Mention, AtOnceVote, float]] = []
    for m in mentions:
        if m.chat_id is not None:
            known.setdefault(m.chat_id, m.group)
        earlier = [
            (e, v, value)
            for e, v, value in out
            if e.token == m.token and e.ts <= m.ts and e.group != m.group and value > 0
        ]
        vote: AtOnceVote | None = None
        channel = None
        fwd = m.forward
        if fwd is not None and fwd.origin_peer != m.chat_id:
            origin = known.get(fwd.origin_peer) if fwd.origin_peer is not None else None
            if origin is not None and origin != m.group:
                vote = AtOnceVote(FORWARD, origin, origin)
            elif origin is None and fwd.origin_peer is not None:
                channel = f"channel:{fwd.origin_peer}"
            elif origin is None and fwd.origin_name:
                channel = f"hidden:{fwd.origin_name}"
        if vote is None and channel is not None:
            firsts = [e.group for e, v, _ in earlier if v.voter == channel]
            vote = AtOnceVote(CHANNEL, channel, firsts[0]) if firsts else None
        if vote is None:
            texts = [
                e.group
                for e, _, _ in earlier
                if (m.sha1 is not None and m.sha1 == e.sha1)
                or (
                    m.simhash is not None
                    and e.simhash is not None
                    and bin(m.simhash ^ e.simhash).count("1") <= 3
                )
            ]
            senders = [
                e.group
                for e, _, _ in earlier
                if m.sender_id is not None and e.sender_id == m.sender_id
            ]
            if texts:
                vote = AtOnceVote(SAME_TEXT, m.group, texts[0])
            elif senders:
                vote = AtOnceVote(SAME_SENDER, m.group, senders[0])
        if vote is None:
            vote = AtOnceVote(CHANNEL, channel) if channel else AtOnceVote(OWN, m.group)
            out.append((m, vote, 1.0))
        else:
            out.append((m, vote, 0.0))
    return [v for _, v, _ in out]


_TEXTS = [TEXT, TEXT + "!", "completely different words about another launch today", None]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 3),  # group (chat -1 … -4)
            st.integers(0, 1),  # token
            st.integers(0, 600),  # seconds after the previous message
            st.sampled_from(_TEXTS),
            st.one_of(st.none(), st.integers(1, 3)),  # sender
            st.sampled_from([None, -1, -2, -900, "hidden"]),  # forwarded from
        ),
        max_size=40,
    )
)
def test_the_book_decides_every_message_as_the_rules_say(
    rows: list[tuple[int, int, int, str | None, int | None, int | str | None]],
) -> None:
    mentions: list[Mention] = []
    ts = T0
    for group, token, gap, text, sender, origin in rows:
        ts += gap
        fp = fingerprint(text) if text else None
        forward = None
        if origin == "hidden":
            forward = ForwardHeader(origin_name="Alpha Leaks")
        elif isinstance(origin, int):
            forward = ForwardHeader(origin_peer=origin)
        mentions.append(
            Mention(
                ts,
                f"@g{group}",
                f"T{token}",
                -group - 1,
                len(mentions),
                sender_id=sender,
                forward=forward,
                sha1=None if fp is None else fp.sha1,
                simhash=None if fp is None else fp.simhash,
            )
        )
    book = VoteBook({-1: "@g0", -2: "@g1"})
    assert [book.add(m).vote for m in mentions] == _reference_votes(
        mentions, {-1: "@g0", -2: "@g1"}
    )


def _reference_null_follows(
    leader: dict[str, float],
    follower: dict[str, float],
    rarity: dict[str, float],
    since: float,
    period: float,
    pair: tuple[str, str],
    rules: CopyRules,
) -> float:
    """outcomes.md's null model read literally: shift the leader's timeline around the period,
    count the follower's calls 0 < lag <= follow_seconds after it, average over the shifts."""
    rng = random.Random(f"{rules.seed}|{pair[0]}|{pair[1]}")
    total = 0.0
    for _ in range(rules.shuffles):
        shift = rng.uniform(rules.min_shift_seconds, period - rules.min_shift_seconds)
        for token in sorted(leader.keys() & follower.keys()):
            moved = since + (leader[token] - since + shift) % period
            if 0 < follower[token] - moved <= rules.follow_seconds:
                total += rarity[token]
    return total / rules.shuffles


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([7300.0, 86400.0, 30 * 86400.0]),
    st.sampled_from([3600.0, 0.0, 300.0]),  # smallest shift: below follow_seconds the arcs wrap
    st.lists(
        st.tuples(
            st.one_of(st.floats(0, 1), st.integers(0, 700).map(float)),  # leader (share / s)
            st.one_of(  # follower: a lag after the leader, or anywhere (even the period's start)
                st.sampled_from([0.0, 1.0, 599.0, 600.0, 601.0, -5.0, 3600.0]),
                st.integers(0, 700).map(lambda s: complex(0, s)),
            ),
            st.integers(1, 5),  # callers of the token
        ),
        max_size=60,
    ),
    st.integers(0, 10**6),  # the pair's name, which seeds its shifts
)
def test_the_null_model_counts_what_shifting_the_leader_counts(
    period: float, min_shift: float, rows: list[tuple[float, float | complex, int]], name: int
) -> None:
    since = 1_700_000_000.5
    leader, follower, rarity = {}, {}, {}
    for i, (at, then, callers) in enumerate(rows):
        token = f"T{i}"
        leader[token] = since + (at * (period - 1) if at <= 1 else at)
        # A complex `then` is a follower call at that second of the period, whoever called first.
        due = then.imag if isinstance(then, complex) else leader[token] - since + then
        follower[token] = since + min(period - 1, max(0.0, due))
        rarity[token] = 1 / callers
    rules = CopyRules(min_shift_seconds=min_shift)
    pair = (f"@a{name}", "@b")
    got = _null_follows(leader, follower, rarity, since, period, pair, rules)
    want = _reference_null_follows(leader, follower, rarity, since, period, pair, rules)
    assert got == pytest.approx(want, rel=1e-12, abs=1e-12)
