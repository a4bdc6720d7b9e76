"""The dashboard state: rows from events, why a token was not alerted, expiry, hostile text."""

from __future__ import annotations

from callsbot.config import Settings
from callsbot.dashboard.sources import (
    AlertKey,
    CallWeight,
    CopyRelation,
    GroupRow,
    GroupsView,
    Interval,
    ScoreboardRow,
)
from callsbot.dashboard.state import DashboardState, Limits
from tests.dashboard.rig import T0, TOKEN, alert_sent, mention, scored, verdict

OTHER = "C14jyP1cVqZSRuF4wqzLZn6FRZhtRe5fGCQHMHwZytqu"
HOSTILE = "<img src=x onerror=alert(1)>\u202e" + "A" * 4972


def state(**kwargs: object) -> DashboardState:
    s = Settings()
    return DashboardState(
        window=3600,
        tiers=s.consensus.tiers,
        threshold=s.scoring.alert_threshold,
        **kwargs,  # type: ignore[arg-type]
    )


def test_mentions_make_a_row_with_groups_calls_and_the_tier() -> None:
    st = state()
    st.apply(verdict(TOKEN, T0))
    (update,) = st.apply(mention(TOKEN, "@a", T0))
    assert update.kind == "token"  # a new row: all of it
    assert update.data["token"]["groups"] == 1
    (update,) = st.apply(mention(TOKEN, "@b", T0 + 60, count=2))
    assert update.kind == "call"  # a row the browsers have: just the call
    assert update.data == {"at": T0 + 60, "token": TOKEN, "call": {"group": "@b", "ts": T0 + 60}}
    row = st.row(TOKEN, T0 + 120)
    assert row is not None
    assert (row["groups"], row["tier_points"], row["symbol"]) == (2, 1, "MOONCAT")
    assert row["calls"] == [{"group": "@a", "ts": T0}, {"group": "@b", "ts": T0 + 60}]
    assert (row["status"], row["why"]) == ("no_buy", "no smart-money buy yet")
    st.apply(mention(TOKEN, "@c", T0 + 90, count=3))
    assert st.row(TOKEN, T0 + 120)["tier_points"] == 2  # type: ignore[index]


def test_a_scored_buy_says_why_it_was_not_alerted() -> None:
    st = state()
    st.apply(mention(TOKEN, "@a", T0))
    st.apply(scored(TOKEN, T0 + 10, 5.0, "watching"))
    row = st.row(TOKEN, T0 + 20)
    assert row is not None
    assert row["status"] == "below_threshold"
    assert row["why"] == "below threshold: 5.0 < 7.0"
    assert row["smart_money"]["usd"] == 2500.0
    assert row["smart_money"]["label"] == "Smart Money #7"
    assert row["smart_money"]["wallet"] == "CcMy…sv62"
    assert row["score"]["total"] == 5.0

    st.apply(scored(TOKEN, T0 + 30, 8.0, "cooldown"))
    assert st.row(TOKEN, T0 + 40)["status"] == "cooldown"  # type: ignore[index]

    st.apply(scored(TOKEN, T0 + 50, 6.0, "watching", degraded=True))
    row = st.row(TOKEN, T0 + 60)
    assert row is not None
    assert row["status"] == "degraded"
    assert row["why"].startswith("degraded: ⚠️ CONSENSUS UNKNOWN")

    st.apply(verdict(TOKEN, T0 + 70, valid=False))
    row = st.row(TOKEN, T0 + 80)
    assert row is not None
    assert (row["status"], row["why"]) == (
        "market_invalid",
        "market invalid: low liquidity (liquidity $900)",
    )
    st.apply(scored(TOKEN, T0 + 90, 9.0, "alerted"))
    assert st.row(TOKEN, T0 + 95)["status"] == "alerted"  # type: ignore[index]


def test_alerts_keep_the_entry_and_follow_the_live_price() -> None:
    st = state()
    (update,) = st.apply(alert_sent(TOKEN, T0, price=0.002))
    assert update.kind == "alert"
    assert update.data["alert"]["entry"] == 0.002
    assert update.data["alert"]["multiple"] == 1.0
    assert update.data["alert"]["outcomes"] is None  # no outcome source
    updates = st.apply(verdict(TOKEN, T0 + 300, price=0.005))
    (alert,) = [u.data["alert"] for u in updates if u.kind == "alert"]
    assert alert["price"] == 0.005
    assert alert["multiple"] == 2.5


def test_calls_leave_with_the_window_and_empty_rows_go() -> None:
    st = state()
    st.apply(mention(TOKEN, "@a", T0))
    st.apply(mention(TOKEN, "@b", T0 + 1800, count=2))
    assert st.expire(T0 + 1000) == []
    (update,) = st.expire(T0 + 3600)
    assert update.kind == "token"  # the row again, one group fewer
    assert update.data["token"]["groups"] == 1
    (gone,) = st.expire(T0 + 1800 + 3600)
    assert (gone.kind, gone.data) == ("token_removed", {"token": TOKEN})
    assert st.tokens == ()


def test_rows_are_bounded_oldest_change_first() -> None:
    st = state(limits=Limits(tokens=1))
    st.apply(mention(TOKEN, "@a", T0))
    updates = st.apply(mention(OTHER, "@a", T0 + 1))
    assert [u.kind for u in updates] == ["token", "token_removed"]
    assert st.tokens == (OTHER,)


def test_hostile_names_arrive_cleaned_and_bounded() -> None:
    st = state()
    st.apply(verdict(TOKEN, T0, name=HOSTILE, symbol="<b>X</b>\u202e"))
    st.apply(mention(TOKEN, "@a\u202egroup", T0))
    row = st.row(TOKEN, T0)
    assert row is not None
    assert row["name"].startswith("<img src=x onerror=alert(1)>A")
    assert len(row["name"]) == 64
    assert "\u202e" not in row["name"] + row["symbol"] + row["calls"][0]["group"]
    assert row["symbol"] == "<b>X</b>"


def test_health_and_provider_panels_update_only_on_change() -> None:
    st = state()
    assert st.snapshot(T0)["health"] == {"available": False}
    assert [u.kind for u in st.set_health(["feed not polled yet"])] == ["health"]
    assert st.set_health(["feed not polled yet"]) == []
    assert st.snapshot(T0)["health"] == {
        "available": True,
        "ready": False,
        "reasons": ["feed not polled yet"],
    }
    assert st.snapshot(T0)["scoreboard"] == {"available": False}
    rows = [ScoreboardRow("3+", Interval(0.5, 0.3, 0.7, 20))]
    assert [u.kind for u in st.set_scoreboard(rows)] == ["scoreboard"]
    assert st.snapshot(T0)["scoreboard"]["rows"] == [
        {"level": "3+", "rate": 0.5, "low": 0.3, "high": 0.7, "n": 20}
    ]
    view = GroupsView(
        (GroupRow("@a", Interval(0.4, 0.2, 0.6, 12), 30, 4),), (CopyRelation("@a", "@b", 7, 95.0),)
    )
    st.set_groups(view)
    groups = st.snapshot(T0)["groups"]
    assert groups["leaderboard"][0]["group"] == "@a"
    assert groups["copies"] == [{"leader": "@a", "follower": "@b", "n": 7, "lag_s": 95.0}]


def test_outcome_cells_fill_in_per_horizon() -> None:
    st = state()
    st.apply(alert_sent(TOKEN, T0))
    (update,) = st.set_outcomes({AlertKey(TOKEN, T0): {"5m": 1.4}})
    assert update.data["alert"]["outcomes"] == {
        "5m": 1.4,
        "15m": None,
        "1h": None,
        "4h": None,
        "24h": None,
    }
    assert st.set_outcomes({AlertKey(TOKEN, T0): {"5m": 1.4}}) == []


def test_weighted_consensus_sends_each_calls_weight_and_discount() -> None:
    weights = {"@a": CallWeight(1.5, 0.0), "@b": CallWeight(0.5, 0.25)}
    st = state(weights=lambda token, groups: {g: weights[g] for g in groups})
    st.apply(mention(TOKEN, "@a", T0))
    (update,) = st.apply(mention(TOKEN, "@b", T0 + 1, count=2))
    assert update.kind == "token"  # weights may change with every call: the whole row
    assert update.data["token"]["calls"] == [
        {"group": "@a", "ts": T0, "weight": 1.5, "discount": 0.0},
        {"group": "@b", "ts": T0 + 1, "weight": 0.5, "discount": 0.25},
    ]
