"""The HistoryStore contract, the same class against SQLite and a real PostgreSQL server."""

from __future__ import annotations

import asyncio
import contextlib
import threading

import attrs
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from callsbot.errors import ConfigError, HistoryUnavailable
from callsbot.events import Event, MentionRecorded
from callsbot.fingerprint import fingerprint, to_unsigned
from callsbot.history import schema
from callsbot.history.sql import SQLHistory, async_url, head_revision
from callsbot.testing.redis_server import free_port
from tests.history import factory as f
from tests.history.conftest import both_backends


async def collect(history: SQLHistory, **kw: object) -> list[Event]:
    return [e async for e in history.events(**kw)]  # type: ignore[arg-type]


@both_backends()
class TestHistoryContract:
    async def test_upgrade_is_repeatable_and_reaches_head(self, history: SQLHistory) -> None:
        assert await history.revision() == head_revision()
        assert await history.upgrade() == head_revision()
        assert (await history.counts()) == {t.name: 0 for t in schema.ALL_TABLES}

    async def test_every_kind_comes_back_equal_and_in_time_order(self, history: SQLHistory) -> None:
        events = f.one_of_each()
        await history.record(list(reversed(events)))  # write order is not read order
        assert await collect(history) == events

    async def test_writing_again_changes_nothing(self, history: SQLHistory) -> None:
        events = f.one_of_each()
        await history.record(events)
        counts = await history.counts()
        assert counts["mentions"] == 2
        assert counts["alert_deliveries"] == 2
        await history.record(events)
        await history.record(events[::2])
        await history.record([events[0]] * 3)  # duplicates inside one batch too
        assert await history.counts() == counts
        assert await collect(history) == events

    async def test_one_row_per_chat_message_token_whatever_delivered_it(
        self, history: SQLHistory
    ) -> None:
        live = f.mention(7, at=f.T0, source="live")
        catch_up = attrs.evolve(live, at=f.T0 + 30, ref=attrs.evolve(live.ref, source="catch_up"))
        edit = attrs.evolve(
            live,
            at=f.T0 + 60,
            ref=attrs.evolve(live.ref, source="edit"),
            text=live.text + " (edited)",
        )
        other_token = f.mention(8, at=f.T0, message_id=7)  # same message, second address
        await history.record([live])
        await history.record([catch_up, edit])
        await history.record([other_token, edit])
        assert (await history.counts())["mentions"] == 2
        assert await collect(history) == [live, other_token]  # the first version wins

    async def test_since_until_kinds_and_token_filter(self, history: SQLHistory) -> None:
        events = [e for i in range(3) for e in f.one_of_each(10 * i + 1, at=f.T0 + 100 * i)]
        await history.record(events)
        assert await collect(history, since=f.T0 + 100, until=f.T0 + 200) == events[7:14]
        assert await collect(history, until=f.T0) == []
        assert await collect(history, since=f.T0 + 10_000) == []
        mentions = await collect(history, kinds={MentionRecorded.kind})
        assert mentions == [e for e in events if isinstance(e, MentionRecorded)]
        token = f.mint(11)
        # mint(11)'s mention, level, verdict, score and alert; not mint(12)'s forward or verdict.
        assert await collect(history, token=token) == [events[i] for i in (7, 9, 10, 12, 13)]

    async def test_pages_merge_in_time_order(self, history: SQLHistory) -> None:
        # More than one page (1,000 rows) of mentions, interleaved with levels at equal times.
        mentions = [f.mention(i, at=f.T0 + i // 2) for i in range(2_300)]
        levels = [f.level(i, at=f.T0 + i * 5) for i in range(200)]
        await history.record(mentions + levels)
        got = await collect(history)
        assert len(got) == 2_500
        assert [e.at for e in got] == sorted(e.at for e in got)
        assert sorted(got, key=lambda e: (e.at, e.kind != MentionRecorded.kind)) == got
        assert [e for e in got if isinstance(e, MentionRecorded)] == mentions

    async def test_prune_deletes_only_what_is_older(self, history: SQLHistory) -> None:
        old = f.one_of_each(1, at=f.T0)
        new = f.one_of_each(1, at=f.T0 + 1_000)  # the same buy scored again, later
        new[:2] = [f.mention(50, at=f.T0 + 1_000), f.forwarded(51, at=f.T0 + 1_001)]
        await history.record(old + new)
        deleted = await history.prune(f.T0 + 500)
        # 2 mentions, a level, 2 verdicts, a score, an alert and its 2 deliveries; not the buy.
        assert deleted == 9
        assert await collect(history) == new  # the later score still finds its buy
        assert (await history.counts())["buys"] == 1
        await history.prune(f.T0 + 10_000)
        assert sum((await history.counts()).values()) == 0

    async def test_fingerprints_are_stored_and_texts_optional(
        self, history: SQLHistory, history_url: str
    ) -> None:
        bare = SQLHistory(history_url, keep_text=False)
        try:
            m = f.mention(3)
            await bare.record([m])
            (got,) = await collect(bare)
            assert got == attrs.evolve(m, text="")
            async with history.engine.connect() as conn:
                row = (await conn.execute(sa.select(schema.mentions))).mappings().one()
        finally:
            await bare.aclose()
        fp = fingerprint(m.text)
        assert row["text"] is None
        assert row["text_sha1"] == fp.sha1
        assert to_unsigned(row["text_simhash"]) == fp.simhash

    async def test_a_write_cut_off_by_a_cancellation_never_blocks_the_next(
        self, history_url: str
    ) -> None:
        # A shutdown's grace running out cancels a write mid-statement. On SQLite that left the
        # connection holding the database's write lock, and every later write of the process
        # failed "database is locked" (after the busy timeout, here 2 s).
        history = SQLHistory(history_url, connect_timeout=2)
        await history.upgrade()
        try:
            for cut in range(40):  # cancelled after `cut` turns of the loop: every stage of it
                batch = [f.mention(i, at=f.T0 + i) for i in range(cut * 150, cut * 150 + 150)]
                writing = asyncio.create_task(history.record(batch))
                for _ in range(cut):
                    await asyncio.sleep(0)
                writing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writing
                await history.record([f.mention(100_000 + cut, at=f.T0)])
            counts = await history.counts()
            assert 40 <= counts["mentions"] <= 40 * 151
        finally:
            await history.aclose()

    async def test_schema_newer_than_the_code_is_a_config_error(self, history: SQLHistory) -> None:
        async with history.engine.begin() as conn:
            await conn.execute(sa.text("UPDATE alembic_version SET version_num = 'zz_future'"))
        with pytest.raises(ConfigError) as info:
            await history.upgrade()
        assert info.value.exit_code == 2
        assert "zz_future" in str(info.value)
        assert "newer" in str(info.value)

    async def test_migrations_build_exactly_the_declared_schema(self, history_url: str) -> None:
        store = SQLHistory(history_url)
        await store.upgrade()
        await store.aclose()
        engine = create_async_engine(async_url(history_url))
        try:
            async with engine.connect() as conn:
                diff = await conn.run_sync(
                    lambda c: compare_metadata(MigrationContext.configure(c), schema.metadata)
                )
        finally:
            await engine.dispose()
        assert diff == []


async def test_unreachable_postgresql_is_unavailable_not_a_crash() -> None:
    history = SQLHistory(
        f"postgresql://callsbot@127.0.0.1:{free_port()}/x", password="s3cret-pw", connect_timeout=2
    )
    try:
        for call in (history.ping(), history.record(f.one_of_each()), history.upgrade()):
            with pytest.raises(HistoryUnavailable) as info:
                await call
            assert "s3cret-pw" not in str(info.value)
    finally:
        await history.aclose()
    assert "s3cret-pw" not in history.where
    assert "***" in history.where


async def test_unwritable_sqlite_is_unavailable() -> None:
    history = SQLHistory("sqlite:////proc/callsbot-no/such.sqlite3")
    try:
        with pytest.raises(HistoryUnavailable):
            await history.record([f.mention()])
    finally:
        await history.aclose()
    # aiosqlite's worker thread of the failed connection still reports to this loop: let it.
    for _ in range(100_000):
        if not any("_connection_worker_thread" in t.name for t in threading.enumerate()):
            break
        await asyncio.sleep(0)


@pytest.mark.parametrize(
    "url", ["mysql://u@h/db", "redis://localhost", "not a url", "sqlite+pysqlite:///x"]
)
def test_other_databases_are_a_config_error(url: str) -> None:
    if url.startswith("sqlite"):
        assert async_url(url).drivername == "sqlite+aiosqlite"
        return
    with pytest.raises(ConfigError) as info:
        async_url(url)
    assert info.value.key == "history.url"
