"""shipping_labels through the API and the embedded worker, against the session's carrier stub over HTTP."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from webtest import TestApp

from warehouse.models import Shipment

# Days from today: due (0..14) and not due (before today, after the window).
DUE_DAYS = [0, 1, 7, 13, 14] * 8
NOT_DUE_DAYS = [-1, -30, 15, 40]


def start_labels(testapp: TestApp, code: str, headers: dict[str, str], **options: Any) -> dict[str, Any]:
    body = {"operation": "shipping_labels", **options}
    return testapp.post_json(f"/api/warehouses/{code}/runs", body, headers=headers, status=202).json


def labels(db: Any, ids: list[int]) -> dict[int, tuple[Any, ...]]:
    rows = db.rows(
        select(Shipment.id, Shipment.label_id, Shipment.tracking_number, Shipment.label_url, Shipment.label_error)
        .where(Shipment.id.in_(ids))
    )
    return {row[0]: tuple(row[1:]) for row in rows}


def test_labels_every_due_shipment_once_and_leaves_the_rest(
    testapp: TestApp, operator: dict, db: Any, carrier: Any, wait_for_run: Any
) -> None:
    warehouse = db.add_warehouse()
    due = db.add_shipments(warehouse.id, DUE_DAYS)
    not_due = db.add_shipments(warehouse.id, NOT_DUE_DAYS)
    already = db.add_shipments(warehouse.id, [3, 4], label_id="OLD-1", tracking_number="T-OLD", label_url="old://")
    before = carrier.stats()

    run = wait_for_run(testapp, start_labels(testapp, warehouse.code, operator, chunk_size=7)["id"])

    assert run["status"] == "succeeded", run
    assert run["items"]["total"] == run["items"]["done"] == len(due)
    assert run["chunks"]["total"] == 6  # 40 due shipments in chunks of 7
    assert run["result"]["labels_bought"] == len(due)
    assert (run["result"]["labels_failed"], run["result"]["shipments_skipped"]) == (0, 0)
    stored = labels(db, due)
    assert all(label_id.startswith("LBL-") and tracking and url for label_id, tracking, url, _ in stored.values())
    assert len({label_id for label_id, *_ in stored.values()}) == len(due)
    assert set(labels(db, not_due).values()) == {(None, None, None, None)}
    assert set(labels(db, already).values()) == {("OLD-1", "T-OLD", "old://", None)}
    after = carrier.stats()
    assert after["purchases"] - before["purchases"] == len(due)
    assert after["duplicate_purchases"] == before["duplicate_purchases"]


def test_a_rerun_skips_shipments_that_have_a_label(
    testapp: TestApp, operator: dict, db: Any, carrier: Any, wait_for_run: Any
) -> None:
    warehouse = db.add_warehouse()
    db.add_shipments(warehouse.id, [1, 2, 3])
    first = wait_for_run(testapp, start_labels(testapp, warehouse.code, operator)["id"])
    assert first["result"]["labels_bought"] == 3
    requests = carrier.stats()["requests"]

    again = wait_for_run(testapp, start_labels(testapp, warehouse.code, operator)["id"])

    assert again["status"] == "succeeded"
    assert again["items"]["total"] == 0
    assert again["result"]["labels_bought"] == 0
    assert carrier.stats()["requests"] == requests


def test_a_refused_order_is_recorded_on_the_shipment_and_listed_as_failed(
    testapp: TestApp, operator: dict, viewer: dict, db: Any, wait_for_run: Any
) -> None:
    warehouse = db.add_warehouse()
    good = db.add_shipments(warehouse.id, [1, 2, 3])
    # The carrier refuses a parcel of no weight (422): permanent, so no retry and no label.
    (weightless,) = db.add_shipments(warehouse.id, [2], weight_grams=0)

    run = wait_for_run(testapp, start_labels(testapp, warehouse.code, operator, tolerated_failure_percent=50)["id"])

    assert run["status"] == "partially_failed", run
    assert (run["items"]["done"], run["items"]["failed"]) == (3, 1)
    assert (run["result"]["labels_bought"], run["result"]["labels_failed"]) == (3, 1)
    label_id, _, _, error = labels(db, [weightless])[weightless]
    assert label_id is None
    assert "422" in error and "weight_grams" in error
    failures = testapp.get(f"/api/runs/{run['id']}/failures", headers=viewer, status=200).json
    assert [(item["item_id"], item["error"]) for item in failures["items"]] == [(weightless, error)]
    assert all(row[0] for row in labels(db, good).values())


def test_a_label_clears_the_error_an_earlier_run_left(
    testapp: TestApp, operator: dict, db: Any, wait_for_run: Any
) -> None:
    warehouse = db.add_warehouse()
    (shipment,) = db.add_shipments(warehouse.id, [5], label_error="carrier answered 422: address unknown")

    run = wait_for_run(testapp, start_labels(testapp, warehouse.code, operator)["id"])

    assert run["status"] == "succeeded"
    label_id, _, _, error = labels(db, [shipment])[shipment]
    assert label_id.startswith("LBL-") and error is None
