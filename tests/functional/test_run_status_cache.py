"""GET /api/runs/{id} with warehouse.run_status_cache_seconds on: repeats served from memory for that
long, a cancel through the API seen at once, and {id} still checked as the document says."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import update
from webtest import TestApp

from tests.functional.helpers import add_run, assert_error
from warehouse.models import Run
from warehouse.run_status import StatusRepeats


@pytest.fixture
def cached(settings: dict[str, Any], celery_app: Any, wsgi_app: Any) -> TestApp:
    """Another app on the session's database and Celery app, keeping status answers for a minute
    (far longer than the test), so that what is served from memory shows."""
    import warehouse

    keep = {**settings, "warehouse.run_status_cache_seconds": "60", "celery.embedded_worker": "false"}
    return TestApp(warehouse.main({}, celery_app=celery_app, **keep))


def set_items_done(db: Any, run_id: int, done: int) -> None:
    db.execute(update(Run).where(Run.id == run_id).values(items_done=done, items_total=1000))


def test_a_repeat_is_served_from_memory_until_a_cancel_through_the_api(cached: TestApp, viewer: dict, operator: dict, db: Any, warehouse: Any) -> None:
    run_id = add_run(db, warehouse.id, "running")
    set_items_done(db, run_id, 100)
    first = cached.get(f"/api/runs/{run_id}", headers=viewer, status=200).json
    assert first["items"]["done"] == 100

    set_items_done(db, run_id, 600)  # a worker's progress, behind this process's back
    assert cached.get(f"/api/runs/{run_id}", headers=viewer, status=200).json == first

    cancelled = cached.post(f"/api/runs/{run_id}/cancel", headers=operator, status=202).json
    assert cancelled["status"] == "cancelling"
    after = cached.get(f"/api/runs/{run_id}", headers=viewer, status=200).json
    assert (after["status"], after["items"]["done"]) == ("cancelling", 600)


def test_the_viewer_token_is_still_checked_on_a_repeat(cached: TestApp, viewer: dict, db: Any, warehouse: Any) -> None:
    run_id = add_run(db, warehouse.id, "running")
    cached.get(f"/api/runs/{run_id}", headers=viewer, status=200)
    assert_error(cached.get(f"/api/runs/{run_id}", status=401), 401)
    assert_error(cached.get(f"/api/runs/{run_id}", headers={"Authorization": "Bearer wrong"}, status=401), 401)


def test_an_unknown_run_is_404_every_time(cached: TestApp, viewer: dict, db: Any, warehouse: Any) -> None:
    missing = add_run(db, warehouse.id, "running") + 1000
    for _ in range(2):
        assert_error(cached.get(f"/api/runs/{missing}", headers=viewer, status=404), 404, "run_not_found", field="id")


@pytest.mark.parametrize("raw", ["0", "-1", "abc", "1.5", "2147483648", "%D9%A3", "1e3", "%201", "9" * 5000])
def test_an_id_that_is_not_a_run_id_is_400_naming_it(cached: TestApp, testapp: TestApp, viewer: dict, raw: str) -> None:
    for app in (cached, testapp):
        assert_error(app.get(f"/api/runs/{raw}", headers=viewer, status=400), 400, "invalid_request", field="id")


def without_request_id(headers: Any) -> list[tuple[str, str]]:
    return sorted((name, value) for name, value in headers.items() if name != "X-Request-ID")


def test_a_repeat_answered_from_memory_is_the_view_s_answer_byte_for_byte(cached: TestApp, testapp: TestApp, viewer: dict, operator: dict, db: Any, warehouse: Any) -> None:
    run_id = add_run(db, warehouse.id, "running")
    uncached = testapp.get(f"/api/runs/{run_id}", headers=viewer, status=200)
    first = cached.get(f"/api/runs/{run_id}", headers=viewer, status=200)  # the view's, then kept
    repeats = [cached.get(f"/api/runs/{run_id}", headers=headers, status=200) for headers in (viewer, operator)]
    for answer in [first, *repeats]:
        assert answer.body == uncached.body
        # Every header alike but the request id, which is each request's own (warehouse/logs/requests.py).
        assert without_request_id(answer.headers) == without_request_id(uncached.headers)
        assert answer.headers["X-Request-ID"] != uncached.headers["X-Request-ID"]


def test_only_a_get_of_the_status_itself_is_answered_from_memory(cached: TestApp, viewer: dict, operator: dict, db: Any, warehouse: Any) -> None:
    run_id = add_run(db, warehouse.id, "running")
    cached.get(f"/api/runs/{run_id}", headers=viewer, status=200)
    # Other routes under the same path, and other methods, still reach their views.
    assert cached.get(f"/api/runs/{run_id}/failures", headers=viewer, status=200).json["run_id"] == run_id
    assert cached.head(f"/api/runs/{run_id}", headers=viewer, status=200).body == b""
    assert_error(cached.post(f"/api/runs/{run_id}", headers=operator, status=405), 405)


def test_a_repeat_is_answered_in_front_of_the_router_and_nothing_else_is(cached: TestApp, viewer: dict, operator: dict, db: Any, warehouse: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    front = cached.app
    assert isinstance(front, StatusRepeats)
    run_id = add_run(db, warehouse.id, "running")
    kept = cached.get(f"/api/runs/{run_id}", headers=viewer, status=200).body
    reached = []

    def router(environ: dict, start_response: Any) -> list[bytes]:
        reached.append(environ["PATH_INFO"])
        start_response("418 I'm a teapot", [("Content-Type", "text/plain")])
        return [b"the router"]

    monkeypatch.setattr(front, "router", router)
    for headers in (viewer, operator):
        assert cached.get(f"/api/runs/{run_id}", headers=headers, status=200).body == kept
    assert reached == []
    # Whatever the view must judge goes to the router: no token, a wrong one, a body, another run,
    # another method or route.
    cached.get(f"/api/runs/{run_id}", status=418)
    cached.get(f"/api/runs/{run_id}", headers={"Authorization": "Bearer wrong"}, status=418)
    cached.get(f"/api/runs/{run_id + 1}", headers=viewer, status=418)
    cached.get(f"/api/runs/{run_id}/failures", headers=viewer, status=418)
    cached.head(f"/api/runs/{run_id}", headers=viewer, status=418)
    cached.request(f"/api/runs/{run_id}", method="GET", body=b"{}", headers=viewer, status=418)
    assert len(reached) == 6
