"""GET /api/warehouses/{code}/products and /shipments: what was uploaded, read back a page at a time,
filtered; and a run's failures naming the item's sku or reference beside its id."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import update
from webtest import TestApp

from tests.functional.helpers import assert_error, product, shipment
from warehouse.models import RunChunk, RunItemFailure, Shipment


def pages(testapp: TestApp, url: str, headers: dict, key: str, **query: Any) -> list[list[dict]]:
    got, cursor = [], None
    while True:
        params = {**query, **({"cursor": cursor} if cursor else {})}
        body = testapp.get(url, params=params, headers=headers, status=200).json
        got.append(body[key])
        cursor = body["next_cursor"]
        if cursor is None:
            return got


def test_products_come_back_as_uploaded_a_page_at_a_time(testapp: TestApp, operator: dict, viewer: dict, warehouse: Any) -> None:
    rows = [product(f"P-{n:03d}", qty=n, cost=f"{n}.25" if n % 2 else n + 0.5, name=f"Product {n}") for n in range(25)]
    testapp.post_json(f"/api/warehouses/{warehouse.code}/products", rows, headers=operator, status=200)

    got = pages(testapp, f"/api/warehouses/{warehouse.code}/products", viewer, "products", limit=10)
    assert [len(page) for page in got] == [10, 10, 5]
    flat = [item for page in got for item in page]
    assert [item["sku"] for item in flat] == [row["sku"] for row in rows]
    assert flat[1] == {"sku": "P-001", "name": "Product 1", "qty_on_hand": 1, "unit_cost": "1.25", "reorder_point": 0,
                       "stock_value": None, "needs_reorder": None}
    assert flat[2]["unit_cost"] == "2.50"


def test_a_product_is_found_by_sku(testapp: TestApp, operator: dict, viewer: dict, warehouse: Any) -> None:
    testapp.post_json(f"/api/warehouses/{warehouse.code}/products", [product("A-1"), product("B/2#x")], headers=operator)
    body = testapp.get(f"/api/warehouses/{warehouse.code}/products", params={"sku": "B/2#x"}, headers=viewer).json
    assert [item["sku"] for item in body["products"]] == ["B/2#x"] and body["next_cursor"] is None
    assert testapp.get(f"/api/warehouses/{warehouse.code}/products", params={"sku": "NONE"}, headers=viewer).json == {
        "products": [], "next_cursor": None}


def test_shipments_come_back_filtered_by_reference_and_label_state(testapp: TestApp, operator: dict, viewer: dict, db: Any, warehouse: Any) -> None:
    rows = [shipment(f"S-{n}") for n in range(6)]
    testapp.post_json(f"/api/warehouses/{warehouse.code}/shipments", rows, headers=operator, status=200)
    with db.session() as session:
        session.execute(update(Shipment).where(Shipment.reference.in_(["S-1", "S-2"]))
                        .values(label_id="L", tracking_number="T", label_url="https://labels.example/L"))
        session.execute(update(Shipment).where(Shipment.reference == "S-3").values(label_error="address refused"))
    url = f"/api/warehouses/{warehouse.code}/shipments"

    def references(**query: Any) -> list[str]:
        return [item["reference"] for page in pages(testapp, url, viewer, "shipments", limit=2, **query) for item in page]

    assert references() == [f"S-{n}" for n in range(6)]
    assert references(label="bought") == ["S-1", "S-2"]
    assert references(label="failed") == ["S-3"]
    assert references(label="missing") == ["S-0", "S-4", "S-5"]
    assert references(reference="S-4") == ["S-4"]
    one = testapp.get(url, params={"reference": "S-1"}, headers=viewer).json["shipments"][0]
    assert one["label"] == {"label_id": "L", "tracking_number": "T", "label_url": "https://labels.example/L"}
    assert one["shipping_date"] == rows[1]["shipping_date"] and one["label_error"] is None


@pytest.mark.parametrize("route", ["products", "shipments"])
def test_reading_back_needs_a_viewer_token_and_a_warehouse(route: str, testapp: TestApp, viewer: dict, warehouse: Any) -> None:
    assert_error(testapp.get(f"/api/warehouses/{warehouse.code}/{route}", status=401), 401, field="Authorization")
    assert_error(testapp.get(f"/api/warehouses/nope-{route}/{route}", headers=viewer, status=404), 404, "warehouse_not_found", field="code")


@pytest.mark.parametrize(("query", "field", "message"), [
    ({"limit": "0"}, "limit", "limit must be at least 1"),
    ({"limit": "1001"}, "limit", "limit must be at most 1000"),
    ({"limit": "ten"}, "limit", "limit must be a whole number"),
    ({"cursor": "not-ours"}, "cursor", "cursor is not one this API gave out: pass next_cursor from the previous page as it came"),
    ({"sku": "a b"}, "sku", "sku must start with a letter or digit and hold only letters, digits and . _ - / : # +"),
    ({"sku": "' OR 1=1 --"}, "sku", "sku must start with a letter or digit and hold only letters, digits and . _ - / : # +"),
])
def test_bad_product_queries_are_400_in_words(query: dict, field: str, message: str, testapp: TestApp, viewer: dict, warehouse: Any) -> None:
    error = assert_error(testapp.get(f"/api/warehouses/{warehouse.code}/products", params=query, headers=viewer, status=400), 400, field=field)
    assert error["message"] == message


def test_a_bad_label_state_is_400_naming_the_states(testapp: TestApp, viewer: dict, warehouse: Any) -> None:
    response = testapp.get(f"/api/warehouses/{warehouse.code}/shipments", params={"label": "lost"}, headers=viewer, status=400)
    assert assert_error(response, 400, field="label")["message"] == "label must be one of: bought, missing, failed"


def test_failures_name_the_item_beside_its_id(testapp: TestApp, viewer: dict, db: Any, warehouse: Any) -> None:
    from tests.functional.helpers import add_run

    product_ids = db.add_products(warehouse.id, 3)
    run_id = add_run(db, warehouse.id, "partially_failed")
    with db.session() as session:
        chunk = RunChunk(run_id=run_id, seq=0, start_id=product_ids[0], end_id=product_ids[-1], item_count=3, status="done")
        session.add(chunk)
        session.flush()
        session.add(RunItemFailure(run_id=run_id, item_id=product_ids[1], chunk_id=chunk.id, error="no cost"))
    items = testapp.get(f"/api/runs/{run_id}/failures", headers=viewer, status=200).json["items"]
    sku = testapp.get(f"/api/warehouses/{warehouse.code}/products", headers=viewer).json["products"][1]["sku"]
    assert [(item["item_id"], item["item"]) for item in items] == [(product_ids[1], sku)]
