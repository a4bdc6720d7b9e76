"""Outcome tracker tables: schedules, tracked events, price fetches, outcomes, follow-ups.

Revision ID: 0002
Revises: 0001
Create Date: 2026-05-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _pk(table: str) -> sa.PrimaryKeyConstraint:
    return sa.PrimaryKeyConstraint("id", name=f"pk_{table}")


def _fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [f"{target}.id"], name=f"fk_{table}_{column}_{target}", ondelete="CASCADE"
    )


def _indexes(table: str, *columns: tuple[str, ...]) -> None:
    for cols in columns:
        op.create_index(f"ix_{table}_{'_'.join(cols)}", table, list(cols))


def upgrade() -> None:
    op.create_table(
        "outcome_schedules",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("chain", sa.String(32), nullable=False),
        sa.Column("token", sa.String(80), nullable=False),
        sa.Column("first_ts", sa.BigInteger(), nullable=False),
        sa.Column("last_ts", sa.BigInteger(), nullable=False),
        sa.Column("pool", sa.String(80)),
        sa.Column("pool_source", sa.String(16)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        _pk("outcome_schedules"),
        sa.UniqueConstraint(
            "chain", "token", "first_ts", name="uq_outcome_schedules_chain_token_first_ts"
        ),
    )
    _indexes("outcome_schedules", ("token", "first_ts"), ("at",))

    op.create_table(
        "tracked_events",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("schedule_id", Id, nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("chain", sa.String(32), nullable=False),
        sa.Column("token", sa.String(80), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("event_ts", sa.BigInteger(), nullable=False),
        sa.Column("groups", sa.JSON(), nullable=False),
        sa.Column("alert_created_at", sa.Double()),
        sa.Column("reply_sink", sa.String(64)),
        sa.Column("reply_to", sa.String(128)),
        _pk("tracked_events"),
        _fk("tracked_events", "schedule_id", "outcome_schedules"),
        sa.UniqueConstraint(
            "kind",
            "chain",
            "token",
            "level",
            "event_ts",
            name="uq_tracked_events_kind_chain_token_level_event_ts",
        ),
    )
    _indexes("tracked_events", ("schedule_id",), ("token", "event_ts"), ("event_ts",), ("at",))

    op.create_table(
        "price_fetches",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("schedule_id", Id, nullable=False),
        sa.Column("stage", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("before_ts", sa.BigInteger(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("due", sa.Double(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("rate_limited", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("pool", sa.String(80)),
        sa.Column("fetched_at", sa.Double()),
        sa.Column("complete_until", sa.Double()),
        sa.Column("candles", sa.JSON()),
        sa.Column("skipped", sa.Integer(), nullable=False),
        _pk("price_fetches"),
        _fk("price_fetches", "schedule_id", "outcome_schedules"),
        sa.UniqueConstraint("schedule_id", "stage", name="uq_price_fetches_schedule_id_stage"),
    )
    _indexes("price_fetches", ("state", "due"))

    op.create_table(
        "outcomes",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("event_id", Id, nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("entry", sa.Double()),
        sa.Column("peak", sa.Double()),
        sa.Column("peak_close", sa.Double()),
        sa.Column("win", sa.Boolean()),
        sa.Column("fields", sa.JSON(), nullable=False),
        _pk("outcomes"),
        _fk("outcomes", "event_id", "tracked_events"),
        sa.UniqueConstraint("event_id", name="uq_outcomes_event_id"),
    )
    _indexes("outcomes", ("status",))

    op.create_table(
        "followups",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("event_id", Id, nullable=False),
        sa.Column("checkpoint", sa.Integer(), nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("sink", sa.String(64), nullable=False),
        sa.Column("message_id", sa.String(128)),
        sa.Column("text", sa.Text(), nullable=False),
        _pk("followups"),
        _fk("followups", "event_id", "tracked_events"),
        sa.UniqueConstraint("event_id", "checkpoint", name="uq_followups_event_id_checkpoint"),
    )


def downgrade() -> None:
    for table in (
        "followups",
        "outcomes",
        "price_fetches",
        "tracked_events",
        "outcome_schedules",
    ):
        op.drop_table(table)
