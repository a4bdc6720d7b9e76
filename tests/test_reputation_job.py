"""The reputation job: computes from a mention log and labels, publishes, one process at a time."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from callsbot.clock import FakeClock
from callsbot.config import CieloSettings, ConsensusSettings, Settings
from callsbot.errors import HistoryUnavailable
from callsbot.metrics import Metrics
from callsbot.reputation.inputs import Label, MemoryLabels, MemoryMentionLog, Mention
from callsbot.reputation_job import ReputationJob
from callsbot.runtime.roles import build_reputation_job, make_parts, role_services
from callsbot.store.base import SignalStore
from callsbot.store.memory import MemoryStore
from callsbot.testing.cielo import API_KEY
from tests.synthetic import AT, synthetic_history


@pytest.fixture(autouse=True)
def at_the_end_of_the_month(clock: FakeClock) -> None:
    clock.set(AT)


def job(store: SignalStore, clock: FakeClock, **kw: object) -> ReputationJob:
    history = synthetic_history()
    return ReputationJob(
        mentions=kw.get("mentions", MemoryMentionLog(history.mentions)),  # type: ignore[arg-type]
        labels=kw.get("labels", MemoryLabels(history.labels)),  # type: ignore[arg-type]
        board=store,
        claims=store,
        settings=ConsensusSettings(mode="weighted"),
        clock=clock,
    )


async def test_publishes_weights_and_copies_with_the_moment(
    store: SignalStore, clock: FakeClock
) -> None:
    computed = await job(store, clock).run_once()
    assert computed is not None
    published = await store.reputation()
    assert published == computed.reputation
    assert published.computed_at == AT
    assert published.copy("@A", "@B") >= 0.6
    assert published.weight("@C") == 1.0
    assert published.weight("@A") > 1.0


async def test_one_process_per_interval(store: SignalStore, clock: FakeClock) -> None:
    first, second = job(store, clock), job(store, clock)
    assert await first.run_once() is not None
    assert await second.run_once() is None  # the other process holds this interval's claim
    if isinstance(store, MemoryStore):
        clock.advance(601)
        assert await second.run_once() is not None


class DownLog:
    async def first_mentions(self, since: float, until: float) -> Sequence[Mention]:
        raise HistoryUnavailable("history database unreachable")


async def test_an_unavailable_source_is_a_health_reason_until_a_run_succeeds(
    clock: FakeClock,
) -> None:
    store = MemoryStore(window=3600, clock=clock)
    down = job(store, clock, mentions=DownLog())
    assert await down.run_once(claim=False) is None
    assert down.health() == ["reputation not computed: history database unreachable"]
    assert await store.reputation() is None
    down._mentions = MemoryMentionLog(synthetic_history().mentions)
    assert await down.run_once(claim=False) is not None
    assert down.health() == []


async def test_without_labels_every_weight_is_one(clock: FakeClock) -> None:
    store = MemoryStore(window=3600, clock=clock)
    computed = await job(store, clock, labels=None).run_once(claim=False)
    assert computed is not None
    assert computed.reputation.weights == {}
    assert computed.reputation.copies.keys() == {("@A", "@B")}


async def test_labels_resolved_later_are_not_used(clock: FakeClock) -> None:
    store = MemoryStore(window=3600, clock=clock)
    history = synthetic_history()
    later = [Label("@C", f"C{i}", AT - 100, True, AT + 50) for i in range(40)]
    computed = await job(store, clock, labels=MemoryLabels([*history.labels, *later])).run_once(
        claim=False
    )
    assert computed is not None
    assert computed.reputation.weight("@C") == 1.0


async def test_the_loop_runs_until_stopped(clock: FakeClock) -> None:
    store = MemoryStore(window=3600, clock=clock)
    runner = job(store, clock)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    for _ in range(200):
        if await store.reputation() is not None:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert (await store.reputation()) is not None


async def test_wired_only_when_a_mention_log_is_configured(clock: FakeClock) -> None:
    store = MemoryStore(window=3600, clock=clock)
    metrics = Metrics.create()
    plain = make_parts(Settings(), clock=clock, metrics=metrics, store=store, market=None)
    assert build_reputation_job(plain) is None
    with_log = make_parts(
        Settings(),
        clock=clock,
        metrics=metrics,
        store=store,
        market=None,
        mention_log=MemoryMentionLog(),
    )
    assert isinstance(build_reputation_job(with_log), ReputationJob)


async def test_the_scorer_role_runs_the_job_when_configured(clock: FakeClock) -> None:
    from tests.test_scorer import FixedMarket

    store = MemoryStore(window=3600, clock=clock)
    parts = make_parts(
        Settings(cielo=CieloSettings(api_key=API_KEY)),
        clock=clock,
        metrics=Metrics.create(),
        store=store,
        market=FixedMarket(),
        mention_log=MemoryMentionLog(),
    )
    async with role_services(parts, "scorer", stop=asyncio.Event()) as services:
        assert [s.name for s in services] == ["scorer", "reputation"]
