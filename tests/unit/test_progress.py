"""The run page's answers, computed: the states string, the bucket widths, the buckets, the ETag match,
and the per-run keeping of answers (warehouse/ledger/progress.py, conditional.py, progress_cache.py)."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from collections import Counter

import pytest

from warehouse.conditional import Representation, etag_matches
from warehouse.ledger.progress import MAX_BUCKETS, bucket_seconds, fill_buckets, node_shares, tally
from warehouse.progress_cache import ProgressAnswers, RunFacts

T0 = dt.datetime(2030, 1, 1, 12, 0, 0, 250000, tzinfo=dt.timezone.utc)


# --- states ----------------------------------------------------------------------------------------


def test_tally_gives_one_letter_per_chunk_in_order_and_every_count() -> None:
    rows = [("done", "w1@a", 1), ("done", "w2@b", 2), ("running", "w1@a", 3), ("failed", "w2@b", None),
            ("skipped", None, None), ("pending", None, None)]

    counted = tally(rows)

    assert counted.states == "ddrfsp"
    assert counted.counts == {"pending": 1, "running": 1, "done": 2, "failed": 1, "skipped": 1}
    assert counted.by_node == {"w1@a": Counter(done=1, running=1), "w2@b": Counter(done=1, failed=1)}
    assert counted.processes == {"w1@a": {1, 3}, "w2@b": {2}}


def test_tally_of_no_chunks_is_empty_with_zero_counts() -> None:
    counted = tally([])
    assert (counted.states, counted.by_node, counted.processes) == ("", {}, {})
    assert set(counted.counts.values()) == {0} and len(counted.counts) == 5


def test_node_shares_most_done_first_and_alive_unknown_without_a_process() -> None:
    by_node = {"a@x": Counter(done=3), "b@x": Counter(done=9, running=2), "c@x": Counter(done=3, failed=1)}

    shares = node_shares(by_node, {"a@x": False, "b@x": True})

    assert [(s.node, s.alive, s.chunks_running, s.chunks_done, s.chunks_failed) for s in shares] == [
        ("b@x", True, 2, 9, 0),
        ("a@x", False, 0, 3, 0),
        ("c@x", None, 0, 3, 1),
    ]


# --- bucket widths ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("span", "width"),
    [(0, 1), (0.4, 1), (120, 1), (120.5, 2), (240, 2), (241, 5), (600, 5), (601, 10), (1800, 15), (3600, 30),
     (7200, 60), (14_400, 120), (14_401, 300), (36_000, 300), (36_001, 600), (86_400, 900), (432_000, 3600),
     (10_368_000, 86400), (10_368_001, 172800)],
)
def test_the_narrowest_round_width_with_at_most_120_buckets(span: float, width: int) -> None:
    assert bucket_seconds(span) == width


@pytest.mark.parametrize("span", [0.5, 59, 119.9, 601, 5000, 99_999, 10**6, 10**8])
def test_never_more_than_the_maximum_of_buckets(span: float) -> None:
    width = bucket_seconds(span)
    assert width >= 1 and -(-span // width) <= MAX_BUCKETS


# --- buckets ---------------------------------------------------------------------------------------


def test_empty_buckets_between_filled_ones_are_zeros_aligned_to_the_start() -> None:
    buckets = fill_buckets(T0, T0 + dt.timedelta(seconds=24), 5, [(0, 2, 1000), (3, 1, 250)])

    assert [b.start for b in buckets] == [T0 + dt.timedelta(seconds=5 * i) for i in range(5)]
    assert [(b.chunks, b.items, b.items_per_second) for b in buckets] == [
        (2, 1000, 200.0), (0, 0, 0.0), (0, 0, 0.0), (1, 250, 50.0), (0, 0, 0.0)
    ]


def test_chunks_a_clock_puts_before_the_start_or_past_the_end_land_in_the_first_or_last_bucket() -> None:
    buckets = fill_buckets(T0, T0 + dt.timedelta(seconds=10), 5, [(-1, 1, 10), (0, 1, 5), (7, 1, 3)])

    assert [(b.chunks, b.items) for b in buckets] == [(2, 15), (1, 3)]


def test_a_run_just_started_has_one_bucket() -> None:
    assert [(b.start, b.items) for b in fill_buckets(T0, T0, 1, [])] == [(T0, 0)]


def test_items_per_second_keeps_two_decimals() -> None:
    (bucket,) = fill_buckets(T0, T0 + dt.timedelta(seconds=300), 300, [(0, 1, 7)])
    assert bucket.items_per_second == 0.02


# --- ETags and the representation ----------------------------------------------------------------------


def test_a_representation_is_compact_json_with_its_gzip_and_a_weak_etag_of_its_bytes() -> None:
    answer = Representation.of({"states": "dd", "n": 2})

    assert answer.body == b'{"states":"dd","n":2}'
    assert gzip.decompress(answer.gzipped) == answer.body
    assert answer.etag.startswith('W/"') and answer.etag == Representation.of(json.loads(answer.body)).etag
    assert answer.etag != Representation.of({"states": "dp", "n": 2}).etag


@pytest.mark.parametrize(
    ("header", "matches"),
    [(None, False), ("", False), ('W/"abc"', True), ('"abc"', True), ('"x", W/"abc"', True), ("*", True),
     ('W/"abcd"', False), ("abc", False), ("\x00" * 50, False)],
)
def test_if_none_match_is_compared_weakly(header: str | None, matches: bool) -> None:
    assert etag_matches(header, 'W/"abc"') is matches


# --- keeping answers per run ----------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Run:
    """A run row as the view reads it, counting the reads, and answers counting the makes."""

    def __init__(self, status: str) -> None:
        self.status = status
        self.updated_at = T0
        self.reads = 0
        self.makes = 0

    def read(self) -> RunFacts:
        self.reads += 1
        return RunFacts(7, self.status, self.updated_at, T0, None)

    def make(self, run: RunFacts) -> Representation:
        self.makes += 1
        return Representation.of({"status": run.status, "make": self.makes})


def test_a_running_run_is_made_once_per_interval_whatever_the_callers() -> None:
    clock, run = Clock(), Run("running")
    answers = ProgressAnswers(1.0, timer=clock)

    first = [answers.get(7, run.read, run.make) for _ in range(5)]
    clock.now += 1.5
    later = answers.get(7, run.read, run.make)

    assert len({answer.etag for answer in first}) == 1
    assert later.etag != first[0].etag
    assert (run.reads, run.makes) == (2, 2)


def test_an_ended_run_is_made_once_then_costs_a_read_of_its_row_until_it_changes() -> None:
    clock, run = Clock(), Run("succeeded")
    answers = ProgressAnswers(1.0, timer=clock)

    kept = answers.get(7, run.read, run.make)
    for _ in range(3):
        clock.now += 1.5
        assert answers.get(7, run.read, run.make) is kept
    assert (run.reads, run.makes) == (4, 1)

    run.status, run.updated_at = "running", T0 + dt.timedelta(seconds=1)  # redriven
    clock.now += 1.5
    assert json.loads(answers.get(7, run.read, run.make).body)["status"] == "running"
    assert run.makes == 2


def test_off_still_keeps_an_ended_runs_answer() -> None:
    run = Run("failed")
    answers = ProgressAnswers(0)

    first = answers.get(7, run.read, run.make)
    assert answers.get(7, run.read, run.make) is first
    assert (run.reads, run.makes) == (2, 1)
