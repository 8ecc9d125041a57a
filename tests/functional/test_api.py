"""The HTTP API through WebTest, on the embedded app (SQLite file, in-process broker and worker).

Every refused request is checked three ways: the status and the one error shape
{"error": {"code", "message", "details"}}, no row written in any table, and no task sent.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import pytest
from openapi_spec_validator import validate as validate_openapi
from pyramid.interfaces import IRoutesMapper
from pyramid.router import Router
from sqlalchemy import select, update
from webtest import TestApp, TestResponse

from tests.functional.helpers import Sent, add_run, assert_error, nothing_written_or_sent, product, shipment
from warehouse.models import Product, Run, RunStatus, Shipment, Warehouse
from warehouse.operations.shipping_labels import ShippingLabels

pytestmark = pytest.mark.timeout(120)

WRONG_TOKEN = {"Authorization": "Bearer not-a-token"}



# --- POST /api/warehouses ----------------------------------------------------------------------------


def test_create_warehouse(testapp: TestApp, operator: dict, db: Any, sent: list[Sent]) -> None:
    code = f"new-{uuid.uuid4().hex[:12]}"

    response = testapp.post_json("/api/warehouses", {"code": code, "name": "North"}, headers=operator, status=201)

    assert urlsplit(response.location).path == f"/api/warehouses/{code}"
    body = response.json
    assert (body["code"], body["name"], body["products"], body["shipments"]) == (code, "North", 0, 0)
    assert body["created_at"]
    assert db.scalar(select(Warehouse.name).where(Warehouse.code == code)) == "North"
    assert sent == []


def test_create_warehouse_with_a_code_in_use_is_409_and_changes_nothing(
    testapp: TestApp, operator: dict, db: Any, sent: list[Sent], warehouse: Warehouse
) -> None:
    with nothing_written_or_sent(db, sent):
        response = testapp.post_json(
            "/api/warehouses", {"code": warehouse.code, "name": "Other"}, headers=operator, status=409
        )

    assert_error(response, 409, "warehouse_exists", field="code")
    assert db.scalar(select(Warehouse.name).where(Warehouse.code == warehouse.code)) == warehouse.name


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x"}, "code"),
        ({"code": "fresh-1"}, "name"),
        ({"code": "", "name": "x"}, "code"),
        ({"code": "has space", "name": "x"}, "code"),
        ({"code": "-dash-first", "name": "x"}, "code"),
        ({"code": "a" * 65, "name": "x"}, "code"),
        ({"code": 5, "name": "x"}, "code"),
        ({"code": "fresh-2", "name": ""}, "name"),
        ({"code": "fresh-3", "name": "n" * 201}, "name"),
        ({"code": "fresh-4", "name": None}, "name"),
        ({"code": "fresh-5", "name": "x", "extra": 1}, "body"),
        (["fresh-6", "x"], "body"),
    ],
)
def test_create_warehouse_refuses_invalid_fields(
    body: Any, field: str, testapp: TestApp, operator: dict, db: Any, sent: list[Sent]
) -> None:
    with nothing_written_or_sent(db, sent):
        response = testapp.post_json("/api/warehouses", body, headers=operator, status=400)

    assert_error(response, 400, "invalid_request", field=field)


@pytest.mark.parametrize("route", ["/api/warehouses", "/api/warehouses/{code}/products", "/api/warehouses/{code}/runs"])
def test_malformed_json_is_400_malformed_body(
    route: str, testapp: TestApp, operator: dict, db: Any, sent: list[Sent], warehouse: Warehouse
) -> None:
    with nothing_written_or_sent(db, sent):
        response = testapp.post(
            route.format(code=warehouse.code),
            '{"code": "x", "name": ',
            headers={**operator, "Content-Type": "application/json"},
            status=400,
        )

    assert_error(response, 400, "malformed_body", field="body")


# --- GET /api/warehouses/{code} ------------------------------------------------------------------------


def test_get_warehouse_counts_its_products_and_shipments(
    testapp: TestApp, viewer: dict, db: Any, warehouse: Warehouse
) -> None:
    db.add_products(warehouse.id, 4)
    other = db.add_warehouse()
    db.add_products(other.id, 3)
    with db.session() as session:
        session.add_all(
            Shipment(
                warehouse_id=warehouse.id, reference=f"R-{i}", ship_to="Somewhere", weight_grams=100,
                shipping_date=warehouse.created_at.date(),
            )
            for i in range(2)
        )

    body = testapp.get(f"/api/warehouses/{warehouse.code}", headers=viewer, status=200).json

    assert (body["code"], body["name"], body["products"], body["shipments"]) == (
        warehouse.code, warehouse.name, 4, 2,
    )


def test_get_unknown_warehouse_is_404(testapp: TestApp, viewer: dict) -> None:
    response = testapp.get("/api/warehouses/no-such-warehouse", headers=viewer, status=404)

    assert_error(response, 404, "warehouse_not_found", field="code")


def test_get_warehouse_with_an_impossible_code_is_400(testapp: TestApp, viewer: dict) -> None:
    response = testapp.get("/api/warehouses/bad%20code", headers=viewer, status=400)

    assert_error(response, 400, "invalid_request", field="code")


# --- POST /api/warehouses/{code}/products -------------------------------------------------------------


def stored_products(db: Any, warehouse_id: int) -> dict[str, tuple]:
    rows = db.rows(
        select(Product.sku, Product.name, Product.qty_on_hand, Product.unit_cost, Product.reorder_point).where(
            Product.warehouse_id == warehouse_id
        )
    )
    return {sku: (name, qty, Decimal(cost), reorder) for sku, name, qty, cost, reorder in rows}


def test_upsert_products_inserts_then_updates_by_sku(
    testapp: TestApp, operator: dict, viewer: dict, db: Any, sent: list[Sent], warehouse: Warehouse
) -> None:
    url = f"/api/warehouses/{warehouse.code}/products"

    first = testapp.post_json(
        url,
        [product("A", 1, 1.25, name="Apple", reorder_point=3), product("B", 2, 10), product("C", 0, 0)],
        headers=operator,
        status=200,
    )
    second = testapp.post_json(
        url, [product("B", 20, 11.5, reorder_point=4), product("D", 7, 0.1), product("A", 9, 1.25)], headers=operator
    )

    assert first.json == {"received": 3, "inserted": 3, "updated": 0}
    assert second.json == {"received": 3, "inserted": 1, "updated": 2}
    assert stored_products(db, warehouse.id) == {
        "A": ("", 9, Decimal("1.25"), 0),
        "B": ("", 20, Decimal("11.50"), 4),
        "C": ("", 0, Decimal("0.00"), 0),
        "D": ("", 7, Decimal("0.10"), 0),
    }
    assert testapp.get(f"/api/warehouses/{warehouse.code}", headers=viewer).json["products"] == 4
    assert sent == []


def test_the_same_sku_in_two_warehouses_is_two_products(
    testapp: TestApp, operator: dict, db: Any, warehouse: Warehouse
) -> None:
    other = db.add_warehouse()
    testapp.post_json(f"/api/warehouses/{warehouse.code}/products", [product("SAME", 1)], headers=operator)

    response = testapp.post_json(f"/api/warehouses/{other.code}/products", [product("SAME", 2)], headers=operator)

    assert response.json == {"received": 1, "inserted": 1, "updated": 0}
    assert stored_products(db, warehouse.id)["SAME"][1] == 1
    assert stored_products(db, other.id)["SAME"][1] == 2


def test_a_sku_twice_in_one_upload_is_400_and_nothing_is_written(
    testapp: TestApp, operator: dict, db: Any, sent: list[Sent], warehouse: Warehouse
) -> None:
    url = f"/api/warehouses/{warehouse.code}/products"
    testapp.post_json(url, [product("KEEP", 1, 1.0)], headers=operator, status=200)
    # Past the first insert batch of 1,000 rows, with an update of an existing product in the first one.
    rows = [product("KEEP", 999, 99.0)] + [product(f"N-{i}") for i in range(1_500)] + [product("N-3", 1)]

    with nothing_written_or_sent(db, sent):
        response = testapp.post_json(url, rows, headers=operator, status=400)

    error = assert_error(response, 400, field="[1501].sku")
    assert "N-3" in error["message"]
    assert stored_products(db, warehouse.id) == {"KEEP": ("", 1, Decimal("1.00"), 0)}


@pytest.mark.parametrize(
    ("bad_row", "field"),
    [
        ({"sku": 5, "qty_on_hand": 1, "unit_cost": 1}, "[1].sku"),
        ({"sku": "", "qty_on_hand": 1, "unit_cost": 1}, "[1].sku"),
        ({"sku": " padded", "qty_on_hand": 1, "unit_cost": 1}, "[1].sku"),
        ({"qty_on_hand": 1, "unit_cost": 1}, "[1].sku"),
        ({"sku": "X", "qty_on_hand": "3", "unit_cost": 1}, "[1].qty_on_hand"),
        ({"sku": "X", "qty_on_hand": 1.5, "unit_cost": 1}, "[1].qty_on_hand"),
        ({"sku": "X", "qty_on_hand": -1, "unit_cost": 1}, "[1].qty_on_hand"),
        ({"sku": "X", "qty_on_hand": 2_147_483_648, "unit_cost": 1}, "[1].qty_on_hand"),
        ({"sku": "X", "unit_cost": 1}, "[1].qty_on_hand"),
        ({"sku": "X", "qty_on_hand": 1, "unit_cost": "2 dollars"}, "[1].unit_cost"),
        ({"sku": "X", "qty_on_hand": 1, "unit_cost": "2.005"}, "[1].unit_cost"),
        ({"sku": "X", "qty_on_hand": 1, "unit_cost": 2.005}, "[1].unit_cost"),
        ({"sku": "X", "qty_on_hand": 1, "unit_cost": -0.01}, "[1].unit_cost"),
        ({"sku": "X", "qty_on_hand": 1}, "[1].unit_cost"),
        ({"sku": "X", "qty_on_hand": 1, "unit_cost": 1, "reorder_point": -1}, "[1].reorder_point"),
        ({"sku": "X", "qty_on_hand": 1, "unit_cost": 1, "name": 7}, "[1].name"),
        ({"sku": "X", "qty_on_hand": 1, "unit_cost": 1, "colour": "red"}, "[1]"),
        ("X", "[1]"),
    ],
)
def test_upsert_refuses_invalid_rows_naming_the_field(
    bad_row: Any, field: str, testapp: TestApp, operator: dict, db: Any, sent: list[Sent], warehouse: Warehouse
) -> None:
    with nothing_written_or_sent(db, sent):
        response = testapp.post_json(
            f"/api/warehouses/{warehouse.code}/products", [product("OK"), bad_row], headers=operator, status=400
        )

    assert_error(response, 400, "invalid_request", field=field)


def test_upsert_refuses_a_body_that_is_not_a_list(
    testapp: TestApp, operator: dict, db: Any, sent: list[Sent], warehouse: Warehouse
) -> None:
    with nothing_written_or_sent(db, sent):
        response = testapp.post_json(
            f"/api/warehouses/{warehouse.code}/products", product("A"), headers=operator, status=400
        )

    assert_error(response, 400, "invalid_request", field="body")


def test_upsert_into_an_unknown_warehouse_is_404(
    testapp: TestApp, operator: dict, db: Any, sent: list[Sent]
) -> None:
    with nothing_written_or_sent(db, sent):
        response = testapp.post_json(
            "/api/warehouses/no-such-warehouse/products", [product("A")], headers=operator, status=404
        )

    assert_error(response, 404, "warehouse_not_found", field="code")


def test_an_empty_upload_writes_nothing(
    testapp: TestApp, operator: dict, db: Any, sent: list[Sent], warehouse: Warehouse
) -> None:
    with nothing_written_or_sent(db, sent):
        response = testapp.post_json(f"/api/warehouses/{warehouse.code}/products", [], headers=operator, status=200)

    assert response.json == {"received": 0, "inserted": 0, "updated": 0}


# --- POST /api/warehouses/{code}/runs -----------------------------------------------------------------


def test_start_run_is_202_and_sends_the_run_once_after_commit(
    testapp: TestApp, operator: dict, db: Any, sent: list[Sent], warehouse: Warehouse, wait_for_run: Any
) -> None:
    db.add_products(warehouse.id, 5)
    runs_before = db.row_counts()["runs"]

    response = testapp.post_json(
        f"/api/warehouses/{warehouse.code}/runs",
        {"operation": "valuation", "chunk_size": 2, "tolerated_failure_percent": 2.5},
        headers=operator,
        status=202,
    )

    run = response.json
    assert urlsplit(response.location).path == f"/api/runs/{run['id']}"
    assert (run["warehouse"], run["operation"], run["status"]) == (warehouse.code, "valuation", "pending")
    assert (run["chunk_size"], run["tolerated_failure_percent"]) == (2, 2.5)
    assert db.row_counts()["runs"] == runs_before + 1
    # Exactly one task, and the run's row was committed (visible to another connection) when it went out.
    assert [(call.name, call.args) for call in sent] == [("processWholeWarehouse", [run["id"]])]
    assert sent[0].run_status_seen_by_another_connection == "pending"

    finished = wait_for_run(testapp, run["id"])
    assert finished["status"] == "succeeded"
    assert finished["chunks"] == {"total": 3, "done": 3, "failed": 0, "skipped": 0, "remaining": 0}
    assert finished["items"] == {"total": 5, "done": 5, "failed": 0, "remaining": 0}
    assert len(sent) == 1


def test_start_run_uses_the_default_chunk_size(
    testapp: TestApp, operator: dict, db: Any, sent: list[Sent], warehouse: Warehouse, wait_for_run: Any
) -> None:
    db.add_products(warehouse.id, 501)

    response = testapp.post_json(
        f"/api/warehouses/{warehouse.code}/runs", {"operation": "valuation"}, headers=operator, status=202
    )

    assert response.json["chunk_size"] == 500
    assert response.json["tolerated_failure_percent"] == 0
    assert wait_for_run(testapp, response.json["id"])["chunks"]["total"] == 2


def test_a_run_without_a_chunk_size_gets_its_operation_s_default(
    testapp: TestApp, operator: dict, sent: list[Sent], warehouse: Warehouse
) -> None:
    labels = testapp.post_json(
        f"/api/warehouses/{warehouse.code}/runs", {"operation": "shipping_labels"}, headers=operator, status=202
    )
    chosen = testapp.post_json(
        f"/api/warehouses/{warehouse.code}/runs", {"operation": "valuation", "chunk_size": 77}, headers=operator, status=202
    )

    assert labels.json["chunk_size"] == ShippingLabels.default_chunk_size != 500
    assert chosen.json["chunk_size"] == 77


@pytest.mark.parametrize("status", [RunStatus.PENDING, RunStatus.RUNNING, RunStatus.CANCELLING])
def test_start_run_while_one_is_active_is_409(
    status: str, testapp: TestApp, operator: dict, db: Any, sent: list[Sent], warehouse: Warehouse
) -> None:
    active = add_run(db, warehouse.id, status)
    try:
        with nothing_written_or_sent(db, sent):
            response = testapp.post_json(
                f"/api/warehouses/{warehouse.code}/runs", {"operation": "valuation"}, headers=operator, status=409
            )
    finally:
        db.execute(update(Run).where(Run.id == active).values(status=RunStatus.CANCELLED))

    error = assert_error(response, 409, "run_active", field="operation")
    assert error["details"]["active_run_id"] == active


def test_an_active_run_blocks_only_its_own_warehouse_and_only_while_active(
    testapp: TestApp, operator: dict, db: Any, sent: list[Sent], warehouse: Warehouse, wait_for_run: Any
) -> None:
    other = db.add_warehouse()
    db.add_products(warehouse.id, 2)
    db.add_products(other.id, 2)
    active = add_run(db, warehouse.id, RunStatus.RUNNING)
    add_run(db, warehouse.id, RunStatus.SUCCEEDED)  # ended runs never block

    elsewhere = testapp.post_json(f"/api/warehouses/{other.code}/runs", {"operation": "valuation"}, headers=operator)
    db.execute(update(Run).where(Run.id == active).values(status=RunStatus.FAILED))
    again = testapp.post_json(f"/api/warehouses/{warehouse.code}/runs", {"operation": "valuation"}, headers=operator)

    assert elsewhere.status_int == again.status_int == 202
    assert [call.args for call in sent] == [[elsewhere.json["id"]], [again.json["id"]]]
    assert wait_for_run(testapp, elsewhere.json["id"])["status"] == "succeeded"
    assert wait_for_run(testapp, again.json["id"])["status"] == "succeeded"


def test_start_run_on_an_unknown_warehouse_is_404(
    testapp: TestApp, operator: dict, db: Any, sent: list[Sent]
) -> None:
    with nothing_written_or_sent(db, sent):
        response = testapp.post_json(
            "/api/warehouses/no-such-warehouse/runs", {"operation": "valuation"}, headers=operator, status=404
        )

    assert_error(response, 404, "warehouse_not_found", field="code")


def test_start_run_of_an_unknown_operation_is_422(
    testapp: TestApp, operator: dict, db: Any, sent: list[Sent], warehouse: Warehouse
) -> None:
    with nothing_written_or_sent(db, sent):
        response = testapp.post_json(
            f"/api/warehouses/{warehouse.code}/runs", {"operation": "teleport"}, headers=operator, status=422
        )

    error = assert_error(response, 422, field="operation")
    assert "teleport" in error["message"] and "valuation" in error["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"operation": "valuation", "chunk_size": 0}, "chunk_size"),
        ({"operation": "valuation", "chunk_size": -1}, "chunk_size"),
        ({"operation": "valuation", "chunk_size": 100_001}, "chunk_size"),
        ({"operation": "valuation", "chunk_size": "x"}, "chunk_size"),
        ({"operation": "valuation", "chunk_size": "500"}, "chunk_size"),
        ({"operation": "valuation", "chunk_size": 1.5}, "chunk_size"),
        ({"operation": "valuation", "chunk_size": None}, "chunk_size"),
        ({"operation": "valuation", "chunk_size": True}, "chunk_size"),
        ({"operation": "valuation", "tolerated_failure_percent": -0.1}, "tolerated_failure_percent"),
        ({"operation": "valuation", "tolerated_failure_percent": 100.01}, "tolerated_failure_percent"),
        ({"operation": "valuation", "tolerated_failure_percent": "5"}, "tolerated_failure_percent"),
        ({"operation": "valuation", "tolerated_failure_percent": None}, "tolerated_failure_percent"),
        ({"chunk_size": 10}, "operation"),
        ({"operation": ""}, "operation"),
        ({"operation": 7}, "operation"),
        ({"operation": "valuation", "priority": "high"}, "body"),
        (["valuation"], "body"),
        ("valuation", "body"),
    ],
)
def test_start_run_refuses_invalid_fields(
    body: Any, field: str, testapp: TestApp, operator: dict, db: Any, sent: list[Sent], warehouse: Warehouse
) -> None:
    with nothing_written_or_sent(db, sent):
        response = testapp.post_json(f"/api/warehouses/{warehouse.code}/runs", body, headers=operator, status=400)

    assert_error(response, 400, "invalid_request", field=field)


def test_start_run_without_a_body_is_400(
    testapp: TestApp, operator: dict, db: Any, sent: list[Sent], warehouse: Warehouse
) -> None:
    with nothing_written_or_sent(db, sent):
        response = testapp.post(
            f"/api/warehouses/{warehouse.code}/runs", "", headers={**operator, "Content-Type": "application/json"},
            status=400,
        )

    assert_error(response, 400, field="body")


# --- GET /api/runs/{id} --------------------------------------------------------------------------------


def test_get_run_has_the_documented_shape(
    testapp: TestApp, operator: dict, viewer: dict, db: Any, warehouse: Warehouse, wait_for_run: Any
) -> None:
    db.add_products(warehouse.id, 3, values=lambda i: {"qty_on_hand": i, "unit_cost": Decimal("1.50"), "reorder_point": 1})
    started = testapp.post_json(
        f"/api/warehouses/{warehouse.code}/runs", {"operation": "valuation"}, headers=operator
    ).json
    wait_for_run(testapp, started["id"])

    run = testapp.get(f"/api/runs/{started['id']}", headers=viewer, status=200).json

    assert set(run) == {
        "id", "warehouse", "operation", "status", "chunk_size", "tolerated_failure_percent", "chunks", "items",
        "created_at", "cancel_requested_at", "started_at", "finished_at", "eta_seconds", "redrive_count",
        "redriven_at", "schedule_id", "scheduled_for", "details_purged_at", "result", "error", "links",
    }
    assert (run["id"], run["warehouse"], run["operation"], run["status"]) == (
        started["id"], warehouse.code, "valuation", "succeeded",
    )
    assert (run["schedule_id"], run["scheduled_for"]) == (None, None)  # started by a person, not a schedule
    assert run["chunks"] == {"total": 1, "done": 1, "failed": 0, "skipped": 0, "remaining": 0}
    assert run["items"] == {"total": 3, "done": 3, "failed": 0, "remaining": 0}
    assert run["created_at"] <= run["started_at"] <= run["finished_at"]
    assert all(run[key].endswith("+00:00") for key in ("created_at", "started_at", "finished_at"))
    assert run["eta_seconds"] == 0
    assert run["error"] is None
    assert run["result"] == {
        "total_stock_value": "4.50",  # 0 * 1.50 + 1 * 1.50 + 2 * 1.50
        "products_needing_reorder": 2,
        "items_processed": 3,
        "items_failed": 0,
    }
    assert run["links"] == {"self": f"/api/runs/{run['id']}", "page": f"/runs/{run['id']}"}


def test_get_a_run_that_never_started(testapp: TestApp, viewer: dict, db: Any, warehouse: Warehouse) -> None:
    run_id = add_run(db, warehouse.id, RunStatus.CANCELLED)

    run = testapp.get(f"/api/runs/{run_id}", headers=viewer, status=200).json

    assert run["status"] == "cancelled" and run["started_at"] is None and run["result"] is None


def test_get_unknown_run_is_404(testapp: TestApp, viewer: dict) -> None:
    response = testapp.get("/api/runs/2147483647", headers=viewer, status=404)

    assert_error(response, 404, "run_not_found", field="id")


@pytest.mark.parametrize("run_id", ["abc", "1.5", "0", "-1", "2147483648"])
def test_get_run_with_an_impossible_id_is_400(run_id: str, testapp: TestApp, viewer: dict) -> None:
    response = testapp.get(f"/api/runs/{run_id}", headers=viewer, status=400)

    assert_error(response, 400, "invalid_request", field="id")


# --- GET /api/openapi.json -----------------------------------------------------------------------------


def test_openapi_document_is_served_without_auth_and_is_valid(testapp: TestApp) -> None:
    response = testapp.get("/api/openapi.json", status=200)

    assert response.content_type == "application/json"
    document = response.json
    assert document["openapi"].startswith("3.")
    validate_openapi(document)


def api_routes(wsgi_app: Router) -> set[str]:
    mapper = wsgi_app.registry.getUtility(IRoutesMapper)
    return {
        route.pattern
        for route in mapper.get_routes()
        # All but the document itself and its explorer (/api/docs), which are pages about the API.
        if route.pattern.startswith("/api/") and not route.pattern.startswith(("/api/openapi.", "/api/docs"))
    }


def test_openapi_document_describes_every_api_route(testapp: TestApp, wsgi_app: Router) -> None:
    document = testapp.get("/api/openapi.json").json

    assert set(document["paths"]) == api_routes(wsgi_app)


# --- authentication and roles --------------------------------------------------------------------------

# Every API route but the OpenAPI document: (method, path, body, role needed).
ROUTES = [
    ("POST", "/api/warehouses", {"code": "auth-test", "name": "x"}, "operator"),
    ("GET", "/api/warehouses/{code}", None, "viewer"),
    ("GET", "/api/warehouses/{code}/products", None, "viewer"),
    ("POST", "/api/warehouses/{code}/products", [product("AUTH")], "operator"),
    ("GET", "/api/warehouses/{code}/shipments", None, "viewer"),
    ("POST", "/api/warehouses/{code}/shipments", [shipment("AUTH")], "operator"),
    ("POST", "/api/warehouses/{code}/runs", {"operation": "valuation"}, "operator"),
    ("GET", "/api/runs", None, "viewer"),
    ("GET", "/api/runs/{run_id}", None, "viewer"),
    ("POST", "/api/runs/{run_id}/cancel", None, "operator"),
    ("POST", "/api/runs/{run_id}/resume", None, "operator"),
    ("POST", "/api/runs/{run_id}/redrive", None, "operator"),
    ("GET", "/api/runs/{run_id}/failures", None, "viewer"),
    ("GET", "/api/runs/{run_id}/chunks", None, "viewer"),
    ("GET", "/api/runs/{run_id}/timeline", None, "viewer"),
    ("GET", "/api/workers", None, "viewer"),
    ("GET", "/api/warehouses/{code}/schedules", None, "viewer"),
    ("POST", "/api/warehouses/{code}/schedules", {"operation": "valuation", "cron": "0 6 1 1 *"}, "operator"),
    ("GET", "/api/schedules/{schedule_id}", None, "viewer"),
    ("PATCH", "/api/schedules/{schedule_id}", {"enabled": False}, "operator"),
    ("DELETE", "/api/schedules/{schedule_id}", None, "operator"),
    ("GET", "/api/webhooks", None, "viewer"),
    ("POST", "/api/webhooks", {"url": "https://93.184.216.34/auth", "events": ["run.failed"]}, "operator"),
    ("DELETE", "/api/webhooks/{webhook_id}", None, "operator"),
    ("GET", "/api/webhooks/{webhook_id}/deliveries", None, "viewer"),
    ("POST", "/api/webhooks/{webhook_id}/deliveries/{delivery_id}/retry", None, "operator"),
]
ROUTE_IDS = [f"{method} {path}" for method, path, _, _ in ROUTES]
# Routes anyone may call (tested in test_health.py).
PUBLIC_ROUTES = ["/api/health"]


def test_these_tests_cover_every_api_route(wsgi_app: Router) -> None:
    covered = {
        path.replace("{run_id}", "{id}").replace("{schedule_id}", "{id}").replace("{webhook_id}", "{id}")
        for _, path, _, _ in ROUTES
    } | set(PUBLIC_ROUTES)

    assert covered == api_routes(wsgi_app)


def call(
    testapp: TestApp, route: tuple, headers: dict, warehouse: Warehouse, run_id: int, status: int, schedule_id: int = 0,
    webhook_id: int = 0,
) -> TestResponse:
    method, path, body, _ = route
    url = path.format(code=warehouse.code, run_id=run_id, schedule_id=schedule_id, webhook_id=webhook_id, delivery_id=1)
    if method == "GET":
        return testapp.get(url, headers=headers, status=status)
    if method == "DELETE":
        return testapp.delete(url, headers=headers, status=status)
    if method == "PATCH":
        return testapp.patch_json(url, body, headers=headers, status=status)
    return testapp.post_json(url, body, headers=headers, status=status)


@pytest.fixture
def ended_run(db: Any, warehouse: Warehouse) -> int:
    return add_run(db, warehouse.id, RunStatus.SUCCEEDED)


@pytest.fixture
def a_schedule(db: Any, warehouse: Warehouse) -> int:
    from warehouse.schedules import create_schedule

    with db.session() as session:
        return create_schedule(session, warehouse, {"operation": "valuation", "cron": "0 6 1 1 *"}).id


@pytest.fixture
def a_webhook(db: Any, warehouse: Warehouse) -> int:
    from warehouse.webhooks.subscriptions import create_subscription

    with db.session() as session:
        fields = {"url": "https://93.184.216.34/auth", "events": ["run.failed"], "warehouse": warehouse.code}
        return create_subscription(session, fields, {})[0].id


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
@pytest.mark.parametrize(
    "headers",
    [{}, WRONG_TOKEN, {"Authorization": "Basic op-token"}, {"Authorization": "op-token"}, {"Authorization": "Bearer "}],
    ids=["none", "wrong token", "basic scheme", "no scheme", "empty bearer"],
)
def test_without_a_valid_token_every_route_is_401(
    route: tuple, headers: dict, testapp: TestApp, db: Any, sent: list[Sent], warehouse: Warehouse, ended_run: int,
    a_schedule: int, a_webhook: int,
) -> None:
    with nothing_written_or_sent(db, sent):
        response = call(testapp, route, headers, warehouse, ended_run, 401, a_schedule, a_webhook)

    assert_error(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].lower().startswith("bearer")


@pytest.mark.parametrize("route", [r for r in ROUTES if r[3] == "operator"], ids=lambda r: f"{r[0]} {r[1]}")
def test_a_viewer_may_not_use_operator_routes(
    route: tuple, testapp: TestApp, viewer: dict, db: Any, sent: list[Sent], warehouse: Warehouse, ended_run: int,
    a_schedule: int, a_webhook: int,
) -> None:
    with nothing_written_or_sent(db, sent):
        response = call(testapp, route, viewer, warehouse, ended_run, 403, a_schedule, a_webhook)

    assert_error(response, 403, "forbidden")


@pytest.mark.parametrize("route", [r for r in ROUTES if r[3] == "viewer"], ids=lambda r: f"{r[0]} {r[1]}")
@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_viewers_and_operators_may_read(
    route: tuple, role: str, request: pytest.FixtureRequest, testapp: TestApp, warehouse: Warehouse, ended_run: int,
    a_schedule: int, a_webhook: int,
) -> None:
    response = call(testapp, route, request.getfixturevalue(role), warehouse, ended_run, 200, a_schedule, a_webhook)

    assert response.content_type == "application/json"
    assert not isinstance(response.json.get("error"), dict)


def test_authentication_comes_before_validation(
    testapp: TestApp, viewer: dict, db: Any, sent: list[Sent], warehouse: Warehouse
) -> None:
    url = f"/api/warehouses/{warehouse.code}/runs"
    with nothing_written_or_sent(db, sent):
        anonymous = testapp.post_json(url, {"chunk_size": "bad"}, status=401)
        as_viewer = testapp.post_json(url, {"chunk_size": "bad"}, headers=viewer, status=403)

    assert_error(anonymous, 401, "unauthorized")
    assert_error(as_viewer, 403, "forbidden")


def test_unknown_paths_answer_404_in_the_error_shape(testapp: TestApp, viewer: dict) -> None:
    response = testapp.get("/api/no-such-thing", headers=viewer, status=404)

    assert_error(response, 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/api/warehouses", "POST"),
        ("DELETE", "/api/warehouses/somewhere", "GET"),
        ("GET", "/api/warehouses/somewhere/runs", "POST"),
        ("PATCH", "/api/runs/1", "GET"),
    ],
)
def test_a_method_a_route_does_not_serve_is_405_with_allow(
    testapp: TestApp, operator: dict[str, str], method: str, path: str, allowed: str
) -> None:
    response = testapp.request(path, method=method, headers=operator, expect_errors=True)
    assert response.status_int == 405
    assert response.headers["Allow"] == allowed
    assert response.json["error"]["code"] == "method_not_allowed"
