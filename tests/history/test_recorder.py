"""The recorder service over a real EventHub: batches, outages, shutdown, spool, retention."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import attrs
import pytest
import sqlalchemy as sa

from callsbot.clock import FakeClock
from callsbot.config import HistorySettings
from callsbot.errors import ConfigError
from callsbot.events import Event, EventHub, MentionRecorded
from callsbot.history.recorder import DAY, HistoryRecorder
from callsbot.history.sql import SQLHistory
from callsbot.metrics import Metrics
from callsbot.testing.pg_server import PostgresServer
from callsbot.testing.redis_server import free_port
from tests.history import factory as f
from tests.history.conftest import both_backends, new_database


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels or None)
    return 0.0 if value is None else value


async def eventually(check: Callable[[], Awaitable[bool] | bool], seconds: float = 30) -> None:
    """Wait (for real I/O: database writes, a server restart) until ``check`` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


@attrs.define
class Rig:
    """A hub and a recorder on one history, with their tasks."""

    history: SQLHistory
    clock: FakeClock
    metrics: Metrics
    hub: EventHub
    recorder: HistoryRecorder
    stop: asyncio.Event
    tasks: list[asyncio.Task[None]] = attrs.field(factory=list)

    def start(self) -> None:
        self.tasks = [
            asyncio.create_task(self.hub.run(self.stop)),
            asyncio.create_task(self.recorder.run(self.stop)),
        ]

    def idle(self) -> bool:
        """Everything published so far is committed."""
        return self.hub.backlog()[self.recorder.name] == 0 and self.recorder.pending == 0

    async def finish(self) -> None:
        self.stop.set()
        await asyncio.gather(*self.tasks)


def make_rig(
    history: SQLHistory,
    *,
    spool: Path | None = None,
    clock: FakeClock | None = None,
    **settings: object,
) -> Rig:
    clock = clock or FakeClock(f.T0)
    metrics = Metrics.create()
    hub = EventHub(metrics=metrics, clock=clock)
    s = HistorySettings(**{"batch_size": 100, "retry_max_seconds": 0.2, **settings})  # type: ignore[arg-type]
    recorder = HistoryRecorder(
        history, settings=s, clock=clock, metrics=metrics, hub=hub, spool=spool, retry_min=0.05
    )
    return Rig(history, clock, metrics, hub, recorder, asyncio.Event())


def mentions(n: int, start: int = 0) -> list[MentionRecorded]:
    return [f.mention(i, at=f.T0 + i) for i in range(start, start + n)]


async def stored_mentions(history: SQLHistory) -> set[tuple[int, int, str]]:
    return {
        (e.ref.chat_id, e.ref.message_id, e.token)
        async for e in history.events(kinds={MentionRecorded.kind})
        if isinstance(e, MentionRecorded)
    }


def keys(events: list[MentionRecorded]) -> set[tuple[int, int, str]]:
    return {(e.ref.chat_id, e.ref.message_id, e.token) for e in events}


@pytest.fixture
def own_pg() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test's own, which it may stop and start."""
    server = PostgresServer()
    server.start()
    yield server
    server.destroy()


@pytest.fixture
async def own_history(own_pg: PostgresServer) -> AsyncIterator[SQLHistory]:
    history = SQLHistory(await new_database(own_pg), connect_timeout=1)
    yield history
    await history.aclose()


@both_backends()
async def test_hub_events_are_written_in_batches(history: SQLHistory) -> None:
    rig = make_rig(history)
    events: list[Event] = []
    for i in range(150):
        events += f.one_of_each(10 * i + 1, at=f.T0 + 10 * i)
    for event in events:
        rig.hub.publish(event)
    rig.start()
    await eventually(rig.idle)
    await rig.finish()
    assert [e async for e in history.events()] == events
    assert sample(rig.metrics, "callsbot_history_events_total", outcome="written") == len(events)
    writes = sample(rig.metrics, "callsbot_history_write_seconds_count")
    assert 0 < writes <= len(events) / 50  # batches, not a transaction per event
    assert rig.recorder.health() == []


@both_backends()
async def test_live_catch_up_and_edit_of_one_message_leave_one_row(history: SQLHistory) -> None:
    rig = make_rig(history)
    live = f.mention(5, source="live")
    rig.start()
    rig.hub.publish(live)
    rig.hub.publish(attrs.evolve(live, at=f.T0 + 40, ref=attrs.evolve(live.ref, source="catch_up")))
    rig.hub.publish(
        attrs.evolve(live, at=f.T0 + 90, ref=attrs.evolve(live.ref, source="edit"), text="edited")
    )
    await rig.finish()
    assert (await history.counts())["mentions"] == 1
    assert [e async for e in history.events()] == [live]


async def test_database_outage_loses_no_event(
    own_pg: PostgresServer, own_history: SQLHistory
) -> None:
    rig = make_rig(own_history)
    rig.start()
    first, second, third = mentions(100), mentions(100, 100), mentions(100, 200)
    for e in first:
        rig.hub.publish(e)
    await eventually(rig.idle)
    assert sample(rig.metrics, "callsbot_history_up") == 1

    own_pg.stop()
    for e in second:
        rig.hub.publish(e)
    await eventually(lambda: bool(rig.recorder.health()))
    (reason,) = rig.recorder.health()
    assert "history database unavailable" in reason
    assert "100 events buffered" in reason
    assert sample(rig.metrics, "callsbot_history_up") == 0
    assert sample(rig.metrics, "callsbot_history_buffer") == 100
    for e in third:  # still taken while the database is away
        rig.hub.publish(e)

    own_pg.start()
    await eventually(rig.idle)
    assert rig.recorder.health() == []
    await rig.finish()
    assert await stored_mentions(own_history) == keys(first + second + third)


async def test_shutdown_while_away_spools_0600_and_the_next_start_drains(
    own_pg: PostgresServer, own_history: SQLHistory, tmp_path: Path
) -> None:
    spool = tmp_path / "history-spool.jsonl"
    rig = make_rig(own_history, spool=spool)
    rig.start()
    before = mentions(50)
    for e in before:
        rig.hub.publish(e)
    await eventually(rig.idle)
    own_pg.stop()
    during: list[Event] = [*mentions(70, 50), f.alert(3, at=f.T0 + 500)]
    for e in during:
        rig.hub.publish(e)
    await eventually(lambda: bool(rig.recorder.health()))
    await rig.finish()

    assert stat.S_IMODE(os.stat(spool).st_mode) == 0o600
    lines = spool.read_text().splitlines()
    assert json.loads(lines[0])["format"] == "callsbot-history"
    assert len(lines) == 1 + len(during)
    assert sample(rig.metrics, "callsbot_history_events_total", outcome="spooled") == len(during)

    own_pg.start()
    again = make_rig(own_history, spool=spool)
    again.start()
    await eventually(again.idle)
    await again.finish()
    assert not spool.exists()
    assert await stored_mentions(own_history) == keys([*before, *mentions(70, 50)])
    assert (await own_history.counts())["alerts"] == 1


@both_backends()
async def test_sigterm_under_load_leaves_every_event_in_the_database_or_the_spool(
    history: SQLHistory, history_url: str, tmp_path: Path
) -> None:
    spool = tmp_path / "spool.jsonl"
    rig = make_rig(history, spool=spool, batch_size=50)
    rig.start()
    published: list[MentionRecorded] = []

    async def producer() -> None:
        for i in range(4_000):
            event = f.mention(i, at=f.T0 + i)
            rig.hub.publish(event)
            published.append(event)
            if i % 20 == 0:
                await asyncio.sleep(0)

    await producer()
    # SIGTERM: stop is set, and the grace period runs out while the recorder is still writing.
    rig.stop.set()
    await asyncio.sleep(0)
    recorder_task = rig.tasks[1]
    assert not recorder_task.done()
    recorder_task.cancel()
    await asyncio.gather(*rig.tasks, return_exceptions=True)
    # The process would exit here; let the cut-off write's clean-up end, as the exit would.
    leftovers = [t for t in asyncio.all_tasks() if t.get_name().startswith("history-")]
    await asyncio.gather(*leftovers, return_exceptions=True)
    in_db = await stored_mentions(history)
    await history.aclose()

    in_spool = {
        (e["ref"]["chat_id"], e["ref"]["message_id"], e["token"])
        for e in map(json.loads, spool.read_text().splitlines()[1:])
    }
    assert in_spool  # it really was cut off
    assert in_db | in_spool == keys(published)

    restarted = SQLHistory(history_url)  # the next start: a new process, a new engine
    try:
        # Even a start stopped at once writes what the spool held. (On SQLite the cut-off
        # write's connection held the write lock until the process ended, and this failed.)
        again = make_rig(restarted, spool=spool)
        again.start()
        await again.finish()
        assert not spool.exists()
        assert await stored_mentions(restarted) == keys(published)
    finally:
        await restarted.aclose()


async def test_a_full_buffer_drops_counts_and_says_so() -> None:
    dead = SQLHistory(f"postgresql://callsbot@127.0.0.1:{free_port()}/x", connect_timeout=1)
    rig = make_rig(dead, buffer_size=10)
    for e in mentions(15):
        await rig.recorder.accept(e)
    assert rig.recorder.pending == 10
    assert sample(rig.metrics, "callsbot_history_events_total", outcome="dropped") == 5
    assert "history buffer full: events are being dropped" in rig.recorder.health()
    await dead.aclose()


@both_backends()
async def test_retention_prunes_by_the_injected_clock(history: SQLHistory) -> None:
    clock = FakeClock(f.T0)
    old, recent = f.one_of_each(1, at=f.T0), f.one_of_each(20, at=f.T0 + 20 * DAY)
    await history.record(old + recent)
    keep_all = make_rig(history, clock=clock)
    clock.set(f.T0 + 400 * DAY)
    assert await keep_all.recorder.prune_once() == 0  # retention_days = 0: keep everything
    pruning = make_rig(history, clock=clock, retention_days=30)
    clock.set(f.T0 + 45 * DAY)
    assert await pruning.recorder.prune_once() > 0
    assert [e async for e in history.events()] == recent
    clock.set(f.T0 + 49 * DAY)  # the recent events are 29 days old
    assert await pruning.recorder.prune_once() == 0
    clock.set(f.T0 + 51 * DAY)
    assert await pruning.recorder.prune_once() > 0
    assert sum((await history.counts()).values()) == 0


@both_backends()
async def test_a_database_newer_than_the_code_ends_the_run_with_exit_2(
    history: SQLHistory, tmp_path: Path
) -> None:
    async with history.engine.begin() as conn:
        await conn.execute(sa.text("UPDATE alembic_version SET version_num = 'zz_future'"))
    spool = tmp_path / "spool.jsonl"
    rig = make_rig(history, spool=spool)
    await rig.recorder.accept(f.mention(1))
    with pytest.raises(ConfigError) as info:
        await rig.recorder.run(rig.stop)
    assert info.value.exit_code == 2
    assert spool.exists()  # what it had taken is kept for a fixed deployment


async def test_an_unreadable_spool_is_moved_aside(tmp_path: Path) -> None:
    spool = tmp_path / "spool.jsonl"
    spool.write_text('{"format": "something else"}\n')
    history = SQLHistory(f"sqlite:///{tmp_path / 'h.sqlite3'}")
    rig = make_rig(history, spool=spool)
    rig.start()
    await rig.finish()
    await history.aclose()
    assert not spool.exists()
    assert (tmp_path / "spool.jsonl.broken").exists()
