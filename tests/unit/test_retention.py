"""Retention (warehouse/ledger/retention.py, tasks/retention.py, warehouse-purge) on a SQLite database of
its own, since a purge looks at every run there is: what is old goes, and nothing else; in batches;
a second pass does nothing; a pass cut short is finished by the next; a purged run is never redriven;
nonsense settings are refused at start-up.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

import tasks.retention
from tasks.retention import purge_run_details
from tests.sqlite_databases import own_sqlite_database
from warehouse import ledger
from warehouse.ledger import retention
from warehouse.ledger.retention import RetentionPolicy, retention_policy
from warehouse.models import ChunkStatus, Run, RunChunk, RunItemFailure, RunStatus, Warehouse
from warehouse.scripts import purge

pytestmark = pytest.mark.timeout(60)

DAY = dt.timedelta(days=1)
ENDED = [RunStatus.SUCCEEDED, RunStatus.PARTIALLY_FAILED, RunStatus.FAILED, RunStatus.CANCELLED]
ACTIVE = [RunStatus.PENDING, RunStatus.RUNNING, RunStatus.CANCELLING]
INI = """\
[app:main]
use = egg:warehouse
sqlalchemy.url = sqlite:///%(here)s/retention.sqlite
celery.broker_url = memory://localhost/
celery.result_backend = embedded://
warehouse.tokens = operator:op viewer:vw
"""


@pytest.fixture(scope="module")
def retention_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("retention")


@pytest.fixture(scope="module")
def retention_factory(retention_dir: Path, make_settings: Any) -> Iterator[sessionmaker[Session]]:
    with own_sqlite_database(retention_dir / "retention.sqlite", make_settings) as factory:
        yield factory


@pytest.fixture
def rdb(retention_factory: sessionmaker[Session], db: Any) -> Any:
    """The ``db`` helpers on the retention tests' database, emptied of runs first."""
    fresh = type(db)(retention_factory)
    fresh.execute(delete(Warehouse))  # runs, chunks and failures go with it
    return fresh


def add_run(db: Any, status: str, ended_ago: dt.timedelta | None, chunks: int = 3, failures_per_chunk: int = 2) -> int:
    """A run of ``chunks`` chunks of ten items, each with ``failures_per_chunk`` item failures, that
    ended ``ended_ago`` (None: has not ended), and was created long before either way."""
    warehouse = db.add_warehouse()
    now = ledger.utcnow()
    failed = chunks * failures_per_chunk
    with db.session() as session:
        run = Run(
            warehouse_id=warehouse.id, operation="valuation", status=status, chunk_size=10,
            created_at=now - 400 * DAY, started_at=now - 400 * DAY,
            finished_at=None if ended_ago is None else now - ended_ago, updated_at=now - (ended_ago or DAY),
            chunks_total=chunks, chunks_done=chunks, items_total=chunks * 10, items_done=chunks * 10 - failed,
            items_failed=failed, result={"total_stock_value": "12.50", "items_failed": failed}, error="kept",
        )
        session.add(run)
        session.flush()
        for seq in range(chunks):
            chunk = RunChunk(
                run_id=run.id, seq=seq, start_id=seq * 10 + 1, end_id=seq * 10 + 10, item_count=10,
                status=ChunkStatus.DONE, attempts=1, items_done=10 - failures_per_chunk, items_failed=failures_per_chunk,
            )
            session.add(chunk)
            session.flush()
            session.add_all(
                RunItemFailure(run_id=run.id, chunk_id=chunk.id, item_id=seq * 10 + 1 + i, error="bad")
                for i in range(failures_per_chunk)
            )
        return run.id


def details_of(db: Any, run_id: int) -> tuple[int, int]:
    """(chunk rows, item failure rows) of the run."""
    chunks = db.scalar(select(func.count()).select_from(RunChunk).where(RunChunk.run_id == run_id))
    failures = db.scalar(select(func.count()).select_from(RunItemFailure).where(RunItemFailure.run_id == run_id))
    return chunks, failures


def run_row(db: Any, run_id: int) -> dict[str, Any]:
    """Every column of the run's row."""
    with db.session() as session:
        run = session.get_one(Run, run_id)
        return {column.key: getattr(run, column.key) for column in Run.__table__.columns}


def purge_pass(db: Any, policy: RetentionPolicy = RetentionPolicy(), budget: float | None = None) -> tasks.retention.PurgeReport:
    return purge_run_details(db.session_factory, policy, budget_seconds=budget)


def test_retention_purges_what_is_old_and_nothing_else(rdb: Any) -> None:
    old = {status: add_run(rdb, status, ended_ago=31 * DAY) for status in ENDED}
    recent = {status: add_run(rdb, status, ended_ago=29 * DAY) for status in ENDED}
    # Active runs are never purged however old, even with a finish time from before a redrive.
    active = {status: add_run(rdb, status, ended_ago=None) for status in ACTIVE}
    redriven = add_run(rdb, RunStatus.RUNNING, ended_ago=300 * DAY)
    kept = [*recent.values(), *active.values(), redriven]
    rows_before = {run_id: run_row(rdb, run_id) for run_id in [*old.values(), *kept]}

    report = purge_pass(rdb)

    assert sorted(report.runs) == sorted(old.values())
    assert (report.chunks, report.item_failures, report.finished) == (3 * 4, 6 * 4, True)
    for run_id in old.values():
        assert details_of(rdb, run_id) == (0, 0)
        row = run_row(rdb, run_id)
        assert row.pop("details_purged_at") is not None
        assert row.pop("updated_at") > rows_before[run_id]["updated_at"]
        before = dict(rows_before[run_id])
        del before["details_purged_at"], before["updated_at"]
        assert row == before  # status, counters, result, error, times: as they were
    for run_id in kept:
        assert details_of(rdb, run_id) == (3, 6)
        assert run_row(rdb, run_id) == rows_before[run_id]


def test_the_period_is_the_setting(rdb: Any) -> None:
    ten_days = add_run(rdb, RunStatus.SUCCEEDED, ended_ago=10 * DAY + dt.timedelta(minutes=1))
    nine_days = add_run(rdb, RunStatus.SUCCEEDED, ended_ago=9 * DAY)

    report = purge_pass(rdb, retention_policy({"warehouse.retain_run_details_days": "10"}))

    assert report.runs == [ten_days]
    assert details_of(rdb, nine_days) == (3, 6)


def test_a_big_purge_goes_in_batches_of_at_most_the_batch_size(rdb: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    first = add_run(rdb, RunStatus.FAILED, ended_ago=40 * DAY)  # 3 chunks, 6 failures: 9 rows
    second = add_run(rdb, RunStatus.SUCCEEDED, ended_ago=40 * DAY, chunks=2, failures_per_chunk=0)  # 2 rows
    batches: list[ledger.retention.PurgeBatch] = []
    real_batch = retention.purge_batch

    def recorded(*args: Any) -> Any:
        batch = real_batch(*args)
        batches.append(batch)
        return batch

    monkeypatch.setattr(tasks.retention, "purge_batch", recorded)

    report = purge_pass(rdb, RetentionPolicy(batch_size=4))

    # Failures go first, then chunks, four rows per transaction, then one that finds nothing due.
    assert [(batch.item_failures, batch.chunks) for batch in batches] == [(4, 0), (2, 2), (0, 3), (0, 0)]
    assert batches[0].newly_purged == [first, second]  # both marked before their first row goes
    assert (report.batches, report.chunks, report.item_failures, report.runs) == (3, 5, 6, [first, second])
    assert details_of(rdb, first) == details_of(rdb, second) == (0, 0)


def test_a_second_pass_finds_nothing_and_changes_nothing(rdb: Any) -> None:
    run_id = add_run(rdb, RunStatus.PARTIALLY_FAILED, ended_ago=31 * DAY)
    purge_pass(rdb)
    purged = run_row(rdb, run_id)

    again = purge_pass(rdb)

    assert (again.runs, again.chunks, again.item_failures, again.batches, again.finished) == ([], 0, 0, 0, True)
    assert run_row(rdb, run_id) == purged


def test_a_pass_cut_short_by_its_budget_is_finished_by_the_next_whatever_the_period_is_now(rdb: Any) -> None:
    run_id = add_run(rdb, RunStatus.FAILED, ended_ago=31 * DAY)
    ticks = iter([0.0, 0.0, 61.0])  # the start, the first batch within the budget, then past it

    cut_short = purge_run_details(rdb.session_factory, RetentionPolicy(batch_size=5), clock=lambda: next(ticks))

    assert (cut_short.batches, cut_short.item_failures, cut_short.chunks, cut_short.finished) == (1, 5, 0, False)
    assert details_of(rdb, run_id) == (3, 1)
    marked_at = run_row(rdb, run_id)["details_purged_at"]
    assert marked_at is not None  # marked already: a redrive is refused from the first batch on
    with pytest.raises(ledger.DetailsPurged):
        with rdb.session() as session:
            ledger.prepare_redrive(session, run_id)

    # The period made longer meanwhile: what was begun is finished all the same, and keeps its date.
    rest = purge_pass(rdb, RetentionPolicy(days=365))

    assert (rest.runs, rest.item_failures, rest.chunks) == ([], 1, 3)
    assert details_of(rdb, run_id) == (0, 0)
    assert run_row(rdb, run_id)["details_purged_at"] == marked_at


def test_a_purged_run_is_not_redriven_and_the_refusal_says_why_in_words(rdb: Any) -> None:
    run_id = add_run(rdb, RunStatus.PARTIALLY_FAILED, ended_ago=31 * DAY)
    purge_pass(rdb)
    before = run_row(rdb, run_id)

    with pytest.raises(ledger.DetailsPurged) as refused:
        with rdb.session() as session:
            ledger.prepare_redrive(session, run_id, kept_days=30)

    purged_on = before["details_purged_at"].strftime("%Y-%m-%d")
    assert (refused.value.reason, refused.value.status) == ("details_purged", RunStatus.PARTIALLY_FAILED)
    assert str(refused.value) == (
        f"run {run_id} cannot be redriven: its chunk details were removed on {purged_on} "
        "(runs keep them for 30 days after they end); start a new run instead"
    )
    assert run_row(rdb, run_id) == before


def test_a_run_redriven_before_the_purge_is_active_again_and_not_purged(rdb: Any) -> None:
    run_id = add_run(rdb, RunStatus.PARTIALLY_FAILED, ended_ago=31 * DAY)
    with rdb.session() as session:
        ledger.prepare_redrive(session, run_id)

    report = purge_pass(rdb)

    assert report.runs == []
    assert details_of(rdb, run_id) == (3, 0)  # the redrive deleted the failures it will redo
    assert run_row(rdb, run_id)["details_purged_at"] is None


def test_runs_due_lists_what_the_next_pass_removes_and_changes_nothing(rdb: Any) -> None:
    old = add_run(rdb, RunStatus.FAILED, ended_ago=31 * DAY)
    add_run(rdb, RunStatus.FAILED, ended_ago=29 * DAY)
    before = run_row(rdb, old)

    with rdb.session() as session:
        due = retention.runs_due(session, RetentionPolicy().cutoff(ledger.utcnow()))

    assert [(run.run_id, run.status, run.chunks, run.item_failures, run.details_purged_at) for run in due] == [
        (old, RunStatus.FAILED, 3, 6, None)
    ]
    assert details_of(rdb, old) == (3, 6) and run_row(rdb, old) == before


# --- settings ------------------------------------------------------------------------------------


def test_the_defaults_are_thirty_days_and_ten_thousand_rows() -> None:
    assert retention_policy({}) == RetentionPolicy(days=30, batch_size=10_000)
    assert retention_policy(
        {"warehouse.retain_run_details_days": " 7 ", "warehouse.retention_batch_size": "500"}
    ) == RetentionPolicy(days=7, batch_size=500)


@pytest.mark.parametrize("value", ["0", "-1", "", "thirty", "1.5", "36501", "٣"])
def test_a_retention_period_that_is_not_a_whole_number_of_days_is_refused_naming_the_setting(value: str) -> None:
    with pytest.raises(ValueError) as refused:
        retention_policy({"warehouse.retain_run_details_days": value})

    assert str(refused.value) == (
        f"warehouse.retain_run_details_days must be a whole number of days from 1 to 36,500 (default 30), not {value!r}"
    )


@pytest.mark.parametrize("value", ["0", "many", "1000001"])
def test_a_batch_size_that_is_not_a_whole_number_of_rows_is_refused_naming_the_setting(value: str) -> None:
    with pytest.raises(ValueError, match=r"^warehouse\.retention_batch_size must be a whole number of rows"):
        retention_policy({"warehouse.retention_batch_size": value})


def test_every_process_refuses_a_nonsense_period_at_start(tmp_path: Path, make_settings: Any) -> None:
    from tasks.app import make_celery

    with pytest.raises(ValueError, match=r"^warehouse\.retain_run_details_days must be"):
        make_celery(make_settings(tmp_path / "unused.sqlite", **{"warehouse.retain_run_details_days": "0"}))


def test_purge_run_details_is_a_run_level_task_beat_sends_every_hour(celery_app: Any) -> None:
    assert "purgeRunDetails" in celery_app.tasks
    assert celery_app.conf.beat_schedule["purge-run-details"] == {"task": "purgeRunDetails", "schedule": 3600.0}
    runs_queue = f"{celery_app.conf.task_default_queue}.runs"
    assert celery_app.conf.task_routes["purgeRunDetails"] == {"queue": runs_queue}


# --- warehouse-purge ------------------------------------------------------------------------------


@pytest.fixture
def purge_ini(retention_dir: Path, retention_factory: sessionmaker[Session]) -> Path:
    ini = retention_dir / "retention.ini"
    ini.write_text(INI)
    return ini


def test_warehouse_purge_dry_run_prints_what_would_go_and_deletes_nothing(
    rdb: Any, purge_ini: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = add_run(rdb, RunStatus.FAILED, ended_ago=31 * DAY)
    add_run(rdb, RunStatus.SUCCEEDED, ended_ago=DAY)

    assert purge.main([str(purge_ini), "--dry-run"]) == 0

    printed = json.loads(capsys.readouterr().out)
    assert printed["retain_run_details_days"] == 30 and printed["ended_before"]
    assert [(run["id"], run["status"], run["chunks"], run["item_failures"]) for run in printed["runs"]] == [
        (old, "failed", 3, 6)
    ]
    assert (printed["chunks"], printed["item_failures"]) == (3, 6)
    assert details_of(rdb, old) == (3, 6)


def test_warehouse_purge_purges_everything_due_and_prints_it(
    rdb: Any, purge_ini: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = add_run(rdb, RunStatus.FAILED, ended_ago=31 * DAY)

    assert purge.main([str(purge_ini)]) == 0

    printed = json.loads(capsys.readouterr().out)
    assert printed == {
        "retain_run_details_days": 30, "runs_purged": [old], "chunks_deleted": 3, "item_failures_deleted": 6,
        "batches": 1, "finished": True,
    }
    assert details_of(rdb, old) == (0, 0)


def test_warehouse_purge_refuses_a_nonsense_setting_on_one_line(
    retention_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ini = retention_dir / "nonsense.ini"
    ini.write_text(INI + "warehouse.retain_run_details_days = 0\n")

    assert purge.main([str(ini)]) == 2

    assert capsys.readouterr().err == (
        "warehouse-purge: error: warehouse.retain_run_details_days must be a whole number of days from 1 to "
        "36,500 (default 30), not '0'\n"
    )
