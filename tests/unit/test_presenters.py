"""The JSON shapes of runs: ``eta_seconds``, times in UTC, and the remaining counts."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from warehouse.models import Run, RunStatus
from warehouse.presenters import eta_seconds, isoformat, run_json

NOW = dt.datetime(2030, 1, 2, 12, 0, 0, tzinfo=dt.timezone.utc)


def run_at(
    status: str = RunStatus.RUNNING,
    started_seconds_ago: float | None = 10,
    items_total: int = 1000,
    items_done: int = 100,
    items_failed: int = 0,
    naive: bool = False,
) -> Run:
    started = None if started_seconds_ago is None else NOW - dt.timedelta(seconds=started_seconds_ago)
    if started is not None and naive:
        started = started.replace(tzinfo=None)
    return Run(
        id=7,
        operation="valuation",
        status=status,
        chunk_size=500,
        tolerated_failure_percent=Decimal("2.50"),
        started_at=started,
        items_total=items_total,
        items_done=items_done,
        items_failed=items_failed,
        chunks_total=4,
        chunks_done=1,
        chunks_failed=1,
        chunks_skipped=0,
    )


def test_eta_is_the_remaining_items_at_the_pace_so_far() -> None:
    assert eta_seconds(run_at(), now=NOW) == 90.0  # 100 items in 10 s, 900 to go


def test_failed_items_count_as_progress() -> None:
    assert eta_seconds(run_at(items_done=150, items_failed=50), now=NOW) == 40.0  # 200 in 10 s, 800 to go


def test_eta_is_rounded_to_a_tenth_of_a_second() -> None:
    assert eta_seconds(run_at(started_seconds_ago=1, items_total=10, items_done=3), now=NOW) == 2.3


def test_a_naive_start_time_is_taken_as_utc() -> None:
    assert eta_seconds(run_at(naive=True), now=NOW) == 90.0


@pytest.mark.parametrize(
    "run",
    [
        run_at(started_seconds_ago=None),
        run_at(items_done=0),
        run_at(items_total=0, items_done=0),
        run_at(status=RunStatus.PENDING, started_seconds_ago=None, items_total=0, items_done=0),
    ],
    ids=["not started", "no progress", "nothing planned", "pending"],
)
def test_eta_is_unknown_before_any_progress(run: Run) -> None:
    assert eta_seconds(run, now=NOW) is None


@pytest.mark.parametrize(
    "status", [RunStatus.SUCCEEDED, RunStatus.PARTIALLY_FAILED, RunStatus.FAILED, RunStatus.CANCELLED]
)
def test_eta_is_zero_once_the_run_has_ended(status: RunStatus) -> None:
    assert eta_seconds(run_at(status=status, items_done=3), now=NOW) == 0.0


def test_eta_never_goes_negative_when_more_items_finished_than_planned() -> None:
    assert eta_seconds(run_at(items_total=100, items_done=120), now=NOW) == 0.0


def test_isoformat_marks_times_as_utc() -> None:
    assert isoformat(None) is None
    assert isoformat(dt.datetime(2030, 1, 2, 3, 4, 5)) == "2030-01-02T03:04:05+00:00"
    assert isoformat(dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)) == "2030-01-02T03:04:05+00:00"


def test_run_json_counts_what_remains() -> None:
    document = run_json(run_at(items_total=1000, items_done=400, items_failed=100), "main")

    assert document["id"] == 7 and document["warehouse"] == "main" and document["status"] == "running"
    assert document["chunks"] == {"total": 4, "done": 1, "failed": 1, "skipped": 0, "remaining": 2}
    assert document["items"] == {"total": 1000, "done": 400, "failed": 100, "remaining": 500}
    assert document["tolerated_failure_percent"] == 2.5
    assert document["links"] == {"self": "/api/runs/7", "page": "/runs/7"}
    assert document["started_at"].endswith("+00:00")
