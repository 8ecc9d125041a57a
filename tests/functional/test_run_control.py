"""Cancel, resume and failures through the HTTP API (WebTest, embedded app), and ``warehouse-run --cancel``.

Runs that no worker may touch before the request under test are written straight into the ledger
(a ``running`` run with pending chunks and no message queued for it); runs that must really happen go
through the embedded worker.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Select, select, update
from webtest import TestApp

from tests.functional.helpers import Sent, add_run, assert_error, nothing_written_or_sent
from warehouse import ledger, operations
from warehouse.models import ChunkStatus, Product, Run, RunChunk, RunStatus, Warehouse
from warehouse.operations import ChunkOutcome, ChunkWork, ItemFailure, Operation

pytestmark = pytest.mark.timeout(120)

ENDED = [RunStatus.SUCCEEDED, RunStatus.PARTIALLY_FAILED, RunStatus.FAILED, RunStatus.CANCELLED]


# --- what the web side sends -------------------------------------------------------------------------


# --- runs written straight into the ledger --------------------------------------------------------------


@dataclass
class ChunkRow:
    start_id: int
    end_id: int
    item_count: int
    status: str = ChunkStatus.PENDING
    claimed_ago: dt.timedelta | None = None  # for a running or finished chunk: when it was claimed


def add_active_run(
    db: Any, warehouse_id: int, chunks: Sequence[ChunkRow], status: str = RunStatus.RUNNING, chunk_size: int = 5
) -> int:
    """A run planned into ``chunks`` with no message in flight for it: nothing moves it but the test."""
    now = ledger.utcnow()
    finished = [chunk for chunk in chunks if chunk.status == ChunkStatus.DONE]
    with db.session() as session:
        run = Run(
            warehouse_id=warehouse_id,
            operation="valuation",
            status=status,
            chunk_size=chunk_size,
            chunks_total=len(chunks),
            chunks_done=len(finished),
            items_total=sum(chunk.item_count for chunk in chunks),
            items_done=sum(chunk.item_count for chunk in finished),
            last_item_id=max((chunk.end_id for chunk in chunks), default=None),
            started_at=now,
        )
        session.add(run)
        session.flush()
        for seq, chunk in enumerate(chunks):
            claimed = chunk.claimed_ago is not None
            session.add(
                RunChunk(
                    run_id=run.id, seq=seq, start_id=chunk.start_id, end_id=chunk.end_id, item_count=chunk.item_count,
                    status=chunk.status, attempts=1 if claimed else 0,
                    items_done=chunk.item_count if chunk.status == ChunkStatus.DONE else 0,
                    task_id=f"earlier-task-{seq}" if claimed else None, worker_hostname="gone@node" if claimed else None,
                    started_at=now - chunk.claimed_ago if claimed else None,
                    finished_at=now if chunk.status == ChunkStatus.DONE else None,
                )
            )
        session.flush()
        return run.id


def chunk_rows(ids: Sequence[int], size: int) -> list[ChunkRow]:
    """Pending chunks over ``ids`` (ascending), ``size`` items each, as planning would cut them."""
    return [ChunkRow(ids[i], ids[min(i + size, len(ids)) - 1], len(ids[i : i + size])) for i in range(0, len(ids), size)]


def fake_chunks(count: int) -> list[ChunkRow]:
    """Pending chunks over ids no product has: for runs that are cancelled before any chunk runs."""
    return [ChunkRow(10 * seq + 1, 10 * seq + 10, 10) for seq in range(count)]


def stored_chunks(db: Any, run_id: int) -> list[RunChunk]:
    return db.scalars(select(RunChunk).where(RunChunk.run_id == run_id).order_by(RunChunk.seq))


def stock_values(db: Any, ids: Iterable[int]) -> list[Any]:
    return db.scalars(select(Product.stock_value).where(Product.id.in_(list(ids))).order_by(Product.id))


@pytest.fixture
def warehouse(db: Any) -> Warehouse:
    return db.add_warehouse()


# --- POST /api/runs/{id}/cancel --------------------------------------------------------------------------


def test_cancel_a_pending_run_cancels_it_at_once_and_sends_nothing(
    testapp: TestApp, operator: dict, db: Any, sent: list[Sent], warehouse: Warehouse
) -> None:
    run_id = add_run(db, warehouse.id, RunStatus.PENDING)

    run = testapp.post_json(f"/api/runs/{run_id}/cancel", None, headers=operator, status=202).json

    assert (run["id"], run["status"], run["warehouse"]) == (run_id, "cancelled", warehouse.code)
    assert run["cancel_requested_at"] and run["finished_at"]
    assert sent == []
    assert db.scalar(select(Run.status).where(Run.id == run_id)) == RunStatus.CANCELLED


def test_cancel_a_running_run_skips_every_chunk_that_has_not_started(
    testapp: TestApp, operator: dict, viewer: dict, db: Any, sent: list[Sent], warehouse: Warehouse, wait_for_run: Any
) -> None:
    run_id = add_active_run(db, warehouse.id, fake_chunks(3))

    run = testapp.post_json(f"/api/runs/{run_id}/cancel", None, headers=operator, status=202).json

    assert run["status"] == "cancelling"
    assert run["cancel_requested_at"] and run["finished_at"] is None
    # The callback goes out once the cancel is committed, so it finds the run cancelling.
    assert [(call.name, call.args) for call in sent] == [("processFinished", [[], run_id])]
    assert sent[0].run_status_seen_by_another_connection == "cancelling"

    ended = wait_for_run(testapp, run_id)
    assert ended["status"] == "cancelled"
    assert ended["chunks"] == {"total": 3, "done": 0, "failed": 0, "skipped": 3, "remaining": 0}
    assert [chunk.status for chunk in stored_chunks(db, run_id)] == [ChunkStatus.SKIPPED] * 3
    assert ended["finished_at"] and ended["result"]["items_processed"] == 0

    again = testapp.post_json(f"/api/runs/{run_id}/cancel", None, headers=operator, status=409)
    assert_error(again, 409, "run_ended", field="id")


@pytest.mark.parametrize("status", ENDED)
def test_cancel_an_ended_run_is_409_and_changes_nothing(
    status: str, testapp: TestApp, operator: dict, db: Any, sent: list[Sent], warehouse: Warehouse
) -> None:
    run_id = add_run(db, warehouse.id, status)

    with nothing_written_or_sent(db, sent):
        response = testapp.post_json(f"/api/runs/{run_id}/cancel", None, headers=operator, status=409)

    error = assert_error(response, 409, "run_ended", field="id")
    assert error["details"]["status"] == status
    run = db.scalar(select(Run).where(Run.id == run_id))
    assert run.status == status and run.cancel_requested_at is None


@pytest.mark.parametrize("action", ["cancel", "resume"])
def test_cancel_or_resume_an_unknown_run_is_404(
    action: str, testapp: TestApp, operator: dict, db: Any, sent: list[Sent]
) -> None:
    with nothing_written_or_sent(db, sent):
        response = testapp.post_json(f"/api/runs/2147483647/{action}", None, headers=operator, status=404)

    assert_error(response, 404, "run_not_found", field="id")


@pytest.mark.parametrize("action", ["cancel", "resume"])
def test_a_viewer_may_not_cancel_or_resume(
    action: str, testapp: TestApp, viewer: dict, db: Any, sent: list[Sent], warehouse: Warehouse
) -> None:
    run_id = add_run(db, warehouse.id, RunStatus.PENDING)
    try:
        with nothing_written_or_sent(db, sent):
            response = testapp.post_json(f"/api/runs/{run_id}/{action}", None, headers=viewer, status=403)
    finally:
        db.execute(update(Run).where(Run.id == run_id).values(status=RunStatus.CANCELLED))

    assert_error(response, 403, "forbidden")


# --- POST /api/runs/{id}/resume ---------------------------------------------------------------------------


def test_resume_a_pending_run_sends_its_first_task_again(
    testapp: TestApp, operator: dict, db: Any, sent: list[Sent], warehouse: Warehouse, wait_for_run: Any
) -> None:
    db.add_products(warehouse.id, 3)
    run_id = add_run(db, warehouse.id, RunStatus.PENDING)

    run = testapp.post_json(f"/api/runs/{run_id}/resume", None, headers=operator, status=202).json

    assert run["status"] == "pending"
    assert run["resumed"] == {"restarted": True, "chunks_sent": 0}
    assert [(call.name, call.args) for call in sent] == [("processWholeWarehouse", [run_id])]
    assert sent[0].run_status_seen_by_another_connection == "pending"
    ended = wait_for_run(testapp, run_id)
    assert ended["status"] == "succeeded" and ended["items"]["done"] == 3


def test_resume_a_running_run_sends_its_pending_chunks_and_it_completes(
    testapp: TestApp, operator: dict, db: Any, sent: list[Sent], warehouse: Warehouse, wait_for_run: Any
) -> None:
    ids = db.add_products(warehouse.id, 12)
    run_id = add_active_run(db, warehouse.id, chunk_rows(ids, 5))

    run = testapp.post_json(f"/api/runs/{run_id}/resume", None, headers=operator, status=202).json

    assert run["status"] == "running"
    assert run["resumed"] == {"restarted": False, "chunks_sent": 3}
    assert sorted(call.args[1] for call in sent if call.name == "processSomeProducts") == [ids[0], ids[5], ids[10]]
    assert all(call.run_status_seen_by_another_connection == "running" for call in sent)
    ended = wait_for_run(testapp, run_id)
    assert ended["status"] == "succeeded"
    assert ended["chunks"] == {"total": 3, "done": 3, "failed": 0, "skipped": 0, "remaining": 0}
    assert ended["items"] == {"total": 12, "done": 12, "failed": 0, "remaining": 0}
    assert None not in stock_values(db, ids)


def test_resume_re_sends_abandoned_chunks_but_not_finished_ones(
    testapp: TestApp, operator: dict, db: Any, warehouse: Warehouse, wait_for_run: Any
) -> None:
    ids = db.add_products(warehouse.id, 12)
    done, abandoned, pending = chunk_rows(ids, 5)
    done.status, done.claimed_ago = ChunkStatus.DONE, dt.timedelta(hours=1)
    abandoned.status, abandoned.claimed_ago = ChunkStatus.RUNNING, dt.timedelta(hours=1)
    run_id = add_active_run(db, warehouse.id, [done, abandoned, pending])

    run = testapp.post_json(f"/api/runs/{run_id}/resume", None, headers=operator, status=202).json

    assert run["resumed"] == {"restarted": False, "chunks_sent": 2}
    ended = wait_for_run(testapp, run_id)
    assert ended["status"] == "succeeded"
    assert ended["items"] == {"total": 12, "done": 12, "failed": 0, "remaining": 0}
    chunks = stored_chunks(db, run_id)
    assert [(chunk.status, chunk.attempts) for chunk in chunks] == [
        (ChunkStatus.DONE, 1), (ChunkStatus.DONE, 2), (ChunkStatus.DONE, 1),
    ]
    assert chunks[1].task_id != "earlier-task-1"
    # The chunk recorded as done was not done again (this test never valued its products).
    assert stock_values(db, ids[:5]) == [None] * 5
    assert None not in stock_values(db, ids[5:])


def test_resume_of_a_cancelling_run_is_409_for_a_cancel_is_final(
    testapp: TestApp, operator: dict, db: Any, sent: list[Sent], warehouse: Warehouse
) -> None:
    run_id = add_active_run(db, warehouse.id, fake_chunks(2), status=RunStatus.CANCELLING)

    with nothing_written_or_sent(db, sent):
        response = testapp.post_json(f"/api/runs/{run_id}/resume", None, headers=operator, status=409)

    error = assert_error(response, 409, "run_cancelling", field="id")
    assert error["message"] == f"run {run_id} is being cancelled, and a cancel is final: it ends by itself"
    assert error["details"]["status"] == "cancelling"


@pytest.mark.parametrize("status", ENDED)
def test_resume_an_ended_run_is_409_and_changes_nothing(
    status: str, testapp: TestApp, operator: dict, db: Any, sent: list[Sent], warehouse: Warehouse
) -> None:
    run_id = add_run(db, warehouse.id, status)

    with nothing_written_or_sent(db, sent):
        response = testapp.post_json(f"/api/runs/{run_id}/resume", None, headers=operator, status=409)

    error = assert_error(response, 409, "run_ended", field="id")
    assert error["details"]["status"] == status


# --- GET /api/runs/{id}/failures ---------------------------------------------------------------------------


class FlakyProducts(Operation):
    """Covers the warehouse's products: fails the items in ``failing``, and raises for a chunk that
    holds any item in ``explode`` (a bug, not a transient error: the chunk fails for good)."""

    name = "test_flaky_products"
    description = "test probe: some items fail, some chunks raise"

    def __init__(self) -> None:
        self.failing: set[int] = set()
        self.explode: set[int] = set()

    def item_ids(self, warehouse_id: int, today: dt.date) -> Select[tuple[int]]:
        return select(Product.id).where(Product.warehouse_id == warehouse_id)

    def process_chunk(self, work: ChunkWork) -> ChunkOutcome:
        ids = work.session.scalars(
            select(Product.id).where(Product.warehouse_id == work.warehouse_id, self.in_chunk(Product.id, work))
        ).all()
        if self.explode.intersection(ids):
            raise ValueError(f"boom in chunk {work.start_id}-{work.end_id}")
        failures = [ItemFailure(item_id, f"item {item_id} refused") for item_id in ids if item_id in self.failing]
        return ChunkOutcome(items_done=len(ids) - len(failures), items_failed=len(failures), failures=failures)

    def summarise(self, summaries: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        return {}


@pytest.fixture
def flaky() -> Iterator[FlakyProducts]:
    probe = operations.register(FlakyProducts())
    try:
        yield probe
    finally:
        operations._registry.pop(probe.name, None)


def run_flaky(testapp: TestApp, operator: dict, code: str, tolerated: float, chunk_size: int = 10) -> int:
    return testapp.post_json(
        f"/api/warehouses/{code}/runs",
        {"operation": FlakyProducts.name, "chunk_size": chunk_size, "tolerated_failure_percent": tolerated},
        headers=operator,
        status=202,
    ).json["id"]


@pytest.fixture
def partially_failed(
    testapp: TestApp, operator: dict, db: Any, warehouse: Warehouse, flaky: FlakyProducts, wait_for_run: Any
) -> tuple[int, set[int]]:
    """A run that ended partially_failed with five failed items: (run id, failed item ids)."""
    ids = db.add_products(warehouse.id, 25)
    flaky.failing = set(ids[4::5])
    run = wait_for_run(testapp, run_flaky(testapp, operator, warehouse.code, tolerated=50))
    assert run["status"] == "partially_failed"
    assert run["items"] == {"total": 25, "done": 20, "failed": 5, "remaining": 0}
    return run["id"], flaky.failing


def test_failures_lists_every_failed_item_with_its_error(
    testapp: TestApp, viewer: dict, db: Any, partially_failed: tuple[int, set[int]]
) -> None:
    run_id, failing = partially_failed

    body = testapp.get(f"/api/runs/{run_id}/failures", headers=viewer, status=200).json

    assert body["run_id"] == run_id and body["chunks"] == [] and body["next_cursor"] is None
    chunk_ids = {chunk.id for chunk in stored_chunks(db, run_id)}
    assert sorted(item["item_id"] for item in body["items"]) == sorted(failing)
    for item in body["items"]:
        assert set(item) == {"item_id", "item", "chunk_id", "error"}
        assert item["item"] is None  # the probe operation names no item_key: its items go by id alone
        assert item["error"] == f"item {item['item_id']} refused"
        assert item["chunk_id"] in chunk_ids


def test_failures_pages_walk_every_item_once(
    testapp: TestApp, viewer: dict, partially_failed: tuple[int, set[int]]
) -> None:
    run_id, failing = partially_failed
    url = f"/api/runs/{run_id}/failures"

    pages = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        page = testapp.get(url, params=params, headers=viewer, status=200).json
        pages.append(page)
        if page["next_cursor"] is None:
            break
        assert len(pages) < 10, "the cursor never ends"
        params = {"limit": 2, "cursor": page["next_cursor"]}

    assert [len(page["items"]) for page in pages] == [2, 2, 1]
    walked = [item["item_id"] for page in pages for item in page["items"]]
    assert sorted(walked) == sorted(failing) and len(set(walked)) == len(walked)
    everything = testapp.get(url, params={"limit": 1000}, headers=viewer).json
    assert [item["item_id"] for item in everything["items"]] == walked  # the same order, one page


@pytest.mark.parametrize("cursor", ["not-a-cursor", "YWZ0ZXI6", "YmVmb3JlOjU", "YWZ0ZXI6LTE", "!!!", "%%%"])
def test_failures_with_a_bad_cursor_is_400_naming_cursor(
    cursor: str, testapp: TestApp, viewer: dict, db: Any, warehouse: Warehouse
) -> None:
    # "after:", "before:5", "after:-1", and strings that are no base64 at all.
    run_id = add_run(db, warehouse.id, RunStatus.SUCCEEDED)

    response = testapp.get(f"/api/runs/{run_id}/failures", params={"cursor": cursor}, headers=viewer, status=400)

    assert_error(response, 400, field="cursor")


@pytest.mark.parametrize("limit", ["0", "1001", "-1", "x"])
def test_failures_with_a_limit_out_of_range_is_400(
    limit: str, testapp: TestApp, viewer: dict, db: Any, warehouse: Warehouse
) -> None:
    run_id = add_run(db, warehouse.id, RunStatus.SUCCEEDED)

    response = testapp.get(f"/api/runs/{run_id}/failures", params={"limit": limit}, headers=viewer, status=400)

    assert_error(response, 400, "invalid_request", field="limit")


def test_failures_of_an_unknown_run_is_404(testapp: TestApp, viewer: dict) -> None:
    response = testapp.get("/api/runs/2147483647/failures", headers=viewer, status=404)

    assert_error(response, 404, "run_not_found", field="id")


@pytest.mark.parametrize(("tolerated", "status"), [(0, "failed"), (50, "partially_failed")])
def test_a_chunk_that_fails_for_good_is_listed_with_its_error(
    tolerated: float,
    status: str,
    testapp: TestApp,
    operator: dict,
    viewer: dict,
    db: Any,
    warehouse: Warehouse,
    flaky: FlakyProducts,
    wait_for_run: Any,
) -> None:
    ids = db.add_products(warehouse.id, 15)
    flaky.explode = {ids[7]}

    run = wait_for_run(testapp, run_flaky(testapp, operator, warehouse.code, tolerated=tolerated, chunk_size=5))
    body = testapp.get(f"/api/runs/{run['id']}/failures", headers=viewer, status=200).json

    assert run["status"] == status
    assert run["chunks"]["failed"] == 1 and run["items"]["failed"] == 5
    (chunk,) = body["chunks"]
    assert (chunk["start_id"], chunk["end_id"], chunk["attempts"]) == (ids[5], ids[9], 1)
    assert chunk["error"] == f"ValueError: boom in chunk {ids[5]}-{ids[9]}"
    assert chunk["worker_hostname"] and chunk["finished_at"]
    assert body["items"] == [] and body["next_cursor"] is None
    if tolerated:
        assert run["chunks"]["done"] == 2


# --- warehouse-run INI --cancel RUN_ID ---------------------------------------------------------------------

CLI_INI = """\
[app:main]
use = egg:warehouse
sqlalchemy.url = sqlite:///%(here)s/cancel.sqlite
celery.broker_url = memory://localhost/
celery.result_backend = embedded://
celery.embedded_worker = true
warehouse.tokens = operator:op viewer:vw
"""


@pytest.fixture(scope="module")
def cli_ini(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from warehouse.migrate import upgrade

    ini = tmp_path_factory.mktemp("cancel-cli") / "embedded.ini"
    ini.write_text(CLI_INI)
    upgrade({"sqlalchemy.url": f"sqlite:///{ini.parent / 'cancel.sqlite'}"})
    return ini


@pytest.fixture
def cli_db(cli_ini: Path, db: Any) -> Iterator[Any]:
    """The ``db`` helpers on the command's own database."""
    from warehouse.db import make_engine, make_session_factory

    engine = make_engine({"sqlalchemy.url": f"sqlite:///{cli_ini.parent / 'cancel.sqlite'}"})
    yield type(db)(make_session_factory(engine))
    engine.dispose()


def warehouse_run(ini: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "warehouse.scripts.run", str(ini), *args],
        capture_output=True, text=True, timeout=60, check=False,
    )


def test_cli_cancels_a_pending_run(cli_ini: Path, cli_db: Any) -> None:
    warehouse = cli_db.add_warehouse()
    run_id = add_run(cli_db, warehouse.id, RunStatus.PENDING)

    done = warehouse_run(cli_ini, "--cancel", str(run_id))

    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert (run["id"], run["status"], run["warehouse"]) == (run_id, "cancelled", warehouse.code)
    assert run["cancel_requested_at"] and run["finished_at"]
    assert cli_db.scalar(select(Run.status).where(Run.id == run_id)) == RunStatus.CANCELLED


def test_cli_cancel_of_a_running_run_leaves_it_cancelling(cli_ini: Path, cli_db: Any) -> None:
    warehouse = cli_db.add_warehouse()
    run_id = add_active_run(cli_db, warehouse.id, fake_chunks(2))

    done = warehouse_run(cli_ini, "--cancel", str(run_id))

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "cancelling"
    assert cli_db.scalar(select(Run.status).where(Run.id == run_id)) == RunStatus.CANCELLING


def test_cli_cancel_of_an_ended_run_exits_2(cli_ini: Path, cli_db: Any) -> None:
    status = RunStatus.SUCCEEDED
    warehouse = cli_db.add_warehouse()
    run_id = add_run(cli_db, warehouse.id, status)

    failed = warehouse_run(cli_ini, "--cancel", str(run_id))

    assert failed.returncode == 2
    assert f"run {run_id} has ended ({status})" in failed.stderr
    assert failed.stdout == ""
    assert cli_db.scalar(select(Run.cancel_requested_at).where(Run.id == run_id)) is None


def test_cli_cancel_of_an_unknown_run_exits_2(cli_ini: Path) -> None:
    failed = warehouse_run(cli_ini, "--cancel", "999999")

    assert failed.returncode == 2
    assert "no run with id 999999" in failed.stderr
    assert failed.stdout == ""


def test_cli_cancel_takes_no_code_or_operation(cli_ini: Path, cli_db: Any) -> None:
    warehouse = cli_db.add_warehouse()
    run_id = add_run(cli_db, warehouse.id, RunStatus.PENDING)

    failed = warehouse_run(cli_ini, warehouse.code, "valuation", "--cancel", str(run_id))

    assert failed.returncode == 2
    assert "--cancel RUN_ID takes no CODE or OPERATION" in failed.stderr
    assert failed.stdout == ""
    assert cli_db.scalar(select(Run.status).where(Run.id == run_id)) == RunStatus.PENDING


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["somewhere", "--cancel", "1"], "--cancel RUN_ID takes no CODE or OPERATION"),
        # argparse has matched the optional CODE and OPERATION (as absent) before it reaches --cancel.
        (["--cancel", "1", "somewhere"], "unrecognized arguments: somewhere"),
        (["--cancel", "one"], "--cancel: invalid int value"),
        ([], "CODE and OPERATION are required (or --cancel RUN_ID, or --redrive RUN_ID)"),
        (["somewhere", "--redrive", "1"], "--redrive RUN_ID takes no CODE or OPERATION"),
        (["--redrive", "1", "--cancel", "2"], "--cancel and --redrive cannot be given together"),
        (["--redrive", "one"], "--redrive: invalid int value"),
    ],
)
def test_cli_cancel_and_redrive_arguments_are_checked_before_anything_runs(
    args: list[str], message: str, cli_ini: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # In-process: argparse exits before the command reads its ini file or makes a Celery app.
    from warehouse.scripts.run import main

    with pytest.raises(SystemExit) as exited:
        main([str(cli_ini), *args])

    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == ""
