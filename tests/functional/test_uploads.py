"""Bulk uploads of shipments (JSON) and of products and shipments as CSV: one transaction, one bad row
refuses the whole upload naming its row (and line) and field, up to 100,000 rows a request."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select, update
from webtest import TestApp

from tests.functional.helpers import assert_error, nothing_written_or_sent, shipment
from warehouse.models import Product, Shipment

CSV = {"Content-Type": "text/csv"}
MAX_ROWS = 100_000


def stored_shipments(db: Any, warehouse_id: int) -> dict[str, tuple]:
    rows = db.rows(
        select(Shipment.reference, Shipment.ship_to, Shipment.weight_grams, Shipment.shipping_date, Shipment.label_id)
        .where(Shipment.warehouse_id == warehouse_id)
    )
    return {reference: tuple(rest) for reference, *rest in rows}


def stored_products(db: Any, warehouse_id: int) -> dict[str, tuple]:
    rows = db.rows(
        select(Product.sku, Product.name, Product.qty_on_hand, Product.unit_cost, Product.reorder_point)
        .where(Product.warehouse_id == warehouse_id)
    )
    return {sku: (name, qty, Decimal(str(cost)), reorder) for sku, name, qty, cost, reorder in rows}


def post_csv(testapp: TestApp, url: str, text: str, headers: dict, status: int) -> Any:
    return testapp.post(url, text.encode(), headers={**headers, **CSV}, status=status)


# --- shipments as JSON --------------------------------------------------------------------------------


def test_shipments_are_inserted_then_updated_by_reference_keeping_their_labels(
    testapp: TestApp, operator: dict, db: Any
) -> None:
    warehouse = db.add_warehouse()
    url = f"/api/warehouses/{warehouse.code}/shipments"
    first = testapp.post_json(url, [shipment("R-1"), shipment("R-2", days_ahead=20)], headers=operator, status=200)
    assert first.json == {"received": 2, "inserted": 2, "updated": 0}
    db.execute(update(Shipment).where(Shipment.reference == "R-1").values(label_id="LBL-KEPT"))

    moved = shipment("R-1", days_ahead=5, ship_to="2 New Rd, Cork", weight_grams=900)
    second = testapp.post_json(url, [moved, shipment("R-3")], headers=operator, status=200)

    assert second.json == {"received": 2, "inserted": 1, "updated": 1}
    stored = stored_shipments(db, warehouse.id)
    assert stored["R-1"] == ("2 New Rd, Cork", 900, dt.date.fromisoformat(moved["shipping_date"]), "LBL-KEPT")
    assert set(stored) == {"R-1", "R-2", "R-3"}


@pytest.mark.parametrize(
    ("bad_row", "field"),
    [
        ({"ship_to": "x", "weight_grams": 1, "shipping_date": "2026-01-01"}, "[1].reference"),
        (shipment("R-9", weight_grams=0), "[1].weight_grams"),
        (shipment("R-9", weight_grams=1_000_001), "[1].weight_grams"),
        (shipment("R-9", shipping_date="2026-02-30"), "[1].shipping_date"),
        (shipment("R-9", shipping_date="tomorrow"), "[1].shipping_date"),
        (shipment("R-9", ship_to=""), "[1].ship_to"),
        (shipment("R-9", label_id="LBL-FORGED"), "[1]"),
        (shipment("R-1"), "[1].reference"),  # the same reference twice in one upload
    ],
    ids=["no reference", "weightless", "too heavy", "no such date", "not a date", "no address", "a label", "twice"],
)
def test_one_bad_shipment_refuses_the_whole_upload(
    bad_row: dict[str, Any], field: str, testapp: TestApp, operator: dict, db: Any, sent: list
) -> None:
    warehouse = db.add_warehouse()
    with nothing_written_or_sent(db, sent):
        response = testapp.post_json(
            f"/api/warehouses/{warehouse.code}/shipments", [shipment("R-1"), bad_row], headers=operator, status=400
        )
    assert_error(response, 400, field=field)


# --- CSV ------------------------------------------------------------------------------------------------


def test_products_from_csv_with_optional_columns_a_bom_and_crlf(testapp: TestApp, operator: dict, db: Any) -> None:
    warehouse = db.add_warehouse()
    text = "\ufeffsku,name,qty_on_hand,unit_cost,reorder_point\r\nA-1,Bolt,10,0.25,5\r\nA-2,,3,12,\r\n"

    response = post_csv(testapp, f"/api/warehouses/{warehouse.code}/products", text, operator, 200)

    assert response.json == {"received": 2, "inserted": 2, "updated": 0}
    assert stored_products(db, warehouse.id) == {
        "A-1": ("Bolt", 10, Decimal("0.25"), 5),
        "A-2": ("", 3, Decimal("12"), 0),  # empty cells: the fields' defaults
    }


def test_shipments_from_csv_then_updated_from_json(testapp: TestApp, operator: dict, db: Any) -> None:
    warehouse = db.add_warehouse()
    url = f"/api/warehouses/{warehouse.code}/shipments"
    text = 'reference,ship_to,weight_grams,shipping_date\nS-1,"1 Quay St, Dublin",1200,2026-12-01\nS-2,"O\'Brien St, Cork",80,2026-12-02\n'

    assert post_csv(testapp, url, text, operator, 200).json == {"received": 2, "inserted": 2, "updated": 0}
    assert testapp.post_json(url, [shipment("S-2", weight_grams=81)], headers=operator).json["updated"] == 1
    stored = stored_shipments(db, warehouse.id)
    assert stored["S-1"] == ("1 Quay St, Dublin", 1200, dt.date(2026, 12, 1), None)
    assert stored["S-2"][1] == 81


def test_a_bad_csv_cell_names_its_row_field_and_line_and_changes_nothing(
    testapp: TestApp, operator: dict, db: Any, sent: list
) -> None:
    warehouse = db.add_warehouse()
    url = f"/api/warehouses/{warehouse.code}/products"
    post_csv(testapp, url, "sku,qty_on_hand,unit_cost\nA-1,1,1\n", operator, 200)
    before = stored_products(db, warehouse.id)
    text = "sku,qty_on_hand,unit_cost\nA-1,5,1\nA-2,2,2\nA-3,many,3\n"

    with nothing_written_or_sent(db, sent):
        response = post_csv(testapp, url, text, operator, 400)

    error = assert_error(response, 400, "invalid_request", field="[2].qty_on_hand")
    assert error["details"]["line"] == 4
    assert stored_products(db, warehouse.id) == before  # A-1 was not updated either


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("sku,qty_on_hand,unit_cost\nA-1,1\n", 2),
        ('sku,qty_on_hand,unit_cost\n"A-1,1,1\n', 2),
        ("sku,sku,unit_cost\nA,B,1\n", None),
        ("sku,,unit_cost\nA,1,1\n", None),
        ("", None),
    ],
    ids=["ragged", "open quote", "repeated column", "unnamed column", "empty"],
)
def test_a_malformed_csv_is_400_and_changes_nothing(
    text: str, line: int | None, testapp: TestApp, operator: dict, db: Any, sent: list
) -> None:
    warehouse = db.add_warehouse()
    with nothing_written_or_sent(db, sent):
        response = post_csv(testapp, f"/api/warehouses/{warehouse.code}/products", text, operator, 400)
    error = assert_error(response, 400, field="body")
    assert error["details"].get("line") == line


def test_a_csv_column_the_rows_do_not_have_is_refused(testapp: TestApp, operator: dict, db: Any, sent: list) -> None:
    warehouse = db.add_warehouse()
    with nothing_written_or_sent(db, sent):
        response = post_csv(
            testapp, f"/api/warehouses/{warehouse.code}/products", "sku,qty_on_hand,unit_cost,colour\nA,1,1,red\n", operator, 400
        )
    assert_error(response, 400, field="body")
    assert response.json["error"]["message"] == "unknown column 'colour' (expected: sku, name, qty_on_hand, unit_cost, reorder_point)"


def test_a_header_only_csv_changes_nothing(testapp: TestApp, operator: dict, db: Any) -> None:
    warehouse = db.add_warehouse()
    response = post_csv(testapp, f"/api/warehouses/{warehouse.code}/shipments", "reference,ship_to,weight_grams,shipping_date\n", operator, 200)
    assert response.json == {"received": 0, "inserted": 0, "updated": 0}


def test_an_upload_in_another_format_is_415(testapp: TestApp, operator: dict, db: Any, sent: list) -> None:
    warehouse = db.add_warehouse()
    with nothing_written_or_sent(db, sent):
        response = testapp.post(
            f"/api/warehouses/{warehouse.code}/products",
            b"<products/>",
            headers={**operator, "Content-Type": "application/xml"},
            status=415,
        )
    assert_error(response, 415, "unsupported_media_type", field="Content-Type")


# --- 100,000 rows a request -------------------------------------------------------------------------------


@pytest.mark.timeout(300)
def test_a_full_upload_of_100000_rows_is_taken_and_one_more_is_refused(
    testapp: TestApp, operator: dict, db: Any, sent: list
) -> None:
    warehouse = db.add_warehouse()
    url = f"/api/warehouses/{warehouse.code}/products"
    header = "sku,qty_on_hand,unit_cost\n"
    rows = "".join(f"P-{i},{i % 90},{i % 1000}.5\n" for i in range(MAX_ROWS))

    assert post_csv(testapp, url, header + rows, operator, 200).json == {"received": MAX_ROWS, "inserted": MAX_ROWS, "updated": 0}
    with nothing_written_or_sent(db, sent):
        response = post_csv(testapp, url, header + rows + "P-extra,1,1\n", operator, 400)
    assert_error(response, 400, field="body")
    with nothing_written_or_sent(db, sent):
        too_many = [{"sku": f"J-{i}", "qty_on_hand": 1, "unit_cost": 1} for i in range(MAX_ROWS + 1)]
        assert_error(testapp.post_json(url, too_many, headers=operator, status=400), 400, field="body")
