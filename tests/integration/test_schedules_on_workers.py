"""Schedules on real processes: a schedule every minute, two ``celery beat`` processes sending
``fireSchedules`` every two seconds and two ``celery worker`` nodes (whose heartbeats fire schedules
too), all racing for the same ticks over PostgreSQL and Redis. Exactly one run per minute comes of it.

It runs on a lane of its own (database, queue, workers), so the ticker sees only this test's
schedule. It lasts about three minutes: three ticks of a five-field cron are three minutes apart.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from sqlalchemy import text

from warehouse import scratch
from warehouse.scripts.seed import seed

TICKS = 3
TICKS_TIMEOUT = (TICKS + 1) * 60 + 30


def start_beat(harness: ModuleType, ini_file: Path, directory: Path, name: str) -> tuple[subprocess.Popen[bytes], Path]:
    """``celery -A tasks beat`` on ``ini_file``, its schedule file and log in ``directory``."""
    log_path = directory / f"{name}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tasks", "beat", "--loglevel=INFO", "-s", str(directory / f"{name}-schedule")],
        cwd=harness.REPO_ROOT,
        env=harness._worker_environment(ini_file),
        stdin=subprocess.DEVNULL,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=scratch.parent_death_signal(),
    )
    return process, log_path


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def ticks_of(engine: Any, schedule_id: int) -> list[Any]:
    with engine.connect() as connection:
        return list(connection.execute(
            text("SELECT tick_at, outcome, run_id, missed_ticks FROM schedule_ticks WHERE schedule_id = :id ORDER BY tick_at"),
            {"id": schedule_id},
        ))


def runs_of(engine: Any, schedule_id: int) -> list[Any]:
    with engine.connect() as connection:
        return list(connection.execute(
            text("SELECT id, scheduled_for, status FROM runs WHERE schedule_id = :id ORDER BY id"), {"id": schedule_id}
        ))


@pytest.mark.timeout(TICKS_TIMEOUT + 120, method="signal")
def test_two_beats_and_two_workers_start_exactly_one_run_per_minute(
    make_lane: Callable[..., Any], harness: ModuleType, tmp_path: Path
) -> None:
    lane = make_lane("schedules", workers=["s1", "s2"], settings={"warehouse.schedule_fire_seconds": "2"})
    code = "it-schedules"
    seed(lane.engine, code, products=300, shipments=0)
    api = lane.api
    schedule = api.app.post_json(
        f"/api/warehouses/{code}/schedules", {"operation": "valuation", "cron": "* * * * *"}, headers=api.operator, status=201
    ).json
    beats = [start_beat(harness, lane.ini_file, tmp_path, name) for name in ("beat1", "beat2")]
    try:
        deadline = time.monotonic() + TICKS_TIMEOUT
        while len(ticks := ticks_of(lane.engine, schedule["id"])) < TICKS:
            assert time.monotonic() < deadline, f"only {len(ticks)} ticks in {TICKS_TIMEOUT} s: {ticks}"
            assert all(process.poll() is None for process, _ in beats), "a beat process exited"
            time.sleep(1)
    finally:
        for process, _ in beats:
            stop(process)

    first = ticks[:TICKS]
    minute = dt.timedelta(minutes=1)
    assert [tick.tick_at - first[0].tick_at for tick in first] == [minute * n for n in range(TICKS)]
    assert first[0].tick_at == dt.datetime.fromisoformat(schedule["next_run_at"])
    assert [(tick.outcome, tick.missed_ticks) for tick in first] == [("started", 0)] * TICKS
    runs = {run.id: run for run in runs_of(lane.engine, schedule["id"])}
    for tick in first:  # one run per tick, and the run names that tick
        assert [run.id for run in runs.values() if run.scheduled_for == tick.tick_at] == [tick.run_id]
    for tick in first:
        done = api.wait_until_finished(tick.run_id, timeout=60)
        assert (done["status"], done["schedule_id"], done["items"]["done"]) == ("succeeded", schedule["id"], 300)
        assert dt.datetime.fromisoformat(done["scheduled_for"]) == tick.tick_at
    # Both beats were in the race: each sent fireSchedules many times, and the workers ran them.
    for process, log_path in beats:
        assert log_path.read_text().count("Sending due task fire-schedules (fireSchedules)") >= 30, log_path.read_text()[-2000:]
    assert sum(worker.log().count("Task fireSchedules[") for worker in lane.workers) >= 60
    listed = api.app.get(f"/api/warehouses/{code}/schedules", headers=api.viewer, status=200).json["schedules"]
    assert [tick["run_id"] for tick in listed[0]["recent_ticks"]][-TICKS:] == [tick.run_id for tick in reversed(first)]
