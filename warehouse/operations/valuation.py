"""Value the stock: stock_value = qty_on_hand * unit_cost, and flag products at or below reorder point."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, func, select, update

from ..models import Product
from .base import ChunkOutcome, ChunkWork, Operation


class Valuation(Operation):
    name = "valuation"
    description = "Set each product's stock value and reorder flag; sum the warehouse's stock value."

    def item_ids(self, warehouse_id: int, today: dt.date) -> Select[tuple[int]]:
        return select(Product.id).where(Product.warehouse_id == warehouse_id)

    def process_chunk(self, work: ChunkWork) -> ChunkOutcome:
        # One set-based statement for the whole chunk; RETURNING hands back what the summary needs.
        statement = (
            update(Product)
            .where(Product.warehouse_id == work.warehouse_id, self.in_chunk(Product.id, work))
            .values(
                # ROUND is a no-op on PostgreSQL's NUMERIC; SQLite multiplies in floating point.
                stock_value=func.round(Product.qty_on_hand * Product.unit_cost, 2),
                needs_reorder=Product.qty_on_hand <= Product.reorder_point,
            )
            .returning(Product.stock_value, Product.needs_reorder)
            .execution_options(synchronize_session=False)
        )
        rows = work.session.execute(statement).all()
        # str() first: SQLite hands back floats, whose shortest repr is the exact two-decimal value.
        total = sum((Decimal(str(value)) for value, _ in rows), Decimal(0))
        reorder = sum(1 for _, needs_reorder in rows if needs_reorder)
        return ChunkOutcome(
            items_done=len(rows),
            summary={"total_stock_value": str(total), "products_needing_reorder": reorder},
        )

    def summarise(self, summaries: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        total = Decimal(0)
        reorder = 0
        for summary in summaries:
            total += Decimal(summary.get("total_stock_value", "0"))
            reorder += int(summary.get("products_needing_reorder", 0))
        return {"total_stock_value": str(total.quantize(Decimal("0.01"))), "products_needing_reorder": reorder}
