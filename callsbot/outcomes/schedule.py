"""The tracker's fetch schedule (outcomes.md section 2) and what its fetches cover. Pure.

Every event is followed with four requests, at ``t + 17 min`` (1-minute candles, limit 20),
``t + 62 min`` (1-minute, 50), ``t + 4 h 02`` (1-minute, 185) and ``t + 24 h 02`` (5-minute, 245).
Together they cover the 1-minute candles from ``t − 3 min`` to ``t + 4 h 02`` and the 5-minute
candles from ``t + 3 h 37`` to ``t + 24 h 02``: everything :func:`~callsbot.outcomes.path.
compute_outcome` reads.

The events on one token within one window share one *schedule*: its fetch ``k`` is due
``offset_k`` after the schedule's last event and reaches back ``limit_k`` candles before the
offset of its first event, so one request serves them all (``limit`` grows by the events'
spread). Candles persist, so a later fetch loses nothing: it only delays numbers.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Sequence

import attrs

from callsbot.outcomes.path import DEFAULT_RULES, OutcomeRules

MINUTE = 60
FIVE_MINUTES = 300
#: The API's ceiling on ``limit``.
MAX_LIMIT = 1000
#: The first fetch reaches this far before the event (limit 20 at t + 17 min).
LEAD_SECONDS = 3 * 60
#: The extra 5-minute fetch of a late entry reaches this far past its horizon.
HORIZON_MARGIN = 60


@attrs.frozen
class Stage:
    """One fetch of the section-2 schedule.

    Attributes:
        number: 1..4 (5 is the late-entry fetch, planned by :func:`late_entry_fetch`).
        step: candle length in seconds (60 or 300).
        offset: the fetch is due this long after the event.
        limit: candles asked for (for one event).
    """

    number: int
    step: int
    offset: int
    limit: int


STAGES: tuple[Stage, ...] = (
    Stage(1, MINUTE, 17 * 60, 20),
    Stage(2, MINUTE, 62 * 60, 50),
    Stage(3, MINUTE, 4 * 3600 + 2 * 60, 185),
    Stage(4, FIVE_MINUTES, 24 * 3600 + 2 * 60, 245),
)
#: The stage number of the one extra 5-minute fetch a late entry needs.
LATE_STAGE = 5


@attrs.frozen
class Window:
    """One fetch: the ``size`` candles of ``step`` seconds before ``before``, due at ``before``.

    It covers (at least) the candles starting in ``[start, before)``: with gaps the API's
    ``size`` newest rows reach further back, never less far.
    """

    stage: int
    step: int
    before: int
    size: int

    @property
    def start(self) -> int:
        """The earliest candle start the fetch is sure to cover."""
        return self.before - self.size * self.step

    @property
    def due(self) -> float:
        """When to fetch: once every candle it asks for is complete."""
        return float(self.before)


def _sized(stage: int, step: int, start: int, before: int) -> Window:
    return Window(stage, step, before, math.ceil((before - start) / step))


def plan(
    first_ts: int,
    last_ts: int,
    *,
    done: Collection[int] = (),
    lost: Sequence[Window] = (),
    now: float,
) -> list[Window]:
    """The fetches still to make for a schedule whose events span ``[first_ts, last_ts]``.

    Args:
        first_ts: the earliest event's time.
        last_ts: the latest event's time.
        done: stages already fetched (they are not planned again).
        lost: windows of stages given up on: the next fetch of the same candle length reaches
            back over them, so their candles are still had.
        now: fetches already due that a later due fetch of the same length can cover are merged
            into it (events registered late, as after a catch-up: fewer requests).

    Returns:
        The pending windows in stage order (a stage merged into a later one is absent).
    """
    windows = [
        _sized(
            s.number,
            s.step,
            first_ts + s.offset - s.limit * s.step,
            last_ts + s.offset,
        )
        for s in STAGES
        if s.number not in done
    ]
    for gone in lost:
        target = next((w for w in windows if w.step == gone.step and w.before >= gone.before), None)
        if target is not None and gone.start < target.start:
            windows[windows.index(target)] = _sized(
                target.stage, target.step, gone.start, target.before
            )
    merged: list[Window] = []
    for window in windows:
        prev = merged[-1] if merged else None
        if (
            prev is not None
            and prev.step == window.step
            and prev.before <= now
            and window.before <= now
        ):
            joined = _sized(window.stage, window.step, min(prev.start, window.start), window.before)
            if joined.size <= MAX_LIMIT:
                merged[-1] = joined
                continue
        merged.append(window)
    return merged


def absorbs(windows: Iterable[Window], gone: Window) -> bool:
    """Whether a pending window of ``gone``'s candle length ends at or after it (and can thus
    reach back over it)."""
    return any(w.step == gone.step and w.before >= gone.before for w in windows)


def late_entry_fetch(entry_ts: int, *, after: int, rules: OutcomeRules = DEFAULT_RULES) -> Window:
    """The extra 5-minute fetch that completes the horizon of an entry at ``entry_ts``.

    ``after`` is where the 5-minute candles already fetched end (the last fetch's ``before``).
    """
    before = entry_ts + rules.horizon_seconds + HORIZON_MARGIN
    step = rules.coarse_seconds
    start = min(after, before) - step  # one candle of overlap: no seam
    return _sized(LATE_STAGE, step, start, before)


def covered_until(start: float, spans: Iterable[tuple[float, float]]) -> float | None:
    """The end of the coverage that runs without a hole from ``start`` through ``spans``.

    ``spans`` are half-open ``[from, to)`` intervals in any order; ``None`` when ``start``
    itself is not covered.
    """
    reach = start
    covered = False
    for low, high in sorted(spans):
        if low > reach:
            break
        if high > reach:
            reach = high
            covered = True
    return reach if covered else None


def as_of(
    event_ts: int,
    minute_spans: Iterable[tuple[float, float]],
    five_minute_spans: Iterable[tuple[float, float]],
    *,
    rules: OutcomeRules = DEFAULT_RULES,
) -> float | None:
    """Up to when the event's price path is complete, for ``compute_outcome(as_of=…)``.

    The path is 1-minute candles from ``t − 3 min`` up to the resolution switch and 5-minute
    candles from there (:func:`~callsbot.outcomes.path.price_path`). Its completeness ends at
    the first hole in either part, so a failed fetch between two good ones never passes for
    "no trades". Spans hold candles starting strictly before their end, and ``compute_outcome``
    takes candles starting at or before ``as_of``: hence one second less. ``None`` while not
    even the start is fetched.
    """
    minute_end = covered_until(event_ts - LEAD_SECONDS, minute_spans)
    if minute_end is None:
        return None
    step = rules.coarse_seconds
    switch = (event_ts + rules.fine_seconds) // step * step
    if minute_end < switch:
        return minute_end - 1
    five_end = covered_until(switch, five_minute_spans)
    return (five_end if five_end is not None else switch) - 1
