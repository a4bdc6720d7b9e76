"""No look-ahead: appending events dated after t never changes what a replay decided by t.

Random recordings of messages, buys and market snapshots are replayed twice: as they are, and
with more events appended after a cut time t. Every level reached, score card and alert dated
at or before t, every figure measured for those alerts, and every label the reputation hook
handed out before t must be identical. The approximate gate is held to the same with candles
appended after t.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import attrs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callsbot.config import Settings
from callsbot.models import Candle
from callsbot.replay.engine import Periodic, Replay, RunResult
from callsbot.replay.exits import ExitRule
from callsbot.replay.figures import measure
from callsbot.replay.tape import Gate, PricePath, Tape, TapeMessage
from tests.replay.factory import GROUPS, T0, TOKENS, buy, message, observation, pump, tape

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
