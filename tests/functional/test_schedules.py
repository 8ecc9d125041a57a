"""The schedules API through WebTest on the embedded app: every route, refusals in words with nothing
written, roles, hostile cron expressions and time zones (hostile codes and ids are in
test_hostile_input.py with every other route's), a skipped tick shown, and the embedded default firing a schedule with
its worker's heartbeat chore and nothing else started.

Schedules here mostly tick once a year ('0 6 1 1 *'): the session's database is shared, and the
chore fires every due schedule in it.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from pyramid.router import Router
from sqlalchemy import select, update
from webtest import TestApp

import tasks.schedules
from tasks.chores import CHORES
from tests.conftest import Database
from tests.functional.helpers import Sent, add_run, assert_error, nothing_written_or_sent
from warehouse.models import Run, RunStatus, Schedule, ScheduleTick, Warehouse

YEARLY = "0 6 1 1 *"
UTC = dt.timezone.utc


def create(testapp: TestApp, operator: dict, code: str, **fields: Any) -> dict[str, Any]:
    body = {"operation": "valuation", "cron": YEARLY, **fields}
    return testapp.post_json(f"/api/warehouses/{code}/schedules", body, headers=operator, status=201).json


def parse(moment: str) -> dt.datetime:
    return dt.datetime.fromisoformat(moment)


def make_due(db: Database, schedule_id: int, minutes_ago: int = 1) -> None:
    due = dt.datetime.now(UTC).replace(second=0, microsecond=0) - dt.timedelta(minutes=minutes_ago)
    db.execute(update(Schedule).where(Schedule.id == schedule_id).values(next_run_at=due))


# --- creating and reading ----------------------------------------------------------------------------


def test_a_schedule_is_created_with_its_next_tick_in_utc_and_on_its_own_clock(
    testapp: TestApp, operator: dict, viewer: dict, warehouse: Warehouse
) -> None:
    response = testapp.post_json(
        f"/api/warehouses/{warehouse.code}/schedules",
        {"operation": "valuation", "cron": "0  6 * * *", "timezone": "Europe/Dublin", "chunk_size": 250,
         "tolerated_failure_percent": 1.5},
        headers=operator, status=201,
    )

    schedule = response.json
    assert response.location.endswith(f"/api/schedules/{schedule['id']}")
    assert {key: schedule[key] for key in ("warehouse", "operation", "cron", "timezone", "chunk_size",
                                           "tolerated_failure_percent", "enabled", "recent_ticks")} == {
        "warehouse": warehouse.code, "operation": "valuation", "cron": "0 6 * * *", "timezone": "Europe/Dublin",
        "chunk_size": 250, "tolerated_failure_percent": 1.5, "enabled": True, "recent_ticks": [],
    }
    next_utc, next_local = parse(schedule["next_run_at"]), parse(schedule["next_run_at_local"])
    assert next_utc.utcoffset() == dt.timedelta(0) and next_utc == next_local
    assert (next_local.hour, next_local.minute) == (6, 0)
    assert dt.datetime.now(UTC) < next_utc <= dt.datetime.now(UTC) + dt.timedelta(days=1, hours=1)
    listed = testapp.get(f"/api/warehouses/{warehouse.code}/schedules", headers=viewer, status=200).json
    assert listed == {"schedules": [schedule]}
    one = testapp.get(f"/api/schedules/{schedule['id']}", headers=viewer, status=200).json
    assert one == {**schedule, "ticks": [], "next_cursor": None}


def test_a_schedule_takes_utc_no_chunk_size_nothing_tolerated_and_enabled_by_default(
    testapp: TestApp, operator: dict, warehouse: Warehouse
) -> None:
    schedule = create(testapp, operator, warehouse.code)

    assert (schedule["timezone"], schedule["chunk_size"], schedule["tolerated_failure_percent"], schedule["enabled"]) == (
        "UTC", None, 0.0, True)
    assert schedule["next_run_at"] == schedule["next_run_at_local"]


def test_a_schedule_created_paused_has_no_next_tick(testapp: TestApp, operator: dict, warehouse: Warehouse) -> None:
    schedule = create(testapp, operator, warehouse.code, enabled=False)

    assert (schedule["enabled"], schedule["next_run_at"], schedule["next_run_at_local"]) == (False, None, None)


def test_the_list_is_the_warehouses_own(testapp: TestApp, operator: dict, viewer: dict, db: Database) -> None:
    mine, other = db.add_warehouse(), db.add_warehouse()
    first, second = create(testapp, operator, mine.code), create(testapp, operator, mine.code, cron="0 7 * * 1")
    create(testapp, operator, other.code)

    listed = testapp.get(f"/api/warehouses/{mine.code}/schedules", headers=viewer, status=200).json["schedules"]

    assert [item["id"] for item in listed] == [first["id"], second["id"]]


def test_a_schedules_ticks_come_a_page_at_a_time_newest_first(
    testapp: TestApp, operator: dict, viewer: dict, db: Database, warehouse: Warehouse
) -> None:
    schedule = create(testapp, operator, warehouse.code)
    start = dt.datetime(2026, 1, 1, 6, tzinfo=UTC)
    with db.session() as session:
        session.add_all(
            ScheduleTick(schedule_id=schedule["id"], tick_at=start + dt.timedelta(days=n), outcome="skipped",
                         reason="test", created_at=start)
            for n in range(7)
        )

    page = testapp.get(f"/api/schedules/{schedule['id']}?limit=3", headers=viewer, status=200).json
    rest = testapp.get(f"/api/schedules/{schedule['id']}?limit=10&cursor={page['next_cursor']}", headers=viewer).json

    days = [parse(tick["tick_at"]).day for tick in page["ticks"] + rest["ticks"]]
    assert days == [7, 6, 5, 4, 3, 2, 1] and rest["next_cursor"] is None
    assert [parse(tick["tick_at"]).day for tick in page["recent_ticks"]] == [7, 6, 5, 4, 3]


# --- refusals in words, nothing written ----------------------------------------------------------------


BAD_BODIES = [
    ({"cron": YEARLY}, 400, "operation", "operation is required"),
    ({"operation": "valuation"}, 400, "cron", "cron is required"),
    ({"operation": "valuation", "cron": "0 6 * *"}, 400, "cron",
     "cron must be five fields: minute hour day-of-month month day-of-week, such as '0 6 * * *'"),
    ({"operation": "valuation", "cron": "0 25 * * *"}, 400, "cron", "cron's hour field is not valid: hours go from 0 to 23"),
    ({"operation": "valuation", "cron": "0 0 30 2 *"}, 400, "cron", "cron names no date that ever comes"),
    ({"operation": "valuation", "cron": ""}, 400, "cron", "cron may not be empty"),
    ({"operation": "valuation", "cron": 6}, 400, "cron", "cron must be text"),
    ({"operation": "valuation", "cron": YEARLY, "timezone": "Mars/Olympus"}, 400, "timezone",
     "timezone must be an IANA time zone name, such as 'Europe/Dublin' or 'UTC'"),
    ({"operation": "valuation", "cron": YEARLY, "timezone": "T" * 65}, 400, "timezone", "timezone may be at most 64 characters long"),
    ({"operation": "shredding", "cron": YEARLY}, 422, "operation", "operation is not one this service knows (known: "),
    ({"operation": "valuation", "cron": YEARLY, "chunk_size": 0}, 400, "chunk_size", "chunk_size must be at least 1"),
    ({"operation": "valuation", "cron": YEARLY, "chunk_size": 100_001}, 400, "chunk_size", "chunk_size must be at most 100,000"),
    ({"operation": "valuation", "cron": YEARLY, "tolerated_failure_percent": 101}, 400, "tolerated_failure_percent",
     "tolerated_failure_percent must be at most 100"),
    ({"operation": "valuation", "cron": YEARLY, "enabled": "yes"}, 400, "enabled", "enabled must be true or false"),
    ({"operation": "valuation", "cron": YEARLY, "every": "day"}, 400, "body", "unknown field 'every'"),
]


@pytest.mark.parametrize(("body", "status", "field", "words"), BAD_BODIES, ids=[case[3][:40] for case in BAD_BODIES])
def test_a_bad_schedule_is_refused_in_words_naming_the_field_and_nothing_is_written(
    body: dict, status: int, field: str, words: str, testapp: TestApp, operator: dict, db: Database, sent: list[Sent],
    warehouse: Warehouse,
) -> None:
    with nothing_written_or_sent(db, sent):
        response = testapp.post_json(f"/api/warehouses/{warehouse.code}/schedules", body, headers=operator, expect_errors=True)

    error = assert_error(response, status, field=field)
    assert error["message"].startswith(words), error["message"]


# The same refusals when a schedule is changed: only the field at fault is sent.
BAD_CHANGES = [({"every": "day"} if field == "body" else {field: body[field]}, status, field)
               for body, status, field, _ in BAD_BODIES if field in body or field == "body"]


@pytest.mark.parametrize(("change", "status", "field"), BAD_CHANGES, ids=[repr(case[0])[:40] for case in BAD_CHANGES])
def test_a_bad_change_is_refused_in_words_and_the_schedule_is_left_as_it_was(
    change: dict, status: int, field: str, testapp: TestApp, operator: dict, viewer: dict, db: Database,
    sent: list[Sent], warehouse: Warehouse,
) -> None:
    schedule = create(testapp, operator, warehouse.code)

    with nothing_written_or_sent(db, sent):
        response = testapp.patch_json(f"/api/schedules/{schedule['id']}", change, headers=operator, expect_errors=True)

    assert_error(response, status, field=field)
    assert testapp.get(f"/api/schedules/{schedule['id']}", headers=viewer).json == {**schedule, "ticks": [], "next_cursor": None}


def test_an_empty_change_is_refused(testapp: TestApp, operator: dict, db: Database, sent: list[Sent], warehouse: Warehouse) -> None:
    schedule = create(testapp, operator, warehouse.code)

    with nothing_written_or_sent(db, sent):
        response = testapp.patch_json(f"/api/schedules/{schedule['id']}", {}, headers=operator, expect_errors=True)

    error = assert_error(response, 400, "invalid_field", "body")
    assert error["message"] == "send at least one of: operation, cron, timezone, chunk_size, tolerated_failure_percent, enabled"


@pytest.mark.parametrize(("method", "path"), [("GET", "/api/warehouses/nowhere-{n}/schedules"),
                                              ("POST", "/api/warehouses/nowhere-{n}/schedules"),
                                              ("GET", "/api/schedules/{n}"), ("PATCH", "/api/schedules/{n}"),
                                              ("DELETE", "/api/schedules/{n}")])
def test_what_does_not_exist_is_404(method: str, path: str, testapp: TestApp, operator: dict, db: Database, sent: list[Sent]) -> None:
    body = json.dumps({"operation": "valuation", "cron": YEARLY} if method == "POST" else {"enabled": False})
    with nothing_written_or_sent(db, sent):
        response = testapp.request(path.format(n=2_000_000_000), method=method, headers={**operator, "Content-Type": "application/json"},
                                   body=body.encode() if method in ("POST", "PATCH") else b"", expect_errors=True)

    assert_error(response, 404, "warehouse_not_found" if "warehouses" in path else "schedule_not_found",
                 "code" if "warehouses" in path else "id")


# --- changing, pausing, deleting -------------------------------------------------------------------------


def test_pausing_clears_the_next_tick_and_resuming_starts_from_the_next_tick_after_now(
    testapp: TestApp, operator: dict, db: Database, warehouse: Warehouse
) -> None:
    schedule = create(testapp, operator, warehouse.code, cron="*/10 * * * *")
    make_due(db, schedule["id"], minutes_ago=120)  # as if ticks came due while it was paused

    paused = testapp.patch_json(f"/api/schedules/{schedule['id']}", {"enabled": False}, headers=operator, status=200).json
    resumed = testapp.patch_json(f"/api/schedules/{schedule['id']}", {"enabled": True}, headers=operator, status=200).json

    assert (paused["enabled"], paused["next_run_at"]) == (False, None)
    now = dt.datetime.now(UTC)
    assert resumed["enabled"] is True and now < parse(resumed["next_run_at"]) <= now + dt.timedelta(minutes=10)
    assert parse(resumed["next_run_at"]).minute % 10 == 0


def test_a_new_cron_or_time_zone_moves_the_next_tick_and_other_changes_keep_it(
    testapp: TestApp, operator: dict, warehouse: Warehouse
) -> None:
    schedule = create(testapp, operator, warehouse.code)
    url = f"/api/schedules/{schedule['id']}"

    recron = testapp.patch_json(url, {"cron": "0 6 * * *"}, headers=operator).json
    rezone = testapp.patch_json(url, {"timezone": "Asia/Tokyo"}, headers=operator).json
    resize = testapp.patch_json(url, {"chunk_size": 9, "tolerated_failure_percent": 3, "operation": "shipping_labels"},
                                headers=operator).json

    assert parse(recron["next_run_at"]) <= dt.datetime.now(UTC) + dt.timedelta(days=1)  # not next January any more
    assert (parse(recron["next_run_at"]).hour, parse(rezone["next_run_at"]).hour) == (6, 21)  # 06:00 in Tokyo is 21:00 UTC
    assert parse(rezone["next_run_at_local"]).hour == 6
    assert resize["next_run_at"] == rezone["next_run_at"]
    assert (resize["chunk_size"], resize["tolerated_failure_percent"], resize["operation"]) == (9, 3.0, "shipping_labels")


def test_deleting_a_schedule_keeps_the_runs_it_started(
    testapp: TestApp, operator: dict, viewer: dict, db: Database, warehouse: Warehouse
) -> None:
    schedule = create(testapp, operator, warehouse.code)
    run_id = add_run(db, warehouse.id, RunStatus.SUCCEEDED)
    db.execute(update(Run).where(Run.id == run_id).values(schedule_id=schedule["id"]))

    response = testapp.delete(f"/api/schedules/{schedule['id']}", headers=operator, status=204)

    assert response.body == b""
    testapp.get(f"/api/schedules/{schedule['id']}", headers=viewer, status=404)
    assert testapp.get(f"/api/runs/{run_id}", headers=viewer).json["schedule_id"] is None


# --- roles -----------------------------------------------------------------------------------------------

ROUTES = [("GET", "/api/warehouses/{code}/schedules", "viewer"), ("POST", "/api/warehouses/{code}/schedules", "operator"),
          ("GET", "/api/schedules/{id}", "viewer"), ("PATCH", "/api/schedules/{id}", "operator"),
          ("DELETE", "/api/schedules/{id}", "operator")]
BODIES = {"POST": {"operation": "valuation", "cron": YEARLY}, "PATCH": {"enabled": False}}


def call(testapp: TestApp, method: str, path: str, headers: dict, code: str, schedule_id: int) -> Any:
    body = json.dumps(BODIES[method]).encode() if method in BODIES else b""
    return testapp.request(path.format(code=code, id=schedule_id), method=method, body=body,
                           headers={**headers, "Content-Type": "application/json"}, expect_errors=True)


@pytest.mark.parametrize(("method", "path", "role"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_roles(method: str, path: str, role: str, testapp: TestApp, operator: dict, viewer: dict, db: Database,
               sent: list[Sent], warehouse: Warehouse) -> None:
    schedule = create(testapp, operator, warehouse.code)

    with nothing_written_or_sent(db, sent):
        anonymous = call(testapp, method, path, {}, warehouse.code, schedule["id"])
        as_viewer = call(testapp, method, path, viewer, warehouse.code, schedule["id"])
    as_operator = call(testapp, method, path, operator, warehouse.code, schedule["id"])

    assert_error(anonymous, 401, "unauthorized")
    if role == "operator":
        assert_error(as_viewer, 403, "forbidden")
    else:
        assert as_viewer.status_int == 200
    assert as_operator.status_int in (200, 201, 204)


# --- hostile input ---------------------------------------------------------------------------------------

HOSTILE_CRONS = ["* * * * *'; DROP TABLE schedules; --", "<script>alert(1)</script>", "0 6 * * *\u0000", "0 6 * * *\n0 7 * * *",
                 "\u0660 6 * * *", "\uff10 6 * * *", "0 6 * * *\u202e", "1 OR 1=1", "../../etc/passwd", "$(reboot) * * * *",
                 "{0,63} * * * *", "C" * 256]
HOSTILE_ZONES = ["Europe/Dublin'; DROP TABLE schedules; --", "<script>", "Europe/Dublin\u0000", "../../../etc/passwd",
                 "/usr/share/zoneinfo/UTC", "Europe/Dublin\n", "UTC\u200b", "\u0415urope/Dublin", "localtime", "Z" * 65]


@pytest.mark.parametrize("field,value", [("cron", value) for value in HOSTILE_CRONS] + [("timezone", value) for value in HOSTILE_ZONES])
def test_hostile_cron_and_time_zones_are_refused_naming_the_field(
    field: str, value: str, testapp: TestApp, operator: dict, db: Database, sent: list[Sent], warehouse: Warehouse
) -> None:
    schedule = create(testapp, operator, warehouse.code)
    body = {"operation": "valuation", "cron": YEARLY, field: value}

    with nothing_written_or_sent(db, sent):
        created = testapp.post_json(f"/api/warehouses/{warehouse.code}/schedules", body, headers=operator, expect_errors=True)
        changed = testapp.patch_json(f"/api/schedules/{schedule['id']}", {field: value}, headers=operator, expect_errors=True)

    for response in (created, changed):
        assert response.status_int == 400
        assert_error(response, 400, field=field)


# --- ticks: the embedded default fires them on its worker's heartbeat ----------------------------------------


def fire(wsgi_app: Router, session_factory: Any) -> list[Any]:
    """What the embedded worker's heartbeat does after its sweep (tasks/presence.py), once."""
    celery_app = wsgi_app.registry["celery_app"]
    return tasks.schedules.fire_schedules(celery_app, session_factory, wsgi_app.registry.settings)


def test_the_embedded_default_fires_a_due_schedule_and_its_worker_does_the_run(
    testapp: TestApp, wsgi_app: Router, session_factory: Any, operator: dict, viewer: dict, db: Database,
    sent: list[Sent], wait_for_run: Any,
) -> None:
    warehouse = db.add_warehouse()
    db.add_products(warehouse.id, 12)
    schedule = create(testapp, operator, warehouse.code, cron="* * * * *", chunk_size=5)
    make_due(db, schedule["id"], minutes_ago=3)

    assert tasks.schedules.fire_schedules in CHORES  # what every worker process does on its heartbeat
    [firing] = [firing for firing in fire(wsgi_app, session_factory) if firing.schedule_id == schedule["id"]]

    assert (firing.outcome, firing.missed_ticks) == ("started", 3)
    assert [(call.name, call.args, call.run_status_seen_by_another_connection) for call in sent] == [
        ("processWholeWarehouse", [firing.run_id], "pending")  # sent once the tick's transaction committed
    ]
    run = wait_for_run(testapp, firing.run_id)
    assert (run["status"], run["schedule_id"], run["chunks"]["total"]) == ("succeeded", schedule["id"], 3)
    assert parse(run["scheduled_for"]) == firing.tick_at
    shown = testapp.get(f"/api/schedules/{schedule['id']}", headers=viewer).json
    assert [(tick["outcome"], tick["run_id"], tick["missed_ticks"]) for tick in shown["ticks"]] == [("started", run["id"], 3)]
    assert parse(shown["next_run_at"]) > dt.datetime.now(UTC) - dt.timedelta(seconds=5)
    testapp.patch_json(f"/api/schedules/{schedule['id']}", {"enabled": False}, headers=operator, status=200)


def test_a_tick_during_an_active_run_is_shown_as_skipped_with_that_run(
    testapp: TestApp, wsgi_app: Router, session_factory: Any, operator: dict, viewer: dict, db: Database,
    sent: list[Sent], warehouse: Warehouse,
) -> None:
    schedule = create(testapp, operator, warehouse.code)
    active = add_run(db, warehouse.id, RunStatus.RUNNING)
    make_due(db, schedule["id"])
    runs_before = db.scalars(select(Run.id).where(Run.warehouse_id == warehouse.id))

    [firing] = [firing for firing in fire(wsgi_app, session_factory) if firing.schedule_id == schedule["id"]]

    assert (firing.outcome, firing.active_run_id) == ("skipped", active)
    assert db.scalars(select(Run.id).where(Run.warehouse_id == warehouse.id)) == runs_before
    assert [call for call in sent if call.args == [active]] == []
    [listed] = testapp.get(f"/api/warehouses/{warehouse.code}/schedules", headers=viewer).json["schedules"]
    [tick] = listed["recent_ticks"]
    assert (tick["outcome"], tick["run_id"], tick["active_run_id"]) == ("skipped", None, active)
    assert tick["reason"] == f"run {active} of valuation was still active on warehouse {warehouse.code}: one run of an operation at a time"
    assert parse(listed["next_run_at"]).strftime("%m-%d %H:%M") == "01-01 06:00"
