"""Tokens are secrets: none of them may appear in a log record, whatever the request does; nor, in
the lines production.ini's and development.ini's formatters write, a session cookie, a webhook's
secret or the database's password."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from webtest import TestApp

from tests.log_capture import CapturedLines, captured_lines
from warehouse.logs import JsonFormatter, TextFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)-5.5s [%(name)s][%(threadName)s] %(message)s"


def test_tokens_never_reach_the_logs(
    testapp: TestApp, operator: dict, viewer: dict, db: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Good tokens, a wrong one, and a request that fails inside: no token appears in any log record."""
    caplog.set_level(logging.DEBUG)
    warehouse = db.add_warehouse()
    wrong = "Bearer wrong-token-0123456789"
    testapp.get(f"/api/warehouses/{warehouse.code}", headers=viewer, status=200)
    testapp.get(f"/api/warehouses/{warehouse.code}", headers={"Authorization": wrong}, status=401)
    testapp.post_json("/api/warehouses", {"code": "bad code"}, headers=operator, status=400)
    testapp.post_json(f"/api/warehouses/{warehouse.code}/runs", {"operation": "valuation"}, headers=operator, status=202)

    logged = caplog.text + "".join(str(record.__dict__) for record in caplog.records)
    for secret in (operator["Authorization"], viewer["Authorization"], wrong):
        assert secret.split()[1] not in logged


@contextmanager
def lines_as_deployed() -> Iterator[list[CapturedLines]]:
    """What production.ini (JSON) and development.ini (text) would write meanwhile: their formatters."""
    with captured_lines(JsonFormatter()) as json_lines, captured_lines(TextFormatter(TEXT_FORMAT)) as text_lines:
        yield [json_lines, text_lines]


def assert_in_no_line(captured: list[CapturedLines], secrets: list[str]) -> None:
    json_lines, _text_lines = captured
    json_lines.json()  # every line is one JSON object
    for lines in captured:
        for secret in secrets:
            assert secret and secret not in lines.text()


def test_no_token_cookie_or_webhook_secret_reaches_a_formatted_line(
    testapp: TestApp, operator: dict, viewer: dict, db: Any, wait_for_run: Callable[..., dict[str, Any]]
) -> None:
    """Tokens in headers and query strings, a session's cookie and a webhook's secret, through
    requests that succeed, are refused and fail inside, and the run they start: in no line."""
    warehouse = db.add_warehouse()
    db.add_products(warehouse.id, 10)  # a chunk, whose task writes lines too
    with lines_as_deployed() as captured:
        testapp.get(f"/api/warehouses/{warehouse.code}", headers=viewer, status=200)
        testapp.get(f"/api/warehouses/{warehouse.code}", headers={"Authorization": "Bearer wrong-token-0123456789"}, status=401)
        testapp.get(f"/api/runs?token={operator['Authorization'].split()[1]}", headers=viewer, status="*")
        testapp.post("/login", {"token": viewer["Authorization"].split()[1]}, status=303)
        cookies = dict(testapp.cookies)
        testapp.get("/runs", status=200)  # signed in by the cookie
        # An event no run here sends: nothing is delivered anywhere.
        created = testapp.post_json(
            "/api/webhooks", {"url": "https://93.184.216.34/hooks", "events": ["run.cancelled"], "warehouse": warehouse.code},
            headers=operator, status=201,
        ).json
        testapp.post_json("/api/warehouses", {"code": "bad code"}, headers=operator, status=400)
        run = testapp.post_json(f"/api/warehouses/{warehouse.code}/runs", {"operation": "valuation"}, headers=operator, status=202).json
        wait_for_run(testapp, run["id"])
        testapp.delete(f"/api/webhooks/{created['id']}", headers=operator, status=204)
        testapp.post("/logout", status=303)

    assert created["secret"].startswith("whsec_") and cookies
    secrets = [header["Authorization"].split()[1] for header in (operator, viewer)]
    assert_in_no_line(captured, [*secrets, "wrong-token-0123456789", created["secret"], *cookies.values()])
    access = [line for line in captured[0].json() if line["logger"] == "warehouse.access"]
    # One access line per request (the run's polls are some of them), each with its own id.
    assert len(access) >= 11 and len({line["request_id"] for line in access}) == len(access)


def test_a_database_password_reaches_no_line_when_the_database_is_down(settings: dict[str, Any], celery_app: Any, viewer: dict) -> None:
    import warehouse

    down = {**settings, "celery.embedded_worker": "false",
            "sqlalchemy.url": "postgresql+psycopg://warehouse:db-password-0123456789@127.0.0.1:1/warehouse"}
    with lines_as_deployed() as captured:
        app = TestApp(warehouse.main({}, celery_app=celery_app, **down))
        app.get("/api/warehouses/anything", headers=viewer, status=500)  # logged with its traceback

    assert any("OperationalError" in line.get("exception", "") for line in captured[0].json())
    assert_in_no_line(captured, ["db-password-0123456789"])
