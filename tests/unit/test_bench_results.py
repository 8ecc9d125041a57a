"""How a benchmark's result is judged (bench/common.py): a failed correctness check fails the run and
keeps the figures from being written; a missed speed target is reported and fails nothing."""

from __future__ import annotations

from bench.common import Result, checks_list


def test_a_missed_target_is_reported_but_fails_nothing() -> None:
    result = Result("example")
    result.check("every product valued", True, "all")
    result.target("cancel settled ≤ 5 s", False, "5.3 s")

    assert result.ok
    listed = checks_list([result])
    assert "- ok: example: every product valued (all)" in listed
    assert "- target **NOT met**: example: cancel settled ≤ 5 s (5.3 s)" in listed


def test_a_failed_check_fails_the_result_whatever_the_targets() -> None:
    result = Result("example")
    result.target("poll p99 ≤ 250 ms", True, "6 ms")
    result.check("no poll failed", False, "3 of 1,000")

    assert not result.ok
    listed = checks_list([result])
    assert "- target met: example: poll p99 ≤ 250 ms (6 ms)" in listed
    assert "- **FAILED**: example: no poll failed (3 of 1,000)" in listed
