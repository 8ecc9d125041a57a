"""The labels benchmark's data: due shipments seeded per warehouse, read back, labels forgotten between
runs, and where a run's time went according to the ledger."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select, update

from bench.labels_seed import Order


def seed_shipments(engine: Any, code: str, due: int) -> None:
    """``due`` shipments due in the window among three times as many (the seed's default third), so
    that planning filters the warehouse as in real life."""
    from warehouse.scripts.seed import seed

    seed(engine, code, products=0, shipments=3 * due)


def due_orders(engine: Any, code: str, limit: int) -> list[Order]:
    """The first ``limit`` shipments the run covers, as the seed command would read them."""
    from warehouse.models import Shipment, Warehouse
    from warehouse.operations.shipping_labels import ShippingLabels

    today = dt.datetime.now(dt.timezone.utc).date()
    with engine.connect() as connection:
        warehouse_id = connection.scalar(select(Warehouse.id).where(Warehouse.code == code))
        due_ids = ShippingLabels().item_ids(warehouse_id, today).order_by(Shipment.id).limit(limit).subquery()
        rows = connection.execute(
            select(Shipment.id, Shipment.reference, Shipment.ship_to, Shipment.weight_grams)
            .where(Shipment.id.in_(select(due_ids.c.id)))
            .order_by(Shipment.id)
        ).all()
    return [tuple(row) for row in rows]


def labelled_shipments(engine: Any, code: str) -> int:
    from warehouse.models import Shipment, Warehouse

    with engine.connect() as connection:
        return connection.scalar(
            select(func.count())
            .select_from(Shipment)
            .join(Warehouse, Warehouse.id == Shipment.warehouse_id)
            .where(Warehouse.code == code, Shipment.label_id.is_not(None))
        )


def phases(engine: Any, run_id: int) -> dict[str, float]:
    """Where a run's time went, from the ledger's timestamps (all written on this machine's clock)."""
    from warehouse.models import Run, RunChunk

    with engine.connect() as connection:
        created, started, finished = connection.execute(
            select(Run.created_at, Run.started_at, Run.finished_at).where(Run.id == run_id)
        ).one()
        first_start, last_start, last_end, shortest, longest = connection.execute(
            select(
                func.min(RunChunk.started_at),
                func.max(RunChunk.started_at),
                func.max(RunChunk.finished_at),
                func.min(RunChunk.finished_at - RunChunk.started_at),
                func.max(RunChunk.finished_at - RunChunk.started_at),
            ).where(RunChunk.run_id == run_id)
        ).one()
    return {
        "queued": (started - created).total_seconds(),  # POST committed → processWholeWarehouse began
        "planned": (first_start - started).total_seconds(),  # planning and dispatch → first chunk began
        "chunks": (last_end - first_start).total_seconds(),  # first chunk began → last chunk done
        "last_chunk_start": (last_start - first_start).total_seconds(),
        "finalised": (finished - last_end).total_seconds(),  # last chunk done → run finished
        "chunk_min": shortest.total_seconds(),
        "chunk_max": longest.total_seconds(),
    }


def forget_labels(engine: Any, code: str) -> None:
    """Every shipment of warehouse ``code`` back to "no label", for the next run."""
    from warehouse.models import Shipment, Warehouse

    with engine.begin() as connection:
        warehouse_id = connection.scalar(select(Warehouse.id).where(Warehouse.code == code))
        connection.execute(
            update(Shipment)
            .where(Shipment.warehouse_id == warehouse_id)
            .values(label_id=None, tracking_number=None, label_url=None, label_error=None)
        )
