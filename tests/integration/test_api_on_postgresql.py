"""What only PostgreSQL can show: concurrent requests with one Idempotency-Key, and the migrated schema
matching the models exactly."""

from __future__ import annotations

import threading
import uuid
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, text
from webtest import TestApp

from tests.integration.checks import warehouse_id
from warehouse.models import Base
from warehouse.scripts.seed import seed


def test_concurrent_requests_with_one_key_start_one_run(webapp: TestApp, api: Any, engine: Engine, workers: list) -> None:
    code, key = f"it-idem-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
    seed(engine, code, products=1_000, shipments=0)
    callers = 6
    start_together = threading.Barrier(callers)
    answers: list[Any] = []

    def post() -> None:
        client = TestApp(webapp.app)
        start_together.wait()
        answers.append(
            client.post_json(
                f"/api/warehouses/{code}/runs",
                {"operation": "valuation"},
                headers={**api.operator, "Idempotency-Key": key},
                status="*",
            )
        )

    threads = [threading.Thread(target=post) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(answer.status_int for answer in answers) == [202] * callers, [a.body for a in answers]
    assert len({answer.json["id"] for answer in answers}) == 1
    assert sum(answer.headers.get("Idempotent-Replayed") == "true" for answer in answers) == callers - 1
    with engine.connect() as connection:
        runs = connection.scalar(text("SELECT count(*) FROM runs WHERE warehouse_id = :w"), {"w": warehouse_id(engine, code)})
    assert runs == 1
    run = api.wait_until_finished(answers[0].json["id"], timeout=60)
    assert run["status"] == "succeeded"


def test_the_migrated_postgresql_schema_matches_the_models(engine: Engine, settings: dict[str, Any]) -> None:
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
