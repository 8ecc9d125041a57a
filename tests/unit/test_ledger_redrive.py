"""Redrive through ``warehouse.ledger`` directly: which chunks go back, what the run's counters become,
what is refused, and that the claim, the outcome and the finish then decide the run over all chunks.

As in test_ledger_control.py: the SQLite test database, short transactions one at a time, no worker.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from test_chunking import chunks_of, finalise, get_run
from test_ledger_control import (  # noqa: F401  (fails_some_items is a fixture)
    FailsSomeItems,
    add_ended_run,
    cancel,
    claim,
    every_tenth,
    failures_of,
    fails_some_items,
    new_run,
    planned_run,
    work,
)
from warehouse import ledger
from warehouse.models import ChunkStatus, Run, RunItemFailure, RunStatus

pytestmark = pytest.mark.timeout(60)


def redrive(db: Any, run_id: int) -> ledger.RedrivePlan:
    with db.session() as session:
        return ledger.prepare_redrive(session, run_id)


def run_every_chunk(db: Any, run_id: int, chunks: list[ledger.ChunkBounds], tag: str) -> list[ledger.ClaimedChunk]:
    """Claim and do every chunk in turn; the claims (each must succeed)."""
    claims = []
    for chunk in chunks:
        claimed = claim(db, run_id, chunk.start_id, f"{tag}-{chunk.start_id}")
        assert claimed is not None, f"chunk {chunk} was not claimed"
        work(db, claimed)
        claims.append(claimed)
    return claims


def counters(run: Run) -> tuple[int, ...]:
    return (run.chunks_done, run.chunks_failed, run.chunks_skipped, run.items_done, run.items_failed)


def failed_past_threshold(db: Any, probe: FailsSomeItems) -> tuple[list[int], int, list[ledger.ChunkBounds]]:
    """A run of 50 items in chunks of ten, 5% tolerated, that failed after three chunks with one
    failed item each and skipped the last two: (ids, run id, chunks)."""
    ids, run_id, chunks = planned_run(db, products=50, chunk_size=10, operation=probe.name, tolerated="5")
    probe.failing = every_tenth(ids)
    run_every_chunk(db, run_id, chunks[:3], "first")
    assert claim(db, run_id, chunks[3].start_id, "first-skipped") is None
    assert finalise(db, run_id) == RunStatus.FAILED
    return ids, run_id, chunks


def test_a_failed_run_redrives_its_chunks_with_failures_and_those_it_skipped(
    db: Any, fails_some_items: FailsSomeItems
) -> None:
    ids, run_id, chunks = failed_past_threshold(db, fails_some_items)

    plan = redrive(db, run_id)

    assert plan == ledger.RedrivePlan(run_id, tuple(chunks))
    run = get_run(db, run_id)
    assert (run.status, run.finished_at, run.result, run.error) == (RunStatus.RUNNING, None, None, None)
    assert run.redrive_count == 1 and run.redriven_at is not None
    assert counters(run) == (0, 0, 0, 0, 0)
    assert (run.chunks_total, run.items_total) == (5, 50)
    stored = chunks_of(db, run_id)
    assert [(chunk.status, chunk.items_done, chunk.items_failed) for chunk in stored] == [(ChunkStatus.PENDING, 0, 0)] * 5
    assert [chunk.attempts for chunk in stored] == [1, 1, 1, 0, 0]  # attempts keep counting
    assert [chunk.summary for chunk in stored] == [{"seen": 10}] * 3 + [None] * 2  # kept for the operation
    assert all(chunk.task_id is None and chunk.finished_at is None and chunk.error is None for chunk in stored)
    assert failures_of(db, run_id) == []


def test_a_redriven_failed_run_is_not_skipped_again_and_ends_decided_over_every_chunk(
    db: Any, fails_some_items: FailsSomeItems
) -> None:
    ids, run_id, chunks = failed_past_threshold(db, fails_some_items)
    fails_some_items.failing = set()  # the fault is fixed
    redrive(db, run_id)

    claims = run_every_chunk(db, run_id, chunks, "redrive")

    assert [claimed.attempt for claimed in claims] == [2, 2, 2, 1, 1]
    assert [claimed.previous_summary for claimed in claims] == [{"seen": 10}] * 3 + [None] * 2
    assert finalise(db, run_id) == RunStatus.SUCCEEDED
    run = get_run(db, run_id)
    assert counters(run) == (5, 0, 0, 50, 0)
    assert run.result == {"seen": 50, "items_processed": 50, "items_failed": 0}
    assert run.finished_at is not None and run.redrive_count == 1


def test_only_the_current_failures_count_against_the_threshold_after_a_redrive(
    db: Any, fails_some_items: FailsSomeItems
) -> None:
    ids, run_id, chunks = failed_past_threshold(db, fails_some_items)
    fails_some_items.failing = {ids[9], ids[19]}  # two of the three failures recur: 4%, within 5%
    redrive(db, run_id)

    run_every_chunk(db, run_id, chunks, "redrive")

    assert finalise(db, run_id) == RunStatus.PARTIALLY_FAILED
    run = get_run(db, run_id)
    assert counters(run) == (5, 0, 0, 48, 2)
    stored = chunks_of(db, run_id)
    # Each recurring failure is listed once, under the chunk that recorded it this time.
    assert failures_of(db, run_id) == [
        (ids[9], stored[0].id, f"item {ids[9]}: refused by the probe"),
        (ids[19], stored[1].id, f"item {ids[19]}: refused by the probe"),
    ]


def test_a_partially_failed_run_redrives_only_its_chunks_with_failures(
    db: Any, fails_some_items: FailsSomeItems
) -> None:
    ids, run_id, chunks = planned_run(db, products=30, chunk_size=10, operation=fails_some_items.name, tolerated="50")
    fails_some_items.failing = {ids[3]} | set(ids[20:])  # the second chunk clean, the third failed whole
    run_every_chunk(db, run_id, chunks, "first")
    assert finalise(db, run_id) == RunStatus.PARTIALLY_FAILED
    assert [chunk.status for chunk in chunks_of(db, run_id)] == [ChunkStatus.DONE, ChunkStatus.DONE, ChunkStatus.FAILED]
    clean = chunks_of(db, run_id)[1]

    plan = redrive(db, run_id)

    assert plan.chunks == (chunks[0], chunks[2])
    assert counters(get_run(db, run_id)) == (1, 0, 0, 10, 0)  # what the clean chunk counted stays
    again = chunks_of(db, run_id)[1]
    assert (again.status, again.attempts, again.finished_at) == (ChunkStatus.DONE, 1, clean.finished_at)
    fails_some_items.failing = set()
    run_every_chunk(db, run_id, list(plan.chunks), "redrive")
    assert finalise(db, run_id) == RunStatus.SUCCEEDED
    assert counters(get_run(db, run_id)) == (3, 0, 0, 30, 0)


def test_a_chunk_failed_for_good_comes_out_of_the_counters_whole(db: Any) -> None:
    _ids, run_id, chunks = planned_run(db, products=20, chunk_size=10, tolerated="60")
    run_every_chunk(db, run_id, chunks[:1], "first")
    held = claim(db, run_id, chunks[1].start_id, "first-b")
    with db.session() as session:
        assert ledger.fail_chunk(session, run_id, chunks[1].start_id, "RuntimeError: boom", attempt=held.attempt)
    assert finalise(db, run_id) == RunStatus.PARTIALLY_FAILED
    assert counters(get_run(db, run_id)) == (1, 1, 0, 10, 10)

    plan = redrive(db, run_id)

    assert plan.chunks == (chunks[1],)
    assert counters(get_run(db, run_id)) == (1, 0, 0, 10, 0)
    assert chunks_of(db, run_id)[1].error is None
    run_every_chunk(db, run_id, list(plan.chunks), "redrive")
    assert finalise(db, run_id) == RunStatus.SUCCEEDED


def test_a_late_write_of_the_attempt_before_the_redrive_is_fenced_out(db: Any, fails_some_items: FailsSomeItems) -> None:
    ids, run_id, chunks = planned_run(db, products=10, chunk_size=10, operation=fails_some_items.name, tolerated="50")
    fails_some_items.failing = {ids[0]}
    stale = claim(db, run_id, chunks[0].start_id, "first")
    work(db, stale)
    assert finalise(db, run_id) == RunStatus.PARTIALLY_FAILED
    redrive(db, run_id)
    fresh = claim(db, run_id, chunks[0].start_id, "redrive")
    assert fresh.attempt == stale.attempt + 1

    with pytest.raises(ledger.ChunkLost):
        work(db, stale)

    fails_some_items.failing = set()
    work(db, fresh)
    assert finalise(db, run_id) == RunStatus.SUCCEEDED


def test_a_run_redriven_twice_counts_both(db: Any, fails_some_items: FailsSomeItems) -> None:
    ids, run_id, chunks = planned_run(db, products=10, chunk_size=10, operation=fails_some_items.name, tolerated="50")
    fails_some_items.failing = {ids[0]}
    run_every_chunk(db, run_id, chunks, "first")
    assert finalise(db, run_id) == RunStatus.PARTIALLY_FAILED

    redrive(db, run_id)
    run_every_chunk(db, run_id, chunks, "second")  # the fault is still there
    assert finalise(db, run_id) == RunStatus.PARTIALLY_FAILED
    first_redrive = get_run(db, run_id).redriven_at
    redrive(db, run_id)

    run = get_run(db, run_id)
    assert run.redrive_count == 2 and run.redriven_at >= first_redrive
    assert chunks_of(db, run_id)[0].attempts == 2


# --- what is refused, with nothing changed -----------------------------------------------------------


def unchanged(db: Any, run_id: int) -> tuple[Any, ...]:
    run = get_run(db, run_id)
    chunks = tuple((chunk.status, chunk.attempts, chunk.items_done, chunk.items_failed) for chunk in chunks_of(db, run_id))
    failures = db.scalars(select(RunItemFailure.id).where(RunItemFailure.run_id == run_id))
    return (run.status, run.redrive_count, run.redriven_at, run.finished_at, counters(run), chunks, tuple(failures))


@pytest.mark.parametrize("status", [RunStatus.PENDING, RunStatus.RUNNING, RunStatus.CANCELLING])
def test_an_active_run_is_not_redriven(status: str, db: Any) -> None:
    run_id = add_ended_run(db, status)  # only its status matters here
    before = unchanged(db, run_id)

    with pytest.raises(ledger.RunActive) as refused:
        redrive(db, run_id)

    assert (refused.value.reason, refused.value.status) == ("run_active", status)
    assert str(refused.value) == f"run {run_id} has not ended (it is {status}), and only a run that has ended can be redriven"
    assert unchanged(db, run_id) == before


def test_a_cancelled_run_is_not_redriven_even_with_skipped_chunks(db: Any) -> None:
    _ids, run_id, chunks = planned_run(db, products=20, chunk_size=10)
    cancel(db, run_id)
    assert finalise(db, run_id) == RunStatus.CANCELLED
    before = unchanged(db, run_id)

    with pytest.raises(ledger.RunCancelled) as refused:
        redrive(db, run_id)

    assert refused.value.reason == "run_cancelled"
    assert "start a new run instead" in str(refused.value)
    assert unchanged(db, run_id) == before


def test_a_run_with_nothing_failed_has_nothing_to_redrive(db: Any) -> None:
    _ids, run_id, chunks = planned_run(db, products=20, chunk_size=10)
    run_every_chunk(db, run_id, chunks, "first")
    assert finalise(db, run_id) == RunStatus.SUCCEEDED
    before = unchanged(db, run_id)

    with pytest.raises(ledger.NothingToRedrive) as refused:
        redrive(db, run_id)

    assert (refused.value.reason, refused.value.status) == ("nothing_to_redrive", RunStatus.SUCCEEDED)
    assert unchanged(db, run_id) == before


def ended_beside_an_active_run(db: Any, fails_some_items: FailsSomeItems) -> tuple[int, int, Any]:
    """A run that ended partially failed, and a newer run of its operation still active on its
    warehouse: the run's id, the other's, and the run as it stands (``unchanged``)."""
    ids, run_id, chunks = planned_run(db, products=10, chunk_size=10, operation=fails_some_items.name, tolerated="50")
    fails_some_items.failing = {ids[0]}
    run_every_chunk(db, run_id, chunks, "first")
    assert finalise(db, run_id) == RunStatus.PARTIALLY_FAILED
    other = new_run(db, get_run(db, run_id).warehouse_id, fails_some_items.name)
    before = unchanged(db, run_id)
    return run_id, other, before


def test_a_run_is_not_redriven_while_another_of_its_operation_is_active(
    db: Any, fails_some_items: FailsSomeItems
) -> None:
    run_id, other, before = ended_beside_an_active_run(db, fails_some_items)

    with pytest.raises(ledger.AnotherRunActive) as refused:
        redrive(db, run_id)

    assert (refused.value.reason, refused.value.active_run_id) == ("run_active", other)
    assert str(refused.value).startswith(f"run {other} of this operation is still active on this warehouse")
    assert unchanged(db, run_id) == before


def test_losing_the_race_for_the_one_active_run_is_refused_the_same_way(
    db: Any, fails_some_items: FailsSomeItems, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id, other, before = ended_beside_an_active_run(db, fails_some_items)
    # The other run's POST commits between the check and the redrive's own write: the index decides.
    real, calls = ledger.redrive.active_run_id, []

    def misses_the_first_time(*args: Any) -> int | None:
        calls.append(args)
        return None if len(calls) == 1 else real(*args)

    monkeypatch.setattr(ledger.redrive, "active_run_id", misses_the_first_time)

    with pytest.raises(ledger.AnotherRunActive) as refused:
        redrive(db, run_id)

    assert len(calls) == 2  # the check, then the lookup after the index refused the write
    assert (refused.value.active_run_id, refused.value.status) == (other, RunStatus.PARTIALLY_FAILED)
    assert unchanged(db, run_id) == before


def test_redriving_an_unknown_run_raises_no_result(db: Any) -> None:
    from sqlalchemy.exc import NoResultFound

    with pytest.raises(NoResultFound):
        redrive(db, 2_000_000_000)
