"""What a warehouse holds: products and the shipments leaving it."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from .meta import Base

# BigInteger keys on PostgreSQL, but plain INTEGER on SQLite, where only "INTEGER PRIMARY KEY"
# is an alias of the rowid and autoincrements.
BigIntKey = BigInteger().with_variant(Integer(), "sqlite")
MONEY = Numeric(14, 2)
STOCK_VALUE = Numeric(20, 2)


class Warehouse(Base):
    __tablename__ = "warehouses"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Product(Base):
    __tablename__ = "products"
    __table_args__ = (
        UniqueConstraint("warehouse_id", "sku", name="uq_products_warehouse_id_sku"),
        # Keyset chunking walks (warehouse_id, id) in order; this index makes it an index-only scan.
        Index("ix_products_warehouse_id_id", "warehouse_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True)
    warehouse_id: Mapped[int] = mapped_column(ForeignKey("warehouses.id", ondelete="CASCADE"))
    sku: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200), default="", server_default="")
    qty_on_hand: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    unit_cost: Mapped[Decimal] = mapped_column(MONEY, default=0, server_default="0")
    reorder_point: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    stock_value: Mapped[Decimal | None] = mapped_column(STOCK_VALUE)
    needs_reorder: Mapped[bool | None] = mapped_column(Boolean)


class Shipment(Base):
    __tablename__ = "shipments"
    __table_args__ = (
        UniqueConstraint("warehouse_id", "reference", name="uq_shipments_warehouse_id_reference"),
        Index("ix_shipments_warehouse_id_shipping_date", "warehouse_id", "shipping_date"),
    )

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True)
    warehouse_id: Mapped[int] = mapped_column(ForeignKey("warehouses.id", ondelete="CASCADE"))
    reference: Mapped[str] = mapped_column(String(64))
    ship_to: Mapped[str] = mapped_column(Text)
    weight_grams: Mapped[int] = mapped_column(Integer)
    shipping_date: Mapped[dt.date] = mapped_column(Date)
    label_id: Mapped[str | None] = mapped_column(String(128))
    tracking_number: Mapped[str | None] = mapped_column(String(128))
    label_url: Mapped[str | None] = mapped_column(Text)
    label_error: Mapped[str | None] = mapped_column(Text)
