"""The history's tables (SQLAlchemy Core), one per kind of event, append-only.

Every table has a surrogate ``id`` (what later tables point at: outcomes, fetch schedules) and a
natural unique key that makes a replayed, backfilled, caught-up or re-delivered event a no-op
(``INSERT … ON CONFLICT DO NOTHING``). Times are unix seconds: message dates as integers (what
Telegram sends), observation times as doubles. docs/history.md describes every column.

This module is the *current* shape, for queries; the database gets its shape only from the
Alembic migrations in ``migrations/versions`` (a test checks that both agree).
"""

from __future__ import annotations

import sqlalchemy as sa

#: Constraint names: stable across dialects, so a later migration can name what it drops.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING)

#: 64-bit ids; SQLite only auto-increments a column declared exactly INTEGER.
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Time: sa.Double[float] = sa.Double()
Json = sa.JSON()


def _id() -> sa.Column[int]:
    return sa.Column("id", Id, primary_key=True, autoincrement=True)


mentions = sa.Table(
    "mentions",
    metadata,
    _id(),
    sa.Column("at", Time, nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("chat_id", sa.BigInteger, nullable=False),
    sa.Column("group_name", sa.String(128), nullable=False),
    sa.Column("message_id", sa.BigInteger, nullable=False),
    sa.Column("message_ts", sa.BigInteger, nullable=False),
    sa.Column("received_at", Time),
    sa.Column("sender_id", sa.BigInteger),
    sa.Column("is_forward", sa.Boolean, nullable=False),
    sa.Column("fwd_peer", sa.BigInteger),
    sa.Column("fwd_name", sa.Text),
    sa.Column("fwd_message_id", sa.BigInteger),
    sa.Column("fwd_date", sa.BigInteger),
    sa.Column("token", sa.String(80), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("chain", sa.String(32), nullable=False),
    sa.Column("pair", sa.String(80)),
    sa.Column("group_count", sa.Integer, nullable=False),
    sa.Column("text", sa.Text),
    sa.Column("text_sha1", sa.String(40), nullable=False),
    sa.Column("text_simhash", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("chat_id", "message_id", "token"),
    sa.Index(None, "token", "message_ts"),
    sa.Index(None, "group_name", "message_ts"),
    sa.Index(None, "message_ts"),
    sa.Index(None, "at"),
)

levels = sa.Table(
    "levels",
    metadata,
    _id(),
    sa.Column("at", Time, nullable=False),
    sa.Column("token", sa.String(80), nullable=False),
    sa.Column("chain", sa.String(32), nullable=False),
    sa.Column("level", sa.Integer, nullable=False),
    sa.Column("ts", sa.BigInteger, nullable=False),
    sa.Column("groups", Json, nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("chat_id", sa.BigInteger, nullable=False),
    sa.Column("group_name", sa.String(128), nullable=False),
    sa.Column("message_id", sa.BigInteger, nullable=False),
    sa.Column("message_ts", sa.BigInteger, nullable=False),
    sa.Column("received_at", Time),
    sa.UniqueConstraint("chain", "token", "level", "ts"),
    sa.Index(None, "ts"),
    sa.Index(None, "at"),
)

verdicts = sa.Table(
    "verdicts",
    metadata,
    _id(),
    sa.Column("at", Time, nullable=False),
    sa.Column("token", sa.String(80), nullable=False),
    sa.Column("chain", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("reason", sa.String(32), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("pair_address", sa.String(80)),
    sa.Column("price_usd", sa.Double),
    sa.Column("liquidity_usd", sa.Double),
    sa.Column("volume_h24", sa.Double),
    sa.Column("market_cap", sa.Double),
    sa.Column("snapshot", Json),
    sa.UniqueConstraint("chain", "token", "at"),
    sa.Index(None, "token", "at"),
    sa.Index(None, "at"),
)

buys = sa.Table(
    "buys",
    metadata,
    _id(),
    sa.Column("at", Time, nullable=False),
    sa.Column("chain", sa.String(32), nullable=False),
    sa.Column("tx_hash", sa.String(128), nullable=False),
    sa.Column("wallet", sa.String(80), nullable=False),
    sa.Column("wallet_label", sa.Text),
    sa.Column("token", sa.String(80), nullable=False),
    sa.Column("symbol", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("usd", sa.Double),
    sa.Column("ts", Time, nullable=False),
    sa.Column("dex", sa.Text, nullable=False),
    sa.Column("first_interaction", sa.Boolean, nullable=False),
    sa.UniqueConstraint("chain", "tx_hash", "wallet", "token"),
    sa.Index(None, "token", "ts"),
    sa.Index(None, "at"),
)

scores = sa.Table(
    "scores",
    metadata,
    _id(),
    sa.Column("at", Time, nullable=False),
    sa.Column("token", sa.String(80), nullable=False),
    sa.Column("chain", sa.String(32), nullable=False),
    sa.Column("tx_hash", sa.String(128), nullable=False),
    sa.Column("wallet", sa.String(80), nullable=False),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("rescore", sa.Boolean, nullable=False),
    sa.Column("base", sa.Double, nullable=False),
    sa.Column("total", sa.Double, nullable=False),
    sa.Column("consensus_points", sa.Integer, nullable=False),
    sa.Column("consensus_count", sa.Integer, nullable=False),
    sa.Column("consensus_groups", Json, nullable=False),
    sa.Column("degraded", sa.Boolean, nullable=False),
    sa.Column("consensus_reason", sa.Text, nullable=False),
    sa.Column("lines", Json, nullable=False),
    sa.UniqueConstraint("chain", "token", "tx_hash", "wallet", "at"),
    sa.Index(None, "token", "at"),
    sa.Index(None, "at"),
)

alerts = sa.Table(
    "alerts",
    metadata,
    _id(),
    sa.Column("at", Time, nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("token", sa.String(80), nullable=False),
    sa.Column("chain", sa.String(32), nullable=False),
    sa.Column("symbol", sa.Text, nullable=False),
    sa.Column("total", sa.Double, nullable=False),
    sa.Column("consensus_count", sa.Integer, nullable=False),
    sa.Column("degraded", sa.Boolean, nullable=False),
    sa.Column("pair_address", sa.String(80), nullable=False),
    sa.Column("price_usd", sa.Double),
    sa.Column("tx_hash", sa.String(128), nullable=False),
    sa.Column("buy", Json, nullable=False),
    sa.Column("snapshot", Json, nullable=False),
    sa.Column("card", Json, nullable=False),
    sa.UniqueConstraint("chain", "token", "created_at"),
    sa.Index(None, "token", "created_at"),
    sa.Index(None, "at"),
)

alert_deliveries = sa.Table(
    "alert_deliveries",
    metadata,
    _id(),
    sa.Column("alert_id", Id, sa.ForeignKey("alerts.id", ondelete="CASCADE"), nullable=False),
    sa.Column("sink", sa.String(64), nullable=False),
    sa.Column("message_id", sa.String(128)),
    sa.UniqueConstraint("alert_id", "sink"),
)

#: Tables in write order (a delivery needs its alert's id).
TABLES = (mentions, levels, verdicts, buys, scores, alerts, alert_deliveries)

# -- outcomes (revision 0002): what the outcome tracker schedules, fetches and computes ----------

#: One schedule per token and window: the events on a token within one store window share its
#: price fetches (docs/outcomes.md, "The tracker").
outcome_schedules = sa.Table(
    "outcome_schedules",
    metadata,
    _id(),
    sa.Column("at", Time, nullable=False),
    sa.Column("chain", sa.String(32), nullable=False),
    sa.Column("token", sa.String(80), nullable=False),
    sa.Column("first_ts", sa.BigInteger, nullable=False),
    sa.Column("last_ts", sa.BigInteger, nullable=False),
    sa.Column("pool", sa.String(80)),
    sa.Column("pool_source", sa.String(16)),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("errors", sa.Integer, nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.UniqueConstraint("chain", "token", "first_ts"),
    sa.Index(None, "token", "first_ts"),
    sa.Index(None, "at"),
)

#: Every event that gets an outcome (section 1): level reached, first score, alert.
tracked_events = sa.Table(
    "tracked_events",
    metadata,
    _id(),
    sa.Column(
        "schedule_id",
        Id,
        sa.ForeignKey("outcome_schedules.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("at", Time, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("chain", sa.String(32), nullable=False),
    sa.Column("token", sa.String(80), nullable=False),
    sa.Column("level", sa.Integer, nullable=False),
    sa.Column("event_ts", sa.BigInteger, nullable=False),
    sa.Column("groups", Json, nullable=False),
    sa.Column("alert_created_at", Time),
    sa.Column("reply_sink", sa.String(64)),
    sa.Column("reply_to", sa.String(128)),
    sa.UniqueConstraint("kind", "chain", "token", "level", "event_ts"),
    sa.Index(None, "schedule_id"),
    sa.Index(None, "token", "event_ts"),
    sa.Index(None, "event_ts"),
    sa.Index(None, "at"),
)

#: The due fetches of each schedule and, once done, the candles they brought.
price_fetches = sa.Table(
    "price_fetches",
    metadata,
    _id(),
    sa.Column(
        "schedule_id",
        Id,
        sa.ForeignKey("outcome_schedules.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("stage", sa.Integer, nullable=False),
    sa.Column("step", sa.Integer, nullable=False),
    sa.Column("before_ts", sa.BigInteger, nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("due", Time, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("rate_limited", sa.Integer, nullable=False),
    sa.Column("last_error", sa.Text, nullable=False),
    sa.Column("pool", sa.String(80)),
    sa.Column("fetched_at", Time),
    sa.Column("complete_until", Time),
    sa.Column("candles", Json),
    sa.Column("skipped", sa.Integer, nullable=False),
    sa.UniqueConstraint("schedule_id", "stage"),
    sa.Index(None, "state", "due"),
)

#: The latest outcome of each tracked event (replaced while it is ``tracking``).
outcomes = sa.Table(
    "outcomes",
    metadata,
    _id(),
    sa.Column(
        "event_id", Id, sa.ForeignKey("tracked_events.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("at", Time, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("entry", sa.Double),
    sa.Column("peak", sa.Double),
    sa.Column("peak_close", sa.Double),
    sa.Column("win", sa.Boolean),
    sa.Column("fields", Json, nullable=False),
    sa.UniqueConstraint("event_id"),
    sa.Index(None, "status"),
)

#: Alert follow-up replies sent (one per alert and checkpoint).
followups = sa.Table(
    "followups",
    metadata,
    _id(),
    sa.Column(
        "event_id", Id, sa.ForeignKey("tracked_events.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("checkpoint", sa.Integer, nullable=False),
    sa.Column("at", Time, nullable=False),
    sa.Column("sink", sa.String(64), nullable=False),
    sa.Column("message_id", sa.String(128)),
    sa.Column("text", sa.Text, nullable=False),
    sa.UniqueConstraint("event_id", "checkpoint"),
)

#: The outcome tracker's tables, in write order.
TRACKER_TABLES = (outcome_schedules, tracked_events, price_fetches, outcomes, followups)
#: Every table.
ALL_TABLES = TABLES + TRACKER_TABLES
