"""Schemathesis against the live app and the OpenAPI document it serves: no 5xx, no answer the
document does not allow.

The document is loaded from the app itself (``GET /api/openapi.json``), and every operation is
called through the session's WSGI app (SQLite, in-process broker, embedded worker) with the
operator's token: positive cases (data the document allows) and negative ones (data it forbids).
Each answer must not be a server error and must conform to the document: a documented status
code, its content type, and a body of its schema.

Random warehouse codes and run ids would meet 404s almost always, so about two cases in three have
their path parameters replaced by real ones: warehouses with products, shipments and runs
(succeeded, failed with failures listed, pending) made before fuzzing. Fuzzed runs start for real on
the embedded worker; every run of the fuzz warehouses is cancelled and waited for at the end, and
cancel and resume only ever reach runs of this test, so no other test's runs are touched.

Every failure is collected rather than raised at once, so one bug does not hide the operations
after it, and the count of requests the app served is asserted, not merely asked for.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pyramid.router import Router
from schemathesis import GenerationMode
from schemathesis.core import NOT_SET
from schemathesis.checks import not_a_server_error
from schemathesis.errors import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import delete, func, select
from webtest import TestApp

from tests.conftest import OPERATOR_TOKEN, TERMINAL_RUN_STATUSES, bearer, wait_for_run
from tests.functional.helpers import SCHEMA_SPEAK
from warehouse.models import (
    ChunkStatus, Run, RunChunk, RunItemFailure, RunStatus, Schedule, Warehouse, WebhookSubscription,
)

pytestmark = pytest.mark.timeout(600)

OPERATOR = bearer(OPERATOR_TOKEN)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

# Cases per operation and generation mode. Eleven operations take parameters or bodies: 11 x (60 + 40)
# = 1,100 cases (about 20 s), well over the 500 asked for even where Hypothesis runs out of distinct
# cases. GET /api/health has nothing to vary and waits a second for workers to answer each ping.
POSITIVE_EXAMPLES = 60
NEGATIVE_EXAMPLES = 40
HEALTH_EXAMPLES = 2
MIN_REQUESTS = 500
OPERATIONS = ("valuation", "shipping_labels")


@schemathesis.serializer("text/csv")
def csv_body(ctx: Any, value: Any) -> bytes:
    """A list of objects as CSV with a header line (the upload routes take it); anything else as
    its JSON text, which the app must refuse as a CSV file."""
    if not isinstance(value, list) or not all(isinstance(row, dict) for row in value):
        return json.dumps(value).encode()
    columns = list(dict.fromkeys(name for row in value for name in row))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in value:
        writer.writerow([_cell(row[name]) if name in row else "" for name in columns])
    return out.getvalue().encode()


def _cell(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value)


class CountingApp:
    """The app, counting the requests it serves: what the assertion on the count reads."""

    def __init__(self, app: Router) -> None:
        self.app = app
        self.requests = 0

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        self.requests += 1
        return self.app(environ, start_response)


@dataclass
class FuzzData:
    """Real rows for path parameters to hit: codes of warehouses and ids of runs of this test only."""

    codes: list[str]
    run_ids: list[int]
    max_run_id_before: int


@dataclass
class Finding:
    """One kind of failure (operation, check, status), with the first request that showed it."""

    operation: str
    mode: str
    title: str
    status: int
    reproduce: str
    count: int = 1


def _make_fuzz_data(testapp: TestApp, db: Any) -> FuzzData:
    max_before = db.scalar(select(func.coalesce(func.max(Run.id), 0)))
    suffix = uuid.uuid4().hex[:8]
    stocked, empty = f"fuzz-stock-{suffix}", f"fuzz-empty-{suffix}"
    for code in (stocked, empty):
        testapp.post_json("/api/warehouses", {"code": code, "name": f"Fuzz {code}"}, headers=OPERATOR, status=201)
    products = [
        {"sku": f"FZ-{i:03d}", "name": f"Fuzz product {i}", "qty_on_hand": i % 7, "unit_cost": i / 4, "reorder_point": 3}
        for i in range(12)
    ]
    testapp.post_json(f"/api/warehouses/{stocked}/products", products, headers=OPERATOR, status=200)
    today = dt.date.today()
    shipments = [
        {
            "reference": f"FZ-SHP-{suffix}-{i}",
            "ship_to": f"{i} Fuzz Lane",
            "weight_grams": 100 + i,
            "shipping_date": (today + dt.timedelta(days=i)).isoformat(),
        }
        for i in range(5)
    ]
    testapp.post_json(f"/api/warehouses/{stocked}/shipments", shipments, headers=OPERATOR, status=200)

    run_ids = []
    for operation in OPERATIONS:
        run = testapp.post_json(
            f"/api/warehouses/{stocked}/runs", {"operation": operation, "chunk_size": 4}, headers=OPERATOR, status=202
        ).json
        assert wait_for_run(testapp, run["id"])["status"] == "succeeded"
        run_ids.append(run["id"])
    run_ids.append(_add_failed_run(db, stocked))
    run_ids.append(_add_pending_run(db, empty))
    return FuzzData(codes=[stocked, empty], run_ids=run_ids, max_run_id_before=max_before)


def _warehouse_id(db: Any, code: str) -> int:
    return db.scalar(select(Warehouse.id).where(Warehouse.code == code))


def _add_failed_run(db: Any, code: str) -> int:
    """A run that failed: one failed chunk, one done with failed items (what /failures lists)."""
    now = dt.datetime.now(dt.timezone.utc)
    with db.session() as session:
        run = Run(
            warehouse_id=_warehouse_id(db, code), operation="valuation", status=RunStatus.FAILED, chunk_size=2,
            chunks_total=2, chunks_done=1, chunks_failed=1, items_total=4, items_done=1, items_failed=3,
            started_at=now, finished_at=now, error="1 of 2 chunks failed",
        )
        session.add(run)
        session.flush()
        failed = RunChunk(
            run_id=run.id, seq=0, start_id=1, end_id=2, item_count=2, status=ChunkStatus.FAILED, attempts=3,
            error="OperationalError: database is locked", worker_hostname="embedded@fuzz", finished_at=now,
        )
        done = RunChunk(run_id=run.id, seq=1, start_id=3, end_id=4, item_count=2, status=ChunkStatus.DONE, attempts=1,
                        items_done=1, items_failed=1, finished_at=now)
        session.add_all([failed, done])
        session.flush()
        session.add_all(
            RunItemFailure(run_id=run.id, chunk_id=done.id, item_id=item, error=f"item {item}: no unit cost")
            for item in (3, 4, 5)
        )
        return run.id


def _add_pending_run(db: Any, code: str, operation: str = "valuation") -> int:
    """A run whose first task never went out: resume starts it, cancel ends it."""
    with db.session() as session:
        run = Run(warehouse_id=_warehouse_id(db, code), operation=operation, status=RunStatus.PENDING, chunk_size=500)
        session.add(run)
        session.flush()
        return run.id


def _add_idle_runs(db: Any, data: FuzzData) -> None:
    """Fresh pending runs, on a warehouse of their own, for the next operation to find active (the
    fuzzing ends most runs within a few cases, and cancel or resume of an ended run is only a 409)."""
    code = db.add_warehouse(code=f"fuzz-idle-{uuid.uuid4().hex[:12]}").code
    data.run_ids[:0] = [_add_pending_run(db, code, operation) for operation in OPERATIONS]


@pytest.fixture
def fuzz_data(testapp: TestApp, db: Any) -> Iterator[FuzzData]:
    webhooks_before = db.scalar(select(func.coalesce(func.max(WebhookSubscription.id), 0)))
    data = _make_fuzz_data(testapp, db)
    yield data
    _end_fuzz_runs(testapp, db, data)
    # Webhooks the fuzzing subscribed would be told of the runs of the tests after this one.
    db.execute(delete(WebhookSubscription).where(WebhookSubscription.id > webhooks_before))
    # Schedules the fuzzing made would go on ticking for the tests after this one.
    db.execute(delete(Schedule).where(Schedule.warehouse_id.in_(select(Warehouse.id).where(Warehouse.code.in_(data.codes)))))


def _end_fuzz_runs(testapp: TestApp, db: Any, data: FuzzData) -> None:
    """Cancel every run the fuzzing may have started or resumed, and wait for each to end, so that
    nothing of it is left for the embedded worker when the next test starts."""
    ids = set(data.run_ids) | set(db.scalars(select(Run.id).where(Run.id > data.max_run_id_before)))
    active = db.scalars(select(Run.id).where(Run.id.in_(ids), Run.status.not_in(TERMINAL_RUN_STATUSES)))
    for run_id in active:
        testapp.post(f"/api/runs/{run_id}/cancel", headers=OPERATOR, status="*")
    for run_id in active:
        wait_for_run(testapp, run_id, timeout=60)


def _aim_at_real_rows(case: Any, data: FuzzData, real_run_ids: list[int], real: bool, pick: int) -> None:
    """If ``real``: a real warehouse code, a real run id, a real operation to start. Whatever
    ``real``, cancel and resume never reach a run of another test (one the database held before this
    test started)."""
    parameters = dict(case.path_parameters or {})
    if "code" in parameters and real:
        parameters["code"] = data.codes[pick % len(data.codes)]
    if "id" in parameters and (real or (case.method.upper() == "POST" and _other_tests_run(parameters["id"], data))):
        parameters["id"] = real_run_ids[pick % len(real_run_ids)]
    if parameters != (case.path_parameters or {}):
        case.path_parameters = parameters
    if real and isinstance(case.body, dict) and isinstance(case.body.get("operation"), str):
        case.body = {**case.body, "operation": OPERATIONS[pick % len(OPERATIONS)]}


def _other_tests_run(value: Any, data: FuzzData) -> bool:
    return isinstance(value, int) and 0 < value <= data.max_run_id_before


def _describe(case: Any) -> str:
    """The request, to reproduce it (the operator's token aside), its body as a Python literal: the
    interesting ones are often not text."""
    parts = [f"{case.method.upper()} {case.formatted_path}"]
    if case.query:
        parts.append(f"query={case.query!r}")
    headers = {name: value for name, value in (case.headers or {}).items() if name.lower() != "authorization"}
    if headers:
        parts.append(f"headers={headers!r}")
    if case.media_type:
        parts.append(f"Content-Type: {case.media_type}")
    if case.body is not NOT_SET:
        parts.append(f"body={case.body!r}"[:500])
    return " ".join(parts)


def schema_speak(response: Any) -> str | None:
    """The regular expression or schema keyword an error answer's messages show, if any."""
    if response.status_code < 400 or "json" not in response.headers.get("Content-Type", ""):
        return None
    error = (response.json() or {}).get("error") or {}
    details = error.get("details") if isinstance(error.get("details"), dict) else {}
    for message in [error.get("message", ""), *(item.get("message", "") for item in details.get("errors", []))]:
        found = SCHEMA_SPEAK.search(str(message))
        if found:
            return found.group(0)
    return None


class Fuzzer:
    """Runs each operation's cases through the app and collects what breaks the document."""

    def __init__(self, app: CountingApp, db: Any, data: FuzzData) -> None:
        self.app = app
        self.db = db
        self.data = data
        self.findings: dict[tuple[str, str, int], Finding] = {}
        self.statuses: Counter[tuple[str, str, int]] = Counter()

    def real_run_ids(self) -> list[int]:
        """Runs of this test: the fixture's, newest first, then those the fuzzing started."""
        started = self.db.scalars(select(Run.id).where(Run.id > self.data.max_run_id_before).order_by(Run.id.desc()))
        return list(dict.fromkeys(self.data.run_ids + started))

    def run(self, operation: Any, mode: GenerationMode, examples: int) -> None:
        operation.app = self.app

        @settings(
            max_examples=examples,
            derandomize=True,  # the same cases on every run: CI must not pass or fail by luck
            database=None,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],  # failures are collected, not raised: nothing to shrink
            suppress_health_check=list(HealthCheck),
        )
        @given(
            case=operation.as_strategy(generation_mode=mode),
            real=st.integers(0, 2).map(lambda n: n < 2),  # two cases in three hit real rows
            pick=st.integers(0, 255),
        )
        def fuzz(case: Any, real: bool, pick: int) -> None:
            _aim_at_real_rows(case, self.data, self.real_run_ids(), real, pick)
            # The operator's token on every case, negative ones included: they test the data, not the auth.
            # Plain bytes asked for: over WSGI, schemathesis sends requests' "Accept-Encoding: gzip" but
            # never decodes what comes back (gzip has tests of its own, in test_run_progress.py).
            case.headers = {**(case.headers or {}), **OPERATOR, "Accept-Encoding": "identity"}
            response = case.call()
            self.statuses[(operation.label, case.media_type or "", response.status_code)] += 1
            try:
                case.validate_response(response, checks=CHECKS)
            except FailureGroup as group:  # one or more checks failed
                for failure in group.exceptions:
                    self.record(operation.label, mode, f"{failure.code} {failure.title}", case, response)
            speak = schema_speak(response)
            if speak:
                self.record(operation.label, mode, f"an error message speaks schema ({speak!r})", case, response)

        fuzz()

    def record(self, label: str, mode: GenerationMode, title: str, case: Any, response: Any) -> None:
        key = (label, title, response.status_code)
        if key in self.findings:
            self.findings[key].count += 1
            return
        reproduce = f"{_describe(case)}\n    -> {response.status_code} {response.text[:300]}"
        self.findings[key] = Finding(label, mode.value, title, response.status_code, reproduce)

    def report(self) -> str:
        return "\n\n".join(
            f"{finding.operation} ({finding.mode}, {finding.count}x): {finding.title} [{finding.status}]\n"
            f"    {finding.reproduce}"
            for finding in self.findings.values()
        )


def test_every_operation_answers_within_the_document_without_server_errors(
    wsgi_app: Router, db: Any, fuzz_data: FuzzData
) -> None:
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", wsgi_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 27, [operation.label for operation in operations]
    fuzzer = Fuzzer(CountingApp(wsgi_app), db, fuzz_data)
    started = time.monotonic()

    for operation in operations:
        if operation.label == "GET /api/health":  # nothing to vary, and each answer waits a second for pings
            fuzzer.run(operation, GenerationMode.POSITIVE, HEALTH_EXAMPLES)
            continue
        for mode, examples in ((GenerationMode.POSITIVE, POSITIVE_EXAMPLES), (GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES)):
            if "{id}" in operation.path:
                _add_idle_runs(db, fuzz_data)
            fuzzer.run(operation, mode, examples)

    requests = fuzzer.app.requests
    print(f"\nschemathesis: {requests} requests to {len(operations)} operations in {time.monotonic() - started:.1f} s")
    for (label, media_type, status), count in sorted(fuzzer.statuses.items()):
        print(f"  {label:38} {media_type:17} {status}: {count}")
    assert requests >= MIN_REQUESTS
    assert {label for label, _, _ in fuzzer.statuses} == {operation.label for operation in operations}
    assert not fuzzer.findings, f"{len(fuzzer.findings)} kinds of failure in {requests} requests:\n\n{fuzzer.report()}"
