"""Due schedules becoming runs, with an injected clock, on a SQLite database of this module's own (the
ticker fires every due schedule there is): one run per tick, missed ticks folded into one, paused
schedules starting nothing, a tick during an active run recorded as skipped, daylight saving both
ways, and firers racing on one tick (warehouse/schedules/ticker.py)."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

import tasks.schedules
from tasks.app import make_celery
from tasks.chores import CHORES
from tests.conftest import Database
from tests.sqlite_databases import own_sqlite_database
from warehouse.models import Run, RunStatus, Schedule, ScheduleTick, Warehouse
from warehouse.schedules import create_schedule, delete_schedule, fire_due_schedules, fire_schedule, update_schedule

UTC = dt.timezone.utc


def at(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=UTC)


def utc(moment: dt.datetime | None) -> dt.datetime | None:
    return None if moment is None else moment.replace(tzinfo=UTC)  # SQLite hands back naive UTC


@pytest.fixture(scope="module")
def ticker_factory(tmp_path_factory: pytest.TempPathFactory, make_settings: Any) -> Iterator[sessionmaker[Session]]:
    with own_sqlite_database(tmp_path_factory.mktemp("ticker") / "ticker.sqlite", make_settings) as factory:
        yield factory


@pytest.fixture
def tdb(ticker_factory: sessionmaker[Session]) -> Database:
    fresh = Database(ticker_factory)
    fresh.execute(delete(Warehouse))  # schedules, ticks and runs go with it
    return fresh


def add_schedule(tdb: Database, created: dt.datetime, cron: str, timezone: str = "UTC", **fields: Any) -> int:
    warehouse = tdb.add_warehouse()
    with tdb.session() as session:
        return create_schedule(session, warehouse, {"operation": "valuation", "cron": cron, "timezone": timezone, **fields},
                               now=created).id


def ticks(tdb: Database, schedule_id: int) -> list[ScheduleTick]:
    return tdb.scalars(select(ScheduleTick).where(ScheduleTick.schedule_id == schedule_id).order_by(ScheduleTick.tick_at))


def runs(tdb: Database, schedule_id: int) -> list[Run]:
    return tdb.scalars(select(Run).where(Run.schedule_id == schedule_id).order_by(Run.id))


def next_run_at(tdb: Database, schedule_id: int) -> dt.datetime | None:
    return utc(tdb.scalar(select(Schedule.next_run_at).where(Schedule.id == schedule_id)))


def end_runs(tdb: Database) -> None:
    """As if every run had finished: the next tick may start one again."""
    tdb.execute(update(Run).values(status=RunStatus.SUCCEEDED))


def test_a_due_tick_starts_one_run_that_names_its_schedule_and_tick(tdb: Database) -> None:
    schedule_id = add_schedule(tdb, at(2026, 5, 1, 5, 0), "0 6 * * *", chunk_size=7, tolerated_failure_percent=2.5)
    assert next_run_at(tdb, schedule_id) == at(2026, 5, 1, 6, 0)

    assert fire_due_schedules(tdb.session_factory, at(2026, 5, 1, 5, 59)) == []
    fired = fire_due_schedules(tdb.session_factory, at(2026, 5, 1, 6, 0, 4))

    [run] = runs(tdb, schedule_id)
    assert [(f.schedule_id, f.tick_at, f.outcome, f.run_id, f.missed_ticks) for f in fired] == [
        (schedule_id, at(2026, 5, 1, 6, 0), "started", run.id, 0)
    ]
    assert (run.status, run.operation, run.chunk_size, float(run.tolerated_failure_percent)) == ("pending", "valuation", 7, 2.5)
    assert utc(run.scheduled_for) == at(2026, 5, 1, 6, 0)
    [tick] = ticks(tdb, schedule_id)
    assert (tick.outcome, tick.run_id, tick.missed_ticks, tick.active_run_id) == ("started", run.id, 0, None)
    assert next_run_at(tdb, schedule_id) == at(2026, 5, 2, 6, 0)


def test_a_schedule_without_a_chunk_size_takes_the_default_of_the_moment(tdb: Database) -> None:
    schedule_id = add_schedule(tdb, at(2026, 5, 1), "0 6 * * *")

    fire_due_schedules(tdb.session_factory, at(2026, 5, 1, 6), chunk_size_for={"valuation": 123}.__getitem__)

    assert [run.chunk_size for run in runs(tdb, schedule_id)] == [123]


def test_firing_again_for_the_same_moment_starts_nothing_more(tdb: Database) -> None:
    schedule_id = add_schedule(tdb, at(2026, 5, 1), "*/5 * * * *")
    now = at(2026, 5, 1, 0, 5, 1)

    first = fire_due_schedules(tdb.session_factory, now)
    second = fire_due_schedules(tdb.session_factory, now)

    assert len(first) == 1 and second == []
    assert len(runs(tdb, schedule_id)) == 1 and len(ticks(tdb, schedule_id)) == 1


def test_ticks_missed_while_everything_was_down_start_one_run_for_the_latest(tdb: Database) -> None:
    schedule_id = add_schedule(tdb, at(2026, 5, 1, 0, 30), "0 * * * *")  # hourly, first tick 01:00

    [fired] = fire_due_schedules(tdb.session_factory, at(2026, 5, 1, 6, 10))  # back at 06:10

    assert (fired.tick_at, fired.outcome, fired.missed_ticks) == (at(2026, 5, 1, 6), "started", 5)  # 01:00-05:00
    assert len(runs(tdb, schedule_id)) == 1
    assert [(utc(t.tick_at), t.missed_ticks) for t in ticks(tdb, schedule_id)] == [(at(2026, 5, 1, 6), 5)]
    assert next_run_at(tdb, schedule_id) == at(2026, 5, 1, 7)


def test_a_paused_schedule_starts_nothing_and_resumes_from_the_next_tick_after_now(tdb: Database) -> None:
    schedule_id = add_schedule(tdb, at(2026, 5, 1), "0 * * * *")
    with tdb.session() as session:
        update_schedule(session, session.get_one(Schedule, schedule_id), {"enabled": False}, now=at(2026, 5, 1, 0, 10))
    assert next_run_at(tdb, schedule_id) is None

    assert fire_due_schedules(tdb.session_factory, at(2026, 5, 1, 9)) == []
    assert runs(tdb, schedule_id) == [] and ticks(tdb, schedule_id) == []

    with tdb.session() as session:
        update_schedule(session, session.get_one(Schedule, schedule_id), {"enabled": True}, now=at(2026, 5, 1, 9, 20))
    assert next_run_at(tdb, schedule_id) == at(2026, 5, 1, 10)  # not 01:00-09:00, missed while paused
    assert fire_due_schedules(tdb.session_factory, at(2026, 5, 1, 9, 59)) == []
    [fired] = fire_due_schedules(tdb.session_factory, at(2026, 5, 1, 10))
    assert (fired.outcome, fired.missed_ticks) == ("started", 0)


def test_a_tick_while_a_run_of_the_operation_is_active_is_recorded_as_skipped(tdb: Database) -> None:
    schedule_id = add_schedule(tdb, at(2026, 5, 1), "0 * * * *")
    [first] = fire_due_schedules(tdb.session_factory, at(2026, 5, 1, 1))  # its run is still pending

    [second] = fire_due_schedules(tdb.session_factory, at(2026, 5, 1, 2))

    assert (second.outcome, second.run_id, second.active_run_id) == ("skipped", None, first.run_id)
    skipped = ticks(tdb, schedule_id)[-1]
    assert (skipped.outcome, skipped.run_id, skipped.active_run_id) == ("skipped", None, first.run_id)
    assert skipped.reason == f"run {first.run_id} of valuation was still active on warehouse {warehouse_code(tdb, schedule_id)}: one run of an operation at a time"
    assert len(runs(tdb, schedule_id)) == 1
    assert next_run_at(tdb, schedule_id) == at(2026, 5, 1, 3)

    end_runs(tdb)
    [third] = fire_due_schedules(tdb.session_factory, at(2026, 5, 1, 3))
    assert third.outcome == "started" and len(runs(tdb, schedule_id)) == 2


def warehouse_code(tdb: Database, schedule_id: int) -> str:
    return tdb.scalar(select(Warehouse.code).join(Schedule, Schedule.warehouse_id == Warehouse.id).where(Schedule.id == schedule_id))


def fire_every(tdb: Database, start: dt.datetime, end: dt.datetime, step: dt.timedelta) -> list[dt.datetime]:
    """The ticks started by a firer that wakes every ``step`` from ``start`` to ``end`` (the injected
    clock), each run ending before the next wake."""
    started, now = [], start
    while now <= end:
        fired = [firing.tick_at for firing in fire_due_schedules(tdb.session_factory, now) if firing.outcome == "started"]
        if fired:
            started += fired
            end_runs(tdb)
        now += step
    return started


def test_spring_forward_a_daily_run_in_the_skipped_hour_runs_once_that_day(tdb: Database) -> None:
    # Europe/Berlin, 29 March 2026: 02:00 CET becomes 03:00 CEST; 02:30 never happens.
    add_schedule(tdb, at(2026, 3, 27, 20), "30 2 * * *", "Europe/Berlin")

    started = fire_every(tdb, at(2026, 3, 27, 20), at(2026, 3, 30, 4), dt.timedelta(minutes=5))

    # 01:30 UTC on the 29th is 03:30 CEST: the wall time as if the clocks had not gone forward yet.
    assert started == [at(2026, 3, 28, 1, 30), at(2026, 3, 29, 1, 30), at(2026, 3, 30, 0, 30)]


def test_fall_back_a_daily_run_in_the_repeated_hour_runs_once_that_day(tdb: Database) -> None:
    # Europe/Berlin, 25 October 2026: 03:00 CEST becomes 02:00 CET; 02:30 happens twice.
    add_schedule(tdb, at(2026, 10, 23, 20), "30 2 * * *", "Europe/Berlin")

    started = fire_every(tdb, at(2026, 10, 23, 20), at(2026, 10, 26, 4), dt.timedelta(minutes=5))

    # 00:30 UTC on the 25th is the first 02:30 (CEST); the second, 01:30 UTC (CET), starts nothing.
    assert started == [at(2026, 10, 24, 0, 30), at(2026, 10, 25, 0, 30), at(2026, 10, 26, 1, 30)]


def test_two_firers_racing_on_one_tick_start_one_run(tdb: Database) -> None:
    schedule_ids = [add_schedule(tdb, at(2026, 5, 1), "*/5 * * * *") for _ in range(3)]
    now = at(2026, 5, 1, 0, 5)
    barrier = threading.Barrier(4)
    fired: list[Any] = []

    def firer() -> None:
        barrier.wait()
        fired.extend(fire_due_schedules(tdb.session_factory, now))

    threads = [threading.Thread(target=firer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(firing.schedule_id for firing in fired) == schedule_ids
    for schedule_id in schedule_ids:
        assert len(runs(tdb, schedule_id)) == 1 and len(ticks(tdb, schedule_id)) == 1


def test_a_firer_that_loses_on_the_unique_key_rolls_its_run_back(tdb: Database) -> None:
    """As if another process recorded the tick but this one still read the schedule as due (its
    next_run_at put back): the unique key refuses the second tick, and the run goes with it."""
    schedule_id = add_schedule(tdb, at(2026, 5, 1), "0 6 * * *")
    fire_due_schedules(tdb.session_factory, at(2026, 5, 1, 6))
    end_runs(tdb)
    tdb.execute(update(Schedule).where(Schedule.id == schedule_id).values(next_run_at=at(2026, 5, 1, 6)))

    assert fire_due_schedules(tdb.session_factory, at(2026, 5, 1, 6, 1)) == []

    assert len(runs(tdb, schedule_id)) == 1 and len(ticks(tdb, schedule_id)) == 1


def test_a_worker_dying_mid_tick_leaves_the_tick_due(tdb: Database) -> None:
    """Nothing of a tick is kept unless all of it commits: a transaction that fails after the run is
    recorded leaves no run, no tick, and the schedule still due."""
    schedule_id = add_schedule(tdb, at(2026, 5, 1), "0 6 * * *")
    with pytest.raises(RuntimeError), tdb.session() as session:
        assert fire_schedule(session, schedule_id, at(2026, 5, 1, 6), lambda operation: 500) is not None
        raise RuntimeError("the process dies before its commit")

    assert runs(tdb, schedule_id) == [] and ticks(tdb, schedule_id) == []
    assert next_run_at(tdb, schedule_id) == at(2026, 5, 1, 6)
    assert len(fire_due_schedules(tdb.session_factory, at(2026, 5, 1, 6, 0, 5))) == 1


def test_a_tick_of_an_operation_no_longer_known_is_skipped_with_the_reason(tdb: Database) -> None:
    schedule_id = add_schedule(tdb, at(2026, 5, 1), "0 6 * * *")
    tdb.execute(update(Schedule).where(Schedule.id == schedule_id).values(operation="retired_operation"))

    [fired] = fire_due_schedules(tdb.session_factory, at(2026, 5, 1, 6))

    assert fired.outcome == "skipped" and runs(tdb, schedule_id) == []
    assert ticks(tdb, schedule_id)[0].reason == "operation 'retired_operation' is not known to this service any more"


def test_the_chore_fires_and_sends_each_started_runs_first_task(
    tdb: Database, make_settings: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    schedule_id = add_schedule(tdb, dt.datetime.now(UTC) - dt.timedelta(hours=2), "0 * * * *")
    sent: list[int] = []
    monkeypatch.setattr(tasks.schedules, "send_start", lambda app, run_id: sent.append(run_id))

    assert tasks.schedules.fire_schedules in CHORES
    fired = tasks.schedules.fire_schedules(None, tdb.session_factory, {"warehouse.chunk_size": "50"})

    [run] = runs(tdb, schedule_id)
    assert [firing.run_id for firing in fired] == sent == [run.id]
    assert (run.chunk_size, fired[0].missed_ticks) == (50, 1)


def test_beat_sends_fire_schedules_on_the_runs_queue_as_often_as_the_setting_says(make_settings: Any, tmp_path: Any) -> None:
    app = make_celery(make_settings(tmp_path / "beat.sqlite", **{"warehouse.schedule_fire_seconds": "3"}))
    default = make_celery(make_settings(tmp_path / "beat.sqlite"))

    assert app.conf.beat_schedule["fire-schedules"] == {"task": "fireSchedules", "schedule": 3.0}
    assert default.conf.beat_schedule["fire-schedules"]["schedule"] == 10.0
    assert "reconcile-runs" in app.conf.beat_schedule
    assert app.conf.task_routes["fireSchedules"] == {"queue": "celery.runs"}
    assert "fireSchedules" in app.tasks


def test_deleting_a_schedule_keeps_its_runs_without_it(tdb: Database) -> None:
    schedule_id = add_schedule(tdb, at(2026, 5, 1), "0 6 * * *")
    fire_due_schedules(tdb.session_factory, at(2026, 5, 1, 6))
    [run] = runs(tdb, schedule_id)

    with tdb.session() as session:
        delete_schedule(session, session.get_one(Schedule, schedule_id))

    assert tdb.scalar(select(Run.schedule_id).where(Run.id == run.id)) is None
    assert ticks(tdb, schedule_id) == []
