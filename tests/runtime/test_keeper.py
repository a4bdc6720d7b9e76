"""A store that lost its data is rebuilt from the history, never read as "solo" (issue 17, 3).

Real redis-server processes (restarted without persistence), a real SQLite history, the real
scorer asked for consensus at every step.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from callsbot.clock import FakeClock
from callsbot.config import HistorySettings, Settings
from callsbot.events import Event
from callsbot.history.sql import SQLHistory, open_history
from callsbot.metrics import Metrics
from callsbot.runtime.keeper import WindowKeeper
from callsbot.store import MemoryStore, keys
from callsbot.store.redis import RedisStore
from callsbot.testing.redis_server import RedisServer
from tests.conftest import make_redis_store
from tests.store_faults import ConsensusProbe, mention
from tests.tg import mint

T0 = 1_700_000_000
TOKEN = mint(1)
CHATS = {"@alpha": -1001, "@bravo": -1002, "@charlie": -1003}


@pytest.fixture
def server() -> Iterator[RedisServer]:
    server = RedisServer(persistent=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def history(tmp_path: Path) -> AsyncIterator[SQLHistory]:
    history = open_history(HistorySettings(url=f"sqlite:///{tmp_path / 'history.sqlite3'}"))
    await history.upgrade()
    yield history
    await history.aclose()


@pytest.fixture
async def store(server: RedisServer, clock: FakeClock) -> AsyncIterator[RedisStore]:
    async with make_redis_store(server.url, clock) as store:
        yield store


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def test_a_restart_without_persistence_is_rebuilt_and_never_scores_solo(
    server: RedisServer, store: RedisStore, history: SQLHistory, clock: FakeClock
) -> None:
    metrics = Metrics.create()
    unwritten: list[Event] = []
    keeper = WindowKeeper(
        store,
        history,
        settings=Settings(),
        clock=clock,
        metrics=metrics,
        unwritten=lambda: unwritten,
    )
    probe = ConsensusProbe.over(store, clock)
    assert await keeper.check() is True  # the start: an empty history, a whole empty window
    assert keeper.health() == []

    # Three groups call the token; two mentions reached the history database, the third is
    # still in the recorder's buffer.
    calls = [
        mention(TOKEN, group, chat, 40 + i, T0 - 600 + i, at=clock.time())
        for i, (group, chat) in enumerate(CHATS.items())
    ]
    for m in calls:
        assert await store.record_once(
            m.token,
            m.ref.group,
            m.ref.ts,
            claim=keys.seen_mention(m.ref.chat_id, m.ref.message_id, m.token),
            ttl=7200,
        )
    await history.record(calls[:2])
    unwritten.append(calls[2])
    # A call just outside the window (read back within the clock-skew allowance): it counts
    # for nothing, but its message moves its chat's cursor.
    old = mention(mint(2), "@alpha", CHATS["@alpha"], 90, T0 - 3700, at=T0 - 3700)
    await history.record([old])
    await store.beat("aggregator", 60)
    assert (await probe.ask(TOKEN)).points == 2

    server.stop()
    server.start()  # no persistence: everything is gone
    # The aggregator's listener beats again before anyone noticed the loss.
    await store.beat("aggregator", 60)
    lost = await probe.ask(TOKEN)
    assert (lost.points, lost.degraded) == (0, True), "an empty window read as solo"

    assert await keeper.check() is True
    assert keeper.health() == []
    assert sample(metrics, "callsbot_window_rebuilds_total", why="lost") == 1
    assert sample(metrics, "callsbot_window_whole") == 1
    assert await store.groups(TOKEN) == {g: T0 - 600 + i for i, g in enumerate(CHATS)}
    assert await store.active_tokens() == [TOKEN]
    restored = await probe.ask(TOKEN)
    assert (restored.points, restored.degraded) == (2, False)
    # The catch-up cursors (largest message id per chat) and the seen-message claims.
    cursors = {g: await store.get_cursor(keys.chat_cursor(c)) for g, c in CHATS.items()}
    assert cursors == {"@alpha": 90, "@bravo": 41, "@charlie": 42}
    again = calls[1]
    assert (
        await store.record_once(
            again.token,
            again.ref.group,
            again.ref.ts,
            claim=keys.seen_mention(again.ref.chat_id, again.ref.message_id, again.token),
            ttl=7200,
        )
        is None
    )
    # The next checks find it whole and leave it alone.
    assert await keeper.check() is True
    assert sample(metrics, "callsbot_window_rebuilds_total", why="lost") == 1


async def test_until_the_rebuild_is_done_consensus_is_degraded(
    server: RedisServer, store: RedisStore, history: SQLHistory, clock: FakeClock
) -> None:
    settings = Settings()
    keeper = WindowKeeper(store, history, settings=settings, clock=clock, metrics=Metrics.create())
    await keeper.check()
    probe = ConsensusProbe.over(store, clock)
    await store.record(TOKEN, "@alpha", T0 - 10)
    await history.record([mention(TOKEN, "@alpha", -1001, 1, T0 - 10, at=clock.time())])
    server.stop()
    server.start()
    await store.beat("aggregator", 60)
    # The rebuild has begun (the marker says so) but not replayed anything yet.
    await store.begin_rebuild("someone-else")
    rebuilding = await probe.ask(TOKEN)
    assert (rebuilding.points, rebuilding.degraded) == (0, True)
    assert await keeper.check() is True
    rebuilt = await probe.ask(TOKEN)
    assert (rebuilt.points, rebuilt.degraded) == (0, False)  # one group: tier 0


async def test_a_store_that_went_back_to_an_older_copy_is_rebuilt(
    server: RedisServer, store: RedisStore, history: SQLHistory, clock: FakeClock
) -> None:
    metrics = Metrics.create()
    keeper = WindowKeeper(store, history, settings=Settings(), clock=clock, metrics=metrics)
    await keeper.check()
    await history.record([mention(TOKEN, "@alpha", -1001, 1, T0 - 10, at=clock.time())])
    for _ in range(3):
        assert await keeper.check() is True
    # A restart from an older snapshot (RDB): the data and the check count go back in time.
    server.command("HSET", keys.WINDOW, "checks", "1")
    assert await keeper.check() is True
    assert sample(metrics, "callsbot_window_rebuilds_total", why="rolled_back") == 1
    assert await store.groups(TOKEN) == {"@alpha": T0 - 10}


async def test_without_history_the_window_is_whole_one_window_after_the_loss(
    server: RedisServer, store: RedisStore, clock: FakeClock
) -> None:
    keeper = WindowKeeper(store, None, settings=Settings(), clock=clock, metrics=Metrics.create())
    assert await keeper.check() is False  # a fresh server: no marker, nothing to replay from
    assert "whole again in 3600s" in keeper.health()[0]
    probe = ConsensusProbe.over(store, clock)
    await store.beat("aggregator", 60)
    assert (await probe.ask(TOKEN)).degraded
    clock.advance(3599)
    assert await keeper.check() is False
    clock.advance(1)
    assert await keeper.check() is True
    await store.beat("aggregator", 60)
    assert (await probe.ask(TOKEN)).points == -1  # now nobody calling it is the truth


async def test_a_new_memory_store_is_filled_from_the_history_at_start(
    history: SQLHistory, clock: FakeClock
) -> None:
    store = MemoryStore(window=3600, clock=clock)
    calls = [
        mention(TOKEN, group, chat, 1, T0 - 60, at=clock.time()) for group, chat in CHATS.items()
    ]
    await history.record(calls)
    keeper = WindowKeeper(
        store, history, settings=Settings(), clock=clock, metrics=Metrics.create()
    )
    assert await keeper.check() is True
    assert await store.counts([TOKEN]) == {TOKEN: 3}
