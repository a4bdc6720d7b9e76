"""``python -m callsbot backfill``: feed a Telegram Desktop export through the pipeline."""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import json
import sys
from typing import TextIO

from callsbot.aggregator import Recorded
from callsbot.clock import Clock, SystemClock
from callsbot.config import Settings
from callsbot.errors import ConfigError, HistoryUnavailable, StoreError
from callsbot.events import MentionRecorded
from callsbot.extract import extract
from callsbot.history.sql import open_history
from callsbot.metrics import Metrics
from callsbot.models import IncomingMessage
from callsbot.runtime import roles
from callsbot.sources.export import ExportError, read_export
from callsbot.store import MemoryStore, SignalStore, open_store

#: Outcomes a dry run prints as ``"unresolved": true``: the token could not be told now
#: (market data unavailable), and, without validation, what the market does not know either.
_UNRESOLVED = frozenset({"deferred"})
_UNRESOLVED_UNVALIDATED = _UNRESOLVED | {"rejected:evm_no_chain", "rejected:unknown_pair"}


async def backfill_command(
    settings: Settings,
    *,
    export: str,
    group: str | None,
    since: int | None,
    validate: bool,
    dry_run: bool,
    out: TextIO,
    err: TextIO,
    clock: Clock,
    metrics: Metrics,
) -> int:
    """Run every message of ``export`` through extract → resolve → validate → record.

    ``dry_run`` records into a throw-away in-memory store and prints one JSON line per mention
    (``group``, ``message_id``, ``token``, ``kind`` — ``mint``, ``pair``, ``evm``, ``evm_pair``:
    what the message named — and ``ts``); a mention whose token could not be told is printed
    with ``"unresolved": true`` and a ``reason`` (``deferred`` when market data was unavailable;
    without validation also ``evm_no_chain`` and ``unknown_pair``), its address as written.
    Otherwise mentions go to the configured store with their original dates (a mention older
    than the window is not counted, by the store's own rule) and to the history
    (``[history] enabled``), dated and referenced as the original messages, whatever the window.
    ``validate=False`` skips the liquidity/volume gate; pair addresses are still resolved to
    their token through market data.

    Returns:
        The exit status: 0, or 1 when the export cannot be read or the store or the history
        is down, 2 when the history database is newer than this code.
    """
    try:
        messages = list(read_export(export, group=group, since=since))
    except ExportError as exc:
        print(f"callsbot backfill: {exc}", file=err)
        return 1
    store: SignalStore = (
        MemoryStore(window=settings.store.window_seconds, clock=clock)
        if dry_run
        else open_store(settings.store, clock=clock)
    )
    history = None if dry_run or not settings.history.enabled else open_history(settings.history)
    if history is not None:
        try:
            await history.upgrade()
        except (HistoryUnavailable, ConfigError) as exc:
            await history.aclose()
            print(f"callsbot backfill: history: {exc}", file=err)
            return 2 if isinstance(exc, ConfigError) else 1
    seeded: list[MentionRecorded] = []
    outcomes: collections.Counter[str] = collections.Counter()
    try:
        async with (
            store,
            roles.open_parts(settings, clock=clock, metrics=metrics, store=store) as parts,
        ):
            if not dry_run:
                try:
                    await store.ping()
                except StoreError as exc:
                    print(f"callsbot backfill: store unreachable: {exc}", file=err)
                    return 1
            pipeline = roles.build_pipeline(parts, validate=validate)
            unresolved = _UNRESOLVED if validate else _UNRESOLVED_UNVALIDATED
            for message in messages:
                for result in await pipeline.process(message):
                    outcomes[result.outcome] += 1
                    if dry_run and (result.outcome == "recorded" or result.outcome in unresolved):
                        print(json.dumps(_line(result), ensure_ascii=False), file=out)
                    if history is not None and result.outcome in _KEPT:
                        seeded.append(_mention(message, result))
                if history is not None and len(seeded) >= settings.history.batch_size:
                    await history.record(seeded)
                    seeded.clear()
            if pipeline.buffered:
                await pipeline.flush_buffer()
            await parts.events.drain()
            if history is not None and seeded:
                await history.record(seeded)
    except HistoryUnavailable as exc:
        print(
            f"callsbot backfill: history: {exc} (backfill again: nothing is duplicated)", file=err
        )
        return 1
    finally:
        if history is not None:
            await history.aclose()
    summary = ", ".join(f"{k}={v}" for k, v in sorted(outcomes.items())) or "nothing found"
    print(f"backfill: {len(messages)} messages; {summary}", file=err)
    return 0


#: Outcomes whose mention passed the gate: the history keeps them (a duplicate in the window
#: store may be new to the history; the history ignores what it has).
_KEPT = ("recorded", "duplicate", "buffered")


def _mention(message: IncomingMessage, r: Recorded) -> MentionRecorded:
    """The history's record of one backfilled mention, dated as the original message."""
    chain: str | None = "solana"
    if r.kind in ("evm", "evm_pair"):
        found = extract(message.text, message.entities)
        named = [e for e in (*found.evm, *found.evm_pairs) if e.chain]
        # A pair was resolved to its token: the message named the pair, on the same chain.
        chain = next((e.chain for e in named if e.address == r.token), None) or next(
            (e.chain for e in named), ""
        )
    return MentionRecorded(
        at=float(message.ts),
        ref=message.ref,
        token=r.token,
        mention_kind=r.kind,
        chain=chain or "",
        count=r.groups_in_window or 0,
        text=message.text,
        sender_id=message.sender_id,
        forward=message.forward,
    )


def _line(r: Recorded) -> dict[str, object]:
    line: dict[str, object] = {
        "group": r.group,
        "message_id": r.message_id,
        "token": r.token,
        "kind": r.kind,
        "ts": r.ts,
    }
    if r.outcome != "recorded":
        line |= {"unresolved": True, "reason": r.outcome.removeprefix("rejected:")}
    return line


def _iso_date(value: str) -> int:
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date/time: {value!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp())


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare ``backfill``."""
    p = sub.add_parser("backfill", help="feed a Telegram Desktop export (result.json)")
    p.add_argument("--export", required=True, help="path to result.json")
    p.add_argument("--group", help="record mentions under this name (e.g. @channel)")
    p.add_argument("--since", type=_iso_date, help="skip messages before this ISO time")
    p.add_argument("--no-validate", action="store_true", help="skip the market gate")
    p.add_argument("--dry-run", action="store_true", help="record nothing; print JSON")


def main(args: argparse.Namespace, settings: Settings) -> int:
    """Run the export through the pipeline; the summary on stderr."""
    return asyncio.run(
        backfill_command(
            settings,
            export=args.export,
            group=args.group,
            since=args.since,
            validate=not args.no_validate,
            dry_run=args.dry_run,
            out=sys.stdout,
            err=sys.stderr,
            clock=SystemClock(),
            metrics=Metrics.create(),
        )
    )
