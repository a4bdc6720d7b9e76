"""The engine's schedule: what the live processes would have done, at the moment they would."""

from __future__ import annotations

import attrs
import pytest

from callsbot.clock import FakeClock
from callsbot.config import Settings
from callsbot.models import ForwardHeader
from callsbot.replay.engine import Periodic, Replay, replay
from callsbot.replay.tape import TapeMessage
from callsbot.store.memory import MemoryStore
from tests.replay.factory import GROUPS, T0, TOKENS, buy, message, observation, path, tape

A, B = TOKENS[0], TOKENS[1]


def with_threshold(value: float) -> Settings:
    s = Settings()
    return attrs.evolve(s, scoring=attrs.evolve(s.scoring, alert_threshold=value))


async def test_a_mention_waits_for_its_snapshot_and_keeps_its_message_date() -> None:
    tp = tape(
        [
            message(T0 + 10, GROUPS[0], A, 1),
            message(T0 + 12, GROUPS[1], B, 2),
            message(T0 + 30, GROUPS[1], A, 3),
        ],
        [],
        [observation(T0 + 14, A), observation(T0 + 16, B)],
        end=T0 + 100,
    )
    result = await replay(tp, Settings())
    got = [(e.token, e.level, e.ts, e.at) for e in result.levels]
    # Deferred until the snapshot was observed, retried on the 5-second grid, dated as sent.
    assert got == [
        (A, 1, int(T0 + 10), T0 + 15),
        (B, 1, int(T0 + 12), T0 + 20),
        (A, 2, int(T0 + 30), T0 + 30),
    ]
    assert result.mentions == 3


async def test_a_buy_is_scored_when_it_was_served_and_alerts_with_the_consensus_then() -> None:
    tp = tape(
        [message(T0 + 10, GROUPS[0], A, 1), message(T0 + 20, GROUPS[1], A, 2)],
        [buy(T0 + 15, A, usd=500.0)],
        [observation(T0, A)],
        end=T0 + 100,
    )
    result = await replay(tp, with_threshold(8.0))
    first = result.scores[0]
    assert first.at == T0 + 15
    assert first.card.consensus.groups == (GROUPS[0],)
    # The second group's call makes the scorer react at once, not at its next tick.
    assert [(e.at, e.alert.card.consensus.groups) for e in result.alerts] == [
        (T0 + 20, (GROUPS[0], GROUPS[1]))
    ]


async def test_without_reaction_the_tick_would_have_been_later() -> None:
    tp = tape(
        [message(T0 + 10, GROUPS[0], A, 1), message(T0 + 20, GROUPS[1], A, 2)],
        [buy(T0 + 15, A, usd=500.0)],
        [observation(T0, A)],
        end=T0 + 100,
    )
    engine = Replay(tp, with_threshold(8.0))
    try:
        await engine.advance(T0 + 19.9)
        assert engine.result().alerts == ()
        assert engine.scorer.watching == (A,)
        await engine.advance(T0 + 20)
        assert len(engine.result().alerts) == 1
    finally:
        await engine.aclose()


async def test_the_cooldown_holds_a_second_alert_back_until_it_ends() -> None:
    s = with_threshold(5.0)
    s = attrs.evolve(s, scoring=attrs.evolve(s.scoring, cooldown_seconds=600))
    tp = tape(
        [message(T0 + 5, GROUPS[0], A, 1), message(T0 + 5, GROUPS[1], A, 2)],
        [buy(T0 + 10, A, n=1), buy(T0 + 300, A, n=2), buy(T0 + 700, A, n=3)],
        [observation(T0, A)],
        end=T0 + 800,
    )
    result = await replay(tp, s)
    assert [e.at for e in result.alerts] == [T0 + 10, T0 + 700]
    assert [e.outcome for e in result.scores] == ["alerted", "cooldown", "alerted"]


async def test_feed_polls_and_delivery_steps_place_items_on_their_grids() -> None:
    dated = attrs.evolve(message(T0 + 12, GROUPS[0], A, 1), dated_at_delivery=True)
    tp = attrs.evolve(
        tape([dated], [buy(T0 + 31, A)], [observation(T0, A)], end=T0 + 120),
        step=5.0,
        feed_poll=True,
    )
    result = await replay(tp, Settings())
    assert [(e.at, e.ts) for e in result.levels] == [(T0 + 15, int(T0 + 15))]
    assert [e.at for e in result.scores] == [T0 + 60]  # the poll after it was served


async def test_the_listener_filters_apply_to_replayed_messages() -> None:
    fwd = message(T0 + 10, GROUPS[0], A, 1)
    fwd = TapeMessage(fwd.at, attrs.evolve(fwd.message, forward=ForwardHeader(origin_peer=-1)))
    empty = TapeMessage(T0 + 11, attrs.evolve(message(T0 + 11, GROUPS[1], A, 2).message, text=""))
    tp = tape([fwd, empty], [], [observation(T0, A)])
    s = Settings()
    skip = attrs.evolve(s, telegram=attrs.evolve(s.telegram, skip_forwards=True))
    assert (await replay(tp, s)).mentions == 1
    result = await replay(tp, skip)
    assert result.mentions == 0
    assert result.delivered == 2


async def test_periodic_jobs_run_on_the_simulated_clock() -> None:
    tp = tape([message(T0 + 10, GROUPS[0], A, 1)], [], [observation(T0, A)], end=T0 + 1000)
    engine = Replay(tp, Settings())
    ran: list[float] = []

    async def job() -> None:
        ran.append(engine.clock.time())

    engine.add_periodic(Periodic(300.0, job))
    try:
        await engine.run()
    finally:
        await engine.aclose()
    assert ran == [T0, T0 + 300, T0 + 600, T0 + 900]


async def test_the_engine_refuses_to_sleep() -> None:
    from callsbot.replay.engine import _never_sleep

    with pytest.raises(RuntimeError, match="sleep"):
        await _never_sleep(1.0)


async def test_nothing_after_the_end_is_played() -> None:
    tp = tape(
        [message(T0 + 10, GROUPS[0], A, 1), message(T0 + 500, GROUPS[1], B, 2)],
        [],
        [observation(T0, A), observation(T0, B)],
        end=T0 + 100,
    )
    result = await replay(tp, Settings())
    assert [e.token for e in result.levels] == [A]
    assert result.end == T0 + 100


async def test_a_polled_feed_is_polled_by_the_scorer_as_the_live_loop_polls() -> None:
    tp = attrs.evolve(
        tape([], [buy(T0 + 31, A)], [observation(T0, A)], end=T0 + 100),
        feed_poll=True,
    )
    engine = Replay(tp, Settings())
    try:
        await engine.advance(T0 + 95)
        assert engine.scorer.last_poll_at == T0 + 90
        assert engine.scorer.health() == []
        assert [e.at for e in engine.result().scores] == [T0 + 60]
    finally:
        await engine.aclose()
    # A history's buys carry their own time: nothing polls.
    engine = Replay(attrs.evolve(tp, feed_poll=False), Settings())
    try:
        await engine.advance(T0 + 95)
        assert engine.scorer.last_poll_at is None
        assert [e.at for e in engine.result().scores] == [T0 + 31]
    finally:
        await engine.aclose()


def weighted() -> Settings:
    s = Settings()
    return attrs.evolve(s, consensus=attrs.evolve(s.consensus, mode="weighted"))


async def test_weighted_mode_runs_the_reputation_job_and_the_scorer_uses_its_weights() -> None:
    # Day one: @group0's two calls hit (4x within minutes), @group1's two calls miss (flat for
    # a day). The day after, each calls a fresh token and a buy of it is scored.
    hits = [path(t, T0, [1.0] * 3 + [4.0] * 1600) for t in TOKENS[:2]]
    flats = [path(t, T0, [1.0] * 1600) for t in TOKENS[2:4]]
    day2 = T0 + 25 * 3600
    c, d = TOKENS[4], TOKENS[5]
    tp = tape(
        [
            message(T0 + 60, GROUPS[0], TOKENS[0], 1),
            message(T0 + 120, GROUPS[0], TOKENS[1], 2),
            message(T0 + 60, GROUPS[1], TOKENS[2], 3),
            message(T0 + 120, GROUPS[1], TOKENS[3], 4),
            message(day2, GROUPS[0], c, 5),
            message(day2, GROUPS[1], d, 6),
        ],
        [buy(day2 + 10, c, n=1), buy(day2 + 10, d, n=2)],
        [*(observation(T0, t) for t in TOKENS[:4]), *(observation(day2 - 60, t) for t in (c, d))],
        paths={p.token: p for p in hits + flats},
        end=day2 + 60,
    )

    async def run(reputation: bool) -> tuple[dict[str, float], dict[str, float | None]]:
        engine = Replay(tp, weighted(), reputation=reputation)
        try:
            result = await engine.run()
        finally:
            await engine.aclose()
        strength = {e.buy.token: e.card.consensus.strength for e in result.scores if not e.rescore}
        return dict(engine.scorer.reputation.weights), strength

    weights, strength = await run(True)
    assert weights[GROUPS[0]] > 1.0 > weights[GROUPS[1]]
    neutral, plain = await run(False)
    assert neutral == {}
    # The same call weighs its group's weight: more for the group whose calls hit.
    assert plain[c] == plain[d]
    assert strength[c] == pytest.approx(weights[GROUPS[0]] * plain[c])
    assert strength[d] == pytest.approx(weights[GROUPS[1]] * plain[d])


async def test_count_mode_runs_no_reputation_job() -> None:
    engine = Replay(tape([], [], [], end=T0 + 10), Settings())
    try:
        assert engine.reputation_job is None
        assert engine.mention_log is None
        await engine.run()
        assert await engine.parts.store.reputation() is None
    finally:
        await engine.aclose()


async def test_a_store_handed_in_gets_the_runs_reputation_only_when_asked() -> None:
    # A handed-in store may be a shared Redis whose published reputation live scorers read.
    clock = FakeClock(T0)
    store = MemoryStore(window=3600, clock=clock)
    tp = tape([], [], [], end=T0 + 10)
    for reputation, job in ((None, False), (True, True), (False, False)):
        engine = Replay(tp, weighted(), store=store, clock=clock, reputation=reputation)
        try:
            assert (engine.reputation_job is not None) is job
        finally:
            await engine.aclose()
    engine = Replay(tp, weighted())
    try:
        assert engine.reputation_job is not None
    finally:
        await engine.aclose()
    await store.aclose()


async def test_a_weighted_replay_discounts_a_repeat_as_the_live_aggregator_does() -> None:
    # @group1 posts @group0's text about the same token ten seconds later: one vote, not two.
    c = TOKENS[4]
    text = f"🚀 fresh gem from the alpha desk, aping a small bag now\n{c}"
    first, second = message(T0 + 60, GROUPS[0], c, 1), message(T0 + 70, GROUPS[1], c, 2)
    tp = tape(
        [
            attrs.evolve(first, message=attrs.evolve(first.message, text=text)),
            attrs.evolve(second, message=attrs.evolve(second.message, text=text)),
        ],
        [buy(T0 + 90, c, n=1)],
        [observation(T0, c)],
        end=T0 + 120,
    )
    engine = Replay(tp, weighted())
    try:
        result = await engine.run()
    finally:
        await engine.aclose()
    [scored] = [e for e in result.scores if not e.rescore]
    terms = {t.group: (t.factor, t.note) for t in scored.card.consensus.terms}
    assert terms[GROUPS[1]] == (0.0, f"same text as {GROUPS[0]}")
    assert terms[GROUPS[0]][0] == 1.0
