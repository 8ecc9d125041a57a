"""Buy a shipping label for every shipment leaving in the next 14 days that has none yet.

The seed post did this with ``multiprocessing.Pool(cpu_count())``: one call per process, so a 2-core
machine waited on two calls at a time. Here a chunk hands its shipments to the process's carrier
thread pool, and only the carrier's limit (``warehouse.carrier_max_in_flight``, shared by every worker)
bounds how many calls are in flight.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, bindparam, select, update
from sqlalchemy.orm import Session

from ..models import Shipment
from .base import ChunkOutcome, ChunkWork, ItemFailure, Operation

if TYPE_CHECKING:
    from ..carrier.buyer import Purchase
    from ..carrier.client import LabelOrder

WINDOW_DAYS = 14

shipments = Shipment.__table__


class ShippingLabels(Operation):
    name = "shipping_labels"
    item_key = shipments.c.reference
    # A chunk waits on the carrier, not on the database: see "Choosing a chunk size" in the README.
    default_chunk_size = 1_000
    description = "Buy a carrier label for each shipment due in the next 14 days that has none."

    def item_ids(self, warehouse_id: int, today: dt.date) -> Select[tuple[int]]:
        return select(Shipment.id).where(
            Shipment.warehouse_id == warehouse_id,
            Shipment.shipping_date.between(today, today + dt.timedelta(days=WINDOW_DAYS)),
            Shipment.label_id.is_(None),
        )

    def process_chunk(self, work: ChunkWork) -> ChunkOutcome:
        # The carrier client (HTTP, the Redis limiter) is imported by the workers that buy labels,
        # not by every command that only lists the operations.
        from ..carrier.buyer import buyer_for

        buyer = buyer_for(work.settings)
        orders = self._orders(work)
        # No transaction is open while the calls are made: the orders were read on a connection of
        # their own, and work.session begins its transaction only at the first write below.
        purchases = buyer.buy_all(orders)
        bought = [purchase for purchase in purchases if purchase.label is not None]
        refused = [purchase for purchase in purchases if purchase.label is None]
        self._store_labels(work.session, bought)
        self._store_errors(work.session, refused)
        # Planned shipments that got a label (or left the window) since the run was planned.
        skipped = max(0, work.item_count - len(orders))
        return ChunkOutcome(
            items_done=len(bought) + skipped,
            items_failed=len(refused),
            summary=self._summary(work.previous_summary, len(bought), len(refused), skipped),
            failures=[ItemFailure(purchase.shipment_id, purchase.error or "") for purchase in refused],
        )

    @staticmethod
    def _summary(previous: Mapping[str, Any] | None, bought: int, failed: int, skipped: int) -> dict[str, int]:
        """This attempt's counts, with a redriven chunk's earlier purchases carried over: the query left
        out the shipments labelled then, so they are among ``skipped`` now, yet were bought by this run."""
        bought_before = int((previous or {}).get("labels_bought", 0))
        return {
            "labels_bought": bought_before + bought,
            "labels_failed": failed,
            "shipments_skipped": max(0, skipped - bought_before),
        }

    def _orders(self, work: ChunkWork) -> list[LabelOrder]:
        """The chunk's shipments that still need a label, read in a short transaction of its own."""
        from ..carrier.client import LabelOrder

        with Session(work.session.get_bind()) as reader:
            rows = reader.execute(
                select(Shipment.id, Shipment.reference, Shipment.ship_to, Shipment.weight_grams)
                .where(self.in_chunk(Shipment.id, work))
                .where(self.item_ids(work.warehouse_id, work.planned_on).whereclause)
                .order_by(Shipment.id)
            ).all()
        return [LabelOrder(shipment_id=id_, reference=ref, ship_to=ship_to, weight_grams=weight) for id_, ref, ship_to, weight in rows]

    @staticmethod
    def _store_labels(session: Session, bought: list[Purchase]) -> None:
        rows = [
            {
                "shipment_id": purchase.shipment_id,
                "new_label_id": purchase.label.label_id,
                "new_tracking_number": purchase.label.tracking_number,
                "new_label_url": purchase.label.label_url,
            }
            for purchase in bought
            if purchase.label is not None
        ]
        statement = (
            update(shipments)
            # A shipment labelled meanwhile keeps its label: the carrier sold one per key anyway.
            .where(shipments.c.id == bindparam("shipment_id"), shipments.c.label_id.is_(None))
            .values(
                label_id=bindparam("new_label_id"),
                tracking_number=bindparam("new_tracking_number"),
                label_url=bindparam("new_label_url"),
                label_error=None,
            )
        )
        _one_by_one(session, statement, rows)

    @staticmethod
    def _store_errors(session: Session, refused: list[Purchase]) -> None:
        statement = (
            update(shipments)
            .where(shipments.c.id == bindparam("shipment_id"), shipments.c.label_id.is_(None))
            .values(label_error=bindparam("error"))
        )
        _one_by_one(session, statement, [{"shipment_id": p.shipment_id, "error": (p.error or "")[:4000]} for p in refused])

    def summarise(self, summaries: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        totals = {"labels_bought": 0, "labels_failed": 0, "shipments_skipped": 0}
        for summary in summaries:
            for key in totals:
                totals[key] += int(summary.get(key, 0))
        return totals


def _one_by_one(session: Session, statement: Any, rows: list[dict[str, Any]]) -> None:
    """``statement`` once per row, each a whole round trip, never an executemany.

    psycopg runs an executemany as a pipeline, and a node frozen in the middle of one (a paused VM)
    leaves its PostgreSQL session "active", waiting for the rest of the pipeline: its row locks then
    outlive idle_in_transaction_session_timeout, which only ends sessions idle between statements,
    and the redo of its chunk elsewhere waits until the node thaws. A chunk writes tens of rows, so
    the round trips cost milliseconds beside the seconds of its carrier calls.
    """
    for row in rows:
        session.execute(statement, row)
