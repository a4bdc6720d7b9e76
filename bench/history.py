"""Case 8: the history recorder's throughput beside a raw batched insert, and database size.

Subject: mention events published into a real :class:`EventHub`, written by the
:class:`HistoryRecorder` (batches of ``[history] batch_size``, SQLAlchemy Core, ``ON CONFLICT DO
NOTHING``), timed from the first publish to the last commit. Baseline: the same rows (built by the
same row builder, fingerprints included: the raw side must compute them too to write the same
rows) inserted with the bare driver (sqlite3 through aiosqlite, asyncpg), the same batch size,
one transaction per batch, the same ``ON CONFLICT DO NOTHING``. Each run writes into a fresh
database; subject and baseline alternate and the best of each is kept.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import aiosqlite
import asyncpg
import sqlalchemy as sa

from bench.messages import Universe, generate
from bench.report import Row, Target
from callsbot.clock import SystemClock
from callsbot.config import HistorySettings
from callsbot.events import EventHub, MentionRecorded
from callsbot.fingerprint import fingerprint
from callsbot.history.recorder import HistoryRecorder
from callsbot.history.schema import mentions as mentions_table
from callsbot.history.sql import SQLHistory, mention_row
from callsbot.metrics import Metrics
from callsbot.models import MessageRef

BATCH = 500
GROUPS = tuple(f"@call_group_{i:02d}" for i in range(30))


def make_events(n: int, seed: int) -> list[MentionRecorded]:
    """``n`` mentions of call-like messages (only those that name an address)."""
    rng = random.Random(seed)
    universe = Universe.make(rng, 2_000, 100)
    texts = [m.text for m in generate(rng, n * 5, universe) if m.kind != "chatter"]
    while len(texts) < n:
        texts += texts
    t0 = 1_700_000_000
    events = []
    for i in range(n):
        g = i % len(GROUPS)
        ref = MessageRef("live", -1_000_000_000_000 - g, GROUPS[g], i, t0 + i // 10, t0 + i / 10)
        events.append(
            MentionRecorded(
                at=t0 + i / 10,
                ref=ref,
                token=universe.tokens[i % len(universe.tokens)],
                mention_kind="mint",
                chain="solana",
                count=1 + i % 4,
                text=texts[i],
                sender_id=1000 + i % 97,
            )
        )
    return events


async def _recorder_run(url: str, events: list[MentionRecorded]) -> float:
    history = SQLHistory(url)
    await history.upgrade()
    metrics = Metrics.create()
    clock = SystemClock()
    hub = EventHub(metrics=metrics, clock=clock)
    settings = HistorySettings(batch_size=BATCH, queue_size=len(events) + 1)
    recorder = HistoryRecorder(history, settings=settings, clock=clock, metrics=metrics, hub=hub)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(hub.run(stop)), asyncio.create_task(recorder.run(stop))]
    await asyncio.sleep(0)
    started = time.perf_counter()
    for e in events:
        hub.publish(e)
    while hub.backlog()["history"] or recorder.pending:  # noqa: ASYNC110 - polls two counters
        await asyncio.sleep(0.001)
    elapsed = time.perf_counter() - started
    stop.set()
    await asyncio.gather(*tasks)
    await history.aclose()
    return len(events) / elapsed


def _rows(events: list[MentionRecorded]) -> list[dict[str, Any]]:
    return [mention_row(e) for e in events]


_COLUMNS = [c.name for c in mentions_table.columns if c.name != "id"]


async def _raw_sqlite(path: str, events: list[MentionRecorded]) -> float:
    history = SQLHistory(f"sqlite:///{path}")
    await history.upgrade()
    await history.aclose()
    names = ", ".join(_COLUMNS)
    marks = ", ".join("?" for _ in _COLUMNS)
    sql = f"INSERT INTO mentions ({names}) VALUES ({marks}) ON CONFLICT DO NOTHING"
    async with aiosqlite.connect(path) as db:
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=NORMAL")
        started = time.perf_counter()
        for i in range(0, len(events), BATCH):
            rows = _rows(events[i : i + BATCH])
            await db.executemany(sql, [tuple(r[c] for c in _COLUMNS) for r in rows])
            await db.commit()
        elapsed = time.perf_counter() - started
    return len(events) / elapsed


async def _raw_postgres(url: str, events: list[MentionRecorded]) -> float:
    history = SQLHistory(url)
    await history.upgrade()
    await history.aclose()
    names = ", ".join(_COLUMNS)
    marks = ", ".join(f"${i + 1}" for i in range(len(_COLUMNS)))
    sql = f"INSERT INTO mentions ({names}) VALUES ({marks}) ON CONFLICT DO NOTHING"
    conn = await asyncpg.connect(url.replace("postgresql://", "postgres://"))
    try:
        started = time.perf_counter()
        for i in range(0, len(events), BATCH):
            rows = _rows(events[i : i + BATCH])
            async with conn.transaction():
                await conn.executemany(sql, [tuple(r[c] for c in _COLUMNS) for r in rows])
        elapsed = time.perf_counter() - started
    finally:
        await conn.close()
    return len(events) / elapsed


async def _new_pg_database(admin_url: str, name: str) -> str:
    conn = await asyncpg.connect(admin_url.replace("postgresql://", "postgres://"))
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name}")
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


async def case_history(pg_url: str | None, *, rounds: int = 3, seed: int = 7) -> list[Row]:
    """Recorder vs raw insert on SQLite and PostgreSQL; bytes per million mentions."""
    rows: list[Row] = []
    events = make_events(20_000, seed)
    fp_started = time.perf_counter()
    for e in events[:5_000]:
        fingerprint(e.text)
    fp_us = (time.perf_counter() - fp_started) / 5_000 * 1e6
    with tempfile.TemporaryDirectory(prefix="callsbot-bench-history-") as tmp:
        subject, baseline = 0.0, 0.0
        for r in range(rounds):
            subject = max(subject, await _recorder_run(f"sqlite:///{tmp}/s{r}.db", events))
            baseline = max(baseline, await _raw_sqlite(f"{tmp}/b{r}.db", events))
        rows.append(
            Row(
                "9",
                "history recorder, SQLite (WAL): mentions written",
                subject,
                "events/s",
                baseline,
                target=Target(">=", 0.5),
                note=f"{len(events):,} mention events through a real hub, batches of {BATCH}; "
                "baseline: the same rows (fingerprints included) by aiosqlite executemany, "
                f"{BATCH} per transaction; fingerprinting alone costs {fp_us:.0f} µs/mention",
            )
        )
        if pg_url is not None:
            subject, baseline = 0.0, 0.0
            for r in range(rounds):
                url = await _new_pg_database(pg_url, f"bench_s{r}")
                subject = max(subject, await _recorder_run(url, events))
                url = await _new_pg_database(pg_url, f"bench_b{r}")
                baseline = max(baseline, await _raw_postgres(url, events))
            rows.append(
                Row(
                    "9",
                    "history recorder, PostgreSQL: mentions written",
                    subject,
                    "events/s",
                    baseline,
                    target=Target(">=", 0.5),
                    note="baseline: the same rows by asyncpg executemany, "
                    f"{BATCH} per transaction, on the same server",
                )
            )
        rows += await _sizes(tmp, pg_url, seed)
    return rows


async def _sizes(tmp: str, pg_url: str | None, seed: int) -> list[Row]:
    n = 50_000
    events = make_events(n, seed + 1)
    path = Path(tmp) / "size.db"
    history = SQLHistory(f"sqlite:///{path}")
    await history.upgrade()
    for i in range(0, n, BATCH):
        await history.record(events[i : i + BATCH])
    async with history.engine.connect() as conn:
        await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    await history.aclose()
    per_million = path.stat().st_size * 1_000_000 / n
    rows = [
        Row(
            "9",
            "history size per million mentions, SQLite",
            per_million / 2**20,
            "MiB",
            note=f"file size after {n:,} mentions (message texts kept), x{1_000_000 // n}",
        )
    ]
    if pg_url is not None:
        url = await _new_pg_database(pg_url, "bench_size")
        history = SQLHistory(url)
        await history.upgrade()
        for i in range(0, n, BATCH):
            await history.record(events[i : i + BATCH])
        async with history.engine.connect() as conn:
            size = await conn.scalar(sa.select(sa.func.pg_total_relation_size("mentions")))
        await history.aclose()
        rows.append(
            Row(
                "9",
                "history size per million mentions, PostgreSQL",
                float(size or 0) * 1_000_000 / n / 2**20,
                "MiB",
                note="pg_total_relation_size('mentions'): table, indexes and TOAST",
            )
        )
    return rows
