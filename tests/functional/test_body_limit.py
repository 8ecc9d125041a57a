"""Request bodies over warehouse.max_body_bytes get 413 in the one error shape, and change nothing."""

from __future__ import annotations

from typing import Any

import pytest
from webtest import TestApp

from tests.functional.helpers import assert_error, nothing_written_or_sent

LIMIT = 2_000


@pytest.fixture
def limited(settings: dict[str, Any], celery_app: Any, wsgi_app: Any) -> TestApp:
    """Another app on the session's database and Celery app (whose embedded worker the session's app
    started already), with a small body limit."""
    import warehouse

    small = {**settings, "warehouse.max_body_bytes": str(LIMIT), "celery.embedded_worker": "false"}
    return TestApp(warehouse.main({}, celery_app=celery_app, **small))


def rows_of_size(size: int) -> bytes:
    header = b"sku,qty_on_hand,unit_cost\n"
    row = b"S-1,1,1\n"
    return header + row * ((size - len(header)) // len(row))


def test_a_body_over_the_limit_is_413_and_writes_nothing(limited: TestApp, operator: dict, db: Any, sent: list) -> None:
    warehouse = db.add_warehouse()
    with nothing_written_or_sent(db, sent):
        response = limited.post(
            f"/api/warehouses/{warehouse.code}/products",
            rows_of_size(LIMIT + 100),
            headers={**operator, "Content-Type": "text/csv"},
            status=413,
        )
    error = assert_error(response, 413, "body_too_large", field="body")
    assert error["details"]["limit_bytes"] == LIMIT


def test_a_body_just_under_the_limit_is_read(limited: TestApp, operator: dict, db: Any) -> None:
    warehouse = db.add_warehouse()
    body = rows_of_size(LIMIT).replace(b"S-1,", b"S-0,", 1)
    assert LIMIT - 10 < len(body) <= LIMIT
    response = limited.post(
        f"/api/warehouses/{warehouse.code}/products", body, headers={**operator, "Content-Type": "text/csv"}, status=400
    )
    # The parser read it: it found the repeated sku, which only reading the whole body shows.
    assert_error(response, 400, field="[2].sku")


def test_a_chunked_body_over_the_limit_is_413(limited: TestApp, operator: dict, db: Any) -> None:
    warehouse = db.add_warehouse()
    body = rows_of_size(LIMIT * 2)
    # No Content-Length, as a client streaming with Transfer-Encoding: chunked sends (waitress
    # de-chunks it and marks the input as terminated).
    response = limited.post(
        f"/api/warehouses/{warehouse.code}/products",
        body,
        headers={**operator, "Content-Type": "text/csv"},
        extra_environ={"CONTENT_LENGTH": "", "wsgi.input_terminated": True},
        status=413,
    )
    assert_error(response, 413, "body_too_large")
