"""Bulk changes to a warehouse's products and shipments: set-based upserts, never one ORM object per row.

An upload is one transaction (the request's): a row that breaks a rule refuses the whole upload, and
nothing of it is written.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import InstrumentedAttribute, Session

from .errors import FieldError
from .models import Product, Shipment
from .models.meta import Base

# Keys per "which of these exist already?" query: well under SQLite's limit of bound parameters.
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
        "unit_cost": Decimal(str(row["unit_cost"])).quantize(CENT),  # at most 2 places: checked before
        "reorder_point": row.get("reorder_point", 0),
    }


def _shipment_values(warehouse_id: int, row: Mapping[str, Any]) -> dict[str, Any]:
    shipping_date = row["shipping_date"]
    return {
        "warehouse_id": warehouse_id,
        "reference": row["reference"],
        "ship_to": row["ship_to"],
        "weight_grams": row["weight_grams"],
        "shipping_date": shipping_date if isinstance(shipping_date, dt.date) else dt.date.fromisoformat(shipping_date),
    }


def _dialect_insert(session: Session):  # type: ignore[no-untyped-def]
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def _refuse_repeated_keys(rows: Sequence[Mapping[str, Any]], key: str) -> None:
    first_row_of: dict[Any, int] = {}
    for number, row in enumerate(rows):
        if row[key] in first_row_of:
            raise FieldError(f"[{number}].{key}", f"[{number}].{key} repeats {key} {row[key]!r} of row {first_row_of[row[key]]}")
        first_row_of[row[key]] = number


def _upsert(
    session: Session,
    model: type[Base],
    key: InstrumentedAttribute[str],
    updated_columns: tuple[str, ...],
    values: list[dict[str, Any]],
) -> UpsertCounts:
    """INSERT ... ON CONFLICT (warehouse_id, key) DO UPDATE, one statement executed for many rows.

    One Core statement, compiled once, with the rows as parameters (SQLAlchemy sends them as
    multi-row VALUES batches), rather than a statement with the rows in it, compiled per batch."""
    if not values:
        return UpsertCounts(inserted=0, updated=0)
    table = model.__table__
    warehouse_id = values[0]["warehouse_id"]
    existing = 0
    for start in range(0, len(values), BATCH):
        keys = [row[key.key] for row in values[start : start + BATCH]]
        existing += session.scalar(select(func.count()).where(model.warehouse_id == warehouse_id, key.in_(keys))) or 0
    # The ORM entity, not its table: zope.sqlalchemy only counts ORM statements as changes to commit.
    statement = _dialect_insert(session)(model)
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.warehouse_id, table.c[key.key]],
        set_={column: statement.excluded[column] for column in updated_columns},
    )
    session.execute(statement, values)
    return UpsertCounts(inserted=len(values) - existing, updated=existing)


def _upsert_rows(
    session: Session,
    warehouse_id: int,
    rows: Sequence[Mapping[str, Any]],
    model: type[Base],
    key: InstrumentedAttribute[str],
    to_values: Callable[[int, Mapping[str, Any]], dict[str, Any]],
    updated_columns: tuple[str, ...],
) -> UpsertCounts:
    # A key twice in one upload is the upload's error: which row should win is anyone's guess.
    _refuse_repeated_keys(rows, key.key)
    return _upsert(session, model, key, updated_columns, [to_values(warehouse_id, row) for row in rows])


def _refuse_fractions_of_cents(rows: Sequence[Mapping[str, Any]], key: str) -> None:
    """Money as people write it: 2.5, "2.50" or 3, but never more than two decimal places, which
    would have to be rounded away in silence. (The document lets a number or a decimal string through;
    a JSON number's decimal places are those it was written with.)"""
    for number, row in enumerate(rows):
        try:
            places = -Decimal(str(row[key])).as_tuple().exponent  # type: ignore[operator]
        except (InvalidOperation, TypeError):
            places = 99
        if places > 2:
            field = f"[{number}].{key}"
            raise FieldError(field, f"{field} may have at most two decimal places (cents), not {row[key]}", code="invalid_request")


def upsert_products(session: Session, warehouse_id: int, rows: Sequence[Mapping[str, Any]]) -> UpsertCounts:
    """Insert products or update them by ``sku``."""
    _refuse_fractions_of_cents(rows, "unit_cost")
    return _upsert_rows(
        session, warehouse_id, rows, Product, Product.sku, _product_values,
        ("name", "qty_on_hand", "unit_cost", "reorder_point"),
    )


def upsert_shipments(session: Session, warehouse_id: int, rows: Sequence[Mapping[str, Any]]) -> UpsertCounts:
    """Insert shipments or update them by ``reference``. A label already bought stays as it is."""
    return _upsert_rows(
        session, warehouse_id, rows, Shipment, Shipment.reference, _shipment_values,
        ("ship_to", "weight_grams", "shipping_date"),
    )
