"""``python -m callsbot outcome MINT --pool POOL --at TIME``: what happened after this call?

Fetches the pool's price path now (GeckoTerminal, the section-2 windows that have begun) and
prints one JSON line with every section-3 field of an event at ``TIME``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
from typing import Any, TextIO

import attrs

from callsbot.clock import Clock, SystemClock
from callsbot.config import OutcomesSettings, Settings
from callsbot.market.prices import Candles, GeckoTerminalClient, NoDataYet, Timeframe
from callsbot.net.retry import Sleep
from callsbot.outcomes.path import (
    DEFAULT_RULES,
    OutcomeRules,
    compute_outcome,
    unresolved_outcome,
)

#: Candles fetched before the event (the section-2 first fetch, limit 20 at t + 17 min).
LEAD_SECONDS = 3 * 60
#: The 1-minute fetch reaches past t + 4 h by this much (the schedule's t + 4 h 02)...
MINUTE_MARGIN = 2 * 60
#: ...and the 5-minute fetch past t + latency + horizon by this much (t + 24 h 02 with the
#: defaults): an entry candle starts at most 59 s after t + latency, so its horizon is over.
HORIZON_MARGIN = 60

EXIT_OK = 0
EXIT_NO_DATA = 1
EXIT_USAGE = 2


def rules_from(settings: OutcomesSettings) -> OutcomeRules:
    """The path rules the ``[outcomes]`` section sets (the rest are the method's)."""
    return OutcomeRules(
        win_multiple=settings.win_multiple,
        horizon_seconds=settings.horizon_seconds,
        stop=settings.stop,
    )


def parse_time(value: str) -> int:
    """Unix seconds from ``1714521600``, ``2024-05-01T12:00:00Z`` or ``2024-05-01 12:00`` (UTC).

    Raises:
        argparse.ArgumentTypeError: neither a number nor an ISO 8601 time.
    """
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        if math.isfinite(number) and number > 0:
            return int(number)
        raise argparse.ArgumentTypeError(f"not a time: {value!r}")
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a unix time or ISO 8601 time: {value!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp())


@attrs.frozen
class Fetch:
    """One request of the plan."""

    timeframe: Timeframe
    limit: int
    before: int | None


def fetch_plan(
    event_ts: int, now: float, *, latency: int = 60, rules: OutcomeRules = DEFAULT_RULES
) -> list[Fetch]:
    """The requests that cover what has happened since ``event_ts``, at most two.

    1-minute candles from ``t − 3 min`` to ``min(now, t + 4 h 02)``; once that window is over,
    5-minute candles from the resolution switch to ``min(now, t + latency + horizon + 60 s)``
    (t + 24 h 02 with the defaults: the section-2 schedule). ``before`` is ``None`` when the
    window reaches "now".
    """
    minute_end = event_ts + rules.fine_seconds + MINUTE_MARGIN
    end = min(now, minute_end)
    limit = math.ceil((end - (event_ts - LEAD_SECONDS)) / 60) + 1
    plan = [Fetch(Timeframe.MINUTE, min(limit, 1000), minute_end if now > minute_end else None)]
    if now > minute_end:
        step = rules.coarse_seconds
        switch = (event_ts + rules.fine_seconds) // step * step
        five_end = event_ts + latency + rules.horizon_seconds + HORIZON_MARGIN
        end = min(now, five_end)
        limit = math.ceil((end - switch) / step) + 1
        before = five_end if now > five_end else None
        plan.append(Fetch(Timeframe.FIVE_MINUTES, min(limit, 1000), before))
    return plan


async def outcome_command(
    settings: Settings,
    mint: str,
    *,
    pool: str,
    at: int,
    latency: int | None,
    out: TextIO,
    err: TextIO,
    clock: Clock | None = None,
    sleep: Sleep = asyncio.sleep,
) -> int:
    """Print one JSON line: ``mint``, ``pool``, ``looked_up`` and every section-3 field.

    Args:
        settings: ``[geckoterminal]`` and ``[outcomes]`` are used.
        mint: the token.
        pool: the pool to read (a 404 looks the mint's pools up and follows the deepest).
        at: the event's time, unix seconds.
        latency: seconds before the entry; ``[outcomes] latency_seconds`` when ``None``.
        out: the JSON line goes here.
        err: one line of explanation when there is no data or the time is wrong.
        clock: "now" (the system clock by default).
        sleep: how waits wait (tests move a FakeClock).

    Returns:
        0 with a tracking, resolved or dead outcome; 1 when there is no data now (the line has
        status ``unresolved`` and the reason); 2 for an event in the future or a negative
        latency.
    """
    clock = clock if clock is not None else SystemClock()
    latency = settings.outcomes.latency_seconds if latency is None else latency
    now = clock.time()
    if latency < 0:
        err.write("callsbot: --latency must be >= 0\n")
        return EXIT_USAGE
    if at > now:
        err.write(f"callsbot: --at is {at - now:.0f}s in the future\n")
        return EXIT_USAGE
    rules = rules_from(settings.outcomes)
    got: list[Candles] = []
    current = pool
    async with GeckoTerminalClient(settings.geckoterminal, clock=clock, sleep=sleep) as gecko:
        for fetch in fetch_plan(at, now, latency=latency, rules=rules):
            answer = await gecko.fetch_candles(
                current, mint, fetch.timeframe, limit=fetch.limit, before=fetch.before
            )
            if isinstance(answer, NoDataYet):
                looked_up = any(a.looked_up for a in got)
                return _no_data(answer, mint, current, at, latency, out, err, looked_up=looked_up)
            current = answer.pool
            got.append(answer)
    outcome = compute_outcome(
        at,
        [c for a in got if a.timeframe is Timeframe.MINUTE for c in a.candles],
        [c for a in got if a.timeframe is Timeframe.FIVE_MINUTES for c in a.candles],
        as_of=max(a.complete_until for a in got),
        latency=latency,
        rules=rules,
    )
    _write(out, mint, current, any(a.looked_up for a in got), outcome.as_dict())
    return EXIT_OK


def _no_data(
    answer: NoDataYet,
    mint: str,
    pool: str,
    at: int,
    latency: int,
    out: TextIO,
    err: TextIO,
    *,
    looked_up: bool,
) -> int:
    detail = f"{answer.reason.value}: {answer.detail}"
    outcome = unresolved_outcome(at, latency=latency, errors=1, detail=detail)
    _write(out, mint, answer.pool or pool, looked_up, outcome.as_dict())
    err.write(f"callsbot: no price data for {mint} on {answer.pool or pool} yet ({detail})\n")
    return EXIT_NO_DATA


def _write(out: TextIO, mint: str, pool: str, looked_up: bool, fields: dict[str, Any]) -> None:
    line = {"mint": mint, "pool": pool, "looked_up": looked_up, **fields}
    out.write(json.dumps(line) + "\n")
    out.flush()
