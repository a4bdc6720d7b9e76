"""What happened to the price after one event: every field of outcomes.md section 3.

Pure: candles in, an :class:`Outcome` out. It never fetches and never reads a clock; the
caller says up to when its candles are complete (``as_of``), so the same inputs always give the
same outcome, and candles dated after a field's moment never change that field.

The price path of an event at ``t`` is its 1-minute candles up to ``t + 4 h`` (rounded down to
a 5-minute boundary) followed by its 5-minute candles from there: that is the resolution the
fetch schedule of section 2 provides (1-min up to ``t + 4 h 02``, 5-min after).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any

import attrs

from callsbot.models import Candle, candle_series

#: Checkpoint field names and their offsets from the event, seconds.
CHECKPOINTS: tuple[tuple[str, int], ...] = (
    ("p_5m", 5 * 60),
    ("p_15m", 15 * 60),
    ("p_1h", 3600),
    ("p_4h", 4 * 3600),
    ("p_24h", 24 * 3600),
)
#: The multiples whose first-reach times are reported (``t_2x``, ``t_5x``, ``t_10x``).
MULTIPLES: tuple[int, ...] = (2, 5, 10)
#: Default time a follower needs to act on an event, seconds.
DEFAULT_LATENCY = 60


class OutcomeStatus(enum.Enum):
    """Where an event's outcome stands."""

    #: The horizon is not over yet (or its candles are not fetched yet): numbers may still move.
    TRACKING = "tracking"
    #: The horizon is over and every field is final.
    RESOLVED = "resolved"
    #: The pool is known but nobody traded after the entry time: a loss, peak 1.0.
    DEAD = "dead"
    #: No pool or repeated errors: no numbers, reported with its count, never dropped.
    UNRESOLVED = "unresolved"


def _positive(_inst: Any, attr: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attr.name} must be > 0, got {value!r}")


def _stop_level(_inst: Any, _attr: attrs.Attribute[Any], value: float) -> None:
    if not -1.0 < value < 0.0:
        raise ValueError(f"stop must be between -1 and 0 (a fall), got {value!r}")


@attrs.frozen
class OutcomeRules:
    """The parameters of section 3 (defaults are the method's).

    Attributes:
        win_multiple: ``win`` is a peak of at least this multiple of the entry.
        horizon_seconds: how long after the entry the path is followed.
        stop: the fall from the entry that stops ``win_before_stop`` (−0.5 = −50 %).
        stale_seconds: a checkpoint whose candle started more than this earlier is ``stale``.
        fine_seconds: 1-minute candles are used up to this long after the event, 5-minute
            candles after it.
        coarse_seconds: the length of the coarse candles (5 minutes).
    """

    win_multiple: float = attrs.field(default=2.0, validator=_positive)
    horizon_seconds: int = attrs.field(default=24 * 3600, validator=_positive)
    stop: float = attrs.field(default=-0.5, validator=_stop_level)
    stale_seconds: int = attrs.field(default=30 * 60, validator=_positive)
    fine_seconds: int = attrs.field(default=4 * 3600, validator=_positive)
    coarse_seconds: int = attrs.field(default=5 * 60, validator=_positive)


#: The method's rules.
DEFAULT_RULES = OutcomeRules()


@attrs.frozen(kw_only=True)
class Outcome:
    """Every section-3 field of one event, plus what they were computed from.

    Prices are USD per token; ratios are multiples of the entry (``peak`` 2.31 = 2.31×);
    drawdowns are fractions (−0.18 = −18 %); times are unix seconds (candle starts). A field that
    is not known yet (tracking) or cannot exist (unresolved) is ``None``.

    Attributes:
        event_ts: the event's time ``t``.
        latency: seconds between the event and the earliest entry.
        status: see :class:`OutcomeStatus`.
        entry: open of the first 1-minute candle starting at or after ``t + latency``; for a
            dead pool, the last close before that moment (``None`` when it never traded).
        entry_ts: start of the entry candle (``None`` when dead).
        p_5m: close of the last candle starting at or before ``t + 5 min``; likewise the others.
        stale: names of the checkpoints whose candle started over ``stale_seconds`` earlier.
        peak: max high over the horizon ÷ entry.
        peak_close: max close over the horizon ÷ entry (robust to single-trade wicks).
        t_peak: start of the first candle with the max high.
        t_2x: start of the first candle whose high ≥ 2 × entry; likewise ``t_5x``, ``t_10x``.
        max_drawdown: min low over the horizon ÷ entry − 1.
        drawdown_before_peak: the same up to and including the peak candle.
        win: peak ≥ ``win_multiple`` within the horizon (``None`` while it may still happen).
        win_before_stop: the multiple reached before the stop; a candle touching both counts
            the stop first (``None`` while neither has happened and the horizon runs).
        as_of: the time up to which the candles used were complete.
        errors: failed fetches behind an unresolved outcome.
        detail: why it is unresolved, else empty.
    """

    event_ts: int
    latency: int
    status: OutcomeStatus
    entry: float | None = None
    entry_ts: int | None = None
    p_5m: float | None = None
    p_15m: float | None = None
    p_1h: float | None = None
    p_4h: float | None = None
    p_24h: float | None = None
    stale: tuple[str, ...] = ()
    peak: float | None = None
    peak_close: float | None = None
    t_peak: int | None = None
    t_2x: int | None = None
    t_5x: int | None = None
    t_10x: int | None = None
    max_drawdown: float | None = None
    drawdown_before_peak: float | None = None
    win: bool | None = None
    win_before_stop: bool | None = None
    as_of: float | None = None
    errors: int = 0
    detail: str = ""

    def checkpoint(self, name: str) -> float | None:
        """The price at checkpoint ``name`` (``"p_1h"``...)."""
        if name not in _CHECKPOINT_NAMES:
            raise KeyError(name)
        value: float | None = getattr(self, name)
        return value

    def close_return(self, name: str) -> float | None:
        """Checkpoint ``name``'s price ÷ entry − 1, ``None`` when either is unknown."""
        price = self.checkpoint(name)
        if price is None or self.entry is None:
            return None
        return price / self.entry - 1.0

    def reached(self, multiple: int) -> bool:
        """Whether the high reached ``multiple`` × entry (one of :data:`MULTIPLES`)."""
        if multiple not in MULTIPLES:
            raise KeyError(multiple)
        return getattr(self, f"t_{multiple}x") is not None

    @property
    def decided(self) -> bool:
        """Resolved or dead: the event counts in rates."""
        return self.status in (OutcomeStatus.RESOLVED, OutcomeStatus.DEAD)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: every field, in the order of section 3, status as its string."""
        out: dict[str, Any] = {
            "event_ts": self.event_ts,
            "latency": self.latency,
            "entry_ts": self.entry_ts,
            "entry": self.entry,
        }
        for name, _offset in CHECKPOINTS:
            out[name] = getattr(self, name)
        out["stale"] = list(self.stale)
        out |= {
            "peak": self.peak,
            "peak_close": self.peak_close,
            "t_peak": self.t_peak,
            "t_2x": self.t_2x,
            "t_5x": self.t_5x,
            "t_10x": self.t_10x,
            "max_drawdown": self.max_drawdown,
            "drawdown_before_peak": self.drawdown_before_peak,
            "win": self.win,
            "win_before_stop": self.win_before_stop,
            "status": self.status.value,
            "as_of": self.as_of,
            "errors": self.errors,
            "detail": self.detail,
        }
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Outcome:
        """The inverse of :meth:`as_dict` (for stores that keep outcomes as JSON)."""
        fields = {f.name for f in attrs.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in fields}
        kwargs["status"] = OutcomeStatus(data["status"])
        kwargs["stale"] = tuple(data.get("stale", ()))
        return cls(**kwargs)


_CHECKPOINT_NAMES = frozenset(name for name, _ in CHECKPOINTS)


def price_path(
    event_ts: int,
    minute: Sequence[Candle],
    five_minute: Sequence[Candle] = (),
    *,
    rules: OutcomeRules = DEFAULT_RULES,
) -> tuple[Candle, ...]:
    """The event's path: 1-minute candles before the switch, 5-minute candles from it.

    The switch is ``event_ts + fine_seconds`` rounded down to a coarse boundary, so no 5-minute
    candle overlaps a 1-minute one. Each input is sorted and de-duplicated first (the last of
    duplicates wins); gaps stay gaps.
    """
    switch = (event_ts + rules.fine_seconds) // rules.coarse_seconds * rules.coarse_seconds
    fine = [c for c in candle_series(minute) if c.ts < switch]
    coarse = [c for c in candle_series(five_minute) if c.ts >= switch]
    return (*fine, *coarse)


def compute_outcome(
    event_ts: int,
    minute: Sequence[Candle],
    five_minute: Sequence[Candle] = (),
    *,
    as_of: float,
    latency: int = DEFAULT_LATENCY,
    rules: OutcomeRules = DEFAULT_RULES,
) -> Outcome:
    """Every section-3 field of the event at ``event_ts``, from the pool's candles.

    Args:
        event_ts: the event's time ``t`` (unix seconds).
        minute: the pool's 1-minute candles for the token (any order, duplicates allowed).
        five_minute: its 5-minute candles (needed after ``t + 4 h``).
        as_of: the candles are complete up to this time (the latest fetch); candles starting
            after it are ignored, and the outcome is ``resolved`` (or ``dead``) only once it
            covers the whole horizon.
        latency: seconds a follower needs to act (the entry is at or after ``t + latency``).
        rules: win multiple, horizon, stop, staleness and resolution.

    Returns:
        A ``tracking``, ``resolved`` or ``dead`` outcome (``unresolved`` ones come from
        :func:`unresolved_outcome`: this function is only called with a known pool's answer).
    """
    if latency < 0:
        raise ValueError(f"latency must be >= 0, got {latency!r}")
    path = [c for c in price_path(event_ts, minute, five_minute, rules=rules) if c.ts <= as_of]
    base = _with_checkpoints(event_ts, latency, path, as_of, rules)
    entry_after = event_ts + latency
    entry_index = next((i for i, c in enumerate(path) if c.ts >= entry_after), None)

    if entry_index is None:
        if as_of < entry_after + rules.horizon_seconds:
            return base
        before = [c for c in path if c.ts < entry_after]
        return attrs.evolve(
            base,
            status=OutcomeStatus.DEAD,
            entry=before[-1].close if before else None,
            peak=1.0,
            peak_close=1.0,
            max_drawdown=0.0,
            drawdown_before_peak=0.0,
            win=False,
            win_before_stop=False,
        )

    entry_candle = path[entry_index]
    entry = entry_candle.open
    window_end = entry_candle.ts + rules.horizon_seconds
    window = [c for c in path[entry_index:] if c.ts < window_end]
    complete = as_of >= window_end

    peak_index = max(range(len(window)), key=lambda i: (window[i].high, -i))
    peak_candle = window[peak_index]
    firsts = {k: next((c.ts for c in window if c.high >= k * entry), None) for k in MULTIPLES}
    peak = peak_candle.high / entry
    won: bool | None = True if peak >= rules.win_multiple else (False if complete else None)
    return attrs.evolve(
        base,
        status=OutcomeStatus.RESOLVED if complete else OutcomeStatus.TRACKING,
        entry=entry,
        entry_ts=entry_candle.ts,
        peak=peak,
        peak_close=max(c.close for c in window) / entry,
        t_peak=peak_candle.ts,
        t_2x=firsts[2],
        t_5x=firsts[5],
        t_10x=firsts[10],
        max_drawdown=min(c.low for c in window) / entry - 1.0,
        drawdown_before_peak=min(c.low for c in window[: peak_index + 1]) / entry - 1.0,
        win=won,
        win_before_stop=_win_before_stop(window, entry, complete, rules),
    )


def unresolved_outcome(
    event_ts: int, *, latency: int = DEFAULT_LATENCY, errors: int, detail: str
) -> Outcome:
    """The outcome of an event whose path could not be had (no pool, repeated errors)."""
    return Outcome(
        event_ts=event_ts,
        latency=latency,
        status=OutcomeStatus.UNRESOLVED,
        errors=errors,
        detail=detail,
    )


def _with_checkpoints(
    event_ts: int, latency: int, path: Sequence[Candle], as_of: float, rules: OutcomeRules
) -> Outcome:
    """A tracking outcome holding only the checkpoint prices (known once their moment passed)."""
    values: list[float | None] = []
    stale: list[str] = []
    for name, offset in CHECKPOINTS:
        at = event_ts + offset
        last = None
        if at <= as_of:
            last = next((c for c in reversed(path) if c.ts <= at), None)
        values.append(last.close if last is not None else None)
        if last is not None and at - last.ts > rules.stale_seconds:
            stale.append(name)
    p_5m, p_15m, p_1h, p_4h, p_24h = values
    return Outcome(
        event_ts=event_ts,
        latency=latency,
        status=OutcomeStatus.TRACKING,
        p_5m=p_5m,
        p_15m=p_15m,
        p_1h=p_1h,
        p_4h=p_4h,
        p_24h=p_24h,
        stale=tuple(stale),
        as_of=as_of,
    )


def _win_before_stop(
    window: Sequence[Candle], entry: float, complete: bool, rules: OutcomeRules
) -> bool | None:
    target = rules.win_multiple * entry
    stop = (1.0 + rules.stop) * entry
    for candle in window:
        # Within one candle the order of its low and high is unknown: the stop counts first.
        if candle.low <= stop:
            return False
        if candle.high >= target:
            return True
    return False if complete else None
