"""Redrive on real workers: a picky_valuation run fails on negative quantities, the products are fixed
through the API, and a redrive (through the API, or ``warehouse-run --redrive --wait``) does the failed
chunks again in the same run on the session's two ``celery worker`` nodes, over PostgreSQL and Redis."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from tests.integration.checks import assert_valued, chunk_rows, warehouse_id
from warehouse.scripts.seed import seed

RUN_TIMEOUT = 120.0
bounded = pytest.mark.timeout(300, method="signal")


def make_negative(engine: Engine, code: str, positions: list[int]) -> list[dict[str, Any]]:
    """Give the products at these positions (in id order) a negative quantity; their sku and unit cost."""
    with engine.begin() as connection:
        rows = connection.execute(
            text(
                """
                WITH picked AS (
                    SELECT id, row_number() OVER (ORDER BY id) - 1 AS position
                    FROM products WHERE warehouse_id = :warehouse
                )
                UPDATE products SET qty_on_hand = -(picked.position % 7) - 1
                FROM picked WHERE products.id = picked.id AND picked.position = ANY(:positions)
                RETURNING products.sku, products.unit_cost
                """
            ),
            {"warehouse": warehouse_id(engine, code), "positions": positions},
        ).all()
    return [{"sku": sku, "unit_cost": str(cost)} for sku, cost in rows]


def fix(api: Any, code: str, products: list[dict[str, Any]]) -> None:
    """Upsert the products with a quantity of zero, through the API, as a person would."""
    rows = [{**row, "qty_on_hand": 0} for row in products]
    body = api.app.post_json(f"/api/warehouses/{code}/products", rows, headers=api.operator, status=200).json
    assert body["updated"] == len(rows)


def warehouse_run(ini_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "warehouse.scripts.run", str(ini_file), *args],
        capture_output=True, text=True, timeout=180, check=False,
    )


@bounded
def test_a_partially_failed_run_is_fixed_and_redriven_through_the_api(api, engine: Engine, workers) -> None:
    code = "it-redrive"
    seed(engine, code, products=5_000, shipments=0)
    broken = make_negative(engine, code, [10, 1_234, 1_235, 4_999])  # in chunks 0, 2 and 9 of 10

    started = api.start_run(code, "picky_valuation", tolerated_failure_percent=1)
    failed = api.wait_until_finished(started["id"], timeout=RUN_TIMEOUT)

    assert failed["status"] == "partially_failed", failed
    assert (failed["items"]["done"], failed["items"]["failed"]) == (4_996, 4)
    listed = api.app.get(f"/api/runs/{started['id']}/failures", headers=api.viewer, status=200).json["items"]
    assert sorted(item["item"] for item in listed) == sorted(row["sku"] for row in broken)
    assert all(item["error"].startswith("quantity on hand is negative (-") for item in listed)

    fix(api, code, broken)
    answer = api.app.post(f"/api/runs/{started['id']}/redrive", headers=api.operator, status=202).json
    assert (answer["status"], answer["redriven"], answer["redrive_count"]) == ("running", {"chunks_sent": 3}, 1)
    run = api.wait_until_finished(started["id"], timeout=RUN_TIMEOUT)

    assert run["status"] == "succeeded", run
    assert run["chunks"] == {"total": 10, "done": 10, "failed": 0, "skipped": 0, "remaining": 0}
    assert run["items"] == {"total": 5_000, "done": 5_000, "failed": 0, "remaining": 0}
    assert_valued(engine, code, run, 5_000)  # the result summed over every chunk, the redone and the rest
    assert [chunk["attempts"] for chunk in chunk_rows(engine, run["id"])] == [2, 1, 2, 1, 1, 1, 1, 1, 1, 2]
    assert api.app.get(f"/api/runs/{run['id']}/failures", headers=api.viewer).json["items"] == []


@bounded
def test_a_failed_run_is_redriven_with_the_cli_skipped_chunks_and_all(
    api, ini_file: Path, engine: Engine, workers
) -> None:
    code = "it-redrive-cli"
    seed(engine, code, products=10_000, shipments=0)
    broken = make_negative(engine, code, [0, 1])  # the first chunk: past a threshold of 0 at once

    started = api.start_run(code, "picky_valuation", chunk_size=250)
    failed = api.wait_until_finished(started["id"], timeout=RUN_TIMEOUT)
    assert failed["status"] == "failed", failed
    assert failed["chunks"]["skipped"] > 0, failed  # four chunks at most were running when it failed
    fix(api, code, broken)

    done = warehouse_run(ini_file, "--redrive", str(started["id"]), "--wait")

    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert (run["status"], run["redrive_count"]) == ("succeeded", 1), run
    assert run["chunks"] == {"total": 40, "done": 40, "failed": 0, "skipped": 0, "remaining": 0}
    assert "succeeded, 40/40 chunks" in done.stderr  # the progress bar's last line
    assert_valued(engine, code, run, 10_000)

    again = warehouse_run(ini_file, "--redrive", str(started["id"]))
    assert again.returncode == 2
    assert f"run {started['id']} has nothing to redrive" in again.stderr and again.stdout == ""
