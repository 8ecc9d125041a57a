"""Operations that exist only for the integration tests, registered through ``warehouse.extra_operations``.

The workers import this module by its dotted name (``tests.integration.probe_operations``): they run with
the repository root as their working directory and on their PYTHONPATH (see conftest.py).
"""

from __future__ import annotations

import time

from sqlalchemy import ColumnElement, select

from warehouse.models import Product
from warehouse.operations import ChunkOutcome, ChunkWork, ItemFailure
from warehouse.operations.valuation import Valuation

CHUNK_DELAY_SETTING = "warehouse.test.chunk_delay_seconds"


class SlowValuation(Valuation):
    """The valuation, slowed down so that a run lasts long enough to interfere with.

    It waits before it first touches ``work.session``: the session begins its transaction lazily, so
    the wait holds no connection and no lock, like an operation waiting on the network would.
    """

    name = "slow_valuation"
    description = "The valuation, after a configurable pause per chunk (integration tests only)."

    def process_chunk(self, work: ChunkWork) -> ChunkOutcome:
        time.sleep(float(work.settings.get(CHUNK_DELAY_SETTING, "0.2")))
        return super().process_chunk(work)


HOLD_SETTING = "warehouse.test.hold_seconds"


class HoldingValuation(Valuation):
    """The valuation, pausing after its writes and before its commit: for that while the chunk's
    products are locked by a transaction that sends nothing, as a node frozen between its writes and
    its commit leaves them. Whoever redoes the chunk must not wait on those locks for long."""

    name = "holding_valuation"
    description = "The valuation, holding its row locks for a while before committing (integration tests only)."

    def process_chunk(self, work: ChunkWork) -> ChunkOutcome:
        outcome = super().process_chunk(work)
        time.sleep(float(work.settings.get(HOLD_SETTING, "0.3")))
        return outcome


class PickyValuation(Valuation):
    """The valuation, refusing products whose quantity on hand is negative: each fails with
    "quantity on hand is negative (-3)" and keeps its old stock value. Upserting those products with a
    quantity of zero or more fixes them, and a redrive then values them: what the redrive tests need,
    a fault that a person can fix between the run and its redrive."""

    name = "picky_valuation"
    description = "The valuation, failing products with a negative quantity on hand (tests only)."

    def products_valued(self) -> tuple[ColumnElement[bool], ...]:
        return (*super().products_valued(), Product.qty_on_hand >= 0)

    def process_chunk(self, work: ChunkWork) -> ChunkOutcome:
        valued = super().process_chunk(work)
        negative = work.session.execute(
            select(Product.id, Product.qty_on_hand)
            .where(Product.warehouse_id == work.warehouse_id, self.in_chunk(Product.id, work), Product.qty_on_hand < 0)
            .order_by(Product.id)
        ).all()
        failures = [ItemFailure(item_id, f"quantity on hand is negative ({qty})") for item_id, qty in negative]
        return ChunkOutcome(
            items_done=valued.items_done, items_failed=len(failures), summary=valued.summary, failures=failures
        )
