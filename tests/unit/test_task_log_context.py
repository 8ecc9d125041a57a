"""A task's log context (tasks/logcontext.py): what it binds from the task's request and arguments and
from its chunk's claim, that it is gone when the task ends, and the worker's logging from the ini
(tasks/logsetup.py)."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import structlog
from celery import Celery

from tasks.logcontext import bind_claim, bind_task, unbind_task
from tests.log_capture import run_with_ini
from warehouse.ledger import ClaimedChunk


@pytest.fixture(autouse=True)
def empty_context() -> Iterator[None]:
    structlog.contextvars.clear_contextvars()
    yield
    structlog.contextvars.clear_contextvars()


def fake_task(name: str, retries: int = 0) -> Any:
    """What the signals are given: the task and its request."""
    return SimpleNamespace(name=name, request=SimpleNamespace(hostname="w1@node-a", retries=retries))


def context() -> dict[str, Any]:
    return structlog.contextvars.get_contextvars()


def claimed(attempt: int = 1, operation: str = "valuation") -> ClaimedChunk:
    return ClaimedChunk(id=9, run_id=3, start_id=1, end_id=500, attempt=attempt, warehouse_id=1,
                        operation=operation, planned_on=dt.date(2026, 1, 1))


def test_a_chunk_task_binds_its_task_worker_run_chunk_and_operation() -> None:
    task = fake_task("processSomeProducts", retries=2)
    bind_task(task_id="t-1", task=task, args=(3, 1, 500), kwargs={})

    assert context() == {
        "task": "processSomeProducts", "task_id": "t-1", "worker": "w1@node-a", "retries": 2,
        "run_id": 3, "start_id": 1, "end_id": 500,
    }


def test_the_claim_adds_the_ledger_s_attempt_and_the_operation() -> None:
    bind_task(task_id="t-1", task=fake_task("processSomeProducts"), args=(3, 1, 500), kwargs={})
    assert "operation" not in context()  # the message carries only the run's id and the bounds

    bind_claim(claimed(attempt=4, operation="shipping_labels"))

    assert (context()["attempt"], context()["operation"], context()["start_id"]) == (4, "shipping_labels", 1)


@pytest.mark.parametrize(
    ("name", "args", "kwargs", "expected"),
    [
        ("processWholeWarehouse", (3,), {}, {"run_id": 3}),
        ("processFinished", (["done"] * 1000, 3), {}, {"run_id": 3}),  # not the chord's results
        ("processSomeProducts", (), {"run_id": 3, "start_id": 1, "end_id": 500}, {"run_id": 3, "start_id": 1, "end_id": 500}),
        ("deliverWebhook", (12,), {}, {}),
    ],
    ids=["plan", "finish", "keywords", "other-task"],
)
def test_each_task_binds_the_run_and_chunk_its_arguments_name(name: str, args: tuple, kwargs: dict, expected: dict) -> None:
    bind_task(task_id="t-1", task=fake_task(name), args=args, kwargs=kwargs)

    bound = context()
    assert {key: bound[key] for key in ("run_id", "start_id", "end_id") if key in bound} == expected
    assert bound["task"] == name and "results" not in bound


def test_nothing_of_a_task_is_left_after_it_ends_nor_seen_by_the_next() -> None:
    bind_task(task_id="t-1", task=fake_task("processSomeProducts"), args=(3, 1, 500), kwargs={})
    bind_claim(claimed())
    unbind_task(task_id="t-1")
    assert context() == {}

    bind_task(task_id="t-2", task=fake_task("processWholeWarehouse"), args=(4,), kwargs={})

    assert context() == {"task": "processWholeWarehouse", "task_id": "t-2", "worker": "w1@node-a", "retries": 0, "run_id": 4}


def test_a_task_run_inline_gets_a_context_of_its_own_and_gives_its_caller_s_back() -> None:
    structlog.contextvars.bind_contextvars(request_id="r-1", method="POST")
    bind_task(task_id="t-1", task=fake_task("processWholeWarehouse"), args=(3,), kwargs={})
    assert "request_id" not in context() and context()["run_id"] == 3

    unbind_task(task_id="t-1")

    assert context() == {"request_id": "r-1", "method": "POST"}


def test_tasks_on_two_threads_keep_their_own_context() -> None:
    barrier = threading.Barrier(2)
    seen: dict[int, dict[str, Any]] = {}

    def run(run_id: int) -> None:
        bind_task(task_id=f"t-{run_id}", task=fake_task("processWholeWarehouse"), args=(run_id,), kwargs={})
        barrier.wait(timeout=10)  # both bound before either reads
        seen[run_id] = context()
        unbind_task()

    threads = [threading.Thread(target=run, args=(run_id,)) for run_id in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)

    assert {run_id: (bound["run_id"], bound["task_id"]) for run_id, bound in seen.items()} == {1: (1, "t-1"), 2: (2, "t-2")}


def test_a_real_celery_task_sees_its_context_while_it_runs_and_none_after() -> None:
    app = Celery("log-context-test", set_as_current=False)

    @app.task(name="processSomeProducts", bind=True, shared=False)  # not added to every app made later
    def process(self: Any, run_id: int, start_id: int, end_id: int) -> dict[str, Any]:
        return structlog.contextvars.get_contextvars()

    # .result, not .get(): run after a test that leaves Celery thinking a task is running, get()
    # refuses to wait inside a task.
    bound = process.apply(args=(3, 1, 500), task_id="t-real").result

    assert (bound["task"], bound["task_id"], bound["run_id"], bound["start_id"], bound["end_id"]) == (
        "processSomeProducts", "t-real", 3, 1, 500
    )
    assert bound["retries"] == 0 and "worker" in bound
    assert context() == {}


def test_the_worker_s_logging_is_the_ini_s_and_a_more_verbose_loglevel_lowers_celery_s_only() -> None:
    script = """
import logging, sys
from tasks.logsetup import configure_from_ini
configure_from_ini(sys.argv[1], logging.WARNING)  # celery worker's default --loglevel
celery, root = logging.getLogger("celery"), logging.getLogger()
print(celery.level, root.level, type(root.handlers[0].formatter).__name__)
configure_from_ini(sys.argv[1], logging.DEBUG)
print(celery.level, root.level)
from billiard.util import get_logger
print(get_logger().level, get_logger().propagate)  # the pool's deaths of children, in the ini's lines
"""
    done = run_with_ini(script, "production.ini")

    assert done.stdout.splitlines() == ["20 30 JsonFormatter", "10 30", "40 True"]  # INFO kept; root stays WARNING


def test_a_run_level_task_binds_the_operation_of_the_run_its_ledger_call_loaded(db: Any, dbsession: Any) -> None:
    from tasks.logcontext import bind_run
    from warehouse.models import Run

    run = Run(warehouse_id=db.add_warehouse().id, operation="shipping_labels", status="running", chunk_size=500)
    dbsession.add(run)
    dbsession.flush()
    bind_task(task_id="t-1", task=fake_task("processFinished"), args=([], run.id), kwargs={})

    bind_run(dbsession, run.id)

    assert context()["operation"] == "shipping_labels"
