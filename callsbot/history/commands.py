"""The history's command-line sub-commands, each returning its exit status.

- ``python -m callsbot db upgrade``: apply the schema migrations.
- ``python -m callsbot history export [--since T] [--until T] > rec.jsonl``: a recording.
- ``python -m callsbot history import rec.jsonl``: write a recording into this history.

Exit status: 0 done; 1 the database could not be reached, or the input is unreadable; 2 a
configuration problem (bad URL, a database newer than this code).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TextIO

from callsbot.config import Settings
from callsbot.errors import EXIT_CONFIG, ConfigError, HistoryUnavailable
from callsbot.events import Event
from callsbot.history import recording
from callsbot.history.sql import SQLHistory, head_revision, open_history


def parse_time(value: str) -> float:
    """Unix seconds from ``value``: a number, or an ISO date/time (UTC when it names no zone).

    Raises:
        ValueError: neither.
    """
    try:
        return float(value)
    except ValueError:
        pass
    when = dt.datetime.fromisoformat(value)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def _open(settings: Settings, err: TextIO, prog: str) -> SQLHistory | None:
    try:
        return open_history(settings.history)
    except ConfigError as exc:
        print(f"callsbot {prog}: config error: {exc}", file=err)
        return None


async def db_upgrade(settings: Settings, out: TextIO, err: TextIO) -> int:
    """Migrate the history database to this code's schema."""
    history = _open(settings, err, "db upgrade")
    if history is None:
        return EXIT_CONFIG
    async with history:
        try:
            before = await history.revision()
            after = await history.upgrade()
        except ConfigError as exc:
            print(f"callsbot db upgrade: {exc}", file=err)
            return EXIT_CONFIG
        except HistoryUnavailable as exc:
            print(f"callsbot db upgrade: {exc}", file=err)
            return 1
        state = "already at" if before == after else f"upgraded from {before or 'empty'} to"
        print(f"history {history.where}: {state} schema revision {after}", file=out)
    return 0


async def history_export(
    settings: Settings,
    out: TextIO,
    err: TextIO,
    *,
    since: float | None = None,
    until: float | None = None,
) -> int:
    """Write the events with ``since <= at < until`` to ``out`` as a recording."""
    history = _open(settings, err, "history export")
    if history is None:
        return EXIT_CONFIG
    async with history:
        try:
            revision = await history.revision()
            head = head_revision()
            if revision != head:
                if revision is None:
                    problem = "has no schema yet (run: python -m callsbot db upgrade)"
                    print(f"callsbot history export: {history.where} {problem}", file=err)
                    return 1
                # Migrating is a deliberate step: an export never changes the database.
                print(
                    f"callsbot history export: {history.where} is at schema revision "
                    f"{revision!r}, this callsbot reads {head!r} (run: python -m callsbot db "
                    "upgrade, or a matching callsbot)",
                    file=err,
                )
                return EXIT_CONFIG
            out.write(json.dumps(recording.HEADER) + "\n")
            n = 0
            async for event in history.events(since=since, until=until):
                out.write(recording.dumps(event) + "\n")
                n += 1
            out.flush()
        except HistoryUnavailable as exc:
            print(f"callsbot history export: {exc}", file=err)
            return 1
    print(f"history export: {n} events from {history.where}", file=err)
    return 0


async def history_import(settings: Settings, path: str, out: TextIO, err: TextIO) -> int:
    """Write the recording at ``path`` into the history, a batch per transaction.

    Importing is idempotent: a recording imported twice, or again after a failure part-way,
    leaves every event once.
    """
    history = _open(settings, err, "history import")
    if history is None:
        return EXIT_CONFIG
    size = settings.history.batch_size
    n = 0
    async with history:
        try:
            with open(path, encoding="utf-8") as fh:  # noqa: ASYNC230 - a CLI, nothing else runs
                await history.upgrade()
                batch: list[Event] = []
                for event in recording.read(fh):
                    batch.append(event)
                    if len(batch) >= size:
                        await history.record(batch)
                        n += len(batch)
                        batch = []
                if batch:
                    await history.record(batch)
                    n += len(batch)
        except OSError as exc:
            print(f"callsbot history import: cannot read {path}: {exc.strerror}", file=err)
            return 1
        except recording.RecordingError as exc:
            print(f"callsbot history import: {path}: {exc} ({n} events written before)", file=err)
            return 1
        except ConfigError as exc:
            print(f"callsbot history import: {exc}", file=err)
            return EXIT_CONFIG
        except HistoryUnavailable as exc:
            print(f"callsbot history import: {exc} ({n} events written before)", file=err)
            return 1
    print(f"history import: {n} events into {history.where}", file=out)
    return 0
