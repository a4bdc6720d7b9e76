"""History tables: mentions, levels, verdicts, buys, scores, alerts, alert deliveries.

Revision ID: 0001
Revises:
Create Date: 2026-05-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _pk(table: str) -> sa.PrimaryKeyConstraint:
    return sa.PrimaryKeyConstraint("id", name=f"pk_{table}")


def _indexes(table: str, *columns: tuple[str, ...]) -> None:
    for cols in columns:
        op.create_index(f"ix_{table}_{'_'.join(cols)}", table, list(cols))


def upgrade() -> None:
    op.create_table(
        "mentions",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("group_name", sa.String(128), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("message_ts", sa.BigInteger(), nullable=False),
        sa.Column("received_at", sa.Double()),
        sa.Column("sender_id", sa.BigInteger()),
        sa.Column("is_forward", sa.Boolean(), nullable=False),
        sa.Column("fwd_peer", sa.BigInteger()),
        sa.Column("fwd_name", sa.Text()),
        sa.Column("fwd_message_id", sa.BigInteger()),
        sa.Column("fwd_date", sa.BigInteger()),
        sa.Column("token", sa.String(80), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("chain", sa.String(32), nullable=False),
        sa.Column("pair", sa.String(80)),
        sa.Column("group_count", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text()),
        sa.Column("text_sha1", sa.String(40), nullable=False),
        sa.Column("text_simhash", sa.BigInteger(), nullable=False),
        _pk("mentions"),
        sa.UniqueConstraint(
            "chat_id", "message_id", "token", name="uq_mentions_chat_id_message_id_token"
        ),
    )
    _indexes(
        "mentions", ("token", "message_ts"), ("group_name", "message_ts"), ("message_ts",), ("at",)
    )

    op.create_table(
        "levels",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("token", sa.String(80), nullable=False),
        sa.Column("chain", sa.String(32), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("groups", sa.JSON(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("group_name", sa.String(128), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("message_ts", sa.BigInteger(), nullable=False),
        sa.Column("received_at", sa.Double()),
        _pk("levels"),
        sa.UniqueConstraint("chain", "token", "level", "ts", name="uq_levels_chain_token_level_ts"),
    )
    _indexes("levels", ("ts",), ("at",))

    op.create_table(
        "verdicts",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("token", sa.String(80), nullable=False),
        sa.Column("chain", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("pair_address", sa.String(80)),
        sa.Column("price_usd", sa.Double()),
        sa.Column("liquidity_usd", sa.Double()),
        sa.Column("volume_h24", sa.Double()),
        sa.Column("market_cap", sa.Double()),
        sa.Column("snapshot", sa.JSON()),
        _pk("verdicts"),
        sa.UniqueConstraint("chain", "token", "at", name="uq_verdicts_chain_token_at"),
    )
    _indexes("verdicts", ("token", "at"), ("at",))

    op.create_table(
        "buys",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("chain", sa.String(32), nullable=False),
        sa.Column("tx_hash", sa.String(128), nullable=False),
        sa.Column("wallet", sa.String(80), nullable=False),
        sa.Column("wallet_label", sa.Text()),
        sa.Column("token", sa.String(80), nullable=False),
        sa.Column("symbol", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("usd", sa.Double()),
        sa.Column("ts", sa.Double(), nullable=False),
        sa.Column("dex", sa.Text(), nullable=False),
        sa.Column("first_interaction", sa.Boolean(), nullable=False),
        _pk("buys"),
        sa.UniqueConstraint(
            "chain", "tx_hash", "wallet", "token", name="uq_buys_chain_tx_hash_wallet_token"
        ),
    )
    _indexes("buys", ("token", "ts"), ("at",))

    op.create_table(
        "scores",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("token", sa.String(80), nullable=False),
        sa.Column("chain", sa.String(32), nullable=False),
        sa.Column("tx_hash", sa.String(128), nullable=False),
        sa.Column("wallet", sa.String(80), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("rescore", sa.Boolean(), nullable=False),
        sa.Column("base", sa.Double(), nullable=False),
        sa.Column("total", sa.Double(), nullable=False),
        sa.Column("consensus_points", sa.Integer(), nullable=False),
        sa.Column("consensus_count", sa.Integer(), nullable=False),
        sa.Column("consensus_groups", sa.JSON(), nullable=False),
        sa.Column("degraded", sa.Boolean(), nullable=False),
        sa.Column("consensus_reason", sa.Text(), nullable=False),
        sa.Column("lines", sa.JSON(), nullable=False),
        _pk("scores"),
        sa.UniqueConstraint(
            "chain",
            "token",
            "tx_hash",
            "wallet",
            "at",
            name="uq_scores_chain_token_tx_hash_wallet_at",
        ),
    )
    _indexes("scores", ("token", "at"), ("at",))

    op.create_table(
        "alerts",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("token", sa.String(80), nullable=False),
        sa.Column("chain", sa.String(32), nullable=False),
        sa.Column("symbol", sa.Text(), nullable=False),
        sa.Column("total", sa.Double(), nullable=False),
        sa.Column("consensus_count", sa.Integer(), nullable=False),
        sa.Column("degraded", sa.Boolean(), nullable=False),
        sa.Column("pair_address", sa.String(80), nullable=False),
        sa.Column("price_usd", sa.Double()),
        sa.Column("tx_hash", sa.String(128), nullable=False),
        sa.Column("buy", sa.JSON(), nullable=False),
        sa.Column("snapshot", sa.JSON(), nullable=False),
        sa.Column("card", sa.JSON(), nullable=False),
        _pk("alerts"),
        sa.UniqueConstraint(
            "chain", "token", "created_at", name="uq_alerts_chain_token_created_at"
        ),
    )
    _indexes("alerts", ("token", "created_at"), ("at",))

    op.create_table(
        "alert_deliveries",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("alert_id", Id, nullable=False),
        sa.Column("sink", sa.String(64), nullable=False),
        sa.Column("message_id", sa.String(128)),
        _pk("alert_deliveries"),
        sa.ForeignKeyConstraint(
            ["alert_id"],
            ["alerts.id"],
            name="fk_alert_deliveries_alert_id_alerts",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("alert_id", "sink", name="uq_alert_deliveries_alert_id_sink"),
    )


def downgrade() -> None:
    for table in ("alert_deliveries", "alerts", "scores", "buys", "verdicts", "levels", "mentions"):
        op.drop_table(table)
