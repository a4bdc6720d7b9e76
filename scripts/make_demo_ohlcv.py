"""Writes callsbot/demo/data/ohlcv.json: the price paths the demo's outcome tracker fetches.

For every token of the recorded session (callsbot/demo/data/session.json) a day of its pool's
prices after its first call, as GeckoTerminal's pool OHLCV endpoint answers them
(``ohlcv_request_response``, rows newest first, ``meta.base`` the token): 1-minute rows from
30 minutes before the session to 4 h 10 after it, 5-minute rows from 3 h 30 after the session
starts to 26 h after it ends. The story of each token is written out below (multiples of its
DexScreener price at minutes after its first call); only the minute-to-minute noise and the
minutes without trades come from a seeded RNG. Run after make_demo_session.py:

    python scripts/make_demo_ohlcv.py
"""

from __future__ import annotations

import bisect
import json
import math
import random
from pathlib import Path
from typing import Any

from callsbot.models import Candle
from callsbot.testing.geckoterminal import aggregate, ohlcv_body

DATA = Path(__file__).resolve().parents[1] / "callsbot" / "demo" / "data"
SESSION = DATA / "session.json"
OUT = DATA / "ohlcv.json"

# symbol: (seconds into the session of the first call, [(minutes after it, multiple), ...]);
# prices between the points move linearly in log space. None: no trades after that minute.
STORIES: dict[str, tuple[int, list[tuple[float, float | None]]]] = {
    # Four groups, then the alert: a clean 3× in 40 minutes, holding 2× for hours.
    "MOONCAT": (
        120,
        [
            (0, 1.0),
            (12, 1.15),
            (35, 2.6),
            (48, 3.1),
            (90, 2.3),
            (300, 2.1),
            (900, 1.7),
            (1600, 1.6),
        ],
    ),
    # Two groups: a slow 2.3× over two hours, then back to where it was.
    "GIGA2": (900, [(0, 1.0), (30, 1.05), (100, 1.8), (140, 2.3), (300, 1.4), (1600, 1.05)]),
    # Nobody called it: a slow bleed through the −50 % stop.
    "SOLOPEPE": (1200, [(0, 1.0), (20, 0.92), (120, 0.7), (400, 0.45), (1600, 0.3)]),
    # Bought before the groups called it: 5× by the third hour.
    "LATEDOG": (1500, [(0, 1.0), (25, 1.3), (80, 2.2), (180, 5.4), (400, 3.6), (1600, 2.9)]),
    # A dexscreener link and a mint: up 40 %, then two-thirds of it gone.
    "PAIRFROG": (2400, [(0, 1.0), (25, 1.4), (60, 1.2), (300, 0.8), (1600, 0.65)]),
    # The 10× of the month, eight hours after the call.
    "FROGGY": (2610, [(0, 1.0), (60, 1.4), (240, 3.0), (480, 11.5), (560, 7.0), (1600, 4.2)]),
    # Called an hour before anything else happened: nobody trades it any more (a dead pool).
    "OLDNEWS": (30, [(-40, 1.0), (-2, 1.0), (-1, None)]),
    # One group, and a dump.
    "DUMPER": (3000, [(0, 1.0), (10, 0.85), (60, 0.5), (600, 0.3), (1600, 0.25)]),
}
#: Share of minutes without a trade (no candle), per token.
QUIET = 0.06


def multiple_at(points: list[tuple[float, float | None]], minute: float) -> float | None:
    """The story's multiple ``minute`` minutes after the first call (``None``: no trades)."""
    xs = [p[0] for p in points]
    i = bisect.bisect_right(xs, minute)
    if i == 0:
        return points[0][1]
    if i == len(points):
        return points[-1][1]
    (x0, y0), (x1, y1) = points[i - 1], points[i]
    if y0 is None or y1 is None:
        return y0 if y1 is not None or minute < x1 else None
    share = (minute - x0) / (x1 - x0)
    return math.exp(math.log(y0) + share * (math.log(y1) - math.log(y0)))


def minute_candles(
    start: int, end: int, first_call: int, price: float, story: list[Any], rng: random.Random
) -> list[Candle]:
    """1-minute candles from ``start`` to ``end`` following ``story`` with seeded noise."""
    out: list[Candle] = []
    last = price * (multiple_at(story, (start - first_call) / 60) or 1.0)
    for ts in range(start // 60 * 60, end, 60):
        target = multiple_at(story, (ts - first_call) / 60)
        if target is None:
            continue  # nobody trades any more
        if rng.random() < QUIET:
            continue
        close = price * target * math.exp(rng.gauss(0.0, 0.012))
        open_ = last
        high = max(open_, close) * math.exp(abs(rng.gauss(0.0, 0.008)))
        low = min(open_, close) * math.exp(-abs(rng.gauss(0.0, 0.008)))
        volume = round(rng.uniform(200, 4_000) * (2.0 if abs(close / open_ - 1) > 0.01 else 1.0))
        out.append(Candle(ts, _p(open_), _p(high), _p(low), _p(close), float(volume)))
        last = close
    return out


def _p(value: float) -> float:
    return float(f"{value:.6g}")


def main() -> None:
    session = json.loads(SESSION.read_text("utf-8"))
    start, end = int(session["start"]), int(session["start"]) + int(session["end"])
    minute_from, minute_to = start - 1800, end + 4 * 3600 + 600
    five_from, five_to = start + 3 * 3600 + 1800, end + 26 * 3600
    rng = random.Random(13)
    bodies = []
    for pair in session["dexscreener"]["pairs"]:
        symbol = pair["baseToken"]["symbol"]
        if symbol not in STORIES:
            continue  # never counted (RUGGED: liquidity $3k), so never tracked
        mint, quote, pool = (
            pair["baseToken"]["address"],
            pair["quoteToken"]["address"],
            pair["pairAddress"],
        )
        first_call, story = STORIES[symbol]
        candles = minute_candles(
            minute_from, five_to, start + first_call, float(pair["priceUsd"]), story, rng
        )
        minute = [c for c in candles if minute_from <= c.ts < minute_to]
        five = [c for c in aggregate(candles, 300) if five_from <= c.ts < five_to]
        for aggregate_, rows in ((1, minute), (5, five)):
            bodies.append(
                {
                    "pool": pool,
                    "symbol": symbol,
                    "timeframe": "minute",
                    "aggregate": aggregate_,
                    "body": ohlcv_body(
                        list(reversed(rows)), base=mint, quote=quote, base_symbol=symbol
                    ),
                }
            )
    document = {
        "about": "callsbot demo: GeckoTerminal pool OHLCV answers for the session's tokens",
        "network": "solana",
        "bodies": bodies,
    }
    OUT.write_text(json.dumps(document, separators=(",", ":")) + "\n", encoding="utf-8")
    rows = sum(len(b["body"]["data"]["attributes"]["ohlcv_list"]) for b in bodies)
    print(f"{OUT}: {len(bodies)} bodies, {rows} rows, {OUT.stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()
