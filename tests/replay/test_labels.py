"""The reputation hook: a group's hit label exists inside a run only from the tracker fetch
that could have known it, and a job asking for labels never sees one resolved after "now"."""

from __future__ import annotations

from callsbot.clock import FakeClock
from callsbot.config import OutcomesSettings, Settings
from callsbot.events import MentionRecorded
from callsbot.models import MessageRef
from callsbot.outcomes.path import OutcomeRules
from callsbot.replay.engine import Periodic, Replay
from callsbot.replay.labels import FETCHES, Label, RunLabels, resolve_label
from tests.replay.factory import GROUPS, T0, TOKENS, message, observation, path, pump, tape

A, B = TOKENS[0], TOKENS[1]
RULES = OutcomeRules()


def mention(at: float, group: str, token: str) -> MentionRecorded:
    ref = MessageRef("live", -100, group, 1, int(at), at)
    return MentionRecorded(
        at=at, ref=ref, token=token, mention_kind="mint", chain="solana", count=1
    )


def test_a_hit_is_known_at_the_first_fetch_after_it_happened() -> None:
    # 3x by minute 30: the t + 17 min fetch cannot know it, the t + 62 min fetch does.
    closes = [1.0] * 20 + [3.0] * 2000
    label = resolve_label("@g", A, int(T0), path(A, T0, closes), latency=60, rules=RULES)
    assert label == Label("@g", A, T0, True, T0 + FETCHES[1])
    early = [1.0, 3.0] + [3.0] * 2000
    label = resolve_label("@g", A, int(T0), path(A, T0, early), latency=60, rules=RULES)
    assert label is not None
    assert label.resolved_at == T0 + FETCHES[0]


def test_a_candle_still_open_at_a_fetch_is_not_used_by_it() -> None:
    # Candles start 40 s past the minute: the one starting at t + 16:40 spans the t + 17 min
    # fetch; its 3x (known at its close, t + 17:40) waits for the t + 62 min fetch.
    closes = [1.0] * 16 + [3.0] * 2000
    label = resolve_label("@g", A, int(T0), path(A, T0 + 40, closes), latency=60, rules=RULES)
    assert label == Label("@g", A, T0, True, T0 + FETCHES[1])


def test_a_miss_is_known_only_once_the_horizon_is_covered() -> None:
    flat = path(A, T0, [1.0] * (24 * 60 + 30))
    label = resolve_label("@g", A, int(T0), flat, latency=60, rules=RULES)
    assert label == Label("@g", A, T0, False, T0 + FETCHES[3])
    short = path(A, T0, [1.0] * 600)  # the cache ends after 10 h: never decided
    assert resolve_label("@g", A, int(T0), short, latency=60, rules=RULES) is None


async def test_labels_are_handed_out_only_once_resolved_and_before_now() -> None:
    clock = FakeClock(T0)
    labels = RunLabels(
        {A: path(A, T0, [1.0, 3.0] + [3.0] * 2000), B: path(B, T0, [1.0] * 1500)},
        settings=OutcomesSettings(),
        clock=clock,
    )
    labels.called(mention(T0, "@g1", A))
    labels.called(mention(T0 + 5, "@g1", A))  # not the first call: ignored
    labels.called(mention(T0, "@g2", B))
    labels.called(mention(T0, "@g3", TOKENS[5]))  # no cached path: never labelled
    clock.set(T0 + FETCHES[0])
    assert await labels.labels(0, float("inf")) == []  # resolved at this very moment: not yet
    clock.set(T0 + FETCHES[0] + 1)
    got = await labels.labels(0, float("inf"))
    assert [(lb.group, lb.hit) for lb in got] == [("@g1", True)]
    assert await labels.labels(0, T0 + 60) == []  # until is honoured too
    assert await labels.labels(T0 + 1, float("inf")) == []  # and since (on the call time)
    clock.set(T0 + 2 * 86400)
    assert {(lb.group, lb.hit) for lb in await labels.labels(0, float("inf"))} == {
        ("@g1", True),
        ("@g2", False),
    }


async def test_a_job_inside_a_run_sees_only_labels_resolved_before_it_runs() -> None:
    paths = {A: pump(A, T0, peak=4.0, minutes=300), B: path(B, T0, [1.0] * 3000)}
    tp = tape(
        [message(T0 + 60 * i, GROUPS[i % 3], A if i % 2 else B, i) for i in range(12)],
        [],
        [observation(T0, A), observation(T0, B)],
        paths=paths,
        end=T0 + 2 * 86400,
    )
    engine = Replay(tp, Settings())
    seen: list[tuple[float, list[Label]]] = []

    async def job() -> None:
        seen.append((engine.clock.time(), list(await engine.labels.labels(0, float("inf")))))

    engine.add_periodic(Periodic(3600.0, job))
    try:
        await engine.run()
    finally:
        await engine.aclose()
    assert len(seen) == 49
    for at, labels in seen:
        assert all(lb.resolved_at < at for lb in labels)
    final = {(lb.group, lb.token, lb.hit) for lb in seen[-1][1]}
    assert final == {(GROUPS[i], tok, tok == A) for i in range(3) for tok in (A, B)}
    # Hits are known hours before misses: the first hour that knows any label knows only hits.
    first = next(labels for _, labels in seen if labels)
    assert all(lb.hit for lb in first)
