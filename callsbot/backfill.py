"""``python -m callsbot backfill``: feed a Telegram Desktop export through the pipeline."""

from __future__ import annotations

import collections
import json
from typing import TextIO

from callsbot.aggregator import Aggregator, Recorded
from callsbot.clock import Clock
from callsbot.config import Settings
from callsbot.market.gate import open_market
from callsbot.metrics import Metrics
from callsbot.sources.export import ExportError, read_export
from callsbot.store import MemoryStore, SignalStore, StoreError, open_store

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
    than the window is not counted, by the store's own rule). ``validate=False`` skips the
    liquidity/volume gate; pair addresses are still resolved to their token through market data.

    Returns:
        The exit status: 0, or 1 when the export cannot be read or the store is down.
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
            unresolved = _UNRESOLVED if validate else _UNRESOLVED_UNVALIDATED
            for message in messages:
                for result in await aggregator.process(message):
                    outcomes[result.outcome] += 1
                    if dry_run and (result.outcome == "recorded" or result.outcome in unresolved):
                        print(json.dumps(_line(result), ensure_ascii=False), file=out)
            if aggregator.buffered:
                await aggregator.flush_buffer()
    finally:
        await market.aclose()
        await client.aclose()
    summary = ", ".join(f"{k}={v}" for k, v in sorted(outcomes.items())) or "nothing found"
    print(f"backfill: {len(messages)} messages; {summary}", file=err)
    return 0


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
