"""Pure scoring: the base-score rules and the consensus adjustment.

Nothing here does I/O: callers read the store and market data, then pass plain values in.
docs/scoring.md lists every rule with its defaults.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import attrs

from callsbot.config import ConsensusSettings, ScoringSettings, Tier
from callsbot.models import Buy, MarketSnapshot
from callsbot.reputation.independence import AtOnceVote
from callsbot.reputation.snapshot import NEUTRAL, Reputation
from callsbot.reputation.weighted import Term, WeightedSum, weighted_level, weighted_sum

MIN_SCORE = 0.0
MAX_SCORE = 10.0


@attrs.frozen
class Consensus:
    """The consensus adjustment of one token.

    Attributes:
        points: added to the base score.
        groups: the groups that called the token in the window (empty when degraded), in call
            order.
        degraded: the store or the aggregator could not be trusted, so ``points`` is 0.
        reason: one line for the alert.
        mode: ``count`` or ``weighted`` (``[consensus] mode``).
        strength: S, the weighted sum (weighted mode only).
        terms: each group's weight, vote, decay and part of S, with why its vote is below 1
            (weighted mode only); the score card keeps them.
    """

    points: int
    groups: tuple[str, ...]
    degraded: bool
    reason: str
    mode: str = "count"
    strength: float | None = None
    terms: tuple[Term, ...] = ()


def consensus(
    groups: Sequence[str] | Mapping[str, float] | None,
    *,
    heartbeat_age: float | None,
    settings: ConsensusSettings,
    now: float | None = None,
    reputation: Reputation = NEUTRAL,
    votes: Mapping[str, AtOnceVote] | None = None,
    unknown: str = "signal store unreachable",
) -> Consensus:
    """Turn the groups that called a token into points (design.md's tier table).

    Args:
        groups: the distinct groups in the window: their names in call order, or
            ``{group: time of its latest call}`` (what the store's ``groups(token)`` answers;
            taken in call order: time, then name); ``None`` when the store could not be asked.
        heartbeat_age: seconds since the aggregator's last beat, ``None`` if it has none.
        settings: the mode, the tiers, the staleness limit and the weighted parameters.
        now: unix seconds, for the decay of weighted mode (default: the latest call; names
            without times count as called ``now``).
        reputation: published weights and copy relations (weighted mode; default: neutral).
        votes: at-once votes of groups that repeat a vote already cast (weighted mode).
        unknown: why the groups could not be asked (``groups`` is ``None``), for the line.

    Returns:
        The tier's points; 0 and ``degraded`` when the store is unreachable or the aggregator's
        heartbeat is missing or older than ``settings.heartbeat_stale_seconds`` — an absent
        aggregator must never turn into a "solo" penalty. ``count`` mode: the tier of the number
        of groups. ``weighted`` mode: the tier of the level S reaches
        (:func:`~callsbot.reputation.weighted.weighted_level`); −1 still only when no group
        called.
    """
    if groups is None:
        return Consensus(0, (), True, f"⚠️ CONSENSUS UNKNOWN: 0 ({unknown})", settings.mode)
    stale = heartbeat_age is None or heartbeat_age > settings.heartbeat_stale_seconds
    if stale or not settings.weighted:
        if isinstance(groups, Mapping):
            names = tuple(g for g, _ in sorted(groups.items(), key=_by_time))
        else:
            names = tuple(groups)
        if stale:
            age = (
                "no heartbeat"
                if heartbeat_age is None
                else f"last heartbeat {heartbeat_age:.0f}s ago"
            )
            return Consensus(
                0, names, True, f"⚠️ CONSENSUS UNKNOWN: 0 (aggregator {age})", settings.mode
            )
        points = tier_points(len(names), settings.tiers)
        return Consensus(points, names, False, _consensus_line(points, names))
    if isinstance(groups, Mapping):
        calls = groups
        at = now if now is not None else max(groups.values(), default=0.0)
    else:
        at = now if now is not None else 0.0
        calls = dict.fromkeys(groups, at)
    total = weighted_sum(
        calls,
        now=at,
        half_life_seconds=settings.half_life_seconds,
        reputation=reputation,
        votes=votes,
    )
    names = tuple([t.group for t in total.terms])
    level = weighted_level(total.total, len(names), settings)
    points = tier_points(level, settings.tiers)
    line = _weighted_line(points, level, total) if names else _consensus_line(points, names)
    return Consensus(points, names, False, line, "weighted", total.total, total.terms)


def _by_time(call: tuple[str, float]) -> tuple[float, str]:
    return (call[1], call[0])


def tier_points(n_groups: int, tiers: Sequence[Tier]) -> int:
    """Points of the highest tier whose ``min_groups`` is at most ``n_groups``."""
    eligible = [t for t in tiers if t.min_groups <= n_groups]
    if not eligible:
        raise ValueError(f"no consensus tier covers {n_groups} groups")
    return max(eligible, key=lambda t: t.min_groups).points


def _weighted_line(points: int, level: int, total: WeightedSum) -> str:
    parts = [
        f"{t.group} {t.note} ×{t.weight * t.vote:.1f}"
        if t.note
        else f"{t.group} ×{t.weight * t.vote:.1f}"
        for t in total.terms
    ]
    icon = "🤝" if level >= 2 else "👤"
    return f"{icon} CONSENSUS: {points:+d} (S {total.total:.1f}: {', '.join(parts)})"


def _consensus_line(points: int, groups: tuple[str, ...]) -> str:
    n = len(groups)
    if n == 0:
        return f"⚠️ SOLO SIGNAL: {points:+d} (no other groups)"
    names = ", ".join(groups)
    label = "MULTI-BOT CONSENSUS" if n >= 2 else "ONE GROUP"
    icon = "🤝" if n >= 2 else "👤"
    return f"{icon} {label}: {points:+d} ({n} group{'s' if n != 1 else ''}: {names})"


# --------------------------------------------------------------------------------------------
# Base score.


@attrs.frozen
class ScoreLine:
    """One rule's contribution: its points and a one-line reason for the alert."""

    points: float
    reason: str

    def render(self) -> str:
        """``+1 reason`` / ``-0.5 reason`` / ``±0 reason``."""
        return f"{format_points(self.points)} {self.reason}"


@attrs.frozen
class ScoreCard:
    """The full score of one buy.

    Attributes:
        lines: every base rule's line, the constant base first.
        base: the sum of ``lines``, clamped to 0–10.
        consensus: the consensus adjustment.
        total: ``base + consensus.points``, clamped to 0–10.
    """

    lines: tuple[ScoreLine, ...]
    base: float
    consensus: Consensus
    total: float

    @property
    def degraded(self) -> bool:
        """The consensus part could not be trusted (store or aggregator away)."""
        return self.consensus.degraded


def clamp(value: float, low: float = MIN_SCORE, high: float = MAX_SCORE) -> float:
    """``value`` limited to ``[low, high]``."""
    return max(low, min(high, value))


def format_points(points: float) -> str:
    """Signed points without a useless ``.0``: ``+2``, ``-0.5``, ``±0``."""
    if points == 0:
        return "±0"
    text = f"{points:+.1f}"
    return text[:-2] if text.endswith(".0") else text


def format_usd(value: float | None) -> str:
    """Compact dollars: ``$950``, ``$12.3k``, ``$4.56M``, ``$1.2B``; ``n/a`` for ``None``."""
    if value is None:
        return "n/a"
    sign = "-" if value < 0 else ""
    v = abs(value)
    for size, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if v >= size:
            return f"{sign}${v / size:.{2 if v / size < 10 else 1}f}{unit}"
    return f"{sign}${v:.0f}"


def format_price(value: float | None) -> str:
    """A price with about four significant digits (``$0.00001234``); ``n/a`` for ``None``."""
    if value is None or not math.isfinite(value) or value < 0:
        return "n/a"
    if value == 0:
        return "$0"
    if value >= 1000:
        return f"${value:,.0f}"
    if value >= 1:
        return f"${value:.2f}"
    decimals = min(12, 3 - math.floor(math.log10(value)))
    return f"${value:.{decimals}f}"


def _pct(value: float) -> str:
    return f"{value:+.0f}%"


Rule = Callable[[Buy, MarketSnapshot, ScoringSettings, float], "ScoreLine | None"]


def rule_trade_size(buy: Buy, _snap: MarketSnapshot, s: ScoringSettings, _now: float) -> ScoreLine:
    """Bigger smart-money buys mean more conviction."""
    if buy.usd is None:
        return ScoreLine(0, "trade size unknown")
    if buy.usd >= s.trade_usd_large:
        return ScoreLine(2, f"💰 large buy {format_usd(buy.usd)}")
    if buy.usd >= s.trade_usd_medium:
        return ScoreLine(1, f"💵 buy {format_usd(buy.usd)}")
    return ScoreLine(0, f"small buy {format_usd(buy.usd)}")


def rule_liquidity(_buy: Buy, snap: MarketSnapshot, s: ScoringSettings, _now: float) -> ScoreLine:
    """Deep pools can be exited; thin ones cannot."""
    liq = snap.liquidity_usd
    if liq is None:
        return ScoreLine(0, "liquidity unknown")
    text = format_usd(liq)
    if liq < s.liquidity_low_usd:
        return ScoreLine(-1, f"💧 thin liquidity {text}")
    if liq >= s.liquidity_high_usd:
        return ScoreLine(2, f"💧 deep liquidity {text}")
    if liq >= s.liquidity_mid_usd:
        return ScoreLine(1, f"💧 liquidity {text}")
    return ScoreLine(0, f"💧 modest liquidity {text}")


def rule_volume(_buy: Buy, snap: MarketSnapshot, s: ScoringSettings, _now: float) -> ScoreLine:
    """Traded volume over the last 24 h."""
    vol = snap.volume_h24
    if vol is None:
        return ScoreLine(0, "24h volume unknown")
    text = format_usd(vol)
    if vol >= s.volume_h24_high_usd:
        return ScoreLine(2, f"📊 heavy 24h volume {text}")
    if vol >= s.volume_h24_mid_usd:
        return ScoreLine(1, f"📊 24h volume {text}")
    return ScoreLine(0, f"📊 light 24h volume {text}")


def rule_turnover(
    _buy: Buy, snap: MarketSnapshot, s: ScoringSettings, _now: float
) -> ScoreLine | None:
    """24 h volume relative to liquidity: is anybody actually trading the pool?"""
    if snap.volume_h24 is None or not snap.liquidity_usd:
        return None
    ratio = snap.volume_h24 / snap.liquidity_usd
    if ratio >= s.vol_liq_high:
        return ScoreLine(1, f"🔄 active trading (volume/liquidity {ratio:.1f}x)")
    if ratio < s.vol_liq_low:
        return ScoreLine(-1, f"🔄 little trading (volume/liquidity {ratio:.2f}x)")
    return ScoreLine(0, f"🔄 volume/liquidity {ratio:.1f}x")


def rule_market_cap(_buy: Buy, snap: MarketSnapshot, s: ScoringSettings, _now: float) -> ScoreLine:
    """Room to grow: the market cap (FDV when no cap is reported) in the sweet spot."""
    mcap = snap.market_cap if snap.market_cap is not None else snap.fdv
    if mcap is None:
        return ScoreLine(0, "market cap unknown")
    text = format_usd(mcap)
    if mcap < s.mcap_min_usd:
        return ScoreLine(-1, f"🏷 micro cap {text}")
    if mcap > s.mcap_max_usd:
        return ScoreLine(0, f"🏷 large cap {text}")
    return ScoreLine(1, f"🏷 market cap {text} in range")


def rule_pair_age(_buy: Buy, snap: MarketSnapshot, s: ScoringSettings, now: float) -> ScoreLine:
    """Fresh pairs move; pairs a few minutes old are mostly snipers and rugs."""
    if snap.pair_created_at is None:
        return ScoreLine(0, "pair age unknown")
    age = max(0.0, now - snap.pair_created_at)
    text = _age(age)
    if age < s.pair_age_min_minutes * 60:
        return ScoreLine(-1, f"🐣 brand-new pair ({text})")
    if age <= s.pair_age_fresh_hours * 3600:
        return ScoreLine(1, f"🌱 fresh pair ({text})")
    return ScoreLine(0, f"pair age {text}")


def _age(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.0f}d"


def rule_change_h1(
    _buy: Buy, snap: MarketSnapshot, s: ScoringSettings, _now: float
) -> ScoreLine | None:
    """Penalise buying after a vertical hour, and falling knives."""
    ch = snap.price_change_h1
    if ch is None:
        return None
    if ch >= s.change_h1_pump_pct:
        return ScoreLine(-2, f"🚀 chasing a pump ({_pct(ch)} 1h)")
    if ch >= s.change_h1_hot_pct:
        return ScoreLine(-1, f"🔥 already up {_pct(ch)} in 1h")
    if ch <= s.change_h1_dump_pct:
        return ScoreLine(-1, f"📉 dumping ({_pct(ch)} 1h)")
    return ScoreLine(0, f"1h change {_pct(ch)}")


def rule_change_h24(
    _buy: Buy, snap: MarketSnapshot, s: ScoringSettings, _now: float
) -> ScoreLine | None:
    """The same over a day: a 300 % day is late, a halved price is a warning."""
    ch = snap.price_change_h24
    if ch is None:
        return None
    if ch >= s.change_h24_pump_pct:
        return ScoreLine(-1, f"🚀 already up {_pct(ch)} in 24h")
    if ch <= s.change_h24_dump_pct:
        return ScoreLine(-1, f"📉 down {_pct(ch)} in 24h")
    return ScoreLine(0, f"24h change {_pct(ch)}")


def rule_wallet(
    buy: Buy, _snap: MarketSnapshot, s: ScoringSettings, _now: float
) -> ScoreLine | None:
    """A wallet Cielo has labelled (a tracked trader) counts extra."""
    if not buy.wallet_label:
        return None
    return ScoreLine(s.wallet_label_points, f"🐋 labelled wallet: {buy.wallet_label}")


def rule_first_interaction(
    buy: Buy, _snap: MarketSnapshot, s: ScoringSettings, _now: float
) -> ScoreLine | None:
    """The wallet's first trade of the token: a new position rather than a top-up."""
    if not buy.first_interaction:
        return None
    return ScoreLine(s.first_interaction_points, "🆕 wallet's first buy of this token")


#: The base rules in the order their lines are shown.
RULES: tuple[Rule, ...] = (
    rule_trade_size,
    rule_liquidity,
    rule_volume,
    rule_turnover,
    rule_market_cap,
    rule_pair_age,
    rule_change_h1,
    rule_change_h24,
    rule_wallet,
    rule_first_interaction,
)


def base_lines(
    buy: Buy, snapshot: MarketSnapshot, *, settings: ScoringSettings, now: float
) -> tuple[ScoreLine, ...]:
    """Every base rule's line for ``buy`` (rules without data to judge give no line).

    Args:
        buy: the feed trade.
        snapshot: the token's market data.
        settings: the rule thresholds.
        now: unix seconds, for the pair age.
    """
    lines = [ScoreLine(settings.base_points, "smart-money buy")]
    for rule in RULES:
        line = rule(buy, snapshot, settings, now)
        if line is not None:
            lines.append(line)
    return tuple(lines)


def score_card(lines: Sequence[ScoreLine], cons: Consensus) -> ScoreCard:
    """Sum ``lines`` into a base (0–10), add the consensus points, clamp the total to 0–10."""
    base = clamp(sum(line.points for line in lines))
    return ScoreCard(tuple(lines), base, cons, clamp(base + cons.points))


def score(
    buy: Buy,
    snapshot: MarketSnapshot,
    cons: Consensus,
    *,
    settings: ScoringSettings,
    now: float,
) -> ScoreCard:
    """:func:`base_lines` and :func:`score_card` in one call."""
    return score_card(base_lines(buy, snapshot, settings=settings, now=now), cons)
