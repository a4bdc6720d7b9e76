"""Path maths on hand-made candle series: every section-3 field, status and resolution rule."""

from __future__ import annotations

import random

import attrs
import pytest

from callsbot.models import Candle, candle_series
from callsbot.outcomes.path import (
    CHECKPOINTS,
    Outcome,
    OutcomeRules,
    OutcomeStatus,
    compute_outcome,
    price_path,
    unresolved_outcome,
)

#: The event: on a 5-minute boundary, so minute ``m`` starts at ``T + 60 m``.
T = 1_700_000_100
DAY = 86_400
AFTER = T + 2 * DAY  # an ``as_of`` past every horizon


def c(minute: float, o: float, h: float, low: float, cl: float, v: float = 100.0) -> Candle:
    """A candle starting ``minute`` minutes after the event."""
    return Candle(int(T + minute * 60), o, h, low, cl, v)


def flat(minute: float, price: float) -> Candle:
    return c(minute, price, price, price, price)


def test_candle_series_sorts_dedupes_keeping_the_last_and_keeps_gaps() -> None:
    a, b, b2, d = flat(0, 1.0), flat(1, 2.0), flat(1, 2.5), flat(5, 3.0)
    assert candle_series([d, b, a, b2]) == (a, b2, d)
    assert candle_series([d, b2, a, b]) == (a, b, d)


# -- entry ------------------------------------------------------------------------------------


def test_entry_is_the_open_of_the_first_minute_candle_at_or_after_t_plus_latency() -> None:
    event = T + 25  # mid-minute: t + 60 s = T + 85, so the minute starting at T + 60 is too early
    candles = [c(0, 1.0, 1.0, 1.0, 1.0), c(1, 1.1, 1.2, 1.0, 1.1), c(2, 1.3, 1.4, 1.2, 1.3)]
    out = compute_outcome(event, candles, as_of=AFTER)
    assert (out.entry, out.entry_ts) == (1.3, T + 120)
    assert compute_outcome(event, candles, as_of=AFTER, latency=0).entry == 1.1
    assert compute_outcome(event, candles, as_of=AFTER, latency=35).entry == 1.1  # exactly at


def test_entry_skips_gaps_and_never_uses_a_candle_before_the_latency() -> None:
    candles = [c(0, 5.0, 9.0, 5.0, 9.0), c(7, 2.0, 2.0, 2.0, 2.0)]
    out = compute_outcome(T, candles, as_of=AFTER)
    assert (out.entry, out.entry_ts) == (2.0, T + 7 * 60)
    assert out.peak == 1.0  # the 9.0 before the entry is not a peak anyone could sell at


# -- checkpoints ------------------------------------------------------------------------------


def test_checkpoints_take_the_last_close_at_or_before_and_mark_stale_past_30_minutes() -> None:
    candles = [
        c(1, 1.0, 1.0, 1.0, 1.0),
        c(5, 1.0, 1.5, 1.0, 1.5),  # starts exactly at t + 5 min: p_5m
        c(14, 1.5, 1.6, 1.4, 1.6),  # p_15m, one minute older
        c(30, 1.6, 1.6, 1.6, 1.7),  # p_1h carried forward exactly 30 min: not stale
        c(61, 2.0, 2.0, 2.0, 2.0),  # one minute too late for p_1h
        c(80, 2.0, 2.0, 2.0, 2.2),  # p_4h carried forward 160 min: stale
    ]
    five = [Candle(T + 24 * 3600 - 2 * 3600, 2.2, 2.2, 2.2, 2.4, 1.0)]  # p_24h: 2 h old
    out = compute_outcome(T, candles, five, as_of=AFTER)
    assert (out.p_5m, out.p_15m, out.p_1h, out.p_4h, out.p_24h) == (1.5, 1.6, 1.7, 2.2, 2.4)
    assert out.stale == ("p_4h", "p_24h")
    assert out.close_return("p_1h") == pytest.approx(0.7)


def test_checkpoint_before_any_candle_is_none_and_one_not_reached_yet_is_none() -> None:
    candles = [c(10, 1.0, 1.0, 1.0, 1.0), c(20, 1.0, 1.0, 1.0, 3.0)]
    out = compute_outcome(T, candles, as_of=T + 30 * 60)
    assert out.p_5m is None
    assert out.p_15m == 1.0
    assert out.p_1h is None  # t + 1 h is after as_of: not known yet, even though a close exists
    assert out.status is OutcomeStatus.TRACKING


def test_checkpoints_carry_forward_from_before_the_event() -> None:
    out = compute_outcome(T, [c(-50, 1.0, 1.0, 1.0, 0.8)], as_of=AFTER)
    assert out.p_5m == 0.8
    assert out.stale == tuple(name for name, _ in CHECKPOINTS)


# -- peak, multiples, drawdowns ---------------------------------------------------------------


def path_with_a_pump() -> list[Candle]:
    return [
        c(1, 1.0, 1.1, 0.9, 1.0),  # entry 1.0
        c(2, 1.0, 1.0, 0.7, 0.8),  # dip: drawdown before the peak −30 %
        c(3, 0.8, 2.0, 0.8, 1.9),  # 2× exactly at the high
        c(9, 1.9, 5.5, 1.9, 4.0),  # 5×
        c(12, 4.0, 12.0, 3.0, 6.0),  # 10×, the peak (wick), close 6.0
        c(13, 6.0, 6.5, 6.0, 6.5),  # best close
        c(40, 6.5, 6.5, 0.4, 0.5),  # rug after the peak: −60 %
    ]


def test_peak_peak_close_multiples_and_drawdowns() -> None:
    out = compute_outcome(T, path_with_a_pump(), as_of=AFTER)
    assert out.status is OutcomeStatus.RESOLVED
    assert out.entry == 1.0
    assert out.peak == 12.0
    assert out.peak_close == 6.5
    assert out.t_peak == T + 12 * 60
    assert (out.t_2x, out.t_5x, out.t_10x) == (T + 180, T + 540, T + 720)
    assert out.max_drawdown == pytest.approx(-0.6)
    assert out.drawdown_before_peak == pytest.approx(-0.3)
    assert out.win is True
    assert out.win_before_stop is True


def test_drawdown_before_peak_includes_the_peak_candle_itself() -> None:
    candles = [c(1, 1.0, 1.0, 0.95, 1.0), c(2, 1.0, 1.8, 0.6, 1.7), c(3, 1.7, 1.7, 0.5, 0.5)]
    out = compute_outcome(T, candles, as_of=AFTER)
    assert out.t_peak == T + 120
    assert out.drawdown_before_peak == pytest.approx(-0.4)
    assert out.max_drawdown == pytest.approx(-0.5)


def test_the_first_of_equal_highs_is_the_peak_candle() -> None:
    candles = [c(1, 1.0, 3.0, 1.0, 1.0), c(2, 1.0, 1.0, 0.2, 1.0), c(3, 1.0, 3.0, 1.0, 1.0)]
    out = compute_outcome(T, candles, as_of=AFTER)
    assert out.t_peak == T + 60
    assert out.drawdown_before_peak == 0.0
    assert out.max_drawdown == pytest.approx(-0.8)


# -- win and win_before_stop ------------------------------------------------------------------


def test_a_candle_touching_both_the_stop_and_2x_counts_the_stop_first() -> None:
    candles = [c(1, 1.0, 1.0, 1.0, 1.0), c(2, 1.0, 2.5, 0.5, 1.2)]
    out = compute_outcome(T, candles, as_of=AFTER)
    assert out.win is True
    assert out.win_before_stop is False


def test_stop_before_2x_in_different_candles() -> None:
    candles = [c(1, 1.0, 1.0, 1.0, 1.0), c(2, 1.0, 1.0, 0.45, 0.5), c(3, 0.5, 3.0, 0.5, 3.0)]
    out = compute_outcome(T, candles, as_of=AFTER)
    assert (out.win, out.win_before_stop) == (True, False)


def test_2x_before_the_stop_wins_before_stop_even_if_it_rugs_later() -> None:
    candles = [c(1, 1.0, 1.0, 1.0, 1.0), c(2, 1.0, 2.0, 0.9, 1.5), c(3, 1.5, 1.5, 0.1, 0.1)]
    out = compute_outcome(T, candles, as_of=AFTER)
    assert (out.win, out.win_before_stop) == (True, True)


def test_a_loss_is_final_only_when_the_horizon_is_over() -> None:
    candles = [c(1, 1.0, 1.5, 0.9, 1.2), c(30, 1.2, 1.9, 1.1, 1.1)]
    tracking = compute_outcome(T, candles, as_of=T + 3600)
    assert tracking.status is OutcomeStatus.TRACKING
    assert (tracking.win, tracking.win_before_stop) == (None, None)
    assert tracking.peak == 1.9
    done = compute_outcome(T, candles, as_of=T + 60 + DAY)
    assert done.status is OutcomeStatus.RESOLVED
    assert (done.win, done.win_before_stop) == (False, False)
    assert compute_outcome(T, candles, as_of=T + 59 + DAY).status is OutcomeStatus.TRACKING


def test_a_win_is_known_while_still_tracking() -> None:
    out = compute_outcome(T, [c(1, 1.0, 2.2, 1.0, 2.0)], as_of=T + 17 * 60)
    assert out.status is OutcomeStatus.TRACKING
    assert (out.win, out.win_before_stop) == (True, True)
    assert out.p_24h is None


def test_win_multiple_and_horizon_are_parameters() -> None:
    candles = [c(1, 1.0, 1.0, 1.0, 1.0), c(90, 1.0, 2.5, 1.0, 2.5)]
    assert compute_outcome(T, candles, as_of=AFTER).win is True
    rules = OutcomeRules(win_multiple=3.0)
    assert compute_outcome(T, candles, as_of=AFTER, rules=rules).win is False
    short = OutcomeRules(horizon_seconds=3600)
    out = compute_outcome(T, candles, as_of=AFTER, rules=short)
    assert (out.win, out.peak, out.t_2x) == (False, 1.0, None)


def test_the_horizon_ends_before_entry_plus_24h() -> None:
    candles = [c(1, 1.0, 1.0, 1.0, 1.0)]
    # The entry candle starts at t + 60 s: the window is [t + 60 s, t + 60 s + 24 h).
    five = [Candle(T + DAY, 1, 1.5, 1, 1, 1), Candle(T + DAY + 300, 1, 20, 1, 1, 1)]
    out = compute_outcome(T, candles, five, as_of=AFTER)
    assert out.peak == 1.5
    assert out.t_10x is None


# -- resolution: 1-minute to 4 h, 5-minute after ----------------------------------------------


def test_one_minute_candles_to_4h_and_five_minute_candles_after() -> None:
    minute = [c(1, 1.0, 1.0, 1.0, 1.0), c(239, 1.0, 1.2, 1.0, 1.0), c(241, 1.0, 9.0, 1.0, 1.0)]
    five = [Candle(T + 235 * 60, 1.0, 7.0, 0.1, 1.0, 1.0), Candle(T + 245 * 60, 1, 2.5, 1, 1, 1)]
    path = price_path(T, minute, five)
    assert [p.ts for p in path] == [T + 60, T + 239 * 60, T + 245 * 60]
    out = compute_outcome(T, minute, five, as_of=AFTER)
    assert out.peak == 2.5
    assert out.t_2x == T + 245 * 60
    assert out.max_drawdown == 0.0


def test_the_switch_is_rounded_down_to_a_five_minute_boundary() -> None:
    event = T + 130  # t + 4 h = T + 14 530 → switch at T + 14 400
    minute = [Candle(T + 14_400 - 60, 1, 1, 1, 1, 1), Candle(T + 14_400, 1, 5, 1, 1, 1)]
    five = [Candle(T + 14_400 - 300, 1, 6, 1, 1, 1), Candle(T + 14_400, 1, 3, 1, 1, 1)]
    assert [(p.ts, p.high) for p in price_path(event, minute, five)] == [
        (T + 14_340, 1),
        (T + 14_400, 3),
    ]


# -- order, gaps, duplicates ------------------------------------------------------------------


def test_newest_first_rows_with_gaps_and_a_duplicate_give_the_same_outcome() -> None:
    clean = path_with_a_pump()
    stale_copy = attrs.evolve(clean[-1], high=99.0, close=99.0)
    messy = [stale_copy, *reversed(clean)]  # newest first, the in-progress candle twice
    assert compute_outcome(T, messy, as_of=AFTER) == compute_outcome(T, clean, as_of=AFTER)
    shuffled = list(clean)
    random.Random(7).shuffle(shuffled)
    assert compute_outcome(T, shuffled, as_of=AFTER) == compute_outcome(T, clean, as_of=AFTER)


def test_of_duplicated_candles_the_last_given_wins() -> None:
    first, last = c(1, 1.0, 1.0, 1.0, 1.0), c(1, 1.0, 4.0, 1.0, 3.0)
    assert compute_outcome(T, [first, last], as_of=AFTER).peak == 4.0
    assert compute_outcome(T, [last, first], as_of=AFTER).peak == 1.0


# -- status -----------------------------------------------------------------------------------


def test_dead_pool_no_trade_after_entry_is_a_loss_at_peak_one() -> None:
    candles = [c(-3, 1.0, 1.0, 1.0, 0.9), c(0.5, 0.9, 0.9, 0.8, 0.8)]  # last trade 30 s after t
    out = compute_outcome(T, candles, as_of=T + 60 + DAY)
    assert out.status is OutcomeStatus.DEAD
    assert out.entry == 0.8
    assert out.entry_ts is None
    assert (out.peak, out.peak_close, out.max_drawdown, out.drawdown_before_peak) == (1, 1, 0, 0)
    assert (out.win, out.win_before_stop) == (False, False)
    assert (out.t_2x, out.t_5x, out.t_10x) == (None, None, None)
    assert out.decided


def test_no_trade_yet_is_tracking_until_the_horizon_is_over() -> None:
    out = compute_outcome(T, [], as_of=T + 17 * 60)
    assert out.status is OutcomeStatus.TRACKING
    assert (out.entry, out.peak, out.win) == (None, None, None)
    assert not out.decided
    assert compute_outcome(T, [], as_of=AFTER).status is OutcomeStatus.DEAD
    assert compute_outcome(T, [], as_of=AFTER).entry is None


def test_unresolved_has_no_numbers_and_keeps_its_error_count() -> None:
    out = unresolved_outcome(T, errors=4, detail="no pool")
    assert out.status is OutcomeStatus.UNRESOLVED
    assert (out.errors, out.detail) == (4, "no pool")
    assert (out.entry, out.peak, out.win) == (None, None, None)
    assert not out.decided


# -- no look-ahead ----------------------------------------------------------------------------


def test_candles_after_as_of_are_ignored() -> None:
    early = [c(1, 1.0, 1.2, 1.0, 1.1)]
    late = [*early, c(30, 1.1, 5.0, 1.1, 5.0)]
    assert compute_outcome(T, late, as_of=T + 20 * 60) == compute_outcome(
        T, early, as_of=T + 20 * 60
    )


def test_later_candles_never_change_an_earlier_checkpoint() -> None:
    base = [c(1, 1.0, 1.0, 1.0, 1.0), c(4, 1.0, 1.0, 1.0, 1.3)]
    more = [*base, c(6, 1.3, 3.0, 1.3, 3.0), c(59, 3.0, 3.0, 3.0, 3.0)]
    assert compute_outcome(T, more, as_of=AFTER).p_5m == 1.3


# -- serialisation ----------------------------------------------------------------------------


def test_as_dict_carries_every_section_3_field_and_round_trips() -> None:
    out = compute_outcome(T, path_with_a_pump(), as_of=AFTER)
    data = out.as_dict()
    section_3 = [
        "entry", "p_5m", "p_15m", "p_1h", "p_4h", "p_24h", "peak", "peak_close", "t_2x",
        "t_5x", "t_10x", "max_drawdown", "drawdown_before_peak", "win", "win_before_stop",
        "status",
    ]  # fmt: skip
    assert set(section_3) <= set(data)
    assert data["status"] == "resolved"
    assert Outcome.from_dict(data) == out


def test_rules_reject_nonsense() -> None:
    with pytest.raises(ValueError, match="stop"):
        OutcomeRules(stop=0.5)
    with pytest.raises(ValueError, match="win_multiple"):
        OutcomeRules(win_multiple=0)
    with pytest.raises(ValueError, match="latency"):
        compute_outcome(T, [], as_of=AFTER, latency=-1)
