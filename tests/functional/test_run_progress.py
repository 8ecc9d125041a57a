"""GET /api/runs/{id}/chunks and /timeline, what a live run page polls: right after a real run, one
letter per chunk, ETag and 304, gzip, an ended run's answer kept until the run changes, and what a
page polling a 20,000-chunk run transfers in a minute."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from pyramid.router import Router
from sqlalchemy import event, insert, select, update
from webob import Request
from webtest import TestApp

from tests.functional.helpers import add_run, assert_error
from warehouse.ledger.progress import LETTERS
from warehouse.models import Run, RunChunk, Warehouse
from warehouse.progress_cache import CHUNKS, TIMELINE, ProgressAnswers

STATUS_OF = {letter: status for status, letter in LETTERS.items()}
GZIP = {"Accept-Encoding": "gzip, deflate, br"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(wsgi_app: Router, monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The app's kept progress answers on a clock the test moves (a second's interval, as by default)."""
    clock = Clock()
    for kind in (CHUNKS, TIMELINE):
        monkeypatch.setitem(wsgi_app.registry, kind, ProgressAnswers(1.0, timer=clock))
    return clock


@contextmanager
def statements(wsgi_app: Router) -> Iterator[list[str]]:
    """The SQL the app sends meanwhile."""
    engine = wsgi_app.registry["dbsession_factory"].kw["bind"]
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sent.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)


def add_chunks(db: Any, run_id: int, states: str, started: dt.datetime, seconds: float = 60.0) -> None:
    """One chunk of 500 items per letter, those done or failed finished evenly over ``seconds``."""
    rows = []
    for seq, letter in enumerate(states):
        finished = letter in "df"
        rows.append({
            "run_id": run_id, "seq": seq, "start_id": seq * 500 + 1, "end_id": seq * 500 + 500, "item_count": 500,
            "status": STATUS_OF[letter], "attempts": int(letter in "rdf"),
            "items_done": 500 if letter == "d" else 0, "items_failed": 500 if letter == "f" else 0,
            "worker_hostname": f"w{seq % 3 + 1}@host" if letter in "rdf" else None,
            "finished_at": started + dt.timedelta(seconds=seconds * seq / len(states)) if finished else None,
        })
    with db.session() as session:
        session.execute(insert(RunChunk), rows)


def seeded_run(db: Any, warehouse: Warehouse, status: str, states: str, age_seconds: float = 60.0) -> int:
    run_id = add_run(db, warehouse.id, status)
    started = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=age_seconds)
    ended = started + dt.timedelta(seconds=age_seconds) if status != "running" else None
    db.execute(update(Run).where(Run.id == run_id).values(
        started_at=started, finished_at=ended, chunks_total=len(states), items_total=500 * len(states)))
    add_chunks(db, run_id, states, started, age_seconds)
    return run_id


def raw_get(wsgi_app: Router, url: str, headers: dict[str, str]) -> Any:
    """The answer as it travels (WebTest would decompress a gzipped body)."""
    return Request.blank(url, headers=headers).get_response(wsgi_app)


def wire_bytes(response: Any) -> int:
    return len(response.body) + sum(len(f"{name}: {value}\r\n") for name, value in response.headerlist)


# --- a real run --------------------------------------------------------------------------------------


def test_after_a_real_run_every_chunk_is_done_and_the_timeline_adds_up(
    testapp: TestApp, operator: dict, viewer: dict, db: Any, warehouse: Warehouse, wait_for_run: Any
) -> None:
    db.add_products(warehouse.id, 23)
    posted = testapp.post_json(f"/api/warehouses/{warehouse.code}/runs", {"operation": "valuation", "chunk_size": 5},
                               headers=operator, status=202).json
    run = wait_for_run(testapp, posted["id"])
    assert run["status"] == "succeeded"

    chunks = testapp.get(f"/api/runs/{run['id']}/chunks", headers=viewer, status=200).json
    timeline = testapp.get(f"/api/runs/{run['id']}/timeline", headers=viewer, status=200).json

    assert chunks["run_id"] == run["id"]
    assert (chunks["chunks_total"], chunks["states"]) == (5, "ddddd")
    assert chunks["counts"] == {"pending": 0, "running": 0, "done": 5, "failed": 0, "skipped": 0}
    # The session's one embedded worker, heartbeating in the ledger: alive, found by its chunks'
    # worker_id (its thread pool names the bare host in worker_hostname, not the node it registered).
    (worker,) = chunks["workers"]
    hostnames = db.scalars(select(RunChunk.worker_hostname).where(RunChunk.run_id == run["id"]).distinct())
    assert [worker["node"]] == hostnames
    assert (worker["alive"], worker["chunks_running"], worker["chunks_done"], worker["chunks_failed"]) == (True, 0, 5, 0)

    assert timeline["run_id"] == run["id"]
    assert timeline["started_at"] == run["started_at"]
    assert timeline["bucket_seconds"] == 1
    assert sum(bucket["items"] for bucket in timeline["buckets"]) == run["items"]["done"] + run["items"]["failed"] == 23
    assert sum(bucket["chunks"] for bucket in timeline["buckets"]) == 5
    assert timeline["buckets"][0]["start"] == run["started_at"]


def test_a_run_not_started_yet_has_no_chunks_and_no_buckets(testapp: TestApp, viewer: dict, db: Any, warehouse: Warehouse) -> None:
    run_id = add_run(db, warehouse.id, "pending")

    chunks = testapp.get(f"/api/runs/{run_id}/chunks", headers=viewer, status=200).json
    timeline = testapp.get(f"/api/runs/{run_id}/timeline", headers=viewer, status=200).json

    assert (chunks["chunks_total"], chunks["states"], chunks["workers"]) == (0, "", [])
    assert timeline == {"run_id": run_id, "started_at": None, "bucket_seconds": 1, "buckets": []}


def test_mixed_states_are_told_in_order_with_each_nodes_share(
    testapp: TestApp, viewer: dict, db: Any, warehouse: Warehouse, clock: Clock
) -> None:
    run_id = seeded_run(db, warehouse, "running", "dddfrrsspp")

    chunks = testapp.get(f"/api/runs/{run_id}/chunks", headers=viewer, status=200).json

    assert chunks["states"] == "dddfrrsspp"
    assert chunks["counts"] == {"pending": 2, "running": 2, "done": 3, "failed": 1, "skipped": 2}
    # Chunk seq n ran on w{n % 3 + 1}: w1 did 0 and 3 (failed), w2 did 1 and holds 4, w3 did 2 and holds 5.
    assert [(w["node"], w["alive"], w["chunks_running"], w["chunks_done"], w["chunks_failed"]) for w in chunks["workers"]] == [
        ("w1@host", None, 0, 1, 1), ("w2@host", None, 1, 1, 0), ("w3@host", None, 1, 1, 0),
    ]


# --- ETag, 304, gzip ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["chunks", "timeline"])
def test_the_same_answer_again_is_a_304_without_a_body(
    path: str, testapp: TestApp, viewer: dict, db: Any, warehouse: Warehouse
) -> None:
    run_id = seeded_run(db, warehouse, "succeeded", "ddfd")
    url = f"/api/runs/{run_id}/{path}"
    first = testapp.get(url, headers=viewer, status=200)
    etag = first.headers["ETag"]

    again = testapp.get(url, headers={**viewer, "If-None-Match": etag}, status=304)
    listed = testapp.get(url, headers={**viewer, "If-None-Match": f'"other", {etag}'}, status=304)
    other = testapp.get(url, headers={**viewer, "If-None-Match": 'W/"not-this-one"'}, status=200)

    assert again.body == b"" and listed.body == b""
    assert again.headers["ETag"] == etag
    assert other.json == first.json and other.headers["ETag"] == etag
    assert first.headers["Cache-Control"] == "private, no-cache"


@pytest.mark.parametrize("path", ["chunks", "timeline"])
def test_gzip_when_the_client_accepts_it_and_only_then(
    path: str, wsgi_app: Router, viewer: dict, db: Any, warehouse: Warehouse
) -> None:
    run_id = seeded_run(db, warehouse, "succeeded", "d" * 300 + "f" * 20)
    url = f"/api/runs/{run_id}/{path}"

    zipped = raw_get(wsgi_app, url, {**viewer, **GZIP})
    plain = raw_get(wsgi_app, url, viewer)
    refused = raw_get(wsgi_app, url, {**viewer, "Accept-Encoding": "gzip;q=0, identity"})

    assert zipped.status_int == plain.status_int == refused.status_int == 200
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(zipped.body) == plain.body == refused.body
    assert "Content-Encoding" not in plain.headers and "Content-Encoding" not in refused.headers
    assert zipped.headers["Vary"] == plain.headers["Vary"] == "Accept-Encoding"
    assert zipped.headers["ETag"] == plain.headers["ETag"]
    assert len(zipped.body) < len(plain.body) / 2


# --- what is kept, and for how long ---------------------------------------------------------------------


def set_chunk_status(db: Any, run_id: int, seq: int, status: str) -> None:
    """A change behind the run's back: the run's row (and its updated_at) untouched."""
    db.execute(update(RunChunk).where(RunChunk.run_id == run_id, RunChunk.seq == seq).values(status=status))


def test_an_ended_runs_answer_is_kept_for_a_read_of_its_row_until_its_updated_at_moves(
    testapp: TestApp, wsgi_app: Router, viewer: dict, db: Any, warehouse: Warehouse, clock: Clock
) -> None:
    run_id = seeded_run(db, warehouse, "partially_failed", "dddf")
    url = f"/api/runs/{run_id}/chunks"
    assert testapp.get(url, headers=viewer).json["states"] == "dddf"

    set_chunk_status(db, run_id, 3, "done")
    clock.now += 5  # well past the interval
    with statements(wsgi_app) as sent:
        assert testapp.get(url, headers=viewer).json["states"] == "dddf"
    queries = [statement for statement in sent if statement.lstrip().upper().startswith("SELECT")]
    assert len(queries) == 1 and "FROM runs" in queries[0] and "run_chunks" not in queries[0], sent

    db.execute(update(Run).where(Run.id == run_id).values(status="running"))  # a redrive bumps updated_at
    clock.now += 5
    assert testapp.get(url, headers=viewer).json["states"] == "dddd"


def test_a_running_runs_answer_is_shared_for_the_interval_then_made_again(
    testapp: TestApp, wsgi_app: Router, viewer: dict, db: Any, warehouse: Warehouse, clock: Clock
) -> None:
    run_id = seeded_run(db, warehouse, "running", "drpp")
    url = f"/api/runs/{run_id}/chunks"
    first = testapp.get(url, headers=viewer)

    set_chunk_status(db, run_id, 2, "running")
    clock.now += 0.5
    with statements(wsgi_app) as sent:
        within = testapp.get(url, headers={**viewer, "If-None-Match": first.headers["ETag"]}, status=304)
    clock.now += 1
    after = testapp.get(url, headers={**viewer, "If-None-Match": first.headers["ETag"]}, status=200)

    assert sent == [] and within.body == b""
    assert (first.json["states"], after.json["states"]) == ("drpp", "drrp")


@pytest.mark.parametrize("path", ["chunks", "timeline"])
def test_an_unknown_run_is_404_every_time(path: str, testapp: TestApp, viewer: dict, db: Any, warehouse: Warehouse) -> None:
    missing = add_run(db, warehouse.id, "running") + 1000
    for _ in range(2):
        assert_error(testapp.get(f"/api/runs/{missing}/{path}", headers=viewer, status=404), 404, "run_not_found", field="id")


# --- a page polling a 20,000-chunk run for a minute -----------------------------------------------------

CHUNKS_TOTAL = 20_000


def mixed_states(rng: random.Random) -> str:
    """Every state anywhere, at random: the worst case for compression."""
    return "".join(rng.choice("prdfs") for _ in range(CHUNKS_TOTAL))


def orderly_states(_rng: random.Random) -> str:
    """Chunks done in order, a band running, the rest pending: how a healthy run looks."""
    return "d" * 12_000 + "r" * 8 + "p" * (CHUNKS_TOTAL - 12_008)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("states", [mixed_states, orderly_states], ids=["mixed", "orderly"])
def test_a_page_polling_a_20000_chunk_run_transfers_well_under_a_megabyte_a_minute(
    states: Any, wsgi_app: Router, viewer: dict, db: Any, warehouse: Warehouse, clock: Clock
) -> None:
    rng = random.Random(20_000)
    run_id = seeded_run(db, warehouse, "running", states(rng), age_seconds=600)
    pending = db.scalars(select(RunChunk.id).where(RunChunk.run_id == run_id, RunChunk.status == "pending"))
    rng.shuffle(pending)
    transferred = {"chunks": 0, "timeline": 0}
    plain = raw_get(wsgi_app, f"/api/runs/{run_id}/chunks", viewer)

    # Chunks every 2 s, the timeline every 5 s, for a minute; between polls, 20 chunks finish.
    for second in range(0, 60, 2):
        answer = raw_get(wsgi_app, f"/api/runs/{run_id}/chunks", {**viewer, **GZIP})
        assert (answer.status_int, answer.headers["Content-Encoding"]) == (200, "gzip")
        transferred["chunks"] += wire_bytes(answer)
        if second % 5 in (0, 1):
            last_timeline = raw_get(wsgi_app, f"/api/runs/{run_id}/timeline", {**viewer, **GZIP})
            assert last_timeline.status_int == 200
            transferred["timeline"] += wire_bytes(last_timeline)
        finishing, pending = pending[:20], pending[20:]
        db.execute(update(RunChunk).where(RunChunk.id.in_(finishing)).values(
            status="done", items_done=500, finished_at=dt.datetime.now(dt.timezone.utc)))
        clock.now += 2

    document = json.loads(plain.body)
    timeline = json.loads(gzip.decompress(last_timeline.body))
    print(f"\n{states.__name__}: chunks answer {len(plain.body):,} B raw, {len(answer.body):,} B gzipped;"
          f" timeline {len(gzip.decompress(last_timeline.body)):,} B raw, {len(last_timeline.body):,} B gzipped;"
          f" a minute: {transferred['chunks']:,} B of 30 chunk answers + {transferred['timeline']:,} B of 12 timelines")
    assert len(document["states"]) == document["chunks_total"] == CHUNKS_TOTAL
    assert len(plain.body) < CHUNKS_TOTAL + 500  # one letter a chunk, and little else
    # Ten minutes into the run: 5 s buckets, or 10 s once it is past 600 s.
    assert timeline["bucket_seconds"] in (5, 10) and len(timeline["buckets"]) <= 120
    assert sum(transferred.values()) < 1_000_000


@pytest.mark.parametrize("header", ["'; DROP TABLE runs; --", "<script>alert(1)</script>", "W/\"" + "9" * 5000 + "\"", "*,,,", ","])
def test_a_hostile_if_none_match_is_only_a_tag_that_does_not_match(
    header: str, testapp: TestApp, viewer: dict, db: Any, warehouse: Warehouse
) -> None:
    run_id = seeded_run(db, warehouse, "succeeded", "dd")
    before = db.row_counts()

    status = 304 if header.startswith("*") else 200
    testapp.get(f"/api/runs/{run_id}/chunks", headers={**viewer, "If-None-Match": header}, status=status)

    assert db.row_counts() == before
