"""The exit rule, candle by candle: take profit, stop, both in one candle, time, fees."""

from __future__ import annotations

import pytest

from callsbot.models import Candle
from callsbot.replay.exits import ExitRule, simulate_exit

T = 1_800_000_000  # the event
ENTRY_AT = T + 60  # the first candle a follower can buy: t + latency
NO_FEE = ExitRule(take_profit=2.0, stop=0.5, hours=24, fee=0.0)


def c(minute: int, o: float, h: float, low: float, close: float) -> Candle:
    return Candle(ENTRY_AT + 60 * minute, o, h, low, close, 1000.0)


def flat(minutes: range, price: float = 1.0) -> list[Candle]:
    return [c(m, price, price * 1.05, price * 0.95, price) for m in minutes]


def run(candles: list[Candle], rule: ExitRule = NO_FEE, as_of: float | None = None) -> object:
    return simulate_exit(
        T, candles, as_of=as_of if as_of is not None else T + 2 * 86400, latency=60, rule=rule
    )


def test_take_profit_fills_at_the_target_never_at_the_high() -> None:
    candles = [*flat(range(0, 10)), c(10, 1.0, 5.0, 0.9, 4.0), *flat(range(11, 20), 4.0)]
    result = run(candles)
    assert result.reason == "take_profit"
    assert result.entry == 1.0
    assert result.exit == 2.0  # the target, not the 5.0 high
    assert result.exit_ts == ENTRY_AT + 600
    assert result.gross == pytest.approx(1.0)
    assert result.net == pytest.approx(1.0)


def test_stop_fills_at_the_stop_or_worse_on_a_gap_down() -> None:
    touched = run([*flat(range(0, 5)), c(5, 1.0, 1.0, 0.4, 0.45)])
    assert touched.reason == "stop"
    assert touched.exit == 0.5
    assert touched.gross == pytest.approx(-0.5)
    gapped = run([*flat(range(0, 5)), c(5, 0.3, 0.35, 0.2, 0.25)])
    assert gapped.reason == "stop"
    assert gapped.exit == 0.3  # opened below the stop: filled at the open
    assert gapped.gross == pytest.approx(-0.7)


def test_a_candle_touching_both_counts_the_stop() -> None:
    result = run([*flat(range(0, 3)), c(3, 1.0, 3.0, 0.4, 2.5), *flat(range(4, 10), 2.5)])
    assert result.reason == "stop"
    assert result.exit == 0.5


def test_the_entry_candle_itself_can_stop_or_take_profit() -> None:
    assert run([c(0, 1.0, 1.1, 0.5, 0.6)]).reason == "stop"
    assert run([c(0, 1.0, 2.0, 0.9, 1.9)]).reason == "take_profit"


def test_time_exit_sells_at_the_close_of_the_last_candle_inside_the_window() -> None:
    rule = ExitRule(take_profit=3.0, stop=0.5, hours=1, fee=0.0)
    candles = [c(m, 1.0 + m / 100, 1.0 + m / 100, 0.99, 1.0 + m / 100) for m in range(0, 90)]
    result = run(candles, rule)
    assert result.reason == "time"
    assert result.exit_ts == ENTRY_AT + 59 * 60  # the candle at +60 min is outside
    assert result.exit == pytest.approx(1.59)


def test_fees_are_paid_on_both_sides() -> None:
    rule = ExitRule(take_profit=2.0, stop=0.5, hours=24, fee=0.01)
    result = run([*flat(range(0, 3)), c(3, 1.0, 2.2, 0.9, 2.1)], rule)
    assert result.gross == pytest.approx(1.0)
    assert result.net == pytest.approx(2.0 * 0.99 * 0.99 - 1.0)
    stopped = run([c(0, 1.0, 1.0, 0.5, 0.5)], rule)
    assert stopped.net == pytest.approx(0.5 * 0.99 * 0.99 - 1.0)


def test_a_trade_is_open_until_the_candles_reach_its_exit() -> None:
    candles = flat(range(0, 30))
    assert run(candles, as_of=ENTRY_AT + 30 * 60).reason == "open"
    assert not run(candles, as_of=ENTRY_AT + 30 * 60).decided
    assert run(candles).reason == "time"


def test_a_dead_pool_is_sold_where_it_stands() -> None:
    before = [Candle(T - 120, 1.0, 1.0, 1.0, 0.8, 10.0)]
    result = run(before, ExitRule(fee=0.01))
    assert result.reason == "dead"
    assert result.gross == 0.0
    assert result.net == pytest.approx(0.99 * 0.99 - 1.0)
    assert run(before, as_of=T + 3600).reason == "open"


def test_the_entry_waits_for_the_latency() -> None:
    early = Candle(T, 10.0, 100.0, 0.01, 10.0, 1.0)  # before t + latency: not tradeable
    result = run([early, *flat(range(0, 5))])
    assert result.entry == 1.0
    assert result.reason == "time"


def test_five_minute_candles_carry_the_path_after_four_hours() -> None:
    minute = flat(range(0, 240))
    five = [Candle(ENTRY_AT + 240 * 60 + 300 * k, 1.0, 1.0, 1.0, 1.0, 1.0) for k in range(10)]
    five.append(Candle(ENTRY_AT + 240 * 60 + 3000, 1.0, 2.5, 1.0, 2.4, 1.0))
    result = simulate_exit(T, minute, five, as_of=T + 2 * 86400, rule=NO_FEE)
    assert result.reason == "take_profit"
    assert result.exit_ts == ENTRY_AT + 240 * 60 + 3000


@pytest.mark.parametrize(
    ("text", "problem"),
    [("tp=1", "tp"), ("sl=1.5", "sl"), ("hours=0", "hours"), ("fee=1", "fee"), ("x=1", "x=1")],
)
def test_bad_rules_are_refused(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        ExitRule.parse(text)


def test_rule_parsing_keeps_defaults_for_what_is_not_given() -> None:
    rule = ExitRule.parse("tp=3, fee=0.005")
    assert rule == ExitRule(take_profit=3.0, stop=0.5, hours=24.0, fee=0.005)
    assert ExitRule.parse(rule.describe()) == rule
