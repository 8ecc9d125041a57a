"""Checks the integration tests make against the database and the runs API's answers."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, text


def assert_all_done(counts: dict[str, int], total: int) -> None:
    """``counts`` (a run's ``chunks`` or ``items``) say all ``total`` are done: none failed, skipped
    (or in any other state the API may add), none remaining."""
    assert counts["total"] == total, counts
    assert counts["done"] == total, counts
    assert {key: value for key, value in counts.items() if key not in ("total", "done") and value} == {}, counts


def warehouse_id(engine: Engine, code: str) -> int:
    with engine.connect() as connection:
        return connection.scalar(text("SELECT id FROM warehouses WHERE code = :code"), {"code": code})


def valuation_mismatches(engine: Engine, warehouse: int, up_to_id: int | None = None) -> dict[str, Any]:
    """What the valuation should have written, compared with what it did, in one query."""
    with engine.connect() as connection:
        row = connection.execute(
            text(
                """
                SELECT count(*) AS products,
                       count(*) FILTER (WHERE stock_value IS NULL OR needs_reorder IS NULL) AS not_valued,
                       count(*) FILTER (
                           WHERE stock_value IS DISTINCT FROM qty_on_hand * unit_cost
                              OR needs_reorder IS DISTINCT FROM (qty_on_hand <= reorder_point)
                       ) AS mismatches,
                       coalesce(sum(qty_on_hand * unit_cost), 0) AS expected_total,
                       count(*) FILTER (WHERE qty_on_hand <= reorder_point) AS expected_reorder
                FROM products
                WHERE warehouse_id = :warehouse AND (CAST(:up_to_id AS bigint) IS NULL OR id <= :up_to_id)
                """
            ),
            {"warehouse": warehouse, "up_to_id": up_to_id},
        ).one()
    return row._asdict()


def run_row(engine: Engine, run_id: int) -> dict[str, Any]:
    with engine.connect() as connection:
        return connection.execute(text("SELECT * FROM runs WHERE id = :id"), {"id": run_id}).one()._asdict()


def chunk_rows(engine: Engine, run_id: int) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT * FROM run_chunks WHERE run_id = :id ORDER BY seq"), {"id": run_id})
        return [row._asdict() for row in rows]


def assert_valued(engine: Engine, code: str, run: dict[str, Any], count: int) -> None:
    """Every product of the warehouse valued right, and the run's result adds them up."""
    products = valuation_mismatches(engine, warehouse_id(engine, code))
    assert products["products"] == count
    assert products["not_valued"] == 0
    assert products["mismatches"] == 0
    assert Decimal(run["result"]["total_stock_value"]) == products["expected_total"]
    assert run["result"]["products_needing_reorder"] == products["expected_reorder"]
    assert run["result"]["items_processed"] == count


def assert_succeeded_once_per_chunk(run: dict[str, Any], chunks: list[dict[str, Any]], items: int) -> None:
    """The run succeeded, and the ledger counted every chunk and item exactly once."""
    assert run["status"] == "succeeded", run
    assert run["finished_at"] is not None
    assert_all_done(run["items"], items)
    assert_all_done(run["chunks"], len(chunks))
    assert [chunk for chunk in chunks if chunk["status"] != "done" or chunk["error"]] == []
    assert sum(chunk["items_done"] for chunk in chunks) == items
    assert sum(chunk["items_failed"] for chunk in chunks) == 0
