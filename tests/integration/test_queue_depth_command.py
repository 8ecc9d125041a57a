"""``warehouse-queue-depth`` against a real Redis DB and PostgreSQL database of its own: messages
sent to both queues and nobody consuming them, worker processes alive, stopped and silent in the
ledger; the default report, and the CloudWatch input the AWS CLI takes."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from types import ModuleType

import pytest
from sqlalchemy import update

from warehouse import scratch
from warehouse.db import make_session_factory, transaction
from warehouse.ledger.workers import heartbeat, register_worker
from warehouse.models import WorkerProcess
from warehouse.scripts import queue_depth

bounded = pytest.mark.timeout(120, method="signal")


@pytest.fixture
def depth_ini(services: None, harness: ModuleType, tmp_path: Path) -> Iterator[Path]:
    """An ini on a database and a Redis DB of this test's own (nothing else sends to or consumes
    from them), with 3 chunk messages and 1 run-level message queued, and in the ledger two workers
    alive, one stopped and one silent past the dead-worker timeout."""
    with ExitStack() as resources:
        database_url = resources.enter_context(
            scratch.throwaway_database(harness.PG_HOST, harness.PG_PORT, harness.PG_USER, "warehouse_depth")
        )
        redis_url = resources.enter_context(harness.claimed_redis_url("the queue-depth test"))
        ini = harness.write_ini(tmp_path / "depth.ini", database_url, redis_url)
        _settings, engine, app = harness.open_ini(ini, resources)
        for number in range(3):
            app.send_task("processSomeProducts", args=[number])
        app.send_task("processWholeWarehouse", args=[1])
        with transaction(make_session_factory(engine)) as session:
            alive = [register_worker(session, "n1", "h1", pid) for pid in (11, 12)]
            stopped, silent = register_worker(session, "n2", "h2", 21), register_worker(session, "n2", "h2", 22)
            heartbeat(session, stopped, 0, 0, stopping=True)
            long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
            session.execute(update(WorkerProcess).where(WorkerProcess.id == silent).values(last_seen_at=long_ago))
        assert len(alive) == 2
        yield ini


def run_command(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    assert queue_depth.main(list(args)) == 0
    return json.loads(capsys.readouterr().out)


@bounded
def test_reports_each_queue_the_workers_alive_and_the_backlog_per_worker(depth_ini: Path, capsys) -> None:
    assert run_command(capsys, str(depth_ini)) == {
        "queues": [
            {"queue": "celery", "ready": 3, "unacked": 0},
            {"queue": "celery.runs", "ready": 1, "unacked": 0},
        ],
        "workers_alive": 2,
        "backlog_per_worker": 2.0,
    }


@bounded
def test_prints_what_aws_cloudwatch_put_metric_data_takes(depth_ini: Path, capsys) -> None:
    document = run_command(capsys, str(depth_ini), "--cloudwatch", "--namespace", "WarehouseTest")

    assert set(document) == {"Namespace", "MetricData"}
    assert document["Namespace"] == "WarehouseTest"
    data = {(datum["MetricName"], tuple(d["Value"] for d in datum.get("Dimensions", []))): datum for datum in document["MetricData"]}
    assert {key: datum["Value"] for key, datum in data.items()} == {
        ("QueueLength", ("celery",)): 3,
        ("QueueLength", ("celery.runs",)): 1,
        ("QueueUnacked", ("celery",)): 0,
        ("QueueUnacked", ("celery.runs",)): 0,
        ("WorkersAlive", ()): 2,
        ("BacklogPerWorker", ()): 2.0,
    }
    # The keys put-metric-data's input skeleton has, and nothing else (the CLI refuses unknown keys).
    for datum in document["MetricData"]:
        assert set(datum) <= {"MetricName", "Dimensions", "Value", "Unit"} and datum["Unit"] == "Count"
        assert all(set(dimension) == {"Name", "Value"} for dimension in datum.get("Dimensions", []))

