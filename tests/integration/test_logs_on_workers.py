"""A task's log lines, captured from a real ``celery worker`` (prefork, PostgreSQL and Redis) logging
through an ini with the JSON formatter: each parses as JSON, and those of a chunk carry its run,
operation, bounds, attempt, task id and worker, as the ledger's run_chunks rows have them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.integration.checks import chunk_rows
from warehouse.scripts.seed import seed

RUN_TIMEOUT = 120.0


def lines_after_ready(log: str, node: str) -> list[dict[str, Any]]:
    """Every line the worker wrote once it was ready, each parsed as JSON (a line that is not fails
    the test). Before it, Celery prints its banner on stdout, and Python a warning or two, as text."""
    raw = log.splitlines()
    ready = [index for index, line in enumerate(raw) if f'"message": "{node} ready."' in line]
    assert ready, f"no JSON 'ready' line from {node} in its log:\n{log}"
    return [json.loads(line) for line in raw[ready[0]:]]


@pytest.mark.timeout(180, method="signal")
def test_a_run_s_task_lines_are_json_with_the_run_and_chunk_fields(make_lane, harness) -> None:
    lane = make_lane("logs", workers=["lg1"], concurrency=2, log_formatter="warehouse.logs.JsonFormatter")
    (worker,) = lane.workers
    seed(lane.engine, "it-logs", products=1_500, shipments=0)

    run = lane.api.wait_until_finished(lane.api.start_run("it-logs", "valuation")["id"], timeout=RUN_TIMEOUT)
    lane.wait_until_idle(30.0)  # every line the run's tasks will write is in the log now

    assert run["status"] == "succeeded", run
    log = worker.log()
    lines = lines_after_ready(log, worker.name)
    assert all(line["timestamp"].endswith("Z") and line["level"] and line["logger"] for line in lines)
    by_task: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        if "task_id" in line:  # written inside a task, in a pool child
            by_task.setdefault(line["task"], []).append(line)

    chunks = chunk_rows(lane.engine, run["id"])
    assert len(chunks) == 3
    chunk_lines = by_task["processSomeProducts"]
    for chunk in chunks:
        # Celery's "Task processSomeProducts[...] succeeded in ...s: 'done'", at least, for each.
        (succeeded,) = [line for line in chunk_lines if line["task_id"] == chunk["task_id"] and " succeeded in " in line["message"]]
        assert {key: succeeded[key] for key in ("run_id", "operation", "start_id", "end_id", "attempt", "task_id", "worker")} == {
            "run_id": run["id"], "operation": "valuation", "start_id": chunk["start_id"], "end_id": chunk["end_id"],
            "attempt": chunk["attempts"], "task_id": chunk["task_id"], "worker": chunk["worker_hostname"],
        }
        assert succeeded["worker"] == worker.name and succeeded["retries"] == 0
    assert {line["task_id"] for line in chunk_lines} == {chunk["task_id"] for chunk in chunks}
    # The run's own tasks carry its id too: "run N: dispatched 3 chunks", "run N finished: succeeded".
    for name, said in (("processWholeWarehouse", f"run {run['id']}: dispatched 3 chunks"), ("processFinished", f"run {run['id']} finished: succeeded")):
        (line,) = [line for line in by_task[name] if line["message"] == said]
        assert line["operation"] == "valuation"  # bound once the ledger call loaded the run
        assert all(line["run_id"] == run["id"] and "start_id" not in line for line in by_task[name])
    # The worker's own lines outside any task ("Task ... received") carry no task's fields.
    received = [line for line in lines if line["message"].endswith("] received")]
    assert len(received) >= 5 and not any("run_id" in line for line in received)
    for secret in (harness.OPERATOR_TOKEN, harness.VIEWER_TOKEN):
        assert secret not in log
