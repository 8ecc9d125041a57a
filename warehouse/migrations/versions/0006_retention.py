"""runs.details_purged_at: retention removes an old run's chunk rows and item failures; an index of
the runs whose details are kept, by finish time, for retention to find the old ones; and one on
run_item_failures.chunk_id, so that deleting chunks does not scan the failures for each one

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("details_purged_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_runs_details_kept_finished_at", "runs", ["finished_at"],
                    postgresql_where=sa.text("details_purged_at IS NULL"), sqlite_where=sa.text("details_purged_at IS NULL"))
    # A plain CREATE INDEX (not CONCURRENTLY, which cannot run inside the migration's transaction):
    # it holds up new item failures while it builds, which on a table of millions takes seconds.
    op.create_index("ix_run_item_failures_chunk_id", "run_item_failures", ["chunk_id"])


def downgrade() -> None:
    op.drop_index("ix_run_item_failures_chunk_id", table_name="run_item_failures")
    op.drop_index("ix_runs_details_kept_finished_at", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("details_purged_at")
