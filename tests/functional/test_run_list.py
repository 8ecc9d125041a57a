"""GET /api/runs: newest first, filtered by warehouse and status, a page at a time."""

from __future__ import annotations

from typing import Any

from webtest import TestApp

from tests.functional.helpers import add_run, assert_error


def all_pages(testapp: TestApp, headers: dict[str, str], **params: Any) -> list[list[int]]:
    """The run ids of every page, following next_cursor to the end."""
    pages = []
    while True:
        page = testapp.get("/api/runs", params, headers=headers, status=200).json
        pages.append([run["id"] for run in page["runs"]])
        if page["next_cursor"] is None:
            return pages
        params = {**params, "cursor": page["next_cursor"]}


def test_runs_of_a_warehouse_newest_first_in_pages(testapp: TestApp, viewer: dict, db: Any) -> None:
    warehouse, other = db.add_warehouse(), db.add_warehouse()
    ids = [add_run(db, warehouse.id, status) for status in ("succeeded", "failed", "succeeded", "cancelled", "failed")]
    add_run(db, other.id, "succeeded")

    pages = all_pages(testapp, viewer, warehouse=warehouse.code, limit=2)

    assert pages == [ids[::-1][0:2], ids[::-1][2:4], ids[::-1][4:5]]


def test_runs_filtered_by_status(testapp: TestApp, viewer: dict, db: Any) -> None:
    warehouse = db.add_warehouse()
    failed = [add_run(db, warehouse.id, status) for status in ("failed", "succeeded", "failed")][::2]

    page = testapp.get("/api/runs", {"warehouse": warehouse.code, "status": "failed"}, headers=viewer).json

    assert [run["id"] for run in page["runs"]] == failed[::-1]
    assert {run["status"] for run in page["runs"]} == {"failed"}
    assert {run["warehouse"] for run in page["runs"]} == {warehouse.code}
    assert page["next_cursor"] is None


def test_all_runs_without_filters_are_newest_first(testapp: TestApp, viewer: dict, db: Any) -> None:
    warehouse = db.add_warehouse()
    newest = add_run(db, warehouse.id, "succeeded")

    runs = testapp.get("/api/runs", headers=viewer).json["runs"]

    assert runs[0]["id"] == newest
    assert [run["id"] for run in runs] == sorted((run["id"] for run in runs), reverse=True)


def test_an_unknown_warehouse_is_404_naming_the_parameter(testapp: TestApp, viewer: dict) -> None:
    response = testapp.get("/api/runs", {"warehouse": "no-such-place"}, headers=viewer, status=404)
    assert_error(response, 404, "warehouse_not_found", field="warehouse")


def test_bad_parameters_are_400_naming_them(testapp: TestApp, viewer: dict) -> None:
    for params, field in [
        ({"status": "sleeping"}, "status"),
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"warehouse": "bad code!"}, "warehouse"),
    ]:
        response = testapp.get("/api/runs", params, headers=viewer, status=400)
        assert_error(response, 400, field=field)


def test_listing_needs_a_token(testapp: TestApp) -> None:
    assert_error(testapp.get("/api/runs", status=401), 401)
