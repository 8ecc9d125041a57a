"""Helpers of the functional tests: what the web side sent, what it wrote, and the one error shape."""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from webtest import TestResponse

from warehouse.models import Run


@dataclass
class Sent:
    name: str
    args: Any
    options: dict[str, Any]
    run_status_seen_by_another_connection: str | None


def committed_run_status(database: Path, run_id: Any) -> str | None:
    """The run's status as a separate connection sees it: only committed rows are visible there."""
    connection = sqlite3.connect(database, timeout=30)
    try:
        row = connection.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
    finally:
        connection.close()
    return row[0] if row else None


def run_id_in(name: str, args: list[Any]) -> Any:
    # processFinished takes the chord's results first, then the run id; the other tasks start with it.
    return args[-1] if name == "processFinished" else args[0]


@contextmanager
def nothing_written_or_sent(db: Any, sent: list[Sent]) -> Iterator[None]:
    before = db.row_counts()
    yield
    assert db.row_counts() == before
    assert sent == []


# What a validator's own words look like: a regular expression, or a schema keyword. None of it may
# reach a person (warehouse/wording.py); assert_error checks every error message the suite sees.
SCHEMA_SPEAK = re.compile(
    r"\(\?[!=:]|\[\^|\$\(|\{\d+,\d*\}"  # regex: (?! [^ $( {0,63} (a value's repr may show \x00: fine)
    r"|\b(?:additionalProperties|minLength|maxLength|minItems|maxItems|oneOf|anyOf|allOf|multipleOf|exclusiveM\w+)\b"
    r"|does not match|is not of type|is a required property|must contain \[|must not contain \{|properties\b"
    r"|is less than the minimum|is greater than the maximum|Failed to (?:cast|deserialize)|Additional properties"
)


def assert_plain(message: str) -> None:
    """``message`` speaks to a person: no regular expression, no schema keyword."""
    found = SCHEMA_SPEAK.search(message)
    assert found is None, f"an error message speaks schema ({found.group(0)!r}): {message}"


def assert_error(response: TestResponse, status: int, code: str | None = None, field: str | None = None) -> dict:
    """The response is ``status`` with the one error shape, its message in plain words; its ``error`` object."""
    assert response.status_int == status
    assert response.content_type == "application/json"
    body = response.json
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "details"}
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    assert_plain(error["message"])
    for item in (error["details"] or {}).get("errors", []) if isinstance(error["details"], dict) else []:
        assert_plain(item["message"])
    if code is not None:
        assert error["code"] == code
    if field is not None:
        assert isinstance(error["details"], dict)
        assert error["details"]["field"] == field
    return error


def product(sku: str, qty: int = 5, cost: float = 2.5, **more: Any) -> dict[str, Any]:
    return {"sku": sku, "qty_on_hand": qty, "unit_cost": cost, **more}


def shipment(reference: str, days_ahead: int = 3, **more: Any) -> dict[str, Any]:
    shipping_date = (dt.date.today() + dt.timedelta(days=days_ahead)).isoformat()
    return {"reference": reference, "ship_to": "1 Quay St, Dublin", "weight_grams": 1200, "shipping_date": shipping_date, **more}


def add_run(db: Any, warehouse_id: int, status: str, operation: str = "valuation") -> int:
    with db.session() as session:
        run = Run(warehouse_id=warehouse_id, operation=operation, status=status, chunk_size=500)
        session.add(run)
        session.flush()
        return run.id


