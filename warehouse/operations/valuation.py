"""Value the stock: stock_value = qty_on_hand * unit_cost, and flag products at or below reorder point."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Select, bindparam, func, select, update

from ..models import Product
from .base import ChunkOutcome, ChunkWork, Operation


def _summary_of(rows: Any) -> Select[Any]:
    """What a chunk's summary needs of ``rows`` (products, or an UPDATE's RETURNING): one row."""
    return select(
        func.count(),
        # ROUND: exact on NUMERIC; on SQLite it drops the float sum's last-digit noise.
        func.round(func.coalesce(func.sum(rows.c.stock_value), 0), 2),
        func.count().filter(rows.c.needs_reorder),
    )


class Valuation(Operation):
    name = "valuation"
    item_key = Product.__table__.c.sku
    description = "Set each product's stock value and reorder flag; sum the warehouse's stock value."

    def __init__(self) -> None:
        # Built once, with bound parameters (b_*: SQLAlchemy reserves column names), because building
        # a statement per chunk cost the worker more CPU than the database spends running it (see
        # docs/benchmarks.md).
        products = self.products_valued()
        # One set-based statement for the whole chunk...
        self._value_chunk = (
            update(Product)
            .where(*products)
            .values(
                # ROUND is a no-op on PostgreSQL's NUMERIC; SQLite multiplies in floating point.
                stock_value=func.round(Product.qty_on_hand * Product.unit_cost, 2),
                needs_reorder=Product.qty_on_hand <= Product.reorder_point,
            )
            .execution_options(synchronize_session=False)
        )
        # ...and the summary summed by the database, in the same transaction, so it sees the chunk's
        # writes: one row back rather than one Decimal per product (RETURNING every row cost the
        # worker more CPU than the UPDATE cost the database).
        self._sum_chunk = _summary_of(Product.__table__).where(*products)
        # On PostgreSQL both in one statement (the UPDATE's RETURNING summed by a SELECT around it):
        # one round trip, and the chunk's rows are not looked up a second time.
        self._value_and_sum_chunk = _summary_of(
            self._value_chunk.returning(Product.stock_value, Product.needs_reorder).cte("valued")
        )

    def products_valued(self) -> tuple[ColumnElement[bool], ...]:
        """The products of one chunk, with the chunk as bound parameters (a subclass may narrow it)."""
        return (
            Product.warehouse_id == bindparam("b_warehouse_id"),
            Product.id.between(bindparam("b_start_id"), bindparam("b_end_id")),
        )

    def item_ids(self, warehouse_id: int, today: dt.date) -> Select[tuple[int]]:
        return select(Product.id).where(Product.warehouse_id == warehouse_id)

    def process_chunk(self, work: ChunkWork) -> ChunkOutcome:
        # The whole chunk every time, redriven or not (work.previous_summary is not needed): valuing a
        # product twice writes the same value, and the summary is summed from what is written.
        chunk = {"b_warehouse_id": work.warehouse_id, "b_start_id": work.start_id, "b_end_id": work.end_id}
        # On the session's Core connection: no ORM object is loaded or changed, and the ORM's
        # bulk-UPDATE path cost the worker more per chunk than the database took to run it.
        connection = work.session.connection()
        if connection.dialect.name == "postgresql":
            done, total, reorder = connection.execute(self._value_and_sum_chunk, chunk).one()
        else:  # SQLite has no UPDATE inside WITH
            connection.execute(self._value_chunk, chunk)
            done, total, reorder = connection.execute(self._sum_chunk, chunk).one()
        return ChunkOutcome(
            items_done=done,
            # str() first: SQLite hands back a float, whose shortest repr is the two-decimal value.
            summary={"total_stock_value": str(Decimal(str(total)).quantize(Decimal("0.01"))), "products_needing_reorder": reorder},
        )

    def summarise(self, summaries: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        total = Decimal(0)
        reorder = 0
        for summary in summaries:
            total += Decimal(summary.get("total_stock_value", "0"))
            reorder += int(summary.get("products_needing_reorder", 0))
        return {"total_stock_value": str(total.quantize(Decimal("0.01"))), "products_needing_reorder": reorder}
