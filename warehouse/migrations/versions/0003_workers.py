"""workers: the processes that run chunks, with their heartbeats; run_chunks.worker_id

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 21:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("id", BIG_KEY, nullable=False),
        sa.Column("node", sa.String(length=255), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("chunks_done", sa.Integer(), nullable=False),
        sa.Column("chunks_failed", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workers")),
    )
    op.create_index("ix_workers_last_seen_at", "workers", ["last_seen_at"])
    with op.batch_alter_table("run_chunks") as batch:
        batch.add_column(sa.Column("worker_id", BIG_KEY, nullable=True))
        batch.create_foreign_key(
            op.f("fk_run_chunks_worker_id_workers"), "workers", ["worker_id"], ["id"], ondelete="SET NULL"
        )
    op.create_index(
        "ix_run_chunks_running_worker_id",
        "run_chunks",
        ["worker_id"],
        postgresql_where=sa.text("status = 'running'"),
        sqlite_where=sa.text("status = 'running'"),
    )


def downgrade() -> None:
    op.drop_index("ix_run_chunks_running_worker_id", table_name="run_chunks")
    with op.batch_alter_table("run_chunks") as batch:
        batch.drop_constraint(op.f("fk_run_chunks_worker_id_workers"), type_="foreignkey")
        batch.drop_column("worker_id")
    op.drop_index("ix_workers_last_seen_at", table_name="workers")
    op.drop_table("workers")
