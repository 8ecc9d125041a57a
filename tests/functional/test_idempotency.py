"""Idempotency-Key on POST /api/warehouses/{code}/runs and POST /api/warehouses: a repeat of the same
request gets the first answer; the same key with another request gets 422."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select, update
from webtest import TestApp

from tests.functional.helpers import add_run, assert_error, nothing_written_or_sent
from warehouse.models import IdempotencyKey, Run


def new_key() -> str:
    return str(uuid.uuid4())


def start(testapp: TestApp, code: str, key: str | None, body: dict[str, Any], headers: dict, status: int | str = "*"):  # type: ignore[no-untyped-def]
    if key is not None:
        headers = {**headers, "Idempotency-Key": key}
    return testapp.post_json(f"/api/warehouses/{code}/runs", body, headers=headers, status=status)


def runs_of(db: Any, warehouse_id: int) -> int:
    return db.scalar(select(func.count()).select_from(Run).where(Run.warehouse_id == warehouse_id))


def test_the_same_key_and_body_get_the_first_answer_and_one_run(
    testapp: TestApp, operator: dict, db: Any, sent: list
) -> None:
    warehouse, key = db.add_warehouse(), new_key()
    first = start(testapp, warehouse.code, key, {"operation": "valuation", "chunk_size": 100}, operator, 202)
    # The same body with its keys in another order is the same request.
    again = start(testapp, warehouse.code, key, {"chunk_size": 100, "operation": "valuation"}, operator, 202)

    assert again.json == first.json
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert runs_of(db, warehouse.id) == 1
    assert [call.name for call in sent] == ["processWholeWarehouse"]


@pytest.mark.parametrize(
    "other",
    [
        {"body": {"operation": "valuation", "chunk_size": 200}},
        {"body": {"operation": "shipping_labels"}},
        {"path": "other-warehouse"},
    ],
    ids=["another chunk size", "another operation", "another warehouse"],
)
def test_the_same_key_with_another_request_is_422_and_changes_nothing(
    other: dict[str, Any], testapp: TestApp, operator: dict, db: Any, sent: list
) -> None:
    warehouse, second_warehouse, key = db.add_warehouse(), db.add_warehouse(), new_key()
    start(testapp, warehouse.code, key, {"operation": "valuation"}, operator, 202)
    sent.clear()
    code = second_warehouse.code if "path" in other else warehouse.code

    with nothing_written_or_sent(db, sent):
        response = start(testapp, code, key, other.get("body", {"operation": "valuation"}), operator, 422)

    assert_error(response, 422, "idempotency_key_reused", field="Idempotency-Key")


def test_an_error_answer_is_not_kept(testapp: TestApp, operator: dict, db: Any) -> None:
    warehouse, key = db.add_warehouse(), new_key()
    active = add_run(db, warehouse.id, "running")

    refused = start(testapp, warehouse.code, key, {"operation": "valuation"}, operator, 409)
    assert refused.json["error"]["details"]["active_run_id"] == active
    db.execute(update(Run).where(Run.id == active).values(status="succeeded"))
    retried = start(testapp, warehouse.code, key, {"operation": "valuation"}, operator, 202)

    assert retried.json["id"] != active
    assert "Idempotent-Replayed" not in retried.headers


def test_keys_are_forgotten_after_the_configured_hours(testapp: TestApp, operator: dict, db: Any) -> None:
    warehouse, key = db.add_warehouse(), new_key()
    first = start(testapp, warehouse.code, key, {"operation": "valuation"}, operator, 202).json
    db.execute(update(Run).where(Run.id == first["id"]).values(status="succeeded"))
    # 23 hours on, the key still replays; 25 hours on (the default keeps 24) it is a new request.
    for hours, replayed in [(23, True), (25, False)]:
        db.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.key == key)
            .values(created_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=hours))
        )
        answer = start(testapp, warehouse.code, key, {"operation": "valuation"}, operator, 202).json
        assert (answer["id"] == first["id"]) is replayed
    assert runs_of(db, warehouse.id) == 2


@pytest.mark.parametrize("key", ["", "has space", "x" * 201, "naïve"], ids=["empty", "space", "too long", "non-ascii"])
def test_a_malformed_key_is_400_naming_the_header(key: str, testapp: TestApp, operator: dict, db: Any, sent: list) -> None:
    warehouse = db.add_warehouse()
    with nothing_written_or_sent(db, sent):
        response = testapp.post_json(
            f"/api/warehouses/{warehouse.code}/runs",
            {"operation": "valuation"},
            headers={**operator, "Idempotency-Key": key.encode().decode("latin-1")},
            status=400,
        )
    assert_error(response, 400, field="Idempotency-Key")


def test_creating_a_warehouse_twice_with_one_key_creates_it_once(testapp: TestApp, operator: dict, db: Any) -> None:
    code, key = f"idem-{uuid.uuid4().hex[:8]}", new_key()
    headers = {**operator, "Idempotency-Key": key}
    first = testapp.post_json("/api/warehouses", {"code": code, "name": "Once"}, headers=headers, status=201)
    again = testapp.post_json("/api/warehouses", {"code": code, "name": "Once"}, headers=headers, status=201)

    assert again.json == first.json
    # Without the key, the same request is a second creation, refused.
    testapp.post_json("/api/warehouses", {"code": code, "name": "Once"}, headers=operator, status=409)
