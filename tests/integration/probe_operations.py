"""Operations that exist only for the integration tests, registered through ``warehouse.extra_operations``.

The workers import this module by its dotted name (``tests.integration.probe_operations``): they run with
the repository root as their working directory and on their PYTHONPATH (see conftest.py).
"""

from __future__ import annotations

import time

from warehouse.operations import ChunkOutcome, ChunkWork
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
