"""X-Request-ID on the real app's answers: the API's, its errors (the request guard's included), the
pages', and the status repeats answered from memory in front of the router."""

from __future__ import annotations

from typing import Any

import pytest
from webtest import TestApp

from tests.functional.helpers import add_run
from warehouse.views import warehouses


@pytest.mark.parametrize(
    ("path", "status"),
    [("/api/health", 200), ("/api/nowhere", 404), ("/api/warehouses/%FF", 400), ("/login", 200), ("/runs", 303)],
    ids=["api", "api-404", "guard-400", "page", "page-redirect"],
)
def test_every_answer_says_its_request_id(testapp: TestApp, viewer: dict, path: str, status: int) -> None:
    headers = {**viewer, "X-Request-ID": "client-chosen-1"} if path.startswith("/api") else {"X-Request-ID": "client-chosen-1"}
    assert testapp.get(path, headers=headers, status=status).headers["X-Request-ID"] == "client-chosen-1"
    made = testapp.get(path, headers={**headers, "X-Request-ID": "no spaces allowed"}, status=status).headers["X-Request-ID"]
    assert len(made) == 32


def test_a_failure_inside_says_it_too(testapp: TestApp, viewer: dict, db: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(warehouses, "_counts", broken)
    code = db.add_warehouse().code
    response = testapp.get(f"/api/warehouses/{code}", headers={**viewer, "X-Request-ID": "failed-1"}, status=500)
    assert response.headers["X-Request-ID"] == "failed-1"


def test_a_status_repeat_from_memory_says_it_too(settings: dict[str, Any], celery_app: Any, viewer: dict, db: Any) -> None:
    import warehouse

    keep = {**settings, "warehouse.run_status_cache_seconds": "60", "celery.embedded_worker": "false"}
    cached = TestApp(warehouse.main({}, celery_app=celery_app, **keep))
    run_id = add_run(db, db.add_warehouse().id, "running")

    ids = [cached.get(f"/api/runs/{run_id}", headers={**viewer, "X-Request-ID": f"poll-{n}"}, status=200).headers["X-Request-ID"]
           for n in range(2)]
    made = cached.get(f"/api/runs/{run_id}", headers=viewer, status=200).headers["X-Request-ID"]

    assert ids == ["poll-0", "poll-1"] and len(made) == 32  # the second and third from memory
