"""Structured logs: the formatters (JSON lines, text with the context), the inis that name them, and
the request id tween (kept or made, bound, echoed on every answer, never carried to another request)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import structlog
from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.response import Response
from webtest import TestApp

from tests.log_capture import captured_lines, run_with_ini
from warehouse.logs import JsonFormatter, TextFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)-5.5s [%(name)s][%(threadName)s] %(message)s"


@pytest.fixture(autouse=True)
def empty_context() -> Iterator[None]:
    structlog.contextvars.clear_contextvars()
    yield
    structlog.contextvars.clear_contextvars()


# --- the formatters -------------------------------------------------------------------------------


def test_a_record_is_one_json_object_with_its_fields_and_the_bound_context() -> None:
    structlog.contextvars.bind_contextvars(run_id=3, operation="valuation", start_id=1, end_id=500)
    with captured_lines(JsonFormatter()) as captured:
        logging.getLogger("tasks.runs").info("run %s: dispatched %s chunks", 3, 20, extra={"chunks": 20})

    (line,) = captured.json()
    assert line["message"] == "run 3: dispatched 20 chunks"
    assert (line["level"], line["logger"]) == ("info", "tasks.runs")
    assert (line["run_id"], line["operation"], line["start_id"], line["end_id"], line["chunks"]) == (3, "valuation", 1, 500, 20)
    assert dt.datetime.fromisoformat(line["timestamp"]).utcoffset() == dt.timedelta(0)
    assert line["process"] > 0 and line["thread_name"] == threading.current_thread().name
    assert "exception" not in line


def test_an_exception_is_its_traceback_as_text_in_the_same_line() -> None:
    with captured_lines(JsonFormatter()) as captured:
        try:
            {}["missing"]
        except KeyError:
            logging.getLogger("warehouse.views.errors").exception("GET /api/x failed")

    (line,) = captured.json()  # one line: the traceback's newlines are escaped
    assert line["level"] == "error" and line["message"] == "GET /api/x failed"
    assert line["exception"].startswith("Traceback (most recent call last):")
    assert line["exception"].rstrip().endswith("KeyError: 'missing'")


def test_values_json_does_not_know_are_written_not_dropped() -> None:
    structlog.contextvars.bind_contextvars(total=Decimal("12.50"))
    with captured_lines(JsonFormatter()) as captured:
        logging.getLogger("tasks").warning("value %s", Decimal("1.5"), extra={"when": dt.date(2026, 1, 2)})

    (line,) = captured.json()
    assert (line["message"], line["total"], line["when"]) == ("value 1.5", "Decimal('12.50')", "datetime.date(2026, 1, 2)")


def test_the_text_formatter_appends_the_context_to_the_message_line_above_any_traceback() -> None:
    structlog.contextvars.bind_contextvars(run_id=3, start_id=1)
    with captured_lines(TextFormatter(TEXT_FORMAT)) as captured:
        try:
            raise ValueError("bad")
        except ValueError:
            logging.getLogger("tasks.runs").exception("chunk failed")
        structlog.contextvars.clear_contextvars()
        logging.getLogger("tasks.runs").warning("no context")

    lines = captured.lines()
    assert lines[0].endswith("ERROR [tasks.runs][MainThread] chunk failed [run_id=3 start_id=1]")
    assert lines[1] == "Traceback (most recent call last):" and lines[-2] == "ValueError: bad"
    assert lines[-1].endswith("WARNI [tasks.runs][MainThread] no context")


def _log_through_ini(ini: str) -> list[str]:
    """What a process logging through ``ini``'s logging sections (as pserve and the workers set
    them up) writes on stderr."""
    script = """
import logging, sys, structlog
from pyramid.paster import setup_logging
setup_logging(sys.argv[1])
structlog.contextvars.bind_contextvars(run_id=7, start_id=1, end_id=500)
logging.getLogger("tasks.runs").info("chunk line")
logging.getLogger("celery.app.trace").info("Task processSomeProducts[t-1] succeeded in 0.05s: 'done'")
logging.getLogger("sqlalchemy.pool").warning("a pool warning")
logging.getLogger("sqlalchemy.engine.Engine").info("SELECT 1")
"""
    return run_with_ini(script, ini).stderr.splitlines()


def test_production_ini_writes_json_lines_with_the_context_and_celery_s_at_info() -> None:
    lines = [json.loads(line) for line in _log_through_ini("production.ini")]

    assert [(line["logger"], line["message"]) for line in lines] == [
        ("tasks.runs", "chunk line"),
        ("celery.app.trace", "Task processSomeProducts[t-1] succeeded in 0.05s: 'done'"),
        ("sqlalchemy.pool", "a pool warning"),  # SQL statements (INFO) stay out
    ]
    assert all((line["run_id"], line["start_id"], line["end_id"]) == (7, 1, 500) for line in lines)


def test_development_ini_writes_text_with_the_context() -> None:
    lines = _log_through_ini("development.ini")

    assert len(lines) == 2 and not lines[0].startswith("{")  # celery's INFO stays out there
    assert lines[0].endswith("INFO  [tasks.runs][MainThread] chunk line [end_id=500 run_id=7 start_id=1]")
    assert lines[1].endswith("WARNI [sqlalchemy.pool][MainThread] a pool warning [end_id=500 run_id=7 start_id=1]")


# --- the request id tween -------------------------------------------------------------------------


def _ok(request: Request) -> dict[str, Any]:
    logging.getLogger("warehouse.views").info("in the view")
    if "wait" in request.GET:
        request.registry["barrier"].wait(timeout=10)  # both requests in flight at once
        logging.getLogger("warehouse.views").info("after the wait")
    return {"request_id": request.request_id, "context": structlog.contextvars.get_contextvars()}


def _boom(request: Request) -> Response:
    raise RuntimeError("a bug")


def _failed(exc: Exception, request: Request) -> Response:
    logging.getLogger("warehouse.views.errors").error("%s %s failed", request.method, request.path, exc_info=exc)
    return Response("failed", status=500)


def make_app(exception_view: bool = True) -> TestApp:
    """An app with the tween and the request guard, like warehouse's, and views that log."""
    with Configurator() as config:
        config.include("warehouse.logs")
        config.include("warehouse.request_guard")
        config.add_route("ok", "/ok")
        config.add_view(_ok, route_name="ok", renderer="json")
        config.add_route("boom", "/boom")
        config.add_view(_boom, route_name="boom")
        config.add_notfound_view(lambda request: Response("nothing here", status=404))
        if exception_view:
            config.add_exception_view(_failed, context=Exception)
        config.registry["barrier"] = threading.Barrier(2)
    return TestApp(config.make_wsgi_app())


@pytest.fixture
def app() -> TestApp:
    return make_app()


def test_a_sane_request_id_is_kept_bound_for_the_request_and_echoed(app: TestApp) -> None:
    sent = "req-42.abc_DEF:1/2=3"
    with captured_lines(JsonFormatter()) as captured:
        response = app.get("/ok", headers={"X-Request-ID": sent}, status=200)

    assert response.headers["X-Request-ID"] == sent
    assert response.json["request_id"] == sent
    assert response.json["context"] == {"request_id": sent, "method": "GET", "path": "/ok"}
    view_line, access_line = captured.json()
    assert (view_line["message"], view_line["request_id"], view_line["path"]) == ("in the view", sent, "/ok")
    assert access_line["request_id"] == sent


@pytest.mark.parametrize(
    "hostile",
    ["", "a" * 129, "two words", "caf\u00e9", "tab\there", "\x7f", '{"level": "critical"} x'],
    ids=["empty", "too-long", "space", "non-ascii", "tab", "del", "json"],
)
def test_a_hostile_request_id_is_replaced_by_a_new_one(app: TestApp, hostile: str) -> None:
    response = app.get("/ok", headers={"X-Request-ID": hostile}, status=200)

    made = response.headers["X-Request-ID"]
    assert made != hostile and len(made) == 32 and int(made, 16) >= 0
    assert response.json["request_id"] == made


def test_a_request_without_one_gets_a_new_one_each_time(app: TestApp) -> None:
    first, second = (app.get("/ok", status=200).headers["X-Request-ID"] for _ in range(2))
    assert first != second


@pytest.mark.parametrize(
    ("path", "status"),
    [("/ok", 200), ("/nowhere", 404), ("/boom", 500), ("/ok%FF", 400)],
    ids=["200", "404", "500", "guard-400"],
)
def test_every_answer_echoes_it_and_its_lines_carry_it(app: TestApp, path: str, status: int) -> None:
    with captured_lines(JsonFormatter()) as captured:
        response = app.get(path, headers={"X-Request-ID": f"id-{status}"}, status=status)

    assert response.headers["X-Request-ID"] == f"id-{status}"
    lines = captured.json()
    assert lines and all(line["request_id"] == f"id-{status}" for line in lines)
    if status == 500:
        assert lines[0]["exception"].rstrip().endswith("RuntimeError: a bug")


def test_one_access_line_per_request_without_the_query_string_or_credentials(app: TestApp) -> None:
    with captured_lines(JsonFormatter()) as captured:
        app.get("/ok?token=query-secret-1&next=/runs", headers={"Authorization": "Bearer header-secret-2",
                                                                 "Cookie": "session=cookie-secret-3"}, status=200)
        app.get("/nowhere?x=query-secret-4", status=404)

    access = [line for line in captured.json() if line["logger"] == "warehouse.access"]
    assert [(line["method"], line["route"], line["status"], line["path"]) for line in access] == [
        ("GET", "ok", 200, "/ok"), ("GET", None, 404, "/nowhere")
    ]
    assert all(line["level"] == "info" and line["duration_ms"] >= 0 for line in access)
    assert access[0]["message"].startswith("GET ok 200 in ")
    for secret in ("query-secret-1", "header-secret-2", "cookie-secret-3", "query-secret-4"):
        assert secret not in captured.text()


def test_a_path_is_written_percent_encoded_and_cut_short(app: TestApp) -> None:
    with captured_lines(TextFormatter(TEXT_FORMAT)) as captured:
        app.get("/nowhere%0Aforged%20line" + "x" * 400, status=404)

    (access,) = captured.lines()  # the encoded newline made no second line
    assert "path=/nowhere%0Aforged%20line" in access and "xxx..." in access and "x" * 300 not in access


def test_nothing_of_a_request_is_left_bound_after_it_or_seen_by_the_next(app: TestApp) -> None:
    structlog.contextvars.bind_contextvars(stale="from before")  # whatever ran on this thread earlier
    first = app.get("/ok", headers={"X-Request-ID": "first"}, status=200).json
    assert structlog.contextvars.get_contextvars() == {}
    second = app.get("/ok", status=200).json

    assert first["context"] == {"request_id": "first", "method": "GET", "path": "/ok"}
    assert second["context"]["request_id"] == second["request_id"] != "first"
    assert "stale" not in first["context"] and structlog.contextvars.get_contextvars() == {}


def test_requests_in_flight_together_on_two_threads_keep_their_own_ids(app: TestApp) -> None:
    answers: dict[str, Any] = {}

    def get(request_id: str) -> None:
        answers[request_id] = app.get("/ok?wait=1", headers={"X-Request-ID": request_id}, status=200).json

    with captured_lines(JsonFormatter()) as captured:
        threads = [threading.Thread(target=get, args=(name,), name=name) for name in ("thread-a", "thread-b")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=20)

    assert {name: answer["request_id"] for name, answer in answers.items()} == {"thread-a": "thread-a", "thread-b": "thread-b"}
    # Each thread's line after the other request had started still carries its own request's id.
    after_wait = {line["thread_name"]: line["request_id"] for line in captured.json() if line["message"] == "after the wait"}
    assert after_wait == {"thread-a": "thread-a", "thread-b": "thread-b"}


def test_an_exception_no_view_answers_is_logged_as_a_500_and_its_context_cleared() -> None:
    bare = make_app(exception_view=False)
    with captured_lines(JsonFormatter()) as captured, pytest.raises(RuntimeError, match="a bug"):
        bare.get("/boom", headers={"X-Request-ID": "escaped"})

    (access,) = captured.json()
    assert (access["status"], access["route"], access["request_id"]) == (500, "boom", "escaped")
    assert structlog.contextvars.get_contextvars() == {}
