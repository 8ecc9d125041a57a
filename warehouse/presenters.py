"""JSON shapes of the API's resources, shared by the views and the command-line scripts."""

from __future__ import annotations

import datetime as dt
from typing import Any

from decimal import Decimal

from .models import Product, Run, RunChunk, RunStatus, Shipment, Warehouse

TERMINAL_RUN_STATUSES = frozenset(
    {RunStatus.SUCCEEDED, RunStatus.PARTIALLY_FAILED, RunStatus.FAILED, RunStatus.CANCELLED}
)


def isoformat(moment: dt.datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:  # SQLite hands back naive datetimes; we only ever store UTC
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.isoformat()


def warehouse_json(warehouse: Warehouse, products: int, shipments: int) -> dict[str, Any]:
    return {
        "code": warehouse.code,
        "name": warehouse.name,
        "products": products,
        "shipments": shipments,
        "created_at": isoformat(warehouse.created_at),
    }


def eta_seconds(run: Run, now: dt.datetime | None = None) -> float | None:
    """Seconds left at the average pace so far; 0 once the run has ended, None before any progress."""
    if run.status in TERMINAL_RUN_STATUSES:
        return 0.0
    finished = run.items_done + run.items_failed
    if run.started_at is None or not finished or not run.items_total:
        return None
    started = run.started_at if run.started_at.tzinfo else run.started_at.replace(tzinfo=dt.timezone.utc)
    elapsed = ((now or dt.datetime.now(dt.timezone.utc)) - started).total_seconds()
    remaining = max(run.items_total - finished, 0)
    return round(elapsed / finished * remaining, 1)


def run_json(run: Run, warehouse_code: str) -> dict[str, Any]:
    chunks_finished = run.chunks_done + run.chunks_failed + run.chunks_skipped
    return {
        "id": run.id,
        "warehouse": warehouse_code,
        "operation": run.operation,
        "status": run.status,
        "chunk_size": run.chunk_size,
        "tolerated_failure_percent": float(run.tolerated_failure_percent or 0),
        "chunks": {
            "total": run.chunks_total,
            "done": run.chunks_done,
            "failed": run.chunks_failed,
            "skipped": run.chunks_skipped,
            "remaining": max(run.chunks_total - chunks_finished, 0),
        },
        "items": {
            "total": run.items_total,
            "done": run.items_done,
            "failed": run.items_failed,
            "remaining": max(run.items_total - run.items_done - run.items_failed, 0),
        },
        "created_at": isoformat(run.created_at),
        "cancel_requested_at": isoformat(run.cancel_requested_at),
        "started_at": isoformat(run.started_at),
        "finished_at": isoformat(run.finished_at),
        "eta_seconds": eta_seconds(run),
        "redrive_count": run.redrive_count or 0,
        "redriven_at": isoformat(run.redriven_at),
        "schedule_id": run.schedule_id,
        "scheduled_for": isoformat(run.scheduled_for),
        "details_purged_at": isoformat(run.details_purged_at),
        "result": run.result,
        "error": run.error,
        "links": {"self": f"/api/runs/{run.id}", "page": f"/runs/{run.id}"},
    }


def failed_chunk_json(chunk: RunChunk) -> dict[str, Any]:
    return {
        "chunk_id": chunk.id,
        "start_id": chunk.start_id,
        "end_id": chunk.end_id,
        "attempts": chunk.attempts,
        "error": chunk.error,
        "worker_hostname": chunk.worker_hostname,
        "finished_at": isoformat(chunk.finished_at),
    }


def worker_json(worker: Any) -> dict[str, Any]:
    """A ``ledger.workers.WorkerView`` as GET /api/workers shows it."""
    return {
        "id": worker.id,
        "node": worker.node,
        "hostname": worker.hostname,
        "pid": worker.pid,
        "alive": worker.alive,
        "started_at": isoformat(worker.started_at),
        "last_seen_at": isoformat(worker.last_seen_at),
        "stopped_at": isoformat(worker.stopped_at),
        "chunks_running": len(worker.running),
        "chunks_done": worker.chunks_done,
        "chunks_failed": worker.chunks_failed,
        "running": [
            {
                "run_id": chunk.run_id,
                "start_id": chunk.start_id,
                "end_id": chunk.end_id,
                "attempt": chunk.attempt,
                "started_at": isoformat(chunk.started_at),
            }
            for chunk in worker.running
        ],
    }


def money(value: Decimal | None) -> str | None:
    """Money as the API answers it: a decimal string with two places ("2.50"), never a float."""
    return None if value is None else f"{Decimal(value):.2f}"


def product_json(product: Product) -> dict[str, Any]:
    return {
        "sku": product.sku,
        "name": product.name,
        "qty_on_hand": product.qty_on_hand,
        "unit_cost": money(product.unit_cost),
        "reorder_point": product.reorder_point,
        "stock_value": money(product.stock_value),
        "needs_reorder": product.needs_reorder,
    }


def shipment_json(shipment: Shipment) -> dict[str, Any]:
    label = None
    if shipment.label_id is not None:
        label = {"label_id": shipment.label_id, "tracking_number": shipment.tracking_number, "label_url": shipment.label_url}
    return {
        "reference": shipment.reference,
        "ship_to": shipment.ship_to,
        "weight_grams": shipment.weight_grams,
        "shipping_date": shipment.shipping_date.isoformat(),
        "label": label,
        "label_error": shipment.label_error,
    }
