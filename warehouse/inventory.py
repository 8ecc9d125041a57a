"""Bulk changes to a warehouse's products: set-based upserts, never one ORM object per row."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from .errors import FieldError
from .models import Product

BATCH = 1000
CENT = Decimal("0.01")


@dataclass(frozen=True)
class UpsertCounts:
    inserted: int
    updated: int


def _product_values(warehouse_id: int, row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "warehouse_id": warehouse_id,
        "sku": row["sku"],
        "name": row.get("name", ""),
        "qty_on_hand": row["qty_on_hand"],
        "unit_cost": Decimal(str(row["unit_cost"])).quantize(CENT, rounding=ROUND_HALF_UP),
        "reorder_point": row.get("reorder_point", 0),
    }


def _dialect_insert(session: Session):  # type: ignore[no-untyped-def]
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def upsert_products(session: Session, warehouse_id: int, rows: Sequence[Mapping[str, Any]]) -> UpsertCounts:
    """Insert products or update them by ``sku``; a sku twice in one upload is the upload's error."""
    first_row_of: dict[str, int] = {}
    for number, row in enumerate(rows):
        if row["sku"] in first_row_of:
            raise FieldError(f"[{number}].sku", f"duplicate sku {row['sku']!r} (first in row {first_row_of[row['sku']]})")
        first_row_of[row["sku"]] = number

    insert = _dialect_insert(session)
    existing = 0
    for start in range(0, len(rows), BATCH):
        batch = [_product_values(warehouse_id, row) for row in rows[start : start + BATCH]]
        existing += session.scalar(
            select(func.count()).where(
                Product.warehouse_id == warehouse_id, Product.sku.in_([values["sku"] for values in batch])
            )
        ) or 0
        statement = insert(Product).values(batch)
        statement = statement.on_conflict_do_update(
            index_elements=[Product.warehouse_id, Product.sku],
            set_={
                column: statement.excluded[column]
                for column in ("name", "qty_on_hand", "unit_cost", "reorder_point")
            },
        )
        session.execute(statement)
    return UpsertCounts(inserted=len(rows) - existing, updated=existing)
