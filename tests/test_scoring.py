"""The pure scoring functions: consensus tiers, every base rule, clamping."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callsbot.config import ConsensusSettings, ScoringSettings, Tier
from callsbot.models import Buy, MarketSnapshot
from callsbot.reputation.snapshot import Reputation
from callsbot.scoring import (
    RULES,
    Consensus,
    ScoreLine,
    base_lines,
    clamp,
    consensus,
    format_points,
    format_price,
    format_usd,
    score,
    score_card,
    tier_points,
)

NOW = 1_700_000_000.0
NOW_INT = int(NOW)
TOKEN = "9BB6NFEcjBCtnNLFko2FqVQBq8HHM13kCyYcdQbgpump"
DEFAULT = ConsensusSettings()
S = ScoringSettings()


def buy(**kw: Any) -> Buy:
    base: dict[str, Any] = {
        "tx_hash": "tx",
        "wallet": "5tzFkiKscXHK5ZXCGbXZxdw7gTjjD1mBwuoFbhUvuAi9",
        "wallet_label": None,
        "token": TOKEN,
        "symbol": "TKN",
        "name": "Token",
        "usd": 500.0,
        "ts": NOW,
        "dex": "raydium",
        "chain": "solana",
        "first_interaction": False,
    }
    return Buy(**(base | kw))


def snap(**kw: Any) -> MarketSnapshot:
    base: dict[str, Any] = {
        "chain": "solana",
        "token": TOKEN,
        "pair_address": "Gz3K8xkFPXg3bsJx4m9V5zJbGpXj5r7Ck3m1b1a2c3d4",
        "dex": "raydium",
        "name": "Token",
        "symbol": "TKN",
        "price_usd": 0.0001,
        "liquidity_usd": 20_000.0,
        "volume_h24": 50_000.0,
        "volume_h1": 2_000.0,
        "market_cap": 10_000_000.0,
        "fdv": 10_000_000.0,
        "pair_created_at": NOW - 3 * 86400,
        "price_change_h1": 5.0,
        "price_change_h24": 20.0,
    }
    return MarketSnapshot(**(base | kw))


# -- consensus --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "points"),
    [(0, -1), (1, 0), (2, 1), (3, 2), (5, 2), (40, 2)],
)
def test_default_tiers(n: int, points: int) -> None:
    groups = [f"@g{i}" for i in range(n)]
    result = consensus(groups, heartbeat_age=1.0, settings=DEFAULT)
    assert (result.points, result.degraded, len(result.groups)) == (points, False, n)


CUSTOM = ConsensusSettings(
    tiers=(Tier(5, 3), Tier(4, 2), Tier(1, 1), Tier(0, -2)), heartbeat_stale_seconds=10.0
)


@pytest.mark.parametrize(("n", "points"), [(0, -2), (1, 1), (3, 1), (4, 2), (5, 3), (9, 3)])
def test_configured_tiers(n: int, points: int) -> None:
    result = consensus([f"@g{i}" for i in range(n)], heartbeat_age=0.0, settings=CUSTOM)
    assert result.points == points


def test_tiers_in_any_order() -> None:
    tiers = (Tier(0, -1), Tier(3, 2), Tier(1, 0), Tier(2, 1))
    assert [tier_points(n, tiers) for n in range(5)] == [-1, 0, 1, 2, 2]


def test_no_tier_covers_is_an_error() -> None:
    with pytest.raises(ValueError, match="no consensus tier"):
        tier_points(0, (Tier(1, 0),))


@pytest.mark.parametrize(
    ("groups", "age", "degraded", "points", "reason_part"),
    [
        (None, 1.0, True, 0, "store unreachable"),
        (None, None, True, 0, "store unreachable"),
        ([], None, True, 0, "no heartbeat"),
        ([], 10.0, False, -2, "SOLO SIGNAL"),  # exactly the limit is still fresh
        ([], 10.5, True, 0, "last heartbeat 10s ago"),
        (["@a", "@b", "@c", "@d", "@e"], 11.0, True, 0, "CONSENSUS UNKNOWN"),
        (["@a", "@b", "@c", "@d", "@e"], 9.0, False, 3, "MULTI-BOT CONSENSUS"),
    ],
)
def test_degraded_is_zero_never_minus_one(
    groups: list[str] | None,
    age: float | None,
    degraded: bool,
    points: int,
    reason_part: str,
) -> None:
    result = consensus(groups, heartbeat_age=age, settings=CUSTOM)
    assert (result.degraded, result.points) == (degraded, points)
    assert reason_part in result.reason


def test_consensus_lines_exact_format() -> None:
    multi = consensus(["@a", "@b", "@c"], heartbeat_age=0.0, settings=DEFAULT)
    solo = consensus([], heartbeat_age=0.0, settings=DEFAULT)
    one = consensus(["@a"], heartbeat_age=0.0, settings=DEFAULT)
    assert multi.reason == "🤝 MULTI-BOT CONSENSUS: +2 (3 groups: @a, @b, @c)"
    assert solo.reason == "⚠️ SOLO SIGNAL: -1 (no other groups)"
    assert one.reason == "👤 ONE GROUP: +0 (1 group: @a)"


# -- base rules -------------------------------------------------------------------------------


def line_of(lines: tuple[ScoreLine, ...], word: str) -> ScoreLine:
    matches = [line for line in lines if word in line.reason]
    assert len(matches) == 1, (word, lines)
    return matches[0]


@pytest.mark.parametrize(
    ("usd", "points", "word"),
    [(None, 0, "unknown"), (999, 0, "small"), (1000, 1, "buy $1.00k"), (5000, 2, "large buy")],
)
def test_trade_size(usd: float | None, points: float, word: str) -> None:
    lines = base_lines(buy(usd=usd), snap(), settings=S, now=NOW)
    assert line_of(lines, word).points == points


@pytest.mark.parametrize(
    ("liq", "points", "word"),
    [
        (None, 0, "liquidity unknown"),
        (9_999, -1, "thin"),
        (10_000, 0, "modest"),
        (30_000, 1, "💧 liquidity"),
        (100_000, 2, "deep"),
    ],
)
def test_liquidity_tiers(liq: float | None, points: float, word: str) -> None:
    lines = base_lines(buy(), snap(liquidity_usd=liq), settings=S, now=NOW)
    assert line_of(lines, word).points == points


@pytest.mark.parametrize(
    ("vol", "points", "word"),
    [(None, 0, "volume unknown"), (99_999, 0, "light"), (100_000, 1, "📊 24h"), (5e5, 2, "heavy")],
)
def test_volume(vol: float | None, points: float, word: str) -> None:
    lines = base_lines(buy(), snap(volume_h24=vol, liquidity_usd=None), settings=S, now=NOW)
    assert line_of(lines, word).points == points


@pytest.mark.parametrize(
    ("vol", "liq", "points"),
    [(1_000, 10_000, -1), (2_000, 10_000, 0), (30_000, 10_000, 1), (None, 10_000, None)],
)
def test_volume_liquidity_ratio(vol: float | None, liq: float, points: float | None) -> None:
    lines = base_lines(buy(), snap(volume_h24=vol, liquidity_usd=liq), settings=S, now=NOW)
    ratio = [line for line in lines if "volume/liquidity" in line.reason]
    assert [line.points for line in ratio] == ([] if points is None else [points])


@pytest.mark.parametrize(
    ("mcap", "fdv", "points", "word"),
    [
        (None, None, 0, "unknown"),
        (49_999, None, -1, "micro"),
        (None, 60_000, 1, "in range"),  # FDV stands in for a missing market cap
        (5_000_000, None, 1, "in range"),
        (5_000_001, None, 0, "large cap"),
    ],
)
def test_market_cap(mcap: float | None, fdv: float | None, points: float, word: str) -> None:
    lines = base_lines(buy(), snap(market_cap=mcap, fdv=fdv), settings=S, now=NOW)
    assert line_of(lines, word).points == points


@pytest.mark.parametrize(
    ("age", "points", "word"),
    [(None, 0, "unknown"), (300, -1, "brand-new"), (3600, 1, "fresh"), (86400 * 3, 0, "3d")],
)
def test_pair_age(age: float | None, points: float, word: str) -> None:
    created = None if age is None else NOW - age
    lines = base_lines(buy(), snap(pair_created_at=created), settings=S, now=NOW)
    assert line_of(lines, word).points == points


@pytest.mark.parametrize(
    ("h1", "points", "word"),
    [(150, -2, "chasing a pump"), (50, -1, "already up"), (-40, -1, "dumping"), (10, 0, "1h")],
)
def test_change_1h_penalises_chasing(h1: float, points: float, word: str) -> None:
    lines = base_lines(buy(), snap(price_change_h1=h1), settings=S, now=NOW)
    assert line_of(lines, word).points == points


@pytest.mark.parametrize(
    ("h24", "points", "word"), [(400, -1, "already up"), (-60, -1, "down"), (20, 0, "24h change")]
)
def test_change_24h(h24: float, points: float, word: str) -> None:
    lines = base_lines(buy(), snap(price_change_h24=h24, price_change_h1=None), settings=S, now=NOW)
    assert line_of(lines, word).points == points


def test_wallet_label_and_first_interaction() -> None:
    plain = base_lines(buy(), snap(), settings=S, now=NOW)
    labelled = base_lines(
        buy(wallet_label="Top Trader", first_interaction=True), snap(), settings=S, now=NOW
    )
    assert not [line for line in plain if "wallet" in line.reason]
    assert line_of(labelled, "labelled wallet: Top Trader").points == 1
    assert line_of(labelled, "first buy").points == 0.5


def test_every_threshold_comes_from_settings() -> None:
    strict = attrs.evolve(S, liquidity_high_usd=1e9, liquidity_mid_usd=1e8, trade_usd_large=1.0)
    lines = base_lines(buy(usd=2.0), snap(liquidity_usd=200_000), settings=strict, now=NOW)
    assert line_of(lines, "modest liquidity").points == 0
    assert line_of(lines, "large buy").points == 2


def test_base_line_comes_first_and_every_rule_is_known() -> None:
    lines = base_lines(buy(), snap(), settings=S, now=NOW)
    assert lines[0] == ScoreLine(S.base_points, "smart-money buy")
    assert len(RULES) == 10


# -- totals -----------------------------------------------------------------------------------


def healthy(n: int) -> Consensus:
    return consensus([f"@g{i}" for i in range(n)], heartbeat_age=0.0, settings=DEFAULT)


def test_total_is_clamped_to_0_10() -> None:
    great = score_card([ScoreLine(9, "a"), ScoreLine(4, "b")], healthy(3))
    awful = score_card([ScoreLine(-3, "a")], healthy(0))
    assert (great.base, great.total) == (10, 10)
    assert (awful.base, awful.total) == (0, 0)


def test_card_adds_consensus_to_base() -> None:
    lines = (ScoreLine(2, "base"), ScoreLine(3.5, "x"))
    assert score_card(lines, healthy(2)).total == 6.5
    assert score_card(lines, healthy(0)).total == 4.5
    degraded = consensus(None, heartbeat_age=None, settings=DEFAULT)
    card = score_card(lines, degraded)
    assert (card.total, card.degraded) == (5.5, True)


def test_score_end_to_end_typical_good_token() -> None:
    card = score(
        buy(usd=6000, wallet_label="Whale"),
        snap(
            liquidity_usd=150_000,
            volume_h24=600_000,
            market_cap=900_000,
            pair_created_at=NOW - 5 * 3600,
        ),
        healthy(3),
        settings=S,
        now=NOW,
    )
    # base 2 + size 2 + liquidity 2 + volume 2 + ratio 1 + cap 1 + age 1 + label 1 = 12 → 10
    assert card.base == 10
    assert card.total == 10


def test_helpers() -> None:
    assert clamp(11) == 10
    assert clamp(-1) == 0
    assert [format_points(p) for p in (2, -1, 0, 0.5)] == ["+2", "-1", "±0", "+0.5"]
    assert format_usd(None) == "n/a"
    assert format_usd(1_234_567) == "$1.23M"
    assert format_usd(12_345) == "$12.3k"
    assert format_price(0.00001234) == "$0.00001234"
    assert format_price(None) == "n/a"
    assert format_price(float("nan")) == "n/a"


# -- consensus modes (issue 14) ---------------------------------------------------------------


def todays_consensus(
    groups: Sequence[str] | None, *, heartbeat_age: float | None, settings: ConsensusSettings
) -> Consensus:
    """The deployed rule as it was before weighted mode existed (the oracle of count mode)."""
    if groups is None:
        return Consensus(0, (), True, "⚠️ CONSENSUS UNKNOWN: 0 (signal store unreachable)")
    if heartbeat_age is None or heartbeat_age > settings.heartbeat_stale_seconds:
        age = (
            "no heartbeat" if heartbeat_age is None else f"last heartbeat {heartbeat_age:.0f}s ago"
        )
        return Consensus(0, tuple(groups), True, f"⚠️ CONSENSUS UNKNOWN: 0 (aggregator {age})")
    n = len(groups)
    points = tier_points(n, settings.tiers)
    if n == 0:
        line = f"⚠️ SOLO SIGNAL: {points:+d} (no other groups)"
    else:
        label = "MULTI-BOT CONSENSUS" if n >= 2 else "ONE GROUP"
        icon = "🤝" if n >= 2 else "👤"
        line = (
            f"{icon} {label}: {points:+d} ({n} group{'s' if n != 1 else ''}: {', '.join(groups)})"
        )
    return Consensus(points, tuple(groups), False, line)


group_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=12)
calls_strategy = st.dictionaries(
    group_names.map(lambda s: "@" + s), st.integers(NOW_INT - 3599, NOW_INT), max_size=12
)


@settings(max_examples=300, deadline=None)
@given(
    calls_strategy,
    st.one_of(st.none(), st.floats(0, 60)),
    st.sampled_from([DEFAULT, CUSTOM]),
    st.booleans(),
    st.builds(
        lambda w, c: Reputation(NOW, weights=w, copies=c),
        st.dictionaries(group_names.map(lambda s: "@" + s), st.floats(0.5, 2.0), max_size=4),
        st.just({}),
    ),
)
def test_count_mode_equals_todays_rule_for_any_groups_and_times(
    members: dict[str, int],
    age: float | None,
    tiers: ConsensusSettings,
    as_calls: bool,
    reputation: Reputation,
) -> None:
    ordered = sorted(members.items(), key=lambda kv: (kv[1], kv[0]))
    names = [g for g, _ in ordered]
    settings_ = attrs.evolve(tiers, mode="count")
    given_groups: dict[str, int] | list[str] = dict(members) if as_calls else list(names)
    new = consensus(
        given_groups, heartbeat_age=age, settings=settings_, now=NOW, reputation=reputation
    )
    old = todays_consensus(names, heartbeat_age=age, settings=settings_)
    assert (new.points, new.groups, new.degraded, new.reason) == (
        old.points,
        old.groups,
        old.degraded,
        old.reason,
    )
    assert new == old  # nothing else is added in count mode
    assert consensus(None, heartbeat_age=age, settings=settings_) == todays_consensus(
        None, heartbeat_age=age, settings=settings_
    )


def no_decay(**overrides: float) -> ConsensusSettings:
    """Weighted mode with an infinite half-life: the count rule's own limit (outcomes.md 7).

    Settings refuse inf (and bound the half-life) wherever they are loaded from; this limit
    exists only in code, so it is built with the validators off.
    """
    with attrs.validators.disabled():
        return ConsensusSettings(mode="weighted", half_life_seconds=math.inf, **overrides)


@settings(max_examples=200, deadline=None)
@given(calls_strategy)
def test_weighted_mode_with_neutral_inputs_and_no_decay_gives_the_count_points(
    members: dict[str, int],
) -> None:
    ordered = sorted(members.items(), key=lambda kv: (kv[1], kv[0]))
    calls = dict(ordered)
    neutral = no_decay()
    weighted = consensus(calls, heartbeat_age=1.0, settings=neutral, now=NOW)
    counted = consensus([g for g, _ in ordered], heartbeat_age=1.0, settings=DEFAULT)
    assert weighted.points == counted.points
    assert weighted.strength == len(ordered)


def test_weighted_line_names_each_groups_weight_and_discount() -> None:
    rep = Reputation(NOW, weights={"@a": 1.3, "@b": 1.8}, copies={("@a", "@c"): 0.7})
    cons = consensus(
        {"@a": NOW_INT - 120, "@b": NOW_INT - 90, "@c": NOW_INT - 60},
        heartbeat_age=1.0,
        settings=no_decay(),
        now=NOW,
        reputation=rep,
    )
    assert cons.reason == "🤝 CONSENSUS: +2 (S 3.4: @a ×1.3, @b ×1.8, @c copy of @a ×0.3)"
    assert (cons.points, cons.mode, cons.strength) == (2, "weighted", pytest.approx(3.4))
    assert [(t.group, t.weight, round(t.vote, 2), t.note) for t in cons.terms] == [
        ("@a", 1.3, 1.0, ""),
        ("@b", 1.8, 1.0, ""),
        ("@c", 1.0, 0.3, "copy of @a"),
    ]


def test_weighted_mode_never_turns_a_called_token_solo() -> None:
    rep = Reputation(NOW, weights={"@weak": 0.5})
    cons = consensus(
        {"@weak": NOW_INT - 3000},
        heartbeat_age=1.0,
        settings=ConsensusSettings(mode="weighted"),
        now=NOW,
        reputation=rep,
    )
    assert cons.points == 0
    assert cons.reason.startswith("👤 CONSENSUS: +0 (S 0.2: @weak ×0.5)")
    none = consensus([], heartbeat_age=1.0, settings=ConsensusSettings(mode="weighted"), now=NOW)
    assert (none.points, none.reason) == (-1, "⚠️ SOLO SIGNAL: -1 (no other groups)")


@pytest.mark.parametrize(("groups", "age"), [(None, 1.0), ({"@a": NOW_INT}, None)])
def test_weighted_mode_degrades_like_count_mode(
    groups: dict[str, int] | None, age: float | None
) -> None:
    weighted = consensus(groups, heartbeat_age=age, settings=ConsensusSettings(mode="weighted"))
    counted = consensus(
        None if groups is None else list(groups), heartbeat_age=age, settings=DEFAULT
    )
    assert (weighted.points, weighted.degraded, weighted.reason) == (
        counted.points,
        counted.degraded,
        counted.reason,
    )
    assert weighted.points == 0
    assert weighted.degraded


def test_weighted_thresholds_are_settings() -> None:
    strict = no_decay(level2_threshold=2.5, level3_threshold=4.0)
    calls = {f"@g{i}": NOW_INT for i in range(3)}
    assert consensus(calls, heartbeat_age=0.0, settings=strict, now=NOW).points == 1
