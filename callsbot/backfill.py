"""``python -m callsbot backfill``: feed a Telegram Desktop export through the pipeline."""

from __future__ import annotations

import collections
import json
from typing import TextIO

from callsbot.aggregator import Aggregator, Recorded
from callsbot.clock import Clock
from callsbot.config import Settings
from callsbot.errors import ConfigError, HistoryUnavailable, StoreError
from callsbot.events import MentionRecorded
from callsbot.extract import extract
from callsbot.history.sql import open_history
from callsbot.market.gate import open_market
from callsbot.metrics import Metrics
from callsbot.models import IncomingMessage
from callsbot.sources.export import ExportError, read_export
from callsbot.store import MemoryStore, SignalStore, open_store

_KIND = {"mint": "mint", "pair": "pair", "evm": "evm", "evm_pair": "pair"}


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
    (``group``, ``message_id``, ``token``, ``kind``, ``ts``); otherwise mentions go to the
    configured store with their original dates (a mention older than the window is not counted,
    by the store's own rule) and to the history (``[history] enabled``), dated and referenced as
    the original messages, whatever the window. ``validate=False`` skips the liquidity/volume
    gate; pair addresses are still resolved to their token through market data.

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
    client, market = await open_market(settings, clock=clock, metrics=metrics)
    outcomes: collections.Counter[str] = collections.Counter()
    try:
        async with store:
            if not dry_run:
                try:
                    await store.ping()
                except StoreError as exc:
                    print(f"callsbot backfill: store unreachable: {exc}", file=err)
                    return 1
            aggregator = Aggregator(
                settings=settings,
                store=store,
                market=market,
                clock=clock,
                metrics=metrics,
                validate=validate,
            )
            for message in messages:
                for result in await aggregator.process(message):
                    outcomes[result.outcome] += 1
                    if dry_run and result.outcome == "recorded":
                        print(json.dumps(_line(result), ensure_ascii=False), file=out)
                    if history is not None and result.outcome in _KEPT:
                        seeded.append(_mention(message, result))
                if history is not None and len(seeded) >= settings.history.batch_size:
                    await history.record(seeded)
                    seeded.clear()
            if aggregator.buffered:
                await aggregator.flush_buffer()
            if history is not None and seeded:
                await history.record(seeded)
    except HistoryUnavailable as exc:
        print(
            f"callsbot backfill: history: {exc} (backfill again: nothing is duplicated)", file=err
        )
        return 1
    finally:
        await market.aclose()
        await client.aclose()
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
    return {
        "group": r.group,
        "message_id": r.message_id,
        "token": r.token,
        "kind": _KIND.get(r.kind, r.kind),
        "ts": r.ts,
    }
