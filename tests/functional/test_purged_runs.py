"""A run whose chunk details retention removed, through the API and its page (WebTest on the embedded
app): its JSON keeps its counters and result and says when (``details_purged_at``); its chunks and
failures answer empty lists, its timeline no items; a redrive is refused with 409 ``details_purged``
in words, changing and sending nothing; its page says what went and when instead of drawing an empty
map.

Runs are written straight into the ledger, ended 31 days ago, and purged by ``purge_run_details`` on
the session's database: no other test leaves a run there that ended that long ago.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from sqlalchemy import select, update
from webtest import TestApp

from tasks.retention import purge_run_details
from tests.conftest import OPERATOR_TOKEN, VIEWER_TOKEN
from tests.functional.helpers import Sent, assert_error, nothing_written_or_sent
from tests.functional.test_pages import csrf_of, sign_in
from tests.functional.test_redrive import add_failed_run, redrive
from tests.functional.test_run_progress import Clock, clock  # noqa: F401  (clock is a fixture)
from warehouse.ledger.retention import RetentionPolicy
from warehouse.models import ChunkStatus, Run, RunChunk, RunItemFailure, Warehouse

pytestmark = pytest.mark.timeout(60)

ENDED_AGO = dt.timedelta(days=31)


def ended_run(db: Any, warehouse: Warehouse) -> int:
    """A failed run that ended 31 days ago: three chunks, the second failed, and a failed item in the first."""
    ids = db.add_products(warehouse.id, 15)
    run_id = add_failed_run(db, warehouse, ids, [ChunkStatus.DONE, ChunkStatus.FAILED, ChunkStatus.DONE])
    ended = dt.datetime.now(dt.timezone.utc) - ENDED_AGO
    with db.session() as session:
        session.execute(update(Run).where(Run.id == run_id).values(finished_at=ended, started_at=ended))
        first_chunk = session.scalar(select(RunChunk.id).where(RunChunk.run_id == run_id, RunChunk.seq == 0))
        session.add(RunItemFailure(run_id=run_id, chunk_id=first_chunk, item_id=ids[0], error="quantity is negative"))
    return run_id


def purge(db: Any) -> None:
    report = purge_run_details(db.session_factory, RetentionPolicy())
    assert report.finished


def test_a_purged_run_keeps_its_json_and_answers_empty_chunks_and_failures(
    testapp: TestApp, viewer: dict, db: Any, warehouse: Warehouse, clock: Clock
) -> None:
    run_id = ended_run(db, warehouse)
    before = testapp.get(f"/api/runs/{run_id}", headers=viewer, status=200).json
    assert before["details_purged_at"] is None
    # Read before the purge, so that the web process holds this ended run's answers: they must go with it.
    assert testapp.get(f"/api/runs/{run_id}/chunks", headers=viewer).json["states"] == "dfd"
    failures = testapp.get(f"/api/runs/{run_id}/failures", headers=viewer).json
    assert (len(failures["chunks"]), len(failures["items"])) == (1, 1)

    purge(db)
    clock.now += 5  # past the interval: an ended run's answers are then kept only until it changes

    after = testapp.get(f"/api/runs/{run_id}", headers=viewer, status=200).json
    purged_at = dt.datetime.fromisoformat(after.pop("details_purged_at"))
    assert dt.timedelta(0) <= dt.datetime.now(dt.timezone.utc) - purged_at < dt.timedelta(minutes=1)
    del before["details_purged_at"]
    assert after == before  # status, counts, result, error and times as they were
    chunks = testapp.get(f"/api/runs/{run_id}/chunks", headers=viewer, status=200).json
    assert (chunks["chunks_total"], chunks["states"], chunks["workers"]) == (0, "", [])
    buckets = testapp.get(f"/api/runs/{run_id}/timeline", headers=viewer, status=200).json["buckets"]
    assert all(bucket["items"] == bucket["chunks"] == 0 for bucket in buckets)
    assert testapp.get(f"/api/runs/{run_id}/failures", headers=viewer, status=200).json == {
        "run_id": run_id, "chunks": [], "items": [], "next_cursor": None,
    }


def test_redriving_a_purged_run_is_409_details_purged_in_words_and_changes_nothing(
    testapp: TestApp, operator: dict, viewer: dict, db: Any, sent: list[Sent], warehouse: Warehouse
) -> None:
    run_id = ended_run(db, warehouse)
    purge(db)
    run = testapp.get(f"/api/runs/{run_id}", headers=viewer).json

    with nothing_written_or_sent(db, sent):
        response = redrive(testapp, operator, run_id, status=409)

    error = assert_error(response, 409, "details_purged", field="id")
    assert error["details"] == {"field": "id", "status": "failed", "details_purged_at": run["details_purged_at"]}
    assert error["message"] == (
        f"run {run_id} cannot be redriven: its chunk details were removed on {run['details_purged_at'][:10]} "
        "(runs keep them for 30 days after they end); start a new run instead"
    )
    assert testapp.get(f"/api/runs/{run_id}", headers=viewer).json == run


def test_a_purged_run_s_page_says_when_its_details_went_instead_of_drawing_an_empty_map(
    testapp: TestApp, db: Any, warehouse: Warehouse
) -> None:
    run_id = ended_run(db, warehouse)
    purge(db)
    sign_in(testapp, OPERATOR_TOKEN)

    page = testapp.get(f"/runs/{run_id}", status=200)

    note = re.search(r'<p id="details-removed">(.*?)</p>', page.text, re.S).group(1)
    assert re.fullmatch(
        r"Chunk details were removed on <time datetime=\"[^\"]+\">[^<]+</time>, 31 days after the run ended:\s+"
        r"its chunk map, throughput, workers and failed items went with them\. "
        r"The figures above and the result are kept\.", note,
    ), note
    assert '<div id="chunk-details" hidden>' in page.text
    for section in ("throughput-heading", "workers-heading", 'failures-heading" id="failures'):
        assert re.search(rf'<section class="card" aria-labelledby="{section}"[^>]* hidden>', page.text), section
    assert re.search(r'data-action="redrive" hidden>', page.text)

    # The page's Redrive, posted all the same: refused in the same words, and nothing changes.
    back = testapp.post(f"/runs/{run_id}/redrive", {"csrf_token": csrf_of(page)}, status=303).follow()
    assert "its chunk details were removed on" in back.text
    assert testapp.get(f"/api/runs/{run_id}").json["status"] == "failed"


def test_a_run_s_page_with_its_details_draws_its_chunk_map(testapp: TestApp, db: Any, warehouse: Warehouse) -> None:
    run_id = ended_run(db, warehouse)
    db.execute(update(Run).where(Run.id == run_id).values(finished_at=dt.datetime.now(dt.timezone.utc)))
    sign_in(testapp, VIEWER_TOKEN)

    page = testapp.get(f"/runs/{run_id}", status=200).text

    assert 'id="details-removed"' not in page and '<div id="chunk-details">' in page
    assert re.search(r'<section class="card" aria-labelledby="throughput-heading">', page)
