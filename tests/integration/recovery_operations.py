"""Probe operations of tests/integration/test_recovery.py, registered through ``warehouse.extra_operations``.

The workers import this module by its dotted name (``tests.integration.recovery_operations``): they run
with the repository root as their working directory and on their PYTHONPATH (see test_recovery.py).
"""

from __future__ import annotations

import time

from sqlalchemy import ColumnElement, select

from warehouse.models import Product
from warehouse.operations import ChunkOutcome, ChunkWork, ItemFailure, Operation
from warehouse.operations.valuation import Valuation

CHUNK_DELAY_SETTING = "warehouse.test.recovery_chunk_delay_seconds"
# One product in FAIL_EVERY fails for good: 5 % of every chunk of 20 or more.
FAIL_EVERY = 20


class PacedValuation(Valuation):
    """The valuation after a pause per chunk, so that a run lasts long enough to break it halfway.

    The pause comes before ``work.session`` is first used: the session begins its transaction
    lazily, so a pausing chunk holds no connection and no lock.
    """

    name = "recovery_paced_valuation"
    description = "The valuation, after a configurable pause per chunk (integration tests only)."

    def process_chunk(self, work: ChunkWork) -> ChunkOutcome:
        time.sleep(float(work.settings.get(CHUNK_DELAY_SETTING, "0.1")))
        return super().process_chunk(work)


class PartlyFailingValuation(Valuation):
    """The valuation, except that every product whose id is a multiple of FAIL_EVERY fails for good:
    it is left unvalued and recorded as a failed item."""

    name = "recovery_partly_failing_valuation"
    description = "The valuation, failing one product in twenty (integration tests only)."

    def products_valued(self) -> tuple[ColumnElement[bool], ...]:
        # The valuation's statements cover the chunk's products less the failing ones.
        return (*super().products_valued(), Product.id % FAIL_EVERY != 0)

    def process_chunk(self, work: ChunkWork) -> ChunkOutcome:
        outcome = super().process_chunk(work)
        failing = work.session.scalars(
            select(Product.id)
            .where(
                Product.warehouse_id == work.warehouse_id,
                Operation.in_chunk(Product.id, work),
                Product.id % FAIL_EVERY == 0,
            )
            .order_by(Product.id)
        ).all()
        outcome.items_failed = len(failing)
        outcome.failures = [ItemFailure(item_id, f"product {item_id} cannot be valued") for item_id in failing]
        return outcome
