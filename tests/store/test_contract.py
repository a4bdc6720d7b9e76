"""One contract, every backend: the same tests run against MemoryStore and a real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from callsbot.clock import FakeClock
from callsbot.errors import StoreFault
from callsbot.reputation.independence import FORWARD, SAME_TEXT, AtOnceVote
from callsbot.reputation.snapshot import Reputation
from callsbot.store.base import SignalStore, WindowUnavailable
from callsbot.store.memory import MemoryStore
from tests.conftest import make_redis_store

WINDOW = 3600
T0 = 1_700_000_000


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[SignalStore]:
    if request.param == "memory":
        s: SignalStore = MemoryStore(window=WINDOW, clock=clock)
    else:
        s = make_redis_store(request.getfixturevalue("redis_url"), clock, window=WINDOW)
    async with s:
        yield s


class TestSignalStoreContract:
    async def test_first_mention_counts_one(self, store: SignalStore) -> None:
        assert await store.record("TokA", "@g1", T0) == 1
        assert await store.groups("TokA") == {"@g1": T0}

    async def test_group_counts_once_and_moves_forward(
        self, store: SignalStore, clock: FakeClock
    ) -> None:
        await store.record("TokA", "@g1", T0 - 100)
        assert await store.record("TokA", "@g1", T0 - 10) == 1
        assert await store.groups("TokA") == {"@g1": T0 - 10}
        # An older repeat (e.g. catch-up) never moves the timestamp backward.
        assert await store.record("TokA", "@g1", T0 - 50) == 1
        assert await store.groups("TokA") == {"@g1": T0 - 10}

    async def test_distinct_groups_add_up(self, store: SignalStore) -> None:
        assert await store.record("TokA", "@g1", T0) == 1
        assert await store.record("TokA", "@g2", T0) == 2
        assert await store.record("TokA", "-100123", T0) == 3
        assert await store.record("TokB", "@g1", T0) == 1

    @pytest.mark.parametrize(
        ("age", "counted"), [(WINDOW - 1, True), (WINDOW, False), (WINDOW + 1, False), (0, True)]
    )
    async def test_window_boundary_on_read(
        self, store: SignalStore, clock: FakeClock, age: int, counted: bool
    ) -> None:
        await store.record("TokA", "@g1", T0)
        clock.advance(age)
        assert await store.counts(["TokA"]) == {"TokA": int(counted)}
        assert (await store.groups("TokA") != {}) is counted
        assert (await store.active_tokens() == ["TokA"]) is counted

    @pytest.mark.parametrize(("age", "counted"), [(WINDOW - 1, True), (WINDOW + 1, False)])
    async def test_window_boundary_on_write(
        self, store: SignalStore, age: int, counted: bool
    ) -> None:
        assert await store.record("TokA", "@old", T0 - age) == int(counted)
        assert await store.record("TokA", "@new", T0) == 1 + int(counted)

    async def test_expired_members_are_trimmed_on_write(
        self, store: SignalStore, clock: FakeClock
    ) -> None:
        await store.record("TokA", "@g1", T0)
        await store.record("TokA", "@g2", T0)
        clock.advance(WINDOW + 5)
        assert await store.record("TokA", "@g3", clock.time()) == 1
        assert await store.groups("TokA") == {"@g3": T0 + WINDOW + 5}

    async def test_future_timestamps_are_clamped_to_now(self, store: SignalStore) -> None:
        assert await store.record("TokA", "@g1", T0 + 10_000) == 1
        assert await store.groups("TokA") == {"@g1": T0}

    async def test_token_with_many_groups(self, store: SignalStore) -> None:
        for i in range(200):
            await store.record("TokA", f"@group{i}", T0 - i)
        assert await store.counts(["TokA"]) == {"TokA": 200}
        assert len(await store.groups("TokA")) == 200

    async def test_counts_over_a_thousand_tokens(self, store: SignalStore) -> None:
        tokens = [f"Tok{i:04d}" for i in range(1000)]
        for i, token in enumerate(tokens):
            for g in range(i % 4):
                await store.record(token, f"@g{g}", T0)
        counts = await store.counts([*tokens, "NeverSeen"])
        assert counts == {**{t: i % 4 for i, t in enumerate(tokens)}, "NeverSeen": 0}

    async def test_counts_of_nothing(self, store: SignalStore) -> None:
        assert await store.counts([]) == {}

    async def test_active_tokens_most_recent_first(
        self, store: SignalStore, clock: FakeClock
    ) -> None:
        await store.record("Old", "@g1", T0 - 100)
        await store.record("New", "@g1", T0 - 1)
        await store.record("Mid", "@g2", T0 - 50)
        assert await store.active_tokens() == ["New", "Mid", "Old"]
        assert await store.snapshot() == {
            "New": {"@g1": T0 - 1},
            "Mid": {"@g2": T0 - 50},
            "Old": {"@g1": T0 - 100},
        }

    async def test_claim_raced_by_fifty_tasks_has_one_winner(self, store: SignalStore) -> None:
        results = await asyncio.gather(*(store.claim("alert:TokA", 60) for _ in range(50)))
        assert results.count(True) == 1

    async def test_claim_expires_and_can_be_released(
        self, store: SignalStore, clock: FakeClock
    ) -> None:
        assert await store.claim("k", 60) is True
        assert await store.claim("k", 60) is False
        await store.release("k")
        assert await store.claim("k", 60) is True
        if isinstance(store, MemoryStore):
            clock.advance(61)
            assert await store.claim("k", 60) is True

    async def test_a_lease_is_renewed_by_its_owner_and_refused_to_others(
        self, store: SignalStore, clock: FakeClock
    ) -> None:
        assert await store.lease("alert-lease:TokA", "scorer-1", 30) is True
        assert await store.lease("alert-lease:TokA", "scorer-2", 30) is False
        assert await store.lease("alert-lease:TokA", "scorer-1", 3600) is True  # renewed
        assert await store.is_claimed("alert-lease:TokA") is True
        if isinstance(store, MemoryStore):
            clock.advance(3599)
            assert await store.lease("alert-lease:TokA", "scorer-2", 30) is False
            clock.advance(2)
            assert await store.is_claimed("alert-lease:TokA") is False
            assert await store.lease("alert-lease:TokA", "scorer-2", 30) is True
        else:
            ttl = await store.client.pttl("signal_aggregator:claim:alert-lease:TokA")
            assert 3_500_000 < ttl <= 3_600_000  # the renewal set the new lifetime

    async def test_unlease_drops_only_the_owners_lease(self, store: SignalStore) -> None:
        assert await store.lease("k", "scorer-1", 60) is True
        await store.unlease("k", "scorer-2")
        assert await store.is_claimed("k") is True
        await store.unlease("k", "scorer-1")
        assert await store.is_claimed("k") is False
        assert await store.lease("k", "scorer-2", 60) is True
        await store.unlease("absent", "scorer-1")  # nothing to drop: no error

    async def test_a_plain_claim_is_nobodys_lease(self, store: SignalStore) -> None:
        assert await store.is_claimed("alert:TokA") is False
        assert await store.claim("alert:TokA", 60) is True
        assert await store.is_claimed("alert:TokA") is True
        assert await store.lease("alert:TokA", "scorer-1", 60) is False
        await store.unlease("alert:TokA", "scorer-1")
        assert await store.is_claimed("alert:TokA") is True
        assert await store.lease("tx:abc", "scorer-1", 60) is True
        assert await store.claim("tx:abc", 60) is False  # a lease is a claim for everyone else

    async def test_lease_raced_by_fifty_owners_has_one_winner(self, store: SignalStore) -> None:
        results = await asyncio.gather(*(store.lease("k", f"scorer-{i}", 60) for i in range(50)))
        assert results.count(True) == 1

    async def test_record_once_counts_a_message_once(self, store: SignalStore) -> None:
        key = "msg:-100:7:TokA"
        assert await store.record_once("TokA", "@g1", T0 - 5, claim=key, ttl=60) == 1
        assert await store.record_once("TokA", "@g1", T0 - 5, claim=key, ttl=60) is None
        assert await store.record_once("TokA", "@g2", T0, claim="msg:-200:1:TokA", ttl=60) == 2
        assert await store.groups("TokA") == {"@g1": T0 - 5, "@g2": T0}
        assert await store.claim(key, 60) is False

    async def test_record_once_raced_by_fifty_tasks(self, store: SignalStore) -> None:
        results = await asyncio.gather(
            *(store.record_once("TokA", "@g1", T0, claim="msg:1:1:TokA", ttl=60) for _ in range(50))
        )
        assert results.count(1) == 1
        assert results.count(None) == 49

    async def test_concurrent_writers(self, store: SignalStore) -> None:
        groups = [f"@g{i}" for i in range(20)]
        tokens = [f"Tok{i}" for i in range(25)]
        results = await asyncio.gather(*(store.record(t, g, T0) for t in tokens for g in groups))
        assert max(results) == 20
        assert all(1 <= r <= 20 for r in results)
        assert await store.counts(tokens) == {t: 20 for t in tokens}

    async def test_heartbeat(self, store: SignalStore, clock: FakeClock) -> None:
        assert await store.heartbeat_age("aggregator") is None
        await store.beat("aggregator", ttl=15)
        clock.advance(4)
        assert await store.heartbeat_age("aggregator") == pytest.approx(4.0)
        assert await store.heartbeat_age("scorer") is None

    async def test_cursor_only_moves_forward(self, store: SignalStore) -> None:
        assert await store.get_cursor("msg:-1001") is None
        assert await store.advance_cursor("msg:-1001", 50) == 50
        assert await store.advance_cursor("msg:-1001", 40) == 50
        assert await store.advance_cursor("msg:-1001", 70) == 70
        assert await store.get_cursor("msg:-1001") == 70

    async def test_ping(self, store: SignalStore) -> None:
        await store.ping()

    async def test_table_rows_are_written_replaced_and_dropped(self, store: SignalStore) -> None:
        assert await store.rows("scorer:watch") == {}
        await store.put_row("scorer:watch", "TokA", '{"v": 1}')
        await store.put_row("scorer:watch", "TokB", "b")
        await store.put_row("scorer:watch", "TokA", '{"v": 2}')
        await store.put_row("scorer:pending", "TokA", "p")
        assert await store.rows("scorer:watch") == {"TokA": '{"v": 2}', "TokB": "b"}
        await store.drop_row("scorer:watch", "TokA")
        await store.drop_row("scorer:watch", "never-there")
        assert await store.rows("scorer:watch") == {"TokB": "b"}
        assert await store.rows("scorer:pending") == {"TokA": "p"}


class TestEventStreamContract:
    async def test_entries_come_back_in_order_after_an_id(self, store: SignalStore) -> None:
        assert await store.last_id() == "0-0"
        ids = await store.append([("a", "1"), ("b", "2"), ("c", "3")], origin="p1", maxlen=100)
        assert len(set(ids)) == 3
        assert await store.last_id() == ids[-1]
        got = await store.read_after("0-0", count=10, block=0)
        assert [(e.origin, e.kind, e.payload) for e in got] == [
            ("p1", "a", "1"),
            ("p1", "b", "2"),
            ("p1", "c", "3"),
        ]
        assert [e.id for e in got] == ids
        after_first = await store.read_after(ids[0], count=10, block=0)
        assert [e.payload for e in after_first] == ["2", "3"]
        assert [e.payload for e in await store.read_after(ids[0], count=1, block=0)] == ["2"]
        assert await store.read_after(ids[-1], count=10, block=0) == []

    async def test_a_blocked_read_returns_when_an_entry_arrives(self, store: SignalStore) -> None:
        last = await store.last_id()
        reader = asyncio.create_task(store.read_after(last, count=10, block=5))
        await asyncio.sleep(0.05)  # let the read block (real I/O on Redis), then append
        assert not reader.done()
        await store.append([("k", "late")], origin="p2", maxlen=100)
        async with asyncio.timeout(5):
            got = await reader
        assert [e.payload for e in got] == ["late"]

    async def test_the_stream_is_trimmed_to_about_maxlen(self, store: SignalStore) -> None:
        for i in range(30):
            await store.append([("k", str(j)) for j in range(100)], origin=f"p{i}", maxlen=500)
        remaining = await store.read_after("0-0", count=10_000, block=0)
        assert 500 <= len(remaining) < 3000  # ~: Redis trims whole macro nodes only
        assert remaining[-1].payload == "99"

    async def test_reader_positions_are_kept_per_reader(self, store: SignalStore) -> None:
        assert await store.position("scorer") is None
        await store.save_position("scorer", "5-0")
        await store.save_position("web", "7-0")
        assert await store.position("scorer") == "5-0"
        assert await store.position("web") == "7-0"

    # -- reputation board (issue 14) ------------------------------------------------------------

    async def test_no_reputation_before_one_is_published(self, store: SignalStore) -> None:
        assert await store.reputation() is None

    async def test_published_reputation_reads_back_equal_and_is_replaced(
        self, store: SignalStore
    ) -> None:
        first = Reputation(
            T0 - 600,
            weights={"@a": 1.28, "@b": 0.5, "-1001234": 2.0, "@ü": 1.0},
            copies={("@a", "@b"): 0.72, ("@a", "@c"): 0.61},
            clusters=(("@e", "@f", "@g"), ("@x", "@y")),
        )
        await store.publish_reputation(first)
        assert await store.reputation() == first
        second = Reputation(T0)
        await store.publish_reputation(second)
        assert await store.reputation() == second

    async def test_votes_per_token_and_group(self, store: SignalStore) -> None:
        assert await store.votes("TokA") == {}
        fwd = AtOnceVote(FORWARD, "@a", "@a")
        await store.put_vote("TokA", "@d", fwd)
        await store.put_vote("TokA", "@b", AtOnceVote(SAME_TEXT, "@b", "@a"))
        await store.put_vote("TokB", "@d", AtOnceVote(SAME_TEXT, "@d", "@c"))
        assert await store.votes("TokA") == {"@d": fwd, "@b": AtOnceVote(SAME_TEXT, "@b", "@a")}
        await store.put_vote("TokA", "@b", AtOnceVote("own", "@b"))  # its own call replaces it
        assert (await store.votes("TokA"))["@b"] == AtOnceVote("own", "@b")
        assert set(await store.votes("TokB")) == {"@d"}

    async def test_votes_live_one_window_from_the_last_write(
        self, store: SignalStore, clock: FakeClock
    ) -> None:
        await store.put_vote("TokA", "@d", AtOnceVote(FORWARD, "@a", "@a"))
        if isinstance(store, MemoryStore):
            clock.advance(WINDOW - 1)
            assert set(await store.votes("TokA")) == {"@d"}
            await store.put_vote("TokA", "@e", AtOnceVote(FORWARD, "@a", "@a"))
            clock.advance(WINDOW - 1)
            assert set(await store.votes("TokA")) == {"@d", "@e"}
            clock.advance(2)
            assert await store.votes("TokA") == {}

    async def test_groups_and_votes_in_one_answer(
        self, store: SignalStore, clock: FakeClock
    ) -> None:
        assert await store.groups_and_votes("TokA") == ({}, {})
        await store.record("TokA", "@a", T0 - 5)
        await store.record("TokA", "@d", T0)
        await store.put_vote("TokA", "@d", AtOnceVote(FORWARD, "@a", "@a"))
        assert await store.groups_and_votes("TokA") == (
            {"@a": T0 - 5, "@d": T0},
            {"@d": AtOnceVote(FORWARD, "@a", "@a")},
        )
        clock.advance(WINDOW)
        groups, _ = await store.groups_and_votes("TokA")
        assert groups == {}

    # -- the generation marker (issue 17, item 3) ----------------------------------------------

    async def test_reads_refuse_while_the_window_is_rebuilt_writes_go_on(
        self, store: SignalStore
    ) -> None:
        await store.record("TokA", "@g1", T0)
        await store.begin_rebuild("gen-1")
        state = await store.window_state()
        assert (state.generation, state.ready) == ("gen-1", False)
        for read in (
            store.groups("TokA"),
            store.counts(["TokA"]),
            store.active_tokens(),
            store.snapshot(),
        ):
            with pytest.raises(WindowUnavailable) as caught:
                await read
            assert caught.value.fault is StoreFault.REBUILDING
        assert await store.record("TokA", "@g2", T0) == 2  # the rebuild itself writes
        assert await store.finish_rebuild("gen-1") is True
        assert await store.counts(["TokA"]) == {"TokA": 2}
        assert (await store.window_state()).ready

    async def test_finishing_needs_the_same_generation_still_rebuilding(
        self, store: SignalStore
    ) -> None:
        await store.begin_rebuild("gen-1")
        await store.begin_rebuild("gen-2")  # another build took over
        assert await store.finish_rebuild("gen-1") is False
        assert await store.finish_rebuild("gen-2") is True
        assert await store.finish_rebuild("gen-2") is False  # already ready

    async def test_checks_are_counted_for_the_named_generation_only(
        self, store: SignalStore
    ) -> None:
        await store.begin_rebuild("gen-1")
        await store.finish_rebuild("gen-1")
        assert (await store.window_state(check="gen-1")).checks == 1
        assert (await store.window_state(check="gen-1")).checks == 2
        assert (await store.window_state(check="other")).checks == 2
        assert (await store.window_state()).checks == 2

    async def test_record_once_restores_a_mention_whose_claim_survived(
        self, store: SignalStore
    ) -> None:
        assert await store.claim("msg:1:1:TokA", 60) is True
        assert await store.record_once("TokA", "@g1", T0, claim="msg:1:1:TokA", ttl=60) is None
        assert await store.groups("TokA") == {"@g1": T0}

    async def test_a_write_probe_and_the_store_clock(self, store: SignalStore) -> None:
        await store.probe_write("test")
        assert isinstance(await store.sync_clock(), float)
        assert await store.eviction_policy() in (None, "noeviction")
