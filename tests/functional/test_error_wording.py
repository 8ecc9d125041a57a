"""Each route's bad input, and the exact sentence it is answered with: the field is the subject, the
rule is said in words (warehouse/wording.py). Every other error the suite sees is checked for schema
speak by tests/functional/helpers.assert_error."""

from __future__ import annotations

from typing import Any

import pytest
from webtest import TestApp

from tests.functional.helpers import assert_error, product

FREE_TEXT = "may not contain < > ; -- a backslash, or control or invisible characters"
CODE_RULE = "must start with a letter or digit and hold only letters, digits and . _ -"
ID_RULE = "must start with a letter or digit and hold only letters, digits and . _ - / : # +"
MONEY_RULE = 'must be an amount from 0 to 1,000,000 with at most two decimal places, as a number (2.5) or a decimal string ("2.50")'
PRODUCT_COLUMNS = "sku, name, qty_on_hand, unit_cost, reorder_point"

# (method, path, body or None, CSV?, status, field, the exact message)
CASES: list[tuple[str, str, Any, bool, int, str, str]] = [
    ("POST", "/api/warehouses", {"code": "w9"}, False, 400, "name", "name is required"),
    ("POST", "/api/warehouses", {"code": "w 9", "name": "W"}, False, 400, "code", f"code {CODE_RULE}"),
    ("POST", "/api/warehouses", {"code": "w9", "name": "<b>x</b>"}, False, 400, "name", f"name {FREE_TEXT}, and may not be blank"),
    ("POST", "/api/warehouses", {"code": "w9", "name": 5}, False, 400, "name", "name must be text"),
    ("POST", "/api/warehouses", {"code": "w9", "name": "W", "colour": "red"}, False, 400, "body", "unknown field 'colour' (expected: code, name)"),
    ("POST", "/api/warehouses", [], False, 400, "body", "body must be an object"),
    ("POST", "/api/warehouses", {"code": "w9", "name": "x" * 201}, False, 400, "name", "name may be at most 200 characters long"),
    ("POST", "/api/warehouses/{code}/runs", {"operation": "valuation", "chunk_size": 0}, False, 400, "chunk_size", "chunk_size must be at least 1"),
    ("POST", "/api/warehouses/{code}/runs", {"operation": "valuation", "chunk_size": 100_001}, False, 400, "chunk_size", "chunk_size must be at most 100,000"),
    ("POST", "/api/warehouses/{code}/runs", {"operation": "nope"}, False, 422, "operation", "operation 'nope' is not known (known: shipping_labels, valuation)"),
    ("POST", "/api/warehouses/{code}/runs", {"operation": "valuation", "tolerated_failure_percent": "x"}, False, 400,
     "tolerated_failure_percent", "tolerated_failure_percent must be a number"),
    ("POST", "/api/warehouses/{code}/runs", {}, False, 400, "operation", "operation is required"),
    ("GET", "/api/runs?limit=abc", None, False, 400, "limit", "limit must be a whole number"),
    ("GET", "/api/runs?limit=0", None, False, 400, "limit", "limit must be at least 1"),
    ("GET", "/api/runs?status=bogus", None, False, 400, "status",
     "status must be one of: pending, running, cancelling, succeeded, partially_failed, failed, cancelled"),
    ("GET", "/api/runs?cursor=nonsense", None, False, 400, "cursor", "cursor is not one this API gave out: pass next_cursor from the previous page as it came"),
    ("GET", "/api/runs/abc", None, False, 400, "id", "id must be a run id, a whole number from 1 to 2,147,483,647"),
    ("GET", "/api/workers?alive=maybe", None, False, 400, "alive", "alive must be true or false"),
    ("POST", "/api/warehouses/{code}/products", [{"sku": "a", "qty_on_hand": 1}], False, 400, "[0].unit_cost", "[0].unit_cost is required"),
    ("POST", "/api/warehouses/{code}/products", [product("a", qty=-1)], False, 400, "[0].qty_on_hand", "[0].qty_on_hand must be at least 0"),
    ("POST", "/api/warehouses/{code}/products", [product("a", cost="2 dollars")], False, 400, "[0].unit_cost", f"[0].unit_cost {MONEY_RULE}"),
    ("POST", "/api/warehouses/{code}/products", [product("a", cost=2.555)], False, 400, "[0].unit_cost",
     "[0].unit_cost may have at most two decimal places (cents), not 2.555"),
    ("POST", "/api/warehouses/{code}/products", [product("a b")], False, 400, "[0].sku", f"[0].sku {ID_RULE}"),
    ("POST", "/api/warehouses/{code}/products", [product("a", qty=1, qty_on_hnad=2)], False, 400, "[0]",
     f"unknown field 'qty_on_hnad' in [0] (expected: {PRODUCT_COLUMNS})"),
    ("POST", "/api/warehouses/{code}/products", [product("a"), product("a")], False, 400, "[1].sku", "[1].sku repeats sku 'a' of row 0"),
    ("POST", "/api/warehouses/{code}/products", "sku,qty,unit_cost\na,1,2\n", True, 400, "body",
     f"unknown column 'qty' (expected: {PRODUCT_COLUMNS})"),
    ("POST", "/api/warehouses/{code}/products", "sku;qty_on_hand;unit_cost\na;1;2\n", True, 400, "body", "the CSV looks separated by ';': use commas"),
    ("POST", "/api/warehouses/{code}/products", "sku,qty_on_hand,unit_cost\na,1,2.555\n", True, 400, "[0].unit_cost", f"[0].unit_cost {MONEY_RULE}"),
    ("POST", "/api/warehouses/{code}/shipments",
     [{"reference": "r1", "ship_to": "x", "weight_grams": 1, "shipping_date": "2026-13-01"}], False, 400,
     "[0].shipping_date", "[0].shipping_date must be a date written YYYY-MM-DD"),
    ("POST", "/api/warehouses/{code}/shipments",
     [{"reference": "r1", "ship_to": " ", "weight_grams": 1, "shipping_date": "2026-12-01"}], False, 400,
     "[0].ship_to", f"[0].ship_to {FREE_TEXT}, and may not be blank"),
]


@pytest.mark.parametrize(("method", "path", "body", "csv", "status", "field", "message"), CASES,
                         ids=[f"{c[0]} {c[1]} {c[5]}" for c in CASES])
def test_bad_input_is_answered_in_words(method: str, path: str, body: Any, csv: bool, status: int, field: str, message: str,
                                        testapp: TestApp, operator: dict, warehouse: Any) -> None:
    url = path.format(code=warehouse.code)
    if body is None:
        response = testapp.request(url, method=method, headers=operator, expect_errors=True)
    elif csv:
        response = testapp.post(url, body, headers={**operator, "Content-Type": "text/csv"}, expect_errors=True)
    else:
        response = testapp.post_json(url, body, headers=operator, expect_errors=True)
    error = assert_error(response, status, field=field)
    assert error["message"] == message


def test_a_missing_or_unknown_token_names_the_authorization_header(testapp: TestApp) -> None:
    for headers, words in (({}, "no"), ({"Authorization": "Bearer wrong"}, "an unknown")):
        error = assert_error(testapp.get("/api/runs", headers=headers, status=401), 401, "unauthorized", field="Authorization")
        assert error["message"] == f"the Authorization header carries {words} token: send 'Authorization: Bearer TOKEN'"


def test_a_viewer_doing_an_operator_s_work_is_told_whose_token_it_is(testapp: TestApp, viewer: dict) -> None:
    response = testapp.post_json("/api/warehouses", {"code": "w9", "name": "W"}, headers=viewer, status=403)
    error = assert_error(response, 403, "forbidden", field="Authorization")
    assert error["message"] == "the token in the Authorization header is a viewer's, and a viewer may not do this"
    assert error["details"]["role"] == "viewer"
