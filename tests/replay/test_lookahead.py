"""No look-ahead: appending events dated after t never changes what a replay decided by t.

Random recordings of messages, buys and market snapshots are replayed twice: as they are, and
with more events appended after a cut time t. Every level reached, score card and alert dated
at or before t, every figure measured for those alerts, and every label the reputation hook
handed out before t must be identical. The approximate gate is held to the same with candles
appended after t, and weighted consensus's reputation job (day-long recordings, so that misses
resolve) to publishing the same reputation by t with later calls and later candles appended.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any
from unittest.mock import patch

import attrs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callsbot.config import Settings
from callsbot.models import Candle
from callsbot.replay.engine import Periodic, Replay, RunResult
from callsbot.replay.exits import ExitRule
from callsbot.replay.figures import measure
from callsbot.replay.tape import Gate, PricePath, Tape, TapeMessage
from callsbot.reputation.inputs import Label
from callsbot.reputation.snapshot import Reputation
from tests.replay.factory import GROUPS, T0, TOKENS, buy, message, observation, path, pump, tape

HOURS = 3600
SPAN = 4 * HOURS
END = T0 + SPAN + HOURS

messages_st = st.lists(
    st.tuples(st.integers(0, 5), st.integers(0, 4), st.integers(0, SPAN)), max_size=40
)
buys_st = st.lists(
    st.tuples(st.integers(0, 4), st.integers(0, SPAN), st.sampled_from([400.0, 2_000.0, 9_000.0])),
    max_size=12,
)
snaps_st = st.lists(
    st.tuples(
        st.integers(0, 4), st.integers(0, SPAN), st.sampled_from([4_000.0, 25_000.0, 150_000.0])
    ),
    max_size=15,
)
configs_st = st.sampled_from(
    [
        Settings(),
        attrs.evolve(Settings(), scoring=attrs.evolve(Settings().scoring, alert_threshold=5.0)),
        attrs.evolve(
            Settings(),
            store=attrs.evolve(Settings().store, window_seconds=900),
            scoring=attrs.evolve(Settings().scoring, alert_threshold=4.0, cooldown_seconds=600),
        ),
    ]
)

PATHS = {t: pump(t, T0, peak=1.5 + i) for i, t in enumerate(TOKENS)}


def build(
    msgs: Sequence[tuple[int, int, int]],
    buys: Sequence[tuple[int, int, float]],
    snaps: Sequence[tuple[int, int, float]],
) -> Tape:
    # Every token is observed once at the start, so that most mentions pass the gate.
    observations = [observation(T0, t) for t in TOKENS[:4]]
    observations += [observation(T0 + at, TOKENS[k], liquidity=liq) for k, at, liq in snaps]
    return tape(
        [message(T0 + at, GROUPS[g], TOKENS[k], 100 + i) for i, (g, k, at) in enumerate(msgs)],
        [buy(T0 + at, TOKENS[k], usd=usd, n=i) for i, (k, at, usd) in enumerate(buys)],
        observations,
        paths=PATHS,
        end=END,
    )


def later(msgs: Any, buys: Any, snaps: Any, cut: int) -> tuple[Any, Any, Any]:
    """Shift generated events to after ``cut`` (and keep them inside the recording)."""
    room = SPAN - cut
    return (
        [(g, k, cut + 1 + at % room) for g, k, at in msgs],
        [(k, cut + 1 + at % room, usd) for k, at, usd in buys],
        [(k, cut + 1 + at % room, liq) for k, at, liq in snaps],
    )


async def play(tp: Tape, config: Settings) -> tuple[RunResult, list[tuple[float, list[Any]]]]:
    engine = Replay(tp, config)
    seen: list[tuple[float, list[Any]]] = []

    async def reputation_job() -> None:
        labels = await engine.labels.labels(0.0, float("inf"))
        seen.append((engine.clock.time(), sorted(attrs.astuple(lb) for lb in labels)))

    engine.add_periodic(Periodic(600.0, reputation_job, "reputation"))
    try:
        return await engine.run(), seen
    finally:
        await engine.aclose()


def upto(events: Sequence[Any], t: float) -> list[Any]:
    return [e for e in events if e.at <= t]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    base=st.tuples(messages_st, buys_st, snaps_st),
    extra=st.tuples(messages_st, buys_st, snaps_st),
    cut=st.integers(0, SPAN - 1),
    config=configs_st,
)
def test_events_appended_after_t_change_nothing_decided_by_t(
    base: tuple[Any, Any, Any], extra: tuple[Any, Any, Any], cut: int, config: Settings
) -> None:
    t = T0 + cut
    original = build(*base)
    extended = build(*[a + b for a, b in zip(base, later(*extra, cut), strict=True)])
    first, labels_a = asyncio.run(play(original, config))
    second, labels_b = asyncio.run(play(extended, config))

    assert upto(first.levels, t) == upto(second.levels, t)
    assert upto(first.scores, t) == upto(second.scores, t)
    assert upto(first.alerts, t) == upto(second.alerts, t)
    rule = ExitRule()
    figures_a = measure(upto(first.alerts, t), PATHS, settings=config.outcomes, rule=rule)
    figures_b = measure(upto(second.alerts, t), PATHS, settings=config.outcomes, rule=rule)
    assert figures_a == figures_b
    assert [s for s in labels_a if s[0] <= t] == [s for s in labels_b if s[0] <= t]
    for at, labels in labels_a:
        assert all(resolved < at for *_, resolved in labels)


def extend(path: PricePath, after: int, closes: Sequence[float]) -> PricePath:
    last = path.minute[-1]
    start = max(after + 60 - after % 60, last.ts + 60)
    more = [Candle(start + 60 * i, c, c * 1.02, c * 0.98, c, 9_000.0) for i, c in enumerate(closes)]
    return attrs.evolve(path, minute=(*path.minute, *more), as_of=start + 60 * len(closes))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    msgs=messages_st,
    cut=st.integers(HOURS, SPAN - 1),
    closes=st.lists(st.floats(0.1, 20.0), min_size=1, max_size=30),
)
def test_the_candle_gate_never_reads_a_candle_that_closes_after_t(
    msgs: list[tuple[int, int, int]], cut: int, closes: list[float]
) -> None:
    t = T0 + cut
    # Paths cut at t: two tokens traded enough before t, the others did not (until after t).
    short = {
        k: attrs.evolve(
            p,
            minute=tuple(
                attrs.evolve(c, volume=c.volume if i < 2 else 1.0)
                for c in p.minute
                if c.ts + 60 <= t
            ),
        )
        for i, (k, p) in enumerate(PATHS.items())
    }
    messages: list[TapeMessage] = [
        message(T0 + at, GROUPS[g], TOKENS[k], 100 + i) for i, (g, k, at) in enumerate(msgs)
    ]
    before = attrs.evolve(tape(messages, [], [], paths=short, end=END), gate=Gate.APPROXIMATE)
    after = attrs.evolve(before, paths={k: extend(p, int(t), closes) for k, p in short.items()})
    first, _ = asyncio.run(play(before, Settings()))
    second, _ = asyncio.run(play(after, Settings()))
    assert upto(first.levels, t) == upto(second.levels, t)
    # Only the two tokens that traded enough before t ever passed the gate before t.
    assert {e.token for e in upto(first.levels, t)} <= set(TOKENS[:2])


# Weighted consensus: the reputation job inside a run. Calls come in the first hours; the
# recording runs on past the day after, so that hits (minutes) and misses (24 h 02) resolve.
CALLS = 3 * HOURS
LONG_END = T0 + 28 * HOURS
WEIGHTED = attrs.evolve(
    Settings(),
    consensus=attrs.evolve(Settings().consensus, mode="weighted", job_interval_seconds=1800.0),
    scoring=attrs.evolve(Settings().scoring, alert_threshold=5.0),
)
# Three tokens that double within minutes of any early call, three flat ones (misses).
DAY_PATHS = {
    t: path(t, T0, ([1.0] * (5 + 20 * i) + [3.0] * 1800) if i < 3 else [1.0] * 1800)
    for i, t in enumerate(TOKENS)
}


def closed_by(paths: dict[str, PricePath], t: float) -> dict[str, PricePath]:
    """The paths with only the candles that closed by ``t`` (complete up to ``t``)."""
    return {
        k: attrs.evolve(
            p,
            minute=tuple(c for c in p.minute if c.ts + 60 <= t),
            five_minute=tuple(c for c in p.five_minute if c.ts + 300 <= t),
            as_of=min(p.as_of, t),
        )
        for k, p in paths.items()
    }


@attrs.frozen
class Reputations:
    """Every reputation published in a run, and every answer the job had from its labels."""

    published: list[tuple[float, Reputation | None]]
    job_saw: list[tuple[float, list[Label]]]


async def play_weighted(tp: Tape) -> tuple[RunResult, Reputations]:
    engine = Replay(tp, WEIGHTED)
    assert engine.reputation_job is not None
    out = Reputations([], [])
    labels = engine.labels.labels

    async def spy(since: float, until: float) -> Sequence[Label]:
        got = await labels(since, until)
        out.job_saw.append((engine.clock.time(), sorted(got, key=attrs.astuple)))
        return got

    async def observe() -> None:
        # Runs right after the engine's reputation job at each of its moments.
        out.published.append((engine.clock.time(), await engine.parts.store.reputation()))

    engine.add_periodic(Periodic(WEIGHTED.consensus.job_interval_seconds, observe))
    try:
        with patch.object(engine.labels, "labels", spy):
            return await engine.run(), out
    finally:
        await engine.aclose()


def calls_st(low: int, high: int) -> Any:
    return st.lists(
        st.tuples(st.integers(0, 5), st.integers(0, 5), st.integers(low, high)), max_size=25
    )


def day_tape(
    msgs: Sequence[tuple[int, int, int]], buys: Sequence[tuple[int, int]], paths: Any
) -> Tape:
    return tape(
        [message(T0 + at, GROUPS[g], TOKENS[k], 100 + i) for i, (g, k, at) in enumerate(msgs)],
        [buy(T0 + at, TOKENS[k], n=i) for i, (k, at) in enumerate(buys)],
        [observation(T0, t) for t in TOKENS],
        paths=paths,
        end=LONG_END,
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    msgs=calls_st(0, CALLS),
    buys=st.lists(st.tuples(st.integers(0, 5), st.integers(0, CALLS)), max_size=8),
    extra=calls_st(1, int(LONG_END - T0) - 1),
    cut=st.integers(0, int(LONG_END - T0) - 1),
)
def test_the_reputation_published_by_t_is_the_same_whatever_follows_t(
    msgs: list[tuple[int, int, int]],
    buys: list[tuple[int, int]],
    extra: list[tuple[int, int, int]],
    cut: int,
) -> None:
    t = T0 + cut
    # Before t: what was known by t, the candles closed by t included. The extended recording
    # adds calls after t and every later candle.
    kept = [m for m in msgs if m[2] <= cut]
    after = [(g, k, at) for g, k, at in extra if at > cut]
    known = [b for b in buys if b[1] <= cut]
    first, rep_a = asyncio.run(play_weighted(day_tape(kept, known, closed_by(DAY_PATHS, t))))
    second, rep_b = asyncio.run(play_weighted(day_tape(kept + after, known, DAY_PATHS)))

    assert [p for p in rep_a.published if p[0] <= t] == [p for p in rep_b.published if p[0] <= t]
    assert [s for s in rep_a.job_saw if s[0] <= t] == [s for s in rep_b.job_saw if s[0] <= t]
    assert upto(first.scores, t) == upto(second.scores, t)
    assert upto(first.alerts, t) == upto(second.alerts, t)
    for run in (rep_a, rep_b):
        # One publication at every job moment, computed as of that moment.
        assert all(rep is not None and rep.computed_at == at for at, rep in run.published)
        assert [at for at, _ in run.job_saw] == [at for at, _ in run.published]
        for at, labels in run.job_saw:
            assert all(lb.resolved_at < at for lb in labels)


async def test_the_reputation_inside_a_day_long_run_is_not_neutral() -> None:
    # The property above is not vacuous: by the end of such a run weights differ from 1.
    msgs = [(g, g, 60 * g) for g in range(6)] + [(g, (g + 1) % 6, 600 + 60 * g) for g in range(6)]
    _, reps = await play_weighted(day_tape(msgs, [], DAY_PATHS))
    last = reps.published[-1][1]
    assert last is not None
    assert len({round(w, 6) for w in last.weights.values()}) > 1
    assert any(labels for _, labels in reps.job_saw)
