"""What a follower would have made: an exit rule simulated candle by candle (pure).

The follower buys at the outcome method's entry (the open of the first 1-minute candle at or
after ``t + latency``) and sells at the first of:

- **stop**: a candle's low reaches ``stop × entry``; filled at that price, or at the candle's
  open when it opened below it (a gap down fills worse, never better);
- **take profit**: a candle's high reaches ``take_profit × entry``; filled at that price (a
  resting limit order; a gap up is not credited);
- **time**: the close of the last candle that starts before ``entry + hours``.

A candle that touches both counts the stop: within a candle the order of its low and high is
unknown, and the conservative reading is the honest one. Nothing is ever sold at the peak. A
pool that never traded after the entry time (``dead``) is sold where it stands: 0 before fees.
Fees are paid on both sides: net = (exit ÷ entry) · (1 − fee)² − 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import attrs

from callsbot.models import Candle
from callsbot.outcomes.path import DEFAULT_RULES, OutcomeRules, price_path


def _check(rule: ExitRule) -> None:
    if not (rule.take_profit > 1.0 and math.isfinite(rule.take_profit)):
        raise ValueError(f"tp must be a multiple above 1, got {rule.take_profit!r}")
    if not 0.0 < rule.stop < 1.0:
        raise ValueError(f"sl must be a multiple between 0 and 1 (0.5 = -50 %), got {rule.stop!r}")
    if not (rule.hours > 0 and math.isfinite(rule.hours)):
        raise ValueError(f"hours must be > 0, got {rule.hours!r}")
    if not 0.0 <= rule.fee < 1.0:
        raise ValueError(f"fee must be in [0, 1), got {rule.fee!r}")


@attrs.frozen
class ExitRule:
    """Take profit and stop as multiples of the entry, a time limit, a fee per side.

    Attributes:
        take_profit: sell when the price reaches this multiple (2.0 = +100 %).
        stop: sell when it falls to this multiple (0.5 = −50 %).
        hours: sell at the close after this long.
        fee: the cost of one side as a fraction (0.01 = 1 %: swap fee, slippage, priority fee).
    """

    take_profit: float = 2.0
    stop: float = 0.5
    hours: float = 24.0
    fee: float = 0.01

    def __attrs_post_init__(self) -> None:
        _check(self)

    @classmethod
    def parse(cls, text: str) -> ExitRule:
        """``tp=2,sl=0.5,hours=24,fee=0.01`` (any subset; the rest keep their defaults).

        Raises:
            ValueError: an unknown key or a value out of range.
        """
        names = {"tp": "take_profit", "sl": "stop", "hours": "hours", "fee": "fee"}
        values: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, sep, value = part.partition("=")
            if not sep or key.strip() not in names:
                raise ValueError(f"{part!r}: expected one of {', '.join(names)} as key=value")
            try:
                values[names[key.strip()]] = float(value)
            except ValueError:
                raise ValueError(f"{part!r}: not a number") from None
        return cls(**values)

    def describe(self) -> str:
        """``tp=2,sl=0.5,hours=24,fee=0.01``."""
        return f"tp={self.take_profit:g},sl={self.stop:g},hours={self.hours:g},fee={self.fee:g}"


@attrs.frozen
class ExitResult:
    """One simulated trade.

    Attributes:
        reason: ``take_profit``, ``stop``, ``time``, ``dead`` or ``open`` (the candles do not
            reach the exit yet: not counted).
        entry: the entry price (``None`` when dead and never traded, or open).
        entry_ts: the entry candle's start.
        exit: the exit price.
        exit_ts: the start of the candle it happened in.
        gross: exit ÷ entry − 1.
        net: after fees on both sides.
    """

    reason: str
    entry: float | None = None
    entry_ts: int | None = None
    exit: float | None = None
    exit_ts: int | None = None
    gross: float | None = None
    net: float | None = None

    @property
    def decided(self) -> bool:
        """Whether the trade is over (every reason but ``open``)."""
        return self.reason != "open"


def _net(gross: float, fee: float) -> float:
    return (1.0 + gross) * (1.0 - fee) ** 2 - 1.0


def simulate_exit(
    event_ts: int,
    minute: Sequence[Candle],
    five_minute: Sequence[Candle] = (),
    *,
    as_of: float,
    latency: int = 60,
    rule: ExitRule | None = None,
    rules: OutcomeRules = DEFAULT_RULES,
) -> ExitResult:
    """Follow the event at ``event_ts`` on its candles with ``rule`` (see the module).

    Args:
        event_ts: the event's time.
        minute: the pool's 1-minute candles (any order).
        five_minute: its 5-minute candles (after ``t + 4 h``, as the outcome method switches).
        as_of: the candles are complete up to here.
        latency: seconds before the follower can buy.
        rule: the exit rule (default :class:`ExitRule`).
        rules: the outcome method's resolution switch.
    """
    rule = rule if rule is not None else ExitRule()
    path = [c for c in price_path(event_ts, minute, five_minute, rules=rules) if c.ts <= as_of]
    entry_after = event_ts + latency
    span = rule.hours * 3600.0
    start = next((i for i, c in enumerate(path) if c.ts >= entry_after), None)
    if start is None:
        if as_of < entry_after + span:
            return ExitResult("open")
        before = [c for c in path if c.ts < entry_after]
        price = before[-1].close if before else None
        return ExitResult("dead", price, None, price, None, 0.0, _net(0.0, rule.fee))
    entry_candle = path[start]
    entry = entry_candle.open
    take, stop = rule.take_profit * entry, rule.stop * entry
    end = entry_candle.ts + span
    last = entry_candle
    for candle in path[start:]:
        if candle.ts >= end:
            break
        if candle.low <= stop:
            price = min(candle.open, stop)
            return _closed("stop", entry, entry_candle.ts, price, candle.ts, rule)
        if candle.high >= take:
            return _closed("take_profit", entry, entry_candle.ts, take, candle.ts, rule)
        last = candle
    if as_of < end:
        return ExitResult("open", entry, entry_candle.ts)
    return _closed("time", entry, entry_candle.ts, last.close, last.ts, rule)


def _closed(
    reason: str, entry: float, entry_ts: int, price: float, ts: int, rule: ExitRule
) -> ExitResult:
    gross = price / entry - 1.0
    return ExitResult(reason, entry, entry_ts, price, ts, gross, _net(gross, rule.fee))
