"""Weighted consensus end to end: the pipeline's mentions, the vote tracker, the published
reputation, and the scorer's line, over memory and a real Redis (split processes share them)."""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import pytest

from callsbot.alert import Alert
from callsbot.clock import FakeClock
from callsbot.config import ConsensusSettings, Settings, TelegramSettings
from callsbot.errors import StoreError
from callsbot.metrics import Metrics
from callsbot.models import Buy, ForwardHeader, IncomingMessage
from callsbot.reputation.independence import FORWARD, SAME_TEXT
from callsbot.reputation.snapshot import NEUTRAL, Reputation
from callsbot.runtime.roles import build_pipeline, build_scorer, make_parts, subscribe_vote_tracker
from callsbot.scorer import Scorer
from callsbot.sources.cielo import PollResult
from callsbot.store.base import SignalStore
from callsbot.store.memory import MemoryStore
from tests.test_scorer import FixedMarket, snapshot, valid
from tests.tg import mint

T0 = 1_700_000_000
TOKEN = mint(14)
WEIGHTED = ConsensusSettings(mode="weighted")
CALL = (
    "🚀 NEW GEM 🚀 {token}\nLP locked, dev doxxed, community takeover. Chart soon, ape responsibly"
)


class OneBuy:
    """A feed that surfaces one $2,500 buy of TOKEN (base score 6 with the fixed market)."""

    def __init__(self) -> None:
        self.buys = [
            Buy(
                "tx1", "W" * 44, None, TOKEN, "TKN", "Token", 2500.0, T0, "raydium", "solana", False
            )
        ]

    async def poll(self) -> PollResult:
        buys, self.buys = tuple(self.buys), []
        return PollResult(buys=buys)

    async def handled(self, buys: Sequence[Buy]) -> None:
        return None


def scorer(store: SignalStore, clock: FakeClock, consensus: ConsensusSettings) -> Scorer:
    parts = make_parts(
        Settings(consensus=consensus),
        clock=clock,
        metrics=Metrics.create(),
        store=store,
        market=FixedMarket({TOKEN: valid(snapshot(TOKEN))}),
    )
    return build_scorer(parts, feed=OneBuy(), sinks=[])


async def feed_the_pipeline(store: SignalStore, clock: FakeClock) -> None:
    """@a calls; @b copies its text; @d forwards @a; @c (a known copy of @a) and @e call."""
    settings = Settings(consensus=WEIGHTED, telegram=TelegramSettings(groups=("@a",)))
    parts = make_parts(settings, clock=clock, metrics=Metrics.create(), store=store, market=None)
    tracker = subscribe_vote_tracker(parts)
    assert tracker is not None
    pipeline = build_pipeline(parts, validate=False)
    text = CALL.format(token=TOKEN)
    for m in [
        IncomingMessage(-1001, "@a", 1, T0 - 300, text, sender_id=11),
        IncomingMessage(
            -1002, "@b", 1, T0 - 240, CALL.upper().replace("{TOKEN}", TOKEN), sender_id=22
        ),
        IncomingMessage(
            -1004, "@d", 1, T0 - 200, text, forward=ForwardHeader(-1001, None, 1, T0 - 300)
        ),
        IncomingMessage(-1003, "@c", 1, T0 - 180, f"aping {TOKEN} here", sender_id=33),
        IncomingMessage(
            -1005, "@e", 1, T0 - 100, f"{TOKEN} looks clean to me, small bag", sender_id=55
        ),
    ]:
        await pipeline.process(m)
    await parts.events.drain()
    await store.beat("aggregator", 60)


async def test_the_line_names_weights_copies_forwards_and_repeats(
    store: SignalStore, clock: FakeClock
) -> None:
    await feed_the_pipeline(store, clock)
    votes = await store.votes(TOKEN)
    assert {g: v.kind for g, v in votes.items()} == {"@b": SAME_TEXT, "@d": FORWARD}
    await store.publish_reputation(
        Reputation(T0 - 60, weights={"@a": 1.5, "@e": 0.8}, copies={("@a", "@c"): 0.8})
    )
    [result] = await scorer(store, clock, WEIGHTED).poll_once()
    assert result.card is not None
    cons = result.card.consensus
    assert cons.mode == "weighted"
    assert [(t.group, round(t.factor, 2), t.note) for t in cons.terms] == [
        ("@a", 1.5, ""),
        ("@b", 0.0, "same text as @a"),
        ("@d", 0.0, "fwd of @a"),
        ("@c", 0.2, "copy of @a"),
        ("@e", 0.8, ""),
    ]
    # 1.5·2^(-300/1800) + 0.2·2^(-180/1800) + 0.8·2^(-100/1800) = 2.30: level 2, +1.
    assert cons.strength == pytest.approx(2.30, abs=0.01)
    assert cons.points == 1
    assert cons.reason == (
        "🤝 CONSENSUS: +1 (S 2.3: @a ×1.5, @b same text as @a ×0.0, @d fwd of @a ×0.0, "
        "@c copy of @a ×0.2, @e ×0.8)"
    )
    assert result.card.total == 7
    # The JSONL sink's line carries the same terms.
    js = Alert(result.buy, snapshot(TOKEN), result.card, T0).to_json()["consensus"]
    assert (js["mode"], js["strength"]) == ("weighted", pytest.approx(2.30, abs=0.01))
    assert [(t["group"], t["note"]) for t in js["terms"]][1:3] == [
        ("@b", "same text as @a"),
        ("@d", "fwd of @a"),
    ]


async def test_count_mode_ignores_votes_and_weights(store: SignalStore, clock: FakeClock) -> None:
    await feed_the_pipeline(store, clock)
    await store.publish_reputation(Reputation(T0, weights={"@a": 2.0}))
    [result] = await scorer(store, clock, ConsensusSettings()).poll_once()
    assert result.card is not None
    assert result.card.consensus.reason == (
        "🤝 MULTI-BOT CONSENSUS: +2 (5 groups: @a, @b, @d, @c, @e)"
    )


async def test_before_any_publication_every_weight_is_one(
    store: SignalStore, clock: FakeClock
) -> None:
    await feed_the_pipeline(store, clock)
    s = scorer(store, clock, WEIGHTED)
    [result] = await s.poll_once()
    assert result.card is not None
    assert s.reputation is NEUTRAL
    assert [t.weight for t in result.card.consensus.terms] == [1.0] * 5


class CountingReputation(MemoryStore):
    def __init__(self, *, window: int, clock: FakeClock) -> None:
        super().__init__(window=window, clock=clock)
        self.reads = 0
        self.down = False

    async def reputation(self) -> Reputation | None:
        self.reads += 1
        if self.down:
            raise StoreError("down")
        return await super().reputation()


async def test_the_scorer_caches_the_reputation_and_keeps_it_through_an_outage(
    clock: FakeClock,
) -> None:
    clock.set(T0)
    store = CountingReputation(window=3600, clock=clock)
    await store.record(TOKEN, "@a", T0 - 10)
    await store.beat("aggregator", 600)
    await store.publish_reputation(Reputation(T0 - 5, weights={"@a": 1.7}))
    s = scorer(store, clock, WEIGHTED)
    for _ in range(5):
        await s._consensus(TOKEN)
    assert store.reads == 1
    assert s.reputation.weight("@a") == 1.7
    clock.advance(61)
    await store.beat("aggregator", 600)
    store.down = True
    cons, _ = await s._consensus(TOKEN)
    assert store.reads == 2
    assert cons.terms[0].weight == 1.7  # the last one read serves
    assert not cons.degraded
    store.down = False
    await store.publish_reputation(Reputation(T0 + 60, weights={"@a": 0.6}))
    clock.advance(61)
    await store.beat("aggregator", 600)
    cons, _ = await s._consensus(TOKEN)
    assert cons.terms[0].weight == 0.6


async def test_votes_unreadable_degrade_like_the_window(clock: FakeClock) -> None:
    class NoVotes(MemoryStore):
        async def groups_and_votes(self, token: str) -> tuple[dict[str, int], dict[str, object]]:  # type: ignore[override]
            raise StoreError("down")

    clock.set(T0)
    store = NoVotes(window=3600, clock=clock)
    await store.record(TOKEN, "@a", T0)
    await store.beat("aggregator", 60)
    cons, count = await scorer(store, clock, WEIGHTED)._consensus(TOKEN)
    assert (cons.points, cons.degraded, count) == (0, True, None)


def test_weighted_terms_survive_in_the_score_card_value() -> None:
    # The history records score cards as attrs values: the terms are fields, not a rendering.
    from callsbot.scoring import Consensus

    fields = {f.name for f in attrs.fields(Consensus)}
    assert {"mode", "strength", "terms"} <= fields


async def test_the_vote_tracker_is_count_mode_free(clock: FakeClock) -> None:
    store = MemoryStore(window=3600, clock=clock)
    parts = make_parts(Settings(), clock=clock, metrics=Metrics.create(), store=store, market=None)
    assert subscribe_vote_tracker(parts) is None
    assert "votes" not in parts.events.subscribers


async def test_a_vote_that_cannot_be_written_leaves_the_group_its_own_call(
    clock: FakeClock,
) -> None:
    class Refuses(MemoryStore):
        async def put_vote(self, token: str, group: str, vote: object) -> None:  # type: ignore[override]
            raise StoreError("down")

    clock.set(T0)
    store = Refuses(window=3600, clock=clock)
    metrics = Metrics.create()
    parts = make_parts(
        Settings(consensus=WEIGHTED), clock=clock, metrics=metrics, store=store, market=None
    )
    subscribe_vote_tracker(parts)
    pipeline = build_pipeline(parts, validate=False)
    text = CALL.format(token=TOKEN)
    await pipeline.process(IncomingMessage(-1001, "@a", 1, T0 - 30, text))
    await pipeline.process(IncomingMessage(-1002, "@b", 1, T0 - 20, text))
    await parts.events.drain()
    assert await store.groups(TOKEN) == {"@a": T0 - 30, "@b": T0 - 20}
    errors = metrics.registry.get_sample_value("callsbot_store_errors_total", {"op": "put_vote"})
    assert errors == 1
