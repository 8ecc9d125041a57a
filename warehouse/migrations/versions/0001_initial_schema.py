"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-23 12:57:10.948908
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out here rather than imported from warehouse.models: a migration must keep creating the
# schema of its day, whatever the models become later.
BIG_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
ACTIVE_RUN = "status IN ('pending', 'running', 'cancelling')"
# Server defaults use sa.func.now(), not text("now()"): SQLite has no now() and gets CURRENT_TIMESTAMP.


def upgrade() -> None:
    op.create_table(
        "warehouses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_warehouses")),
        sa.UniqueConstraint("code", name=op.f("uq_warehouses_code")),
    )

    op.create_table(
        "products",
        sa.Column("id", BIG_KEY, nullable=False),
        sa.Column("warehouse_id", sa.Integer(), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), server_default="", nullable=False),
        sa.Column("qty_on_hand", sa.Integer(), server_default="0", nullable=False),
        sa.Column("unit_cost", sa.Numeric(precision=14, scale=2), server_default="0", nullable=False),
        sa.Column("reorder_point", sa.Integer(), server_default="0", nullable=False),
        sa.Column("stock_value", sa.Numeric(precision=20, scale=2), nullable=True),
        sa.Column("needs_reorder", sa.Boolean(), nullable=True),
        sa.ForeignKeyConstraint(
            ["warehouse_id"],
            ["warehouses.id"],
            name=op.f("fk_products_warehouse_id_warehouses"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_products")),
        sa.UniqueConstraint("warehouse_id", "sku", name=op.f("uq_products_warehouse_id_sku")),
    )
    op.create_index("ix_products_warehouse_id_id", "products", ["warehouse_id", "id"])

    op.create_table(
        "shipments",
        sa.Column("id", BIG_KEY, nullable=False),
        sa.Column("warehouse_id", sa.Integer(), nullable=False),
        sa.Column("reference", sa.String(length=64), nullable=False),
        sa.Column("ship_to", sa.Text(), nullable=False),
        sa.Column("weight_grams", sa.Integer(), nullable=False),
        sa.Column("shipping_date", sa.Date(), nullable=False),
        sa.Column("label_id", sa.String(length=128), nullable=True),
        sa.Column("tracking_number", sa.String(length=128), nullable=True),
        sa.Column("label_url", sa.Text(), nullable=True),
        sa.Column("label_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["warehouse_id"],
            ["warehouses.id"],
            name=op.f("fk_shipments_warehouse_id_warehouses"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shipments")),
        sa.UniqueConstraint("warehouse_id", "reference", name=op.f("uq_shipments_warehouse_id_reference")),
    )
    op.create_index("ix_shipments_warehouse_id_shipping_date", "shipments", ["warehouse_id", "shipping_date"])

    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("warehouse_id", sa.Integer(), nullable=False),
        sa.Column("operation", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("chunk_size", sa.Integer(), nullable=False),
        sa.Column("tolerated_failure_percent", sa.Numeric(precision=5, scale=2), nullable=False),
        sa.Column("last_item_id", BIG_KEY, nullable=True),
        sa.Column("chunks_total", sa.Integer(), nullable=False),
        sa.Column("chunks_done", sa.Integer(), nullable=False),
        sa.Column("chunks_failed", sa.Integer(), nullable=False),
        sa.Column("chunks_skipped", sa.Integer(), nullable=False),
        sa.Column("items_total", sa.Integer(), nullable=False),
        sa.Column("items_done", sa.Integer(), nullable=False),
        sa.Column("items_failed", sa.Integer(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cancel_requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["warehouse_id"],
            ["warehouses.id"],
            name=op.f("fk_runs_warehouse_id_warehouses"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
    )
    op.create_index("ix_runs_warehouse_id_id", "runs", ["warehouse_id", "id"])
    # At most one active run of an operation per warehouse: a partial unique index on both databases.
    op.create_index(
        "uq_runs_one_active_per_operation",
        "runs",
        ["warehouse_id", "operation"],
        unique=True,
        postgresql_where=sa.text(ACTIVE_RUN),
        sqlite_where=sa.text(ACTIVE_RUN),
    )

    op.create_table(
        "run_chunks",
        sa.Column("id", BIG_KEY, nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("start_id", BIG_KEY, nullable=False),
        sa.Column("end_id", BIG_KEY, nullable=False),
        sa.Column("item_count", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("items_done", sa.Integer(), nullable=False),
        sa.Column("items_failed", sa.Integer(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("worker_hostname", sa.String(length=255), nullable=True),
        sa.Column("task_id", sa.String(length=255), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["runs.id"],
            name=op.f("fk_run_chunks_run_id_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run_chunks")),
        sa.UniqueConstraint("run_id", "start_id", name=op.f("uq_run_chunks_run_id_start_id")),
    )
    op.create_index("ix_run_chunks_run_id_status", "run_chunks", ["run_id", "status"])

    op.create_table(
        "run_item_failures",
        sa.Column("id", BIG_KEY, nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("chunk_id", BIG_KEY, nullable=False),
        sa.Column("item_id", BIG_KEY, nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_run_item_failures_run_id_runs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["chunk_id"], ["run_chunks.id"], name=op.f("fk_run_item_failures_chunk_id_run_chunks"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run_item_failures")),
    )
    op.create_index("ix_run_item_failures_run_id_id", "run_item_failures", ["run_id", "id"])


def downgrade() -> None:
    # Dropping a table drops its indexes with it; children before parents for the foreign keys.
    for table in ("run_item_failures", "run_chunks", "runs", "shipments", "products", "warehouses"):
        op.drop_table(table)
