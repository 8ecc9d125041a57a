"""POST /api/runs/{id}/redrive through WebTest on the embedded app, and ``warehouse-run --redrive``.

A run really fails on the embedded worker (``picky_valuation``: products with a negative quantity on
hand fail), the fault is fixed through the API, and the redrive does the failed chunks again in the
same run, which then ends decided over all of its chunks. Runs in states no worker could leave them
in on cue (a failed run with skipped chunks) are written straight into the ledger.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from webtest import TestApp

from tests.functional.helpers import Sent, add_run, assert_error, nothing_written_or_sent, product
from tests.functional.test_run_control import cli_db, cli_ini, warehouse_run  # noqa: F401  (fixtures)
from tests.functional.test_run_status_cache import cached  # noqa: F401  (a fixture)
from tests.integration.probe_operations import PickyValuation
from warehouse import ledger, operations
from warehouse.models import ChunkStatus, Product, Run, RunChunk, RunStatus, Shipment, Warehouse

pytestmark = pytest.mark.timeout(120)

NEGATIVE = {3: -3, 12: -1, 13: -7}  # product positions with a negative quantity: chunks 0 and 1 of 3


@pytest.fixture
def picky() -> Iterator[PickyValuation]:
    probe = operations.register(PickyValuation())
    try:
        yield probe
    finally:
        operations._registry.pop(probe.name, None)


def stocked(db: Any, warehouse: Warehouse, count: int = 25) -> list[int]:
    """``count`` products at 2.50 each, quantity i (or negative at the NEGATIVE positions)."""
    return db.add_products(
        warehouse.id, count,
        values=lambda i: {"qty_on_hand": NEGATIVE.get(i, i), "unit_cost": Decimal("2.50"), "reorder_point": 5},
    )


def start(testapp: TestApp, operator: dict, code: str, operation: str, tolerated: float, chunk_size: int = 10) -> int:
    body = {"operation": operation, "chunk_size": chunk_size, "tolerated_failure_percent": tolerated}
    return testapp.post_json(f"/api/warehouses/{code}/runs", body, headers=operator, status=202).json["id"]


def fix_quantities(testapp: TestApp, operator: dict, db: Any, warehouse: Warehouse, ids: list[int]) -> None:
    """Upsert the negative products with a quantity of zero, through the API, as a person would."""
    skus = db.scalars(select(Product.sku).where(Product.id.in_([ids[i] for i in NEGATIVE])).order_by(Product.id))
    rows = [product(sku, qty=0, cost=2.5, reorder_point=5) for sku in skus]
    testapp.post_json(f"/api/warehouses/{warehouse.code}/products", rows, headers=operator, status=200)


def expected_total(db: Any, warehouse: Warehouse) -> str:
    quantities = db.scalars(select(Product.qty_on_hand).where(Product.warehouse_id == warehouse.id))
    return str((sum(quantities) * Decimal("2.50")).quantize(Decimal("0.01")))


def redrive(testapp: TestApp, operator: dict, run_id: int, status: int = 202) -> Any:
    return testapp.post(f"/api/runs/{run_id}/redrive", headers=operator, status=status)


@pytest.fixture
def partially_failed(
    testapp: TestApp, operator: dict, viewer: dict, db: Any, picky: PickyValuation, wait_for_run: Any
) -> tuple[Warehouse, list[int], dict[str, Any]]:
    """A picky_valuation run of 25 products that ended partially_failed, three items failed in two of
    its three chunks: (warehouse, product ids, the run's JSON)."""
    warehouse = db.add_warehouse()
    ids = stocked(db, warehouse)
    run = wait_for_run(testapp, start(testapp, operator, warehouse.code, picky.name, tolerated=50))
    assert run["status"] == "partially_failed", run
    assert run["items"] == {"total": 25, "done": 22, "failed": 3, "remaining": 0}
    failures = testapp.get(f"/api/runs/{run['id']}/failures", headers=viewer, status=200).json["items"]
    assert sorted(item["error"] for item in failures) == [
        "quantity on hand is negative (-1)", "quantity on hand is negative (-3)", "quantity on hand is negative (-7)",
    ]
    return warehouse, ids, run


def test_a_partially_failed_run_fixed_and_redriven_succeeds_over_all_its_chunks(
    testapp: TestApp, operator: dict, viewer: dict, db: Any, sent: list[Sent], wait_for_run: Any,
    partially_failed: tuple[Warehouse, list[int], dict[str, Any]],
) -> None:
    warehouse, ids, failed = partially_failed
    untouched = db.scalars(select(RunChunk.finished_at).where(RunChunk.run_id == failed["id"], RunChunk.seq == 2))
    fix_quantities(testapp, operator, db, warehouse, ids)

    answer = redrive(testapp, operator, failed["id"]).json

    assert (answer["id"], answer["status"], answer["warehouse"]) == (failed["id"], "running", warehouse.code)
    assert answer["redriven"] == {"chunks_sent": 2}
    assert answer["redrive_count"] == 1 and answer["redriven_at"]
    assert (answer["finished_at"], answer["result"], answer["error"]) == (None, None, None)
    assert answer["chunks"] == {"total": 3, "done": 1, "failed": 0, "skipped": 0, "remaining": 2}
    assert answer["items"] == {"total": 25, "done": 5, "failed": 0, "remaining": 20}
    # The chunks go out once the redrive has committed, so the worker finds them pending in a running run.
    chunks_sent = [call for call in sent if call.name == "processSomeProducts"]
    assert sorted(call.args[1] for call in chunks_sent) == [ids[0], ids[10]]
    assert {call.run_status_seen_by_another_connection for call in chunks_sent} == {"running"}

    ended = wait_for_run(testapp, failed["id"])
    assert ended["status"] == "succeeded", ended
    assert ended["chunks"] == {"total": 3, "done": 3, "failed": 0, "skipped": 0, "remaining": 0}
    assert ended["items"] == {"total": 25, "done": 25, "failed": 0, "remaining": 0}
    assert ended["result"]["total_stock_value"] == expected_total(db, warehouse)
    assert (ended["result"]["items_processed"], ended["result"]["items_failed"]) == (25, 0)
    assert ended["redrive_count"] == 1 and ended["finished_at"] >= ended["redriven_at"]
    assert testapp.get(f"/api/runs/{failed['id']}/failures", headers=viewer).json["items"] == []
    chunks = db.scalars(select(RunChunk).where(RunChunk.run_id == failed["id"]).order_by(RunChunk.seq))
    assert [chunk.attempts for chunk in chunks] == [2, 2, 1]
    assert [chunks[2].finished_at] == untouched  # the clean chunk was not done again

    again = redrive(testapp, operator, failed["id"], status=409)
    error = assert_error(again, 409, "nothing_to_redrive", field="id")
    assert error["details"]["status"] == "succeeded"


def test_a_fault_that_is_still_there_fails_the_same_items_again_listed_once(
    testapp: TestApp, operator: dict, viewer: dict, db: Any, wait_for_run: Any,
    partially_failed: tuple[Warehouse, list[int], dict[str, Any]],
) -> None:
    warehouse, ids, failed = partially_failed

    redrive(testapp, operator, failed["id"])
    ended = wait_for_run(testapp, failed["id"])

    assert ended["status"] == "partially_failed"
    assert ended["items"] == {"total": 25, "done": 22, "failed": 3, "remaining": 0}
    assert ended["redrive_count"] == 1
    items = testapp.get(f"/api/runs/{failed['id']}/failures", headers=viewer).json["items"]
    assert sorted(item["item_id"] for item in items) == sorted(ids[i] for i in NEGATIVE)
    assert redrive(testapp, operator, failed["id"]).json["redrive_count"] == 2
    assert wait_for_run(testapp, failed["id"])["redrive_count"] == 2


def add_failed_run(db: Any, warehouse: Warehouse, ids: list[int], statuses: list[str]) -> int:
    """A valuation run that failed past its threshold, in chunks of five over ``ids`` with these
    statuses, counted as the ledger counts them (a chunk failed for good counts its items failed);
    its done chunks were never valued in fact, so a redo of one would show."""
    now = ledger.utcnow()
    done, failed = statuses.count(ChunkStatus.DONE), statuses.count(ChunkStatus.FAILED)
    with db.session() as session:
        run = Run(
            warehouse_id=warehouse.id, operation="valuation", status=RunStatus.FAILED, chunk_size=5,
            chunks_total=len(statuses), chunks_done=done, chunks_failed=failed,
            chunks_skipped=statuses.count(ChunkStatus.SKIPPED), items_total=len(ids), items_done=5 * done,
            items_failed=5 * failed, started_at=now, finished_at=now, result={"items_processed": 5 * done},
            error="stopped early",
        )
        session.add(run)
        session.flush()
        session.add_all(
            RunChunk(
                run_id=run.id, seq=seq, start_id=ids[seq * 5], end_id=ids[seq * 5 + 4], item_count=5, status=status,
                attempts=0 if status == ChunkStatus.SKIPPED else 1, items_done=5 if status == ChunkStatus.DONE else 0,
                finished_at=now, error="ValueError: boom" if status == ChunkStatus.FAILED else None,
            )
            for seq, status in enumerate(statuses)
        )
        session.flush()
        return run.id


def test_a_failed_run_redrives_its_failed_and_its_skipped_chunks(
    testapp: TestApp, operator: dict, db: Any, sent: list[Sent], wait_for_run: Any, warehouse: Warehouse
) -> None:
    ids = db.add_products(warehouse.id, 20)
    run_id = add_failed_run(db, warehouse, ids, [ChunkStatus.DONE, ChunkStatus.FAILED, ChunkStatus.SKIPPED, ChunkStatus.SKIPPED])

    answer = redrive(testapp, operator, run_id).json

    assert answer["redriven"] == {"chunks_sent": 3}
    assert answer["chunks"] == {"total": 4, "done": 1, "failed": 0, "skipped": 0, "remaining": 3}
    assert (answer["error"], answer["result"]) == (None, None)
    assert sorted(call.args[1] for call in sent if call.name == "processSomeProducts") == [ids[5], ids[10], ids[15]]
    ended = wait_for_run(testapp, run_id)
    assert ended["status"] == "succeeded", ended
    assert ended["chunks"] == {"total": 4, "done": 4, "failed": 0, "skipped": 0, "remaining": 0}
    assert ended["items"] == {"total": 20, "done": 20, "failed": 0, "remaining": 0}
    values = db.scalars(select(Product.stock_value).where(Product.id.in_(ids)).order_by(Product.id))
    assert values[:5] == [None] * 5 and None not in values[5:]


def test_shipping_labels_redriven_buys_only_the_missing_label_and_counts_every_label(
    testapp: TestApp, operator: dict, db: Any, carrier: Any, wait_for_run: Any, warehouse: Warehouse
) -> None:
    db.add_shipments(warehouse.id, [1, 2, 3])
    (weightless,) = db.add_shipments(warehouse.id, [2], weight_grams=0)  # the carrier refuses it (422)
    run_id = start(testapp, operator, warehouse.code, "shipping_labels", tolerated=50)
    first = wait_for_run(testapp, run_id)
    assert first["status"] == "partially_failed", first
    assert (first["result"]["labels_bought"], first["result"]["labels_failed"]) == (3, 1)
    db.execute(update(Shipment).where(Shipment.id == weightless).values(weight_grams=900))  # the fix
    purchases = carrier.stats()["purchases"]

    redrive(testapp, operator, run_id)
    ended = wait_for_run(testapp, run_id)

    assert ended["status"] == "succeeded", ended
    assert ended["result"]["labels_bought"] == 4
    assert (ended["result"]["labels_failed"], ended["result"]["shipments_skipped"]) == (0, 0)
    assert ended["items"] == {"total": 4, "done": 4, "failed": 0, "remaining": 0}
    assert carrier.stats()["purchases"] - purchases == 1  # the three bought before are not bought again


# --- what is refused --------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [RunStatus.PENDING, RunStatus.RUNNING, RunStatus.CANCELLING])
def test_an_active_run_is_409_run_active_and_changes_nothing(
    status: str, testapp: TestApp, operator: dict, db: Any, sent: list[Sent], warehouse: Warehouse
) -> None:
    run_id = add_run(db, warehouse.id, status)
    try:
        with nothing_written_or_sent(db, sent):
            response = redrive(testapp, operator, run_id, status=409)
    finally:
        db.execute(update(Run).where(Run.id == run_id).values(status=RunStatus.CANCELLED))

    error = assert_error(response, 409, "run_active", field="id")
    assert error["details"]["status"] == status
    assert error["message"] == f"run {run_id} has not ended (it is {status}), and only a run that has ended can be redriven"


def test_a_cancelled_run_is_409_run_cancelled(
    testapp: TestApp, operator: dict, db: Any, sent: list[Sent], warehouse: Warehouse
) -> None:
    run_id = add_run(db, warehouse.id, RunStatus.CANCELLED)

    with nothing_written_or_sent(db, sent):
        response = redrive(testapp, operator, run_id, status=409)

    error = assert_error(response, 409, "run_cancelled", field="id")
    assert error["message"] == (
        f"run {run_id} was cancelled, and a cancel is final: it is never redriven; start a new run instead"
    )


@pytest.mark.parametrize("status", [RunStatus.SUCCEEDED, RunStatus.PARTIALLY_FAILED, RunStatus.FAILED])
def test_an_ended_run_with_nothing_failed_is_409_nothing_to_redrive(
    status: str, testapp: TestApp, operator: dict, db: Any, sent: list[Sent], warehouse: Warehouse
) -> None:
    run_id = add_run(db, warehouse.id, status)

    with nothing_written_or_sent(db, sent):
        response = redrive(testapp, operator, run_id, status=409)

    error = assert_error(response, 409, "nothing_to_redrive", field="id")
    assert error["details"]["status"] == status


def test_a_run_whose_operation_has_another_run_active_is_409_naming_it(
    testapp: TestApp, operator: dict, db: Any, sent: list[Sent], warehouse: Warehouse
) -> None:
    ids = db.add_products(warehouse.id, 10)
    run_id = add_failed_run(db, warehouse, ids, [ChunkStatus.DONE, ChunkStatus.FAILED])
    other = add_run(db, warehouse.id, RunStatus.PENDING)
    try:
        with nothing_written_or_sent(db, sent):
            response = redrive(testapp, operator, run_id, status=409)
    finally:
        db.execute(update(Run).where(Run.id == other).values(status=RunStatus.CANCELLED))

    error = assert_error(response, 409, "run_active", field="id")
    assert error["details"] == {"field": "id", "status": "failed", "active_run_id": other}
    assert error["message"].startswith(f"run {other} of this operation is still active on this warehouse")


def test_an_unknown_run_is_404(testapp: TestApp, operator: dict, db: Any, sent: list[Sent]) -> None:
    with nothing_written_or_sent(db, sent):
        response = redrive(testapp, operator, 2147483647, status=404)

    assert_error(response, 404, "run_not_found", field="id")


@pytest.mark.parametrize("run_id", ["0", "-4", "abc", "2147483648", "1.5"])
def test_an_id_that_is_not_a_run_id_is_400_naming_it(
    run_id: str, testapp: TestApp, operator: dict, db: Any, sent: list[Sent]
) -> None:
    with nothing_written_or_sent(db, sent):
        response = testapp.post(f"/api/runs/{run_id}/redrive", headers=operator, status=400)

    assert_error(response, 400, field="id")


@pytest.mark.parametrize(("who", "status", "code"), [("viewer", 403, "forbidden"), ("nobody", 401, "unauthorized")])
def test_only_an_operator_may_redrive(
    who: str, status: int, code: str, testapp: TestApp, viewer: dict, db: Any, sent: list[Sent], warehouse: Warehouse
) -> None:
    ids = db.add_products(warehouse.id, 10)
    run_id = add_failed_run(db, warehouse, ids, [ChunkStatus.DONE, ChunkStatus.FAILED])

    with nothing_written_or_sent(db, sent):
        response = testapp.post(f"/api/runs/{run_id}/redrive", headers=viewer if who == "viewer" else {}, status=status)

    assert_error(response, status, code)
    assert db.scalar(select(Run.status).where(Run.id == run_id)) == RunStatus.FAILED


def test_a_redrive_is_seen_at_once_by_the_process_that_made_it(
    cached: TestApp, operator: dict, viewer: dict, db: Any, warehouse: Warehouse, wait_for_run: Any, testapp: TestApp
) -> None:
    ids = db.add_products(warehouse.id, 10)
    run_id = add_failed_run(db, warehouse, ids, [ChunkStatus.DONE, ChunkStatus.FAILED])
    assert cached.get(f"/api/runs/{run_id}", headers=viewer, status=200).json["status"] == "failed"

    redrive(cached, operator, run_id)

    assert cached.get(f"/api/runs/{run_id}", headers=viewer, status=200).json["redrive_count"] == 1
    wait_for_run(testapp, run_id)


# --- warehouse-run INI --redrive RUN_ID ------------------------------------------------------------------


def test_cli_redrives_a_run_and_waits_for_it(cli_ini: Path, cli_db: Any) -> None:
    warehouse = cli_db.add_warehouse()
    ids = cli_db.add_products(warehouse.id, 10)
    run_id = add_failed_run(cli_db, warehouse, ids, [ChunkStatus.DONE, ChunkStatus.FAILED])

    done = warehouse_run(cli_ini, "--redrive", str(run_id), "--wait")

    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert (run["id"], run["status"], run["redrive_count"]) == (run_id, "succeeded", 1)
    assert run["items"] == {"total": 10, "done": 10, "failed": 0, "remaining": 0}
    assert "succeeded, 2/2 chunks" in done.stderr


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (RunStatus.RUNNING, "has not ended (it is running)"),
        (RunStatus.CANCELLED, "was cancelled, and a cancel is final"),
        (RunStatus.SUCCEEDED, "has nothing to redrive"),
    ],
)
def test_cli_redrive_of_a_run_it_cannot_redrive_exits_2_and_changes_nothing(
    status: str, message: str, cli_ini: Path, cli_db: Any
) -> None:
    warehouse = cli_db.add_warehouse()
    run_id = add_run(cli_db, warehouse.id, status)

    failed = warehouse_run(cli_ini, "--redrive", str(run_id))

    assert failed.returncode == 2
    assert f"warehouse-run: error: run {run_id} {message}" in failed.stderr
    assert failed.stdout == ""
    run = cli_db.scalar(select(Run).where(Run.id == run_id))
    assert (run.status, run.redrive_count, run.redriven_at) == (status, 0, None)


def test_cli_redrive_of_an_unknown_run_exits_2(cli_ini: Path) -> None:
    failed = warehouse_run(cli_ini, "--redrive", "999999")

    assert failed.returncode == 2
    assert "warehouse-run: error: no run with id 999999" in failed.stderr
    assert failed.stdout == ""

