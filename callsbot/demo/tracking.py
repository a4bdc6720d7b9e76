"""The demo's day after: recorded GeckoTerminal answers, the outcome tracker through +24 h, the
history database it leaves behind and the report table it ends with.

``data/ohlcv.json`` (written by ``scripts/make_demo_ohlcv.py``) holds, for every token of the
session, the pool OHLCV answers GeckoTerminal would give (``ohlcv_request_response``, the real
schema, rows newest first): 1-minute rows around the session and 5-minute rows for the day
after. The local GeckoTerminal serves them; the real tracker fetches them when they are due, on
the simulated clock, which jumps from one due time to the next.
"""

from __future__ import annotations

import contextlib
import json
from importlib import resources
from pathlib import Path
from typing import Any

from callsbot.clock import FakeClock
from callsbot.market.prices import parse_ohlcv
from callsbot.models import Candle
from callsbot.outcomes.report import build_report, render_table
from callsbot.outcomes.tracker import OutcomeTracker
from callsbot.testing.geckoterminal import FakeGeckoTerminal

#: The demo's history database, in the current directory, made afresh by every run.
HISTORY_FILE = "callsbot-demo-history.sqlite3"
#: How far past the session the clock runs: every fetch of every event (t + 24 h 02) is due.
DAY_AFTER = 24 * 3600 + 30 * 60


def load_ohlcv() -> dict[str, Any]:
    """The bundled GeckoTerminal answers."""
    text = resources.files("callsbot.demo").joinpath("data/ohlcv.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def serve_ohlcv(gecko: FakeGeckoTerminal, data: dict[str, Any]) -> int:
    """Let ``gecko`` serve the recorded answers; the number of pools."""
    pools: dict[str, dict[str, Any]] = {}
    for item in data["bodies"]:
        body = item["body"]
        mint = body["meta"]["base"]["address"]
        candles, _skipped = parse_ohlcv(body, mint)
        pool = pools.setdefault(
            item["pool"], {"base": mint, "quote": body["meta"]["quote"]["address"]}
        )
        pool[f"aggregate_{item['aggregate']}"] = candles
    for address, pool in pools.items():
        minute: tuple[Candle, ...] = pool.get("aggregate_1", ())
        five: tuple[Candle, ...] = pool.get("aggregate_5", ())
        gecko.add_pool(
            address,
            base=pool["base"],
            quote=pool["quote"],
            candles=minute,
            five_minute_candles=five,
        )
    return len(pools)


def fresh_history_file(path: Path) -> Path:
    """``path`` made absolute, with any earlier run's database (and its WAL files) removed."""
    path = path.resolve()
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            Path(f"{path}{suffix}").unlink()
    return path


async def follow_through(tracker: OutcomeTracker, clock: FakeClock, until: float) -> int:
    """Store what the tracker took, then move ``clock`` from one due fetch to the next up to
    ``until``, making them; the number of fetches made."""
    await tracker.ingest()
    made = 0
    while (due := tracker.next_due()) is not None and due <= until:
        clock.set(max(clock.time(), due))
        made += await tracker.run_due()
    clock.set(max(clock.time(), until))
    return made


async def report_text(tracker: OutcomeTracker, *, window: int, latency: int) -> str:
    """The report table of everything the tracker followed."""
    records = await tracker.ledger.records(window=window, latency=latency)
    return render_table(build_report(records, split="level"))
