"""Hostile input in every field of every route: each is refused with a clear 4xx in the one error
shape, naming the field, and the database is left as it was.

SQL and script fragments, NUL and other control characters, very long strings, look-alike letters,
right-to-left marks and emoji in identifiers, huge, negative, fractional and boolean numbers, and
broken CSV files (empty and repeated header names, the same key on two rows). For every refusal:
no table has a row more or less, the rows of the warehouse an upload would have changed hold the
values they held before, and no task was sent.

Positive controls show that the rules refuse what they should and no more: accents, emoji and
apostrophes in names and addresses are accepted and stored as sent, and so is text that merely
looks like SQL, stored verbatim. At the end, every table is still there and holds its rows.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy.orm import Session, sessionmaker
from webtest import TestApp, TestResponse

from tests.conftest import Database
from tests.functional.helpers import Sent, assert_error, nothing_written_or_sent, product
from warehouse.models import Base, IdempotencyKey, Product, Run, Shipment, Warehouse

pytestmark = pytest.mark.timeout(300)

# --- the fragments --------------------------------------------------------------------------------

SQL_DROP = "'; DROP TABLE products; --"
SQL_OR = "1 OR 1=1"
SQL_QUOTE_OR = "' OR '1'='1"
SQL_UNION = "x' UNION SELECT code FROM warehouses --"
SQL_STACKED = "Robert'); DROP TABLE shipments;--"
SCRIPT = "<script>alert(1)</script>"
IMG_ONERROR = '"><img src=x onerror=alert(1)>'
NUL = "A\u0000B"
LONG = "A" * 10_000
HOMOGLYPH = "SК\u0423-1"  # a Cyrillic Ka and U, which look like the Latin K and Y
RTL = "ABC\u202eFED"  # RIGHT-TO-LEFT OVERRIDE: shows as "ABCDEF"
ZERO_WIDTH = "AB\u200bCD"
EMOJI = "BOX\U0001f4e6"
FULLWIDTH = "\uff21\uff22\uff23\uff11"  # ＡＢＣ１
ARABIC_DIGITS = "\u0661\u0662\u0663"  # ١٢٣
# Python's "$" also matches before a final newline: a pattern must not let this one through.
TRAILING_NEWLINE = f"nl-{uuid.uuid4().hex[:8]}\n"
TRAVERSAL = "../../etc/passwd"

# Refused in every identifier: warehouse codes, SKUs, shipment references.
IDENTIFIER_ATTACKS = {
    "sql drop": SQL_DROP,
    "sql or": SQL_OR,
    "sql quote or": SQL_QUOTE_OR,
    "sql union": SQL_UNION,
    "script": SCRIPT,
    "img onerror": IMG_ONERROR,
    "nul": NUL,
    "very long": LONG,
    "homoglyph": HOMOGLYPH,
    "rtl override": RTL,
    "zero width space": ZERO_WIDTH,
    "emoji": EMOJI,
    "fullwidth": FULLWIDTH,
    "arabic digits": ARABIC_DIGITS,
    "trailing newline": TRAILING_NEWLINE,
    "traversal": TRAVERSAL,
    "leading space": " A1",
    "tab": "A\tB",
}

# Refused in free text (names, addresses): markup, statement separators, comment dashes,
# backslashes, control characters, and more than the field's length.
FREE_TEXT_ATTACKS = {
    "sql drop": SQL_DROP,
    "sql union": SQL_UNION,
    "sql stacked": SQL_STACKED,
    "sql comment": "Main St --",
    "script": SCRIPT,
    "img onerror": IMG_ONERROR,
    "nul": NUL,
    "newline": "Line one\nLine two",
    "trailing newline": "Dock 4\n",
    "carriage return": "Dock 4\r",
    "tab": "Dock\t4",
    "escape": "Dock \x1b[31m4",
    "delete": "Dock\x7f4",
    "backslash": "C:\\Windows",
    "very long": LONG,
}
# Required free text (a warehouse's name, a shipment's address) must also say something.
BLANK_ATTACKS = {"empty": "", "blank": "   "}

SHIPPING_DATE_ATTACKS = {
    "sql drop": "2030-01-01'; DROP TABLE shipments; --",
    "sql or": SQL_OR,
    "script": SCRIPT,
    "nul": "2030-01-0\u0000",
    "no such day": "2030-02-30",
    "no such month": "2030-13-01",
    "fullwidth digits": "\uff12\uff10\uff13\uff10-01-01",
    "arabic digits": "2030-01-\u0660\u0661",
    "trailing newline": "2030-01-1\n",
    "datetime": "2030-01-01T00:00:00Z",
    "number": "1e400",
    "empty": "",
}


def ids(attacks: dict[str, Any]) -> list[str]:
    return list(attacks)


def values(attacks: dict[str, Any]) -> list[Any]:
    return list(attacks.values())


# --- requests and checks ----------------------------------------------------------------------------


def send(testapp: TestApp, method: str, url: str, body: bytes | str | None = None, headers: dict | None = None,
         content_type: str | None = None) -> TestResponse:
    """The app's answer, whatever its status; a failed test (not a crash of the test) if the app
    raised instead of answering, as a WSGI server would then answer a bare 500."""
    headers = dict(headers or {})
    if content_type is not None:
        headers["Content-Type"] = content_type
    if isinstance(body, str):
        body = body.encode()
    try:
        return testapp.request(url, method=method, body=body or b"", headers=headers, expect_errors=True)
    except Exception as error:  # noqa: BLE001 - any exception out of the app is the finding
        pytest.fail(f"{method} {url[:200]}: the app raised {type(error).__name__}: {str(error)[:300]} instead of answering")


def refused(response: TestResponse, status: int | tuple[int, ...], field: str | None) -> dict:
    """The answer is a refusal (``status``, one of them if a tuple) in the one error shape, naming
    ``field`` in ``details.field``."""
    allowed = status if isinstance(status, tuple) else (status,)
    assert response.status_int in allowed, f"expected {allowed}, got {response.status_int}: {response.text[:500]}"
    error = assert_error(response, response.status_int)
    if field is not None:
        assert isinstance(error["details"], dict) and error["details"].get("field") == field, (
            f"expected details.field {field!r}: {response.text[:500]}"
        )
    return error


def stored_rows(db: Database, warehouse_id: int) -> dict[str, list[tuple]]:
    """Every value of the warehouse's own rows: what an upload refused as a whole must leave alone."""
    return {
        "warehouse": db.rows(select(Warehouse.code, Warehouse.name).where(Warehouse.id == warehouse_id)),
        "products": db.rows(
            select(Product.sku, Product.name, Product.qty_on_hand, Product.unit_cost, Product.reorder_point)
            .where(Product.warehouse_id == warehouse_id).order_by(Product.sku)
        ),
        "shipments": db.rows(
            select(Shipment.reference, Shipment.ship_to, Shipment.weight_grams, Shipment.shipping_date)
            .where(Shipment.warehouse_id == warehouse_id).order_by(Shipment.reference)
        ),
        "runs": db.rows(select(Run.id, Run.status).where(Run.warehouse_id == warehouse_id).order_by(Run.id)),
    }


@contextmanager
def unchanged(db: Database, sent: list[Sent], warehouse: Warehouse | None = None) -> Iterator[None]:
    """No row written in any table, no task sent, and the warehouse's rows exactly as they were."""
    before = stored_rows(db, warehouse.id) if warehouse is not None else None
    with nothing_written_or_sent(db, sent):
        yield
    if warehouse is not None:
        assert stored_rows(db, warehouse.id) == before


def as_csv(rows: list[dict[str, Any]]) -> str:
    """The rows as a CSV file, with a header naming every field any row has."""
    columns = list(dict.fromkeys(name for row in rows for name in row))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # so that a cell holding a lone \r is quoted too
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row.get(name) is None else str(row[name]) for name in columns])
    return out.getvalue()


# What Python's json reads but JSON is not: the whole body is refused as malformed, naming "body".
NOT_JSON = {"NaN", "Infinity", "-Infinity"}


def field_at_fault(field: str, literal: str) -> str:
    return "body" if literal in NOT_JSON else field


def json_with(rows: Any, literal: str) -> str:
    """``rows`` as JSON with the placeholder string "@" replaced by ``literal`` verbatim: for what
    Python cannot hold (1e400) or json.dumps would not write as sent (NaN, Infinity)."""
    return json.dumps(rows).replace('"@"', literal)


def cursor_of(text_: str) -> str:
    """A cursor as the API encodes them, around any text."""
    return base64.urlsafe_b64encode(text_.encode()).decode().rstrip("=")


def shipment_row(reference: str, **more: Any) -> dict[str, Any]:
    shipping_date = (dt.date.today() + dt.timedelta(days=3)).isoformat()
    return {"reference": reference, "ship_to": "1 Quay St, Dublin", "weight_grams": 1200, "shipping_date": shipping_date, **more}


# --- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture
def stocked(db: Database, warehouse: Warehouse) -> Warehouse:
    """The test's warehouse, with products and a shipment that a refused upload would have updated."""
    db.add_products(warehouse.id, 2)
    with db.session() as session:
        session.add(Shipment(warehouse_id=warehouse.id, **_stored_shipment("KEEP-SHP")))
    return warehouse


def _stored_shipment(reference: str) -> dict[str, Any]:
    return {"reference": reference, "ship_to": "7 Old Road", "weight_grams": 700, "shipping_date": dt.date(2030, 1, 1)}


def _existing_sku(db: Database, warehouse: Warehouse) -> str:
    return db.scalar(select(Product.sku).where(Product.warehouse_id == warehouse.id).order_by(Product.id).limit(1))


def _updating_product(db: Database, warehouse: Warehouse) -> dict[str, Any]:
    """A valid row that would change the warehouse's first product, sent before the hostile one."""
    return product(_existing_sku(db, warehouse), qty=999, cost=99.99, name="Changed", reorder_point=77)


UPDATING_SHIPMENT = shipment_row("KEEP-SHP", ship_to="Somewhere else", weight_grams=1)


@pytest.fixture(scope="module", autouse=True)
def bystander(session_factory: sessionmaker[Session]) -> dict[str, Any]:
    """A warehouse no test of this module touches, with products, a shipment and a run: the check at
    the end reads them back."""
    db = Database(session_factory)
    warehouse = db.add_warehouse(name="Bystander")
    db.add_products(warehouse.id, 3)
    with db.session() as session:
        session.add(Shipment(warehouse_id=warehouse.id, **_stored_shipment("BYSTANDER-1")))
        session.add(Run(warehouse_id=warehouse.id, operation="valuation", status="succeeded", chunk_size=500))
    return {"warehouse": warehouse, "rows": stored_rows(db, warehouse.id)}


# --- warehouse codes, in the path and in the body ---------------------------------------------------

# The upload routes validate their bodies themselves (warehouse.uploads) and look the code up as it
# is: a code no warehouse can have is then not found (404, naming the code) rather than invalid (400).
CODE_ROUTES = [
    ("GET", "/api/warehouses/{code}", None, (400,)),
    ("GET", "/api/warehouses/{code}/products", None, (400,)),
    ("GET", "/api/warehouses/{code}/shipments", None, (400,)),
    ("POST", "/api/warehouses/{code}/products", [product("P-1")], (400, 404)),
    ("POST", "/api/warehouses/{code}/shipments", [shipment_row("S-1")], (400, 404)),
    ("POST", "/api/warehouses/{code}/runs", {"operation": "valuation"}, (400,)),
    ("GET", "/api/warehouses/{code}/schedules", None, (400,)),
    ("POST", "/api/warehouses/{code}/schedules", {"operation": "valuation", "cron": "0 6 * * *"}, (400,)),
]
CODE_ROUTE_IDS = [f"{method} {path}" for method, path, _, _ in CODE_ROUTES]


# A slash in a path segment is decoded before routing (WSGI's PATH_INFO): it reaches no route at all.
PATH_CODE_ATTACKS = {name: value for name, value in IDENTIFIER_ATTACKS.items() if "/" not in value}


@pytest.mark.parametrize("route", CODE_ROUTES, ids=CODE_ROUTE_IDS)
@pytest.mark.parametrize("code", values(PATH_CODE_ATTACKS), ids=ids(PATH_CODE_ATTACKS))
def test_a_hostile_warehouse_code_in_the_path_is_400(
    route: tuple, code: str, testapp: TestApp, operator: dict, db: Database, sent: list[Sent]
) -> None:
    method, path, body, statuses = route
    url = path.format(code=quote(code, safe=""))

    with unchanged(db, sent):
        response = send(testapp, method, url, json.dumps(body) if body is not None else None, operator,
                        "application/json" if body is not None else None)
        refused(response, statuses, "code")


@pytest.mark.parametrize("route", CODE_ROUTES, ids=CODE_ROUTE_IDS)
def test_a_warehouse_code_in_the_path_that_is_not_utf8_is_400(
    route: tuple, testapp: TestApp, operator: dict, db: Database, sent: list[Sent]
) -> None:
    method, path, body, statuses = route

    with unchanged(db, sent):
        response = send(testapp, method, path.format(code="W%FF%FE"), json.dumps(body) if body is not None else None,
                        operator, "application/json" if body is not None else None)
        # Refused before routing, so it is the path, not yet a code, that is named.
        refused(response, 400, "path")


@pytest.mark.parametrize("code", values(IDENTIFIER_ATTACKS) + [""], ids=ids(IDENTIFIER_ATTACKS) + ["empty"])
def test_a_hostile_warehouse_code_in_the_body_is_400(
    code: str, testapp: TestApp, operator: dict, db: Database, sent: list[Sent]
) -> None:
    with unchanged(db, sent):
        response = send(testapp, "POST", "/api/warehouses", json.dumps({"code": code, "name": "Fine"}), operator,
                        "application/json")
        refused(response, 400, "code")


@pytest.mark.parametrize("name", values(FREE_TEXT_ATTACKS | BLANK_ATTACKS), ids=ids(FREE_TEXT_ATTACKS | BLANK_ATTACKS))
def test_a_hostile_warehouse_name_is_400(
    name: str, testapp: TestApp, operator: dict, db: Database, sent: list[Sent]
) -> None:
    code = f"hostile-{uuid.uuid4().hex[:12]}"

    with unchanged(db, sent):
        response = send(testapp, "POST", "/api/warehouses", json.dumps({"code": code, "name": name}), operator,
                        "application/json")
        refused(response, 400, "name")


# --- products: sku and name, as JSON and as CSV -------------------------------------------------------


def post_rows(testapp: TestApp, url: str, rows: list[dict[str, Any]], operator: dict, kind: str) -> TestResponse:
    if kind == "csv":
        return send(testapp, "POST", url, as_csv(rows), operator, "text/csv")
    return send(testapp, "POST", url, json.dumps(rows), operator, "application/json")


@pytest.mark.parametrize("kind", ["json", "csv"])
@pytest.mark.parametrize("sku", values(IDENTIFIER_ATTACKS), ids=ids(IDENTIFIER_ATTACKS))
def test_a_hostile_sku_refuses_the_whole_upload(
    sku: str, kind: str, testapp: TestApp, operator: dict, db: Database, sent: list[Sent], stocked: Warehouse
) -> None:
    rows = [_updating_product(db, stocked), product(sku)]

    with unchanged(db, sent, stocked):
        response = post_rows(testapp, f"/api/warehouses/{stocked.code}/products", rows, operator, kind)
        refused(response, 400, "[1].sku")


@pytest.mark.parametrize("kind", ["json", "csv"])
@pytest.mark.parametrize("name", values(FREE_TEXT_ATTACKS), ids=ids(FREE_TEXT_ATTACKS))
def test_a_hostile_product_name_refuses_the_whole_upload(
    name: str, kind: str, testapp: TestApp, operator: dict, db: Database, sent: list[Sent], stocked: Warehouse
) -> None:
    rows = [_updating_product(db, stocked), product("NEW-1", name=name)]

    with unchanged(db, sent, stocked):
        response = post_rows(testapp, f"/api/warehouses/{stocked.code}/products", rows, operator, kind)
        refused(response, 400, "[1].name")


# Numbers as JSON literals, written into the body as they are: huge, negative, fractional, boolean,
# strings, not-a-number and infinities.
PRODUCT_NUMBER_ATTACKS = [
    ("qty_on_hand", "1000000000000000000000000000000"),
    ("qty_on_hand", "1e400"),
    ("qty_on_hand", "-1"),
    ("qty_on_hand", "2.5"),
    ("qty_on_hand", "true"),
    ("qty_on_hand", '"5"'),
    ("qty_on_hand", "NaN"),
    ("qty_on_hand", "Infinity"),
    ("unit_cost", "1e30"),
    ("unit_cost", "1e400"),
    ("unit_cost", "-0.01"),
    ("unit_cost", "-1e400"),
    ("unit_cost", "false"),
    ("unit_cost", '"2.505"'),
    ("unit_cost", "2.505"),
    ("unit_cost", '"2,50"'),
    ("unit_cost", '"1e3"'),
    ("unit_cost", '" 2.50"'),
    ("unit_cost", '"-2.50"'),
    ("unit_cost", '"99999999.00"'),
    ("unit_cost", "NaN"),
    ("unit_cost", "Infinity"),
    ("unit_cost", "-Infinity"),
    ("unit_cost", "null"),
    ("reorder_point", "2147483648"),
    ("reorder_point", "-1"),
    ("reorder_point", "0.5"),
    ("reorder_point", "true"),
    ("reorder_point", "NaN"),
    ("reorder_point", "null"),
]


@pytest.mark.parametrize(("field", "literal"), PRODUCT_NUMBER_ATTACKS, ids=[f"{f}={v}" for f, v in PRODUCT_NUMBER_ATTACKS])
def test_a_hostile_product_number_in_json_refuses_the_whole_upload(
    field: str, literal: str, testapp: TestApp, operator: dict, db: Database, sent: list[Sent], stocked: Warehouse
) -> None:
    rows = [_updating_product(db, stocked), product("NEW-1", **{field: "@"})]

    with unchanged(db, sent, stocked):
        response = send(testapp, "POST", f"/api/warehouses/{stocked.code}/products", json_with(rows, literal), operator,
                        "application/json")
        refused(response, 400, field_at_fault(f"[1].{field}", literal))


# The same in CSV cells, where every value arrives as text.
PRODUCT_CSV_NUMBER_ATTACKS = [
    ("qty_on_hand", "1000000000000000000000000000000"),
    ("qty_on_hand", "9223372036854775807"),
    ("qty_on_hand", "1e400"),
    ("qty_on_hand", "-1"),
    ("qty_on_hand", "2.5"),
    ("qty_on_hand", "true"),
    ("qty_on_hand", "0x10"),
    ("qty_on_hand", SQL_OR),
    ("unit_cost", "1e400"),
    ("unit_cost", "-0.01"),
    ("unit_cost", "NaN"),
    ("unit_cost", "Infinity"),
    ("unit_cost", "false"),
    ("unit_cost", SQL_DROP),
    ("reorder_point", "2147483648"),
    ("reorder_point", "-1"),
    ("reorder_point", "0.5"),
]


@pytest.mark.parametrize(("field", "cell"), PRODUCT_CSV_NUMBER_ATTACKS, ids=[f"{f}={v}" for f, v in PRODUCT_CSV_NUMBER_ATTACKS])
def test_a_hostile_product_number_in_csv_refuses_the_whole_upload(
    field: str, cell: str, testapp: TestApp, operator: dict, db: Database, sent: list[Sent], stocked: Warehouse
) -> None:
    rows = [_updating_product(db, stocked), {**product("NEW-1", reorder_point=1), field: cell}]

    with unchanged(db, sent, stocked):
        response = post_rows(testapp, f"/api/warehouses/{stocked.code}/products", rows, operator, "csv")
        refused(response, 400, f"[1].{field}")


# --- shipments: reference, ship_to, shipping_date, weight_grams ---------------------------------------


@pytest.mark.parametrize("kind", ["json", "csv"])
@pytest.mark.parametrize("reference", values(IDENTIFIER_ATTACKS), ids=ids(IDENTIFIER_ATTACKS))
def test_a_hostile_shipment_reference_refuses_the_whole_upload(
    reference: str, kind: str, testapp: TestApp, operator: dict, db: Database, sent: list[Sent], stocked: Warehouse
) -> None:
    rows = [UPDATING_SHIPMENT, shipment_row(reference)]

    with unchanged(db, sent, stocked):
        response = post_rows(testapp, f"/api/warehouses/{stocked.code}/shipments", rows, operator, kind)
        refused(response, 400, "[1].reference")


@pytest.mark.parametrize("kind", ["json", "csv"])
@pytest.mark.parametrize("ship_to", values(FREE_TEXT_ATTACKS | BLANK_ATTACKS), ids=ids(FREE_TEXT_ATTACKS | BLANK_ATTACKS))
def test_a_hostile_address_refuses_the_whole_upload(
    ship_to: str, kind: str, testapp: TestApp, operator: dict, db: Database, sent: list[Sent], stocked: Warehouse
) -> None:
    rows = [UPDATING_SHIPMENT, shipment_row("NEW-SHP", ship_to=ship_to)]

    with unchanged(db, sent, stocked):
        response = post_rows(testapp, f"/api/warehouses/{stocked.code}/shipments", rows, operator, kind)
        refused(response, 400, "[1].ship_to")


@pytest.mark.parametrize("kind", ["json", "csv"])
@pytest.mark.parametrize("shipping_date", values(SHIPPING_DATE_ATTACKS), ids=ids(SHIPPING_DATE_ATTACKS))
def test_a_hostile_shipping_date_refuses_the_whole_upload(
    shipping_date: str, kind: str, testapp: TestApp, operator: dict, db: Database, sent: list[Sent], stocked: Warehouse
) -> None:
    rows = [UPDATING_SHIPMENT, shipment_row("NEW-SHP", shipping_date=shipping_date)]

    with unchanged(db, sent, stocked):
        response = post_rows(testapp, f"/api/warehouses/{stocked.code}/shipments", rows, operator, kind)
        refused(response, 400, "[1].shipping_date")


WEIGHT_ATTACKS = ["-1", "0", "1000000000000000000000000000000", "1e400", "1.5", "true", '"1200"', "NaN", "null"]


@pytest.mark.parametrize("literal", WEIGHT_ATTACKS)
def test_a_hostile_weight_refuses_the_whole_upload(
    literal: str, testapp: TestApp, operator: dict, db: Database, sent: list[Sent], stocked: Warehouse
) -> None:
    rows = [UPDATING_SHIPMENT, shipment_row("NEW-SHP", weight_grams="@")]

    with unchanged(db, sent, stocked):
        response = send(testapp, "POST", f"/api/warehouses/{stocked.code}/shipments", json_with(rows, literal), operator,
                        "application/json")
        refused(response, 400, field_at_fault("[1].weight_grams", literal))


@pytest.mark.parametrize("cell", ["-1", "0", "1000000000000000000000000000000", "1.5", "1e3", "true", SQL_OR])
def test_a_hostile_weight_in_csv_refuses_the_whole_upload(
    cell: str, testapp: TestApp, operator: dict, db: Database, sent: list[Sent], stocked: Warehouse
) -> None:
    rows = [UPDATING_SHIPMENT, shipment_row("NEW-SHP", weight_grams=cell)]

    with unchanged(db, sent, stocked):
        response = post_rows(testapp, f"/api/warehouses/{stocked.code}/shipments", rows, operator, "csv")
        refused(response, 400, "[1].weight_grams")


# --- the same key twice, and broken CSV files ----------------------------------------------------------


@pytest.mark.parametrize("kind", ["json", "csv"])
def test_the_same_sku_on_two_rows_refuses_the_whole_upload(
    kind: str, testapp: TestApp, operator: dict, db: Database, sent: list[Sent], stocked: Warehouse
) -> None:
    rows = [_updating_product(db, stocked), product("TWICE", 1), product("OTHER", 2), product("TWICE", 3)]

    with unchanged(db, sent, stocked):
        response = post_rows(testapp, f"/api/warehouses/{stocked.code}/products", rows, operator, kind)
        error = refused(response, 400, "[3].sku")
    assert "TWICE" in error["message"]


@pytest.mark.parametrize("kind", ["json", "csv"])
def test_the_same_reference_on_two_rows_refuses_the_whole_upload(
    kind: str, testapp: TestApp, operator: dict, db: Database, sent: list[Sent], stocked: Warehouse
) -> None:
    rows = [UPDATING_SHIPMENT, shipment_row("TWICE"), shipment_row("KEEP-SHP", weight_grams=5)]

    with unchanged(db, sent, stocked):
        response = post_rows(testapp, f"/api/warehouses/{stocked.code}/shipments", rows, operator, kind)
        error = refused(response, 400, "[2].reference")
    assert "KEEP-SHP" in error["message"]


def _csv_header_cases() -> dict[str, tuple[str, str]]:
    """name -> (CSV body, field named): headers no one can read, or naming no field of a product."""
    rows = "A-1,1,1\n"
    return {
        "empty header name": (f"sku,,unit_cost\n{rows}", "body"),
        "empty last header name": ("sku,qty_on_hand,unit_cost,\nA-1,1,1,\n", "body"),
        "blank header name": (f"sku,   ,unit_cost\n{rows}", "body"),
        "duplicate header name": (f"sku,qty_on_hand,sku\n{rows}", "body"),
        "duplicate header name after trimming": ("sku,qty_on_hand, qty_on_hand ,unit_cost\nA-1,1,2,1\n", "body"),
        "only empty header names": (f",,\n{rows}", "body"),
        "no header at all": ("", "body"),
        "only a byte order mark": ("\ufeff", "body"),
        "unterminated quote": ('sku,qty_on_hand,unit_cost\n"A-1,1,1\n', "body"),
        "more cells than columns": ("sku,qty_on_hand,unit_cost\nA-1,1,1,extra\n", "body"),
        "fewer cells than columns": ("sku,qty_on_hand,unit_cost\nA-1,1\n", "body"),
        "sql in a header name": (f"sku,qty_on_hand,unit_cost,{SQL_OR}\nA-1,1,1,x\n", "body"),
        "sql drop as a header name": (f'sku,qty_on_hand,unit_cost,"{SQL_DROP}"\nA-1,1,1,x\n', "body"),
        "script as a header name": (f"sku,qty_on_hand,unit_cost,{SCRIPT}\nA-1,1,1,x\n", "body"),
        "nul in a header name": ("sku,qty_on_hand,unit_cost,na\u0000me\nA-1,1,1,x\n", "body"),
        "homoglyph header name": ("sku,qty_on_hand,unit_cost,n\u0430me\nA-1,1,1,x\n", "body"),  # a Cyrillic a
        "header name again in capitals": ("sku,qty_on_hand,unit_cost,SKU\nA-1,1,1,B-2\n", "body"),
        "id column": ("id,sku,qty_on_hand,unit_cost\n1,A-1,1,1\n", "body"),
        "warehouse_id column": ("warehouse_id,sku,qty_on_hand,unit_cost\n1,A-1,1,1\n", "body"),
    }


CSV_HEADER_CASES = _csv_header_cases()


@pytest.mark.parametrize("case", list(CSV_HEADER_CASES))
def test_a_csv_file_with_a_bad_header_is_400(
    case: str, testapp: TestApp, operator: dict, db: Database, sent: list[Sent], stocked: Warehouse
) -> None:
    body, field = CSV_HEADER_CASES[case]

    with unchanged(db, sent, stocked):
        response = send(testapp, "POST", f"/api/warehouses/{stocked.code}/products", body, operator, "text/csv")
        refused(response, 400, field)


# --- bodies that are not what the upload routes read -----------------------------------------------------

UPLOAD_ROUTES = ["products", "shipments"]


@pytest.mark.parametrize("upload", UPLOAD_ROUTES)
@pytest.mark.parametrize(
    "body", [b'[{"sku": "caf\xe9"}]', b"\xff\xfe[\x00]\x00", b'["\xed\xa0\x80"]'], ids=["latin-1", "utf-16", "surrogate"]
)
def test_a_json_upload_that_is_not_utf8_is_400(
    upload: str, body: bytes, testapp: TestApp, operator: dict, db: Database, sent: list[Sent], stocked: Warehouse
) -> None:
    with unchanged(db, sent, stocked):
        response = send(testapp, "POST", f"/api/warehouses/{stocked.code}/{upload}", body, operator, "application/json")
        refused(response, 400, "body")


@pytest.mark.parametrize("upload", UPLOAD_ROUTES)
def test_a_csv_upload_that_is_not_utf8_is_400(
    upload: str, testapp: TestApp, operator: dict, db: Database, sent: list[Sent], stocked: Warehouse
) -> None:
    body = "sku,qty_on_hand,unit_cost\nCAFÉ,1,1\n".encode("latin-1")

    with unchanged(db, sent, stocked):
        response = send(testapp, "POST", f"/api/warehouses/{stocked.code}/{upload}", body, operator, "text/csv")
        refused(response, 400, "body")


NOT_A_LIST_OF_ROWS = {
    "object": '{"sku": "A-1", "qty_on_hand": 1, "unit_cost": 1}', "string": '"A-1"', "number": "42",
    "boolean": "true", "null": "null", "empty object": "{}", "wrapped list": '{"rows": []}',
    "empty": "", "unclosed": "[", "broken object": "[{]", "trailing comma": "[1,]", "extra bracket": "[]]",
    "nul": "\u0000", "nested 10,000 deep": "[" * 10_000 + "]" * 10_000,
}


@pytest.mark.parametrize("upload", UPLOAD_ROUTES)
@pytest.mark.parametrize("body", NOT_A_LIST_OF_ROWS.values(), ids=NOT_A_LIST_OF_ROWS.keys())
def test_a_json_upload_that_is_not_a_list_of_rows_is_400(
    upload: str, body: str, testapp: TestApp, operator: dict, db: Database, sent: list[Sent], stocked: Warehouse
) -> None:
    with unchanged(db, sent, stocked):
        response = send(testapp, "POST", f"/api/warehouses/{stocked.code}/{upload}", body, operator, "application/json")
        refused(response, 400, "body")


@pytest.mark.parametrize("upload", UPLOAD_ROUTES)
@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/xml", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
     "application/octet-stream", "application/jsonx", "text/csvx", ""],
)
def test_an_upload_of_an_unsupported_content_type_is_415(
    upload: str, content_type: str, testapp: TestApp, operator: dict, db: Database, sent: list[Sent], stocked: Warehouse
) -> None:
    with unchanged(db, sent, stocked):
        response = send(testapp, "POST", f"/api/warehouses/{stocked.code}/{upload}", "sku,qty_on_hand,unit_cost\nA,1,1\n",
                        operator, content_type)
        refused(response, 415, "Content-Type")


@pytest.mark.parametrize("route", ["/api/warehouses", "/api/warehouses/{code}/runs"])
@pytest.mark.parametrize(
    "body", [b'{"code": "caf\xe9", "name": "x", "operation": "valuation"}', b"\x87\xa3"], ids=["latin-1", "binary"]
)
def test_a_json_body_that_is_not_utf8_is_400_on_the_other_routes(
    route: str, body: bytes, testapp: TestApp, operator: dict, db: Database, sent: list[Sent], warehouse: Warehouse
) -> None:
    with unchanged(db, sent, warehouse):
        response = send(testapp, "POST", route.format(code=warehouse.code), body, operator, "application/json")
        refused(response, 400, "body")


@pytest.mark.parametrize("route", ["/api/warehouses", "/api/warehouses/{code}/runs"])
def test_a_json_body_nested_10000_deep_is_400_on_the_other_routes(
    route: str, testapp: TestApp, operator: dict, db: Database, sent: list[Sent], warehouse: Warehouse
) -> None:
    body = '{"operation": ' + "[" * 10_000 + "]" * 10_000 + "}"

    with unchanged(db, sent, warehouse):
        response = send(testapp, "POST", route.format(code=warehouse.code), body, operator, "application/json")
        refused(response, 400, None)


# --- runs: operation, sizes, Idempotency-Key ------------------------------------------------------------

OPERATION_ATTACKS = {
    "sql drop": SQL_DROP,
    "sql or": SQL_OR,
    "sql quote or": "valuation' OR '1'='1",
    "script": SCRIPT,
    "nul": "valuation\u0000",
    "trailing newline": "valuation\n",
    "homoglyph": "v\u0430luation",  # a Cyrillic a
    "rtl override": "valuation\u202e",
    "zero width space": "valu\u200bation",
    "emoji": "valuation\U0001f4e6",
    "capitals": "VALUATION",
    "padded": " valuation ",
    "dotted path": "warehouse.operations.valuation:ValuationOperation",
    "very long": LONG,
    "empty": "",
}


@pytest.mark.parametrize("operation", values(OPERATION_ATTACKS), ids=ids(OPERATION_ATTACKS))
def test_a_hostile_operation_is_refused(
    operation: str, testapp: TestApp, operator: dict, db: Database, sent: list[Sent], stocked: Warehouse
) -> None:
    with unchanged(db, sent, stocked):
        response = send(testapp, "POST", f"/api/warehouses/{stocked.code}/runs", json.dumps({"operation": operation}),
                        operator, "application/json")
        # 400 when the document already forbids it (length), 422 when it is only no known operation.
        refused(response, (400, 422), "operation")


RUN_NUMBER_ATTACKS = [
    ("chunk_size", "-1"),
    ("chunk_size", "0"),
    ("chunk_size", "1000000000000000000000000000000"),
    ("chunk_size", "1e400"),
    ("chunk_size", "1.5"),
    ("chunk_size", "true"),
    ("chunk_size", '"500"'),
    ("chunk_size", "NaN"),
    ("chunk_size", "-Infinity"),
    ("tolerated_failure_percent", "-1"),
    ("tolerated_failure_percent", "100.01"),
    ("tolerated_failure_percent", "1e400"),
    ("tolerated_failure_percent", "-1e400"),
    ("tolerated_failure_percent", "true"),
    ("tolerated_failure_percent", '"5"'),
    ("tolerated_failure_percent", "NaN"),
    ("tolerated_failure_percent", "Infinity"),
]


@pytest.mark.parametrize(("field", "literal"), RUN_NUMBER_ATTACKS, ids=[f"{f}={v}" for f, v in RUN_NUMBER_ATTACKS])
def test_a_hostile_run_size_is_400(
    field: str, literal: str, testapp: TestApp, operator: dict, db: Database, sent: list[Sent], stocked: Warehouse
) -> None:
    body = json_with({"operation": "valuation", field: "@"}, literal)

    with unchanged(db, sent, stocked):
        response = send(testapp, "POST", f"/api/warehouses/{stocked.code}/runs", body, operator, "application/json")
        refused(response, 400, field_at_fault(field, literal))


IDEMPOTENCY_KEY_ATTACKS = {
    "sql drop": "'; DROP TABLE idempotency_keys; --",
    "sql or": SQL_OR,
    "script with spaces": "<script> alert(1) </script>",
    "latin-1": "cl\u00e9",
    "tab": "key\tkey",
    "very long": "K" * 201,
    "empty": "",
    "blank": "   ",
}


@pytest.mark.parametrize("route", ["/api/warehouses", "/api/warehouses/{code}/runs"])
@pytest.mark.parametrize("key", values(IDEMPOTENCY_KEY_ATTACKS), ids=ids(IDEMPOTENCY_KEY_ATTACKS))
def test_a_hostile_idempotency_key_is_400(
    route: str, key: str, testapp: TestApp, operator: dict, db: Database, sent: list[Sent], stocked: Warehouse
) -> None:
    body = {"code": f"idem-{uuid.uuid4().hex[:12]}", "name": "Fine"} if route == "/api/warehouses" else {"operation": "valuation"}

    with unchanged(db, sent, stocked):
        response = send(testapp, "POST", route.format(code=stocked.code), json.dumps(body),
                        {**operator, "Idempotency-Key": key}, "application/json")
        refused(response, 400, "Idempotency-Key")


# --- run ids and query parameters -------------------------------------------------------------------------

RUN_ID_ATTACKS = ["-1", "0", "1.5", "1e400", "1000000000000000000000000000000", "true", "NaN", "1 OR 1=1",
                  "1; DROP TABLE runs", "%00"]
RUN_ROUTES = [("GET", "/api/runs/{id}"), ("POST", "/api/runs/{id}/cancel"), ("POST", "/api/runs/{id}/resume"),
              ("POST", "/api/runs/{id}/redrive"), ("GET", "/api/runs/{id}/failures"), ("GET", "/api/runs/{id}/chunks"),
              ("GET", "/api/runs/{id}/timeline")]


@pytest.mark.parametrize("route", RUN_ROUTES, ids=[f"{method} {path}" for method, path in RUN_ROUTES])
@pytest.mark.parametrize("run_id", RUN_ID_ATTACKS)
def test_a_hostile_run_id_is_400(
    route: tuple, run_id: str, testapp: TestApp, operator: dict, db: Database, sent: list[Sent]
) -> None:
    method, path = route
    url = path.format(id=run_id if run_id.startswith("%") else quote(run_id, safe=""))

    with unchanged(db, sent):
        refused(send(testapp, method, url, headers=operator), 400, "id")


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
@pytest.mark.parametrize("schedule_id", RUN_ID_ATTACKS)
def test_a_hostile_schedule_id_is_400(
    method: str, schedule_id: str, testapp: TestApp, operator: dict, db: Database, sent: list[Sent]
) -> None:
    url = f"/api/schedules/{schedule_id if schedule_id.startswith('%') else quote(schedule_id, safe='')}"
    body = '{"enabled": false}' if method == "PATCH" else None

    with unchanged(db, sent):
        response = send(testapp, method, url, body, operator, "application/json" if body else None)
        refused(response, 400, "id")


QUERY_ATTACKS: list[tuple[str, str]] = [
    *[("warehouse", value) for value in values(IDENTIFIER_ATTACKS) + [""]],
    *[("status", value) for value in ["failed' OR '1'='1", SQL_DROP, SCRIPT, "failed\u0000", "failed\n", "FAILED",
                                       "succeeded,failed", LONG, ""]],
    *[("limit", value) for value in ["-5", "0", "501", "1.5", "true", "1e400", "1000000000000000000000000000000",
                                      SQL_OR, "5; DROP TABLE runs", "NaN", "0x10", ""]],
    *[("cursor", value) for value in [SQL_DROP, SCRIPT, "\u0000", LONG, "!!!!", cursor_of("after:1 OR 1=1"),
                                       cursor_of("after:-5"), cursor_of("before:1"), cursor_of("after:1.5"),
                                       cursor_of("after:" + "9" * 30), cursor_of("after:\u00b2")]],
]


@pytest.mark.parametrize(("name", "value"), QUERY_ATTACKS, ids=[f"{n}={v[:30]!r}" for n, v in QUERY_ATTACKS])
def test_a_hostile_query_parameter_of_the_run_list_is_400(
    name: str, value: str, testapp: TestApp, viewer: dict, db: Database, sent: list[Sent]
) -> None:
    with unchanged(db, sent):
        response = send(testapp, "GET", f"/api/runs?{name}={quote(value, safe='')}", headers=viewer)
        refused(response, 400, name)


@pytest.mark.parametrize(
    ("name", "value"), [pair for pair in QUERY_ATTACKS if pair[0] in ("limit", "cursor") and pair[1] != "501"],
    ids=[f"{n}={v[:30]!r}" for n, v in QUERY_ATTACKS if n in ("limit", "cursor") and v != "501"],
)
def test_a_hostile_query_parameter_of_the_failures_list_is_400(
    name: str, value: str, testapp: TestApp, viewer: dict, db: Database, sent: list[Sent], stocked: Warehouse
) -> None:
    with db.session() as session:
        run = Run(warehouse_id=stocked.id, operation="valuation", status="failed", chunk_size=500)
        session.add(run)
        session.flush()
        run_id = run.id

    with unchanged(db, sent):
        response = send(testapp, "GET", f"/api/runs/{run_id}/failures?{name}={quote(value, safe='')}", headers=viewer)
        refused(response, 400, name)


WORKER_QUERY_ATTACKS: list[tuple[str, str]] = [
    *[("alive", value) for value in ["maybe", "1 OR 1=1", SQL_DROP, SCRIPT, "true\u0000", "TRUE ", LONG, ""]],
    *[(name, value) for name, value in QUERY_ATTACKS if name == "limit" and value != "501"],
    ("limit", "1001"),
]


@pytest.mark.parametrize(
    ("name", "value"), WORKER_QUERY_ATTACKS, ids=[f"{n}={v[:30]!r}" for n, v in WORKER_QUERY_ATTACKS]
)
def test_a_hostile_query_parameter_of_the_worker_list_is_400(
    name: str, value: str, testapp: TestApp, viewer: dict, db: Database, sent: list[Sent]
) -> None:
    with unchanged(db, sent):
        response = send(testapp, "GET", f"/api/workers?{name}={quote(value, safe='')}", headers=viewer)
        refused(response, 400, name)


# --- webhooks: url, events, warehouse, ids and the delivery log's query -----------------------------------

URL_ATTACKS = {
    **{name: value for name, value in FREE_TEXT_ATTACKS.items() if name != "backslash"},
    "backslash": "https://93.184.216.34\\@10.0.0.5/",
    "no scheme": "93.184.216.34/hook",
    "file": "file:///etc/passwd",
    "javascript": "javascript:alert(1)",
    "gopher": "gopher://93.184.216.34:70/_GET",
    "credentials": "https://admin:secret@93.184.216.34/",
    "loopback": "http://127.0.0.1:6543/api/runs",
    "loopback name": "http://localhost/",
    "ipv6 loopback": "http://[::1]/",
    "mapped loopback": "http://[::ffff:127.0.0.1]/",
    "metadata": "http://169.254.169.254/latest/meta-data/",
    "private": "http://10.0.0.5/",
    "decimal loopback": "http://2130706433/",
    "unspecified": "http://0.0.0.0/",
    "homoglyph host": "https://ex\u0430mple.com/",
    "rtl host": f"https://{RTL}.com/",
    "zero width host": "https://exa\u200bmple.com/",
    "bad port": "https://93.184.216.34:99999/",
    "empty": "",
}


@pytest.mark.parametrize("url", values(URL_ATTACKS), ids=ids(URL_ATTACKS))
def test_a_hostile_webhook_url_is_refused(url: str, testapp: TestApp, operator: dict, db: Database, sent: list[Sent]) -> None:
    with unchanged(db, sent):
        response = send(testapp, "POST", "/api/webhooks", json.dumps({"url": url, "events": ["run.failed"]}), operator,
                        "application/json")
        refused(response, (400, 422), "url")


EVENTS_ATTACKS = {
    "sql drop": [SQL_DROP], "script": [SCRIPT], "nul": ["run.failed\u0000"], "capitals": ["RUN.FAILED"],
    "padded": [" run.failed"], "homoglyph": ["run.f\u0430iled"], "very long": [LONG], "empty string": [""],
    "number": [1], "null": [None], "nested": [["run.failed"]], "a string": "run.failed", "empty list": [],
    "object": {"run.failed": True}, "wildcard": ["*"], "too many": ["run.failed"] * 21,
}


@pytest.mark.parametrize("events", values(EVENTS_ATTACKS), ids=ids(EVENTS_ATTACKS))
def test_hostile_webhook_events_are_refused(events: Any, testapp: TestApp, operator: dict, db: Database, sent: list[Sent]) -> None:
    with unchanged(db, sent):
        response = send(testapp, "POST", "/api/webhooks", json.dumps({"url": "https://93.184.216.34/h", "events": events}),
                        operator, "application/json")
        error = refused(response, (400, 422), None)
    assert str(error["details"]["field"]).startswith("events")


@pytest.mark.parametrize("code", values(IDENTIFIER_ATTACKS) + [""], ids=ids(IDENTIFIER_ATTACKS) + ["empty"])
def test_a_hostile_webhook_warehouse_is_400(code: str, testapp: TestApp, operator: dict, db: Database, sent: list[Sent]) -> None:
    body = {"url": "https://93.184.216.34/h", "events": ["run.failed"], "warehouse": code}

    with unchanged(db, sent):
        refused(send(testapp, "POST", "/api/webhooks", json.dumps(body), operator, "application/json"), 400, "warehouse")


WEBHOOK_ROUTES = [("DELETE", "/api/webhooks/{id}"), ("GET", "/api/webhooks/{id}/deliveries"),
                  ("POST", "/api/webhooks/{id}/deliveries/1/retry")]


@pytest.mark.parametrize("route", WEBHOOK_ROUTES, ids=[f"{method} {path}" for method, path in WEBHOOK_ROUTES])
@pytest.mark.parametrize("webhook_id", RUN_ID_ATTACKS)
def test_a_hostile_webhook_id_is_400(
    route: tuple, webhook_id: str, testapp: TestApp, operator: dict, db: Database, sent: list[Sent]
) -> None:
    method, path = route
    url = path.format(id=webhook_id if webhook_id.startswith("%") else quote(webhook_id, safe=""))

    with unchanged(db, sent):
        refused(send(testapp, method, url, headers=operator), 400, "id")


@pytest.mark.parametrize("delivery_id", [*RUN_ID_ATTACKS, "9223372036854775808"])
def test_a_hostile_delivery_id_is_400(delivery_id: str, testapp: TestApp, operator: dict, db: Database, sent: list[Sent]) -> None:
    url = f"/api/webhooks/1/deliveries/{delivery_id if delivery_id.startswith('%') else quote(delivery_id, safe='')}/retry"

    with unchanged(db, sent):
        refused(send(testapp, "POST", url, headers=operator), 400, "delivery_id")


@pytest.fixture
def a_webhook(db: Database, warehouse: Warehouse) -> Iterator[int]:
    from warehouse.models import WebhookSubscription
    from warehouse.webhooks.subscriptions import create_subscription

    with db.session() as session:
        fields = {"url": "https://93.184.216.34/h", "events": ["run.failed"], "warehouse": warehouse.code}
        webhook_id = create_subscription(session, fields, {})[0].id
    yield webhook_id
    with db.session() as session:
        session.execute(WebhookSubscription.__table__.delete().where(WebhookSubscription.id == webhook_id))


@pytest.mark.parametrize(
    ("name", "value"), [pair for pair in QUERY_ATTACKS if pair[0] in ("limit", "cursor")],
    ids=[f"{n}={v[:30]!r}" for n, v in QUERY_ATTACKS if n in ("limit", "cursor")],
)
def test_a_hostile_query_parameter_of_the_delivery_log_is_400(
    name: str, value: str, testapp: TestApp, viewer: dict, db: Database, sent: list[Sent], a_webhook: int
) -> None:
    with unchanged(db, sent):
        response = send(testapp, "GET", f"/api/webhooks/{a_webhook}/deliveries?{name}={quote(value, safe='')}", headers=viewer)
        refused(response, 400, name)


# --- positive controls: the rules refuse no more than they should ------------------------------------------


def test_unicode_and_apostrophes_in_names_and_addresses_are_accepted_and_stored_as_sent(
    testapp: TestApp, operator: dict, db: Database, sent: list[Sent]
) -> None:
    code = f"cafe-{uuid.uuid4().hex[:8]}"
    warehouse_name = "Café ☕ — Ørsted's Dépôt, 東京"
    product_name = "Café ☕ crème brûlée (½ kg) — naïve 😀"
    address = "O'Brien St, Dún Laoghaire, Éire — 2º andar"

    created = testapp.post_json("/api/warehouses", {"code": code, "name": warehouse_name}, headers=operator, status=201)
    testapp.post_json(f"/api/warehouses/{code}/products", [product("CAFE-1", name=product_name)], headers=operator, status=200)
    testapp.post(f"/api/warehouses/{code}/products", as_csv([product("CAFE-2", name=product_name)]),
                 headers={**operator, "Content-Type": "text/csv"}, status=200)
    testapp.post_json(f"/api/warehouses/{code}/shipments", [shipment_row("OB-1", ship_to=address)], headers=operator, status=200)
    testapp.post(f"/api/warehouses/{code}/shipments", as_csv([shipment_row("OB-2", ship_to=address)]),
                 headers={**operator, "Content-Type": "text/csv"}, status=200)

    assert created.json["name"] == warehouse_name
    warehouse_id = db.scalar(select(Warehouse.id).where(Warehouse.code == code))
    assert db.scalar(select(Warehouse.name).where(Warehouse.id == warehouse_id)) == warehouse_name
    assert db.scalars(select(Product.name).where(Product.warehouse_id == warehouse_id)) == [product_name] * 2
    assert db.scalars(select(Shipment.ship_to).where(Shipment.warehouse_id == warehouse_id)) == [address] * 2
    assert sent == []


@pytest.mark.parametrize("kind", ["json", "csv"])
def test_text_that_only_looks_like_sql_is_stored_verbatim_and_touches_nothing_else(
    kind: str, testapp: TestApp, operator: dict, db: Database, sent: list[Sent], stocked: Warehouse
) -> None:
    """Without ; or -- such text is a legitimate name: kept as it is, and no other row changes."""
    names = {"SQL-OR": SQL_OR, "SQL-QUOTE": SQL_QUOTE_OR, "SQL-UNION": "x' UNION SELECT code FROM warehouses",
             "SQL-SLEEP": "1' AND SLEEP(5) AND '1'='1", "QUOTES": "\"double\" and 'single'"}
    before = stored_rows(db, stocked.id)
    counts = db.row_counts()

    response = post_rows(testapp, f"/api/warehouses/{stocked.code}/products",
                         [product(sku, name=name) for sku, name in names.items()], operator, kind)

    assert response.status_int == 200, response.text
    assert response.json == {"received": 5, "inserted": 5, "updated": 0}
    stored = dict(db.rows(select(Product.sku, Product.name).where(Product.warehouse_id == stocked.id, Product.sku.in_(names))))
    assert stored == names
    after = stored_rows(db, stocked.id)
    assert [row for row in after["products"] if row[0] not in names] == before["products"]
    assert {table: count for table, count in db.row_counts().items() if table != "products"} == {
        table: count for table, count in counts.items() if table != "products"
    }
    assert sent == []


def test_identifiers_with_every_allowed_punctuation_are_accepted(
    testapp: TestApp, operator: dict, db: Database, stocked: Warehouse
) -> None:
    skus = ["A-1/B:2#3+4", "a.b_c", "0", "Z" * 64]

    response = testapp.post_json(f"/api/warehouses/{stocked.code}/products", [product(sku) for sku in skus], headers=operator)

    assert response.json["inserted"] == len(skus)
    assert sorted(db.scalars(select(Product.sku).where(Product.warehouse_id == stocked.id, Product.sku.in_(skus)))) == sorted(skus)


def test_an_idempotency_key_of_printable_ascii_is_opaque_even_when_it_looks_hostile(
    testapp: TestApp, operator: dict, db: Database
) -> None:
    key = f"<script>alert('{uuid.uuid4().hex}')</script>;DROP/**/TABLE/**/runs;--"
    code = f"idem-{uuid.uuid4().hex[:12]}"
    headers = {**operator, "Idempotency-Key": key}

    first = testapp.post_json("/api/warehouses", {"code": code, "name": "Fine"}, headers=headers, status=201)
    again = testapp.post_json("/api/warehouses", {"code": code, "name": "Fine"}, headers=headers, status=201)

    assert again.json == first.json
    assert again.headers["Idempotent-Replayed"] == "true"
    assert db.scalars(select(IdempotencyKey.key).where(IdempotencyKey.key == key)) == [key]
    assert db.scalar(select(Warehouse.name).where(Warehouse.code == code)) == "Fine"


def test_numbers_at_their_limits_are_accepted(testapp: TestApp, operator: dict, db: Database, stocked: Warehouse) -> None:
    row = product("LIMITS", qty=10_000_000, cost=1_000_000, reorder_point=2_147_483_647)

    testapp.post_json(f"/api/warehouses/{stocked.code}/products", [row], headers=operator, status=200)

    stored = db.rows(select(Product.qty_on_hand, Product.unit_cost, Product.reorder_point)
                     .where(Product.warehouse_id == stocked.id, Product.sku == "LIMITS"))
    assert [(qty, Decimal(cost), reorder) for qty, cost, reorder in stored] == [(10_000_000, Decimal(1_000_000), 2_147_483_647)]


# --- and after all that --------------------------------------------------------------------------------------


def test_every_table_is_intact_after_the_hostile_input(
    testapp: TestApp, viewer: dict, db: Database, bystander: dict[str, Any], engine: Any
) -> None:
    """Runs last in this module (pytest keeps file order): the tables are all there, the database
    file is sound, and a warehouse no test touched holds exactly the rows it was given."""
    tables = set(inspect(engine).get_table_names())
    assert {table.name for table in Base.metadata.sorted_tables} <= tables
    if engine.dialect.name == "sqlite":
        with engine.connect() as connection:
            assert connection.execute(text("PRAGMA integrity_check")).scalar() == "ok"
    counts = db.row_counts()
    assert all(counts[table] > 0 for table in ("warehouses", "products", "shipments", "runs")), counts

    warehouse = bystander["warehouse"]
    assert stored_rows(db, warehouse.id) == bystander["rows"]
    body = testapp.get(f"/api/warehouses/{warehouse.code}", headers=viewer, status=200).json
    assert (body["name"], body["products"], body["shipments"]) == ("Bystander", 3, 1)


# --- bodies that Python's json would read, but that are not the JSON a client meant ---------------------

MALFORMED_JSON_BODIES = {
    "a key twice": b'{"operation": "valuation", "operation": "shipping_labels"}',
    "utf-16": '{"operation": "valuation"}'.encode("utf-16"),
    "nested 10,000 deep": b'{"operation": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
    "NaN": b'{"operation": "valuation", "chunk_size": NaN}',
}


@pytest.mark.parametrize("body", MALFORMED_JSON_BODIES.values(), ids=MALFORMED_JSON_BODIES.keys())
@pytest.mark.parametrize("route", ["/api/warehouses", "/api/warehouses/{code}/runs", "/api/warehouses/{code}/products"])
def test_json_that_is_not_what_it_seems_is_400(
    body: bytes, route: str, testapp: TestApp, operator: dict, db: Database, sent: list[Sent], stocked: Warehouse
) -> None:
    with unchanged(db, sent, stocked):
        response = send(testapp, "POST", route.format(code=stocked.code), body, operator, "application/json")
        refused(response, 400, "body")


@pytest.mark.parametrize("invisible", ["\u202e", "\u200b", "\u2066", "\ufeff", "\u0085"], ids=["rtl override", "zero width", "isolate", "bom", "c1 control"])
def test_invisible_characters_in_free_text_are_400(
    invisible: str, testapp: TestApp, operator: dict, db: Database, sent: list[Sent]
) -> None:
    with unchanged(db, sent):
        response = send(testapp, "POST", "/api/warehouses", json.dumps({"code": "inv-1", "name": f"Dock{invisible}4"}),
                        operator, "application/json")
        refused(response, 400, "name")


@pytest.mark.parametrize("cell", ["1_000", " 5", "5 ", "\u0665"], ids=["underscore", "leading space", "trailing space", "arabic digit"])
def test_numbers_in_csv_are_plain_ascii_digits(
    cell: str, testapp: TestApp, operator: dict, db: Database, sent: list[Sent], stocked: Warehouse
) -> None:
    with unchanged(db, sent, stocked):
        response = send(testapp, "POST", f"/api/warehouses/{stocked.code}/products",
                        f"sku,qty_on_hand,unit_cost\nCSV-1,{cell},1\n".encode(), operator, "text/csv")
        refused(response, 400, "[0].qty_on_hand")


# --- the read-back routes' filters -------------------------------------------------------------------

@pytest.mark.parametrize("route", ["products", "shipments"])
@pytest.mark.parametrize("value", values(IDENTIFIER_ATTACKS), ids=ids(IDENTIFIER_ATTACKS))
def test_a_hostile_filter_of_a_read_back_is_400_naming_it(
    route: str, value: str, testapp: TestApp, viewer: dict, db: Database, sent: list[Sent], stocked: Warehouse
) -> None:
    name = "sku" if route == "products" else "reference"
    with unchanged(db, sent, stocked):
        response = testapp.get(f"/api/warehouses/{stocked.code}/{route}", params={name: value}, headers=viewer, expect_errors=True)
    if response.status_int == 200:  # a value that is a valid identifier after all: it finds nothing
        assert response.json[route] == []
    else:
        refused(response, 400, name)
