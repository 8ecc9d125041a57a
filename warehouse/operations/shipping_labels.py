"""Buy a shipping label for every shipment leaving in the next 14 days that has none yet.

The seed post did this with ``multiprocessing.Pool(cpu_count())``: one call per process, so a 2-core
machine waited on two calls at a time. Here a chunk hands its shipments to the process's carrier
thread pool, and only the carrier's limit (``warehouse.carrier_max_in_flight``, shared by every worker)
bounds how many calls are in flight.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import BigInteger, Select, Text, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import ARRAY
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
        labels = [(purchase.shipment_id, purchase.label) for purchase in bought if purchase.label is not None]
        _update_shipments(
            session,
            [shipment_id for shipment_id, _ in labels],
            {
                "label_id": [label.label_id for _, label in labels],
                "tracking_number": [label.tracking_number for _, label in labels],
                "label_url": [label.label_url for _, label in labels],
            },
            also={"label_error": None},
        )

    @staticmethod
    def _store_errors(session: Session, refused: list[Purchase]) -> None:
        errors = {"label_error": [(purchase.error or "")[:4000] for purchase in refused]}
        _update_shipments(session, [purchase.shipment_id for purchase in refused], errors)

    def summarise(self, summaries: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        totals = {"labels_bought": 0, "labels_failed": 0, "shipments_skipped": 0}
        for summary in summaries:
            for key in totals:
                totals[key] += int(summary.get(key, 0))
        return totals


def _update_shipments(
    session: Session, ids: list[int], columns: Mapping[str, list[Any]], also: Mapping[str, Any] | None = None
) -> None:
    """Set ``columns`` (a value per shipment of ``ids``, in the same order) and ``also`` on shipments still without a label.

    A shipment labelled meanwhile keeps its label: the carrier sold one per key anyway.

    On PostgreSQL this is one statement for the whole chunk, its values as arrays (``UPDATE ... FROM
    unnest(...)``): a round trip per shipment (1,000 a chunk) kept the process off the carrier for
    several tenths of a second after its last call (docs/benchmarks.md). One statement, not an
    executemany: psycopg runs an executemany as a pipeline, and a node frozen in the middle of one
    (a paused VM) leaves its session "active", waiting for the rest, with its row locks held past
    idle_in_transaction_session_timeout, which only ends sessions idle between statements. A single
    statement is whole once sent; frozen before its commit, the session is idle in its transaction and
    that timeout ends it. Elsewhere (SQLite, for tests and the embedded default) one statement per row.
    """
    if not ids:
        return
    connection = session.connection()
    for_each, for_all = _shipment_updates(tuple(columns), tuple(sorted((also or {}).items())))
    if connection.dialect.name == "postgresql":
        connection.execute(for_all, {"b_ids": ids, **{f"b_{name}": values for name, values in columns.items()}})
        return
    for number, shipment_id in enumerate(ids):
        values = {f"b_{name}": column_values[number] for name, column_values in columns.items()}
        connection.execute(for_each, {"b_id": shipment_id, **values})


@functools.cache
def _shipment_updates(columns: tuple[str, ...], also: tuple[tuple[str, Any], ...]) -> tuple[Any, Any]:
    """The two forms of one update: a statement per shipment, and one for many from arrays."""
    unlabelled = shipments.c.label_id.is_(None)
    for_each = (
        update(shipments)
        .where(shipments.c.id == bindparam("b_id"), unlabelled)
        .values({**{name: bindparam(f"b_{name}") for name in columns}, **dict(also)})
    )
    given = (
        func.unnest(
            bindparam("b_ids", type_=ARRAY(BigInteger)),
            *(bindparam(f"b_{name}", type_=ARRAY(Text)) for name in columns),
        )
        .table_valued("id", *columns)
        .render_derived(name="given")
    )
    for_all = (
        update(shipments)
        .where(shipments.c.id == given.c.id, unlabelled)
        .values({**{name: given.c[name] for name in columns}, **dict(also)})
    )
    return for_each, for_all
