"""What every log line a task writes carries: its task, worker, run and chunk, attempt and operation.

Bound in ``structlog.contextvars`` when a task starts (``task_prerun``, sent in the process and
thread that run it: the prefork child, or the thread pool's thread) and cleared when it ends
(``task_postrun``); the formatters of ``warehouse.logs`` add it to every record logged in between,
whoever logs it. Celery's own "Task processSomeProducts[...] succeeded in 0.05s" line is one of
them: Celery logs it before it sends ``task_postrun``. The "received" line is logged by the worker's
main process, before any of this, and carries none of it.

A task's context starts empty, never with what the task before it in the same process bound: in a
pool child or thread, what is there before a task is what the last ``task_postrun`` left, nothing.
A task run inline (``Task.apply``, eager) inside a web request or another task gets the same, and
its caller's context back when it ends.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import structlog
from celery import Task
from celery.signals import task_postrun, task_prerun

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from warehouse.ledger import ClaimedChunk

# Which of each task's arguments to bind, by position (the design fixes these signatures). The
# chord's results are not bound: a list as long as the run's chunks.
BOUND_ARGUMENTS: dict[str, tuple[str | None, ...]] = {
    "processWholeWarehouse": ("run_id",),
    "processSomeProducts": ("run_id", "start_id", "end_id"),
    "processFinished": (None, "run_id"),
}

# The contexts of the callers of tasks run inline, innermost last; not a structlog key, so that
# clearing structlog's context leaves it alone.
_callers: ContextVar[tuple[dict[str, Any], ...]] = ContextVar("warehouse_task_log_callers", default=())


def task_context(task: Task, task_id: str | None, args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """The fields a task's lines carry, from its request and its arguments."""
    request = task.request
    context: dict[str, Any] = {
        "task": task.name,
        "task_id": task_id,
        "worker": request.hostname,
        "retries": request.retries,
    }
    names = BOUND_ARGUMENTS.get(task.name, ())
    kwargs = kwargs or {}
    arguments = dict(zip(names, args or ())) | {name: kwargs[name] for name in names if name in kwargs}
    context.update((name, value) for name, value in arguments.items() if name is not None)
    return context


@task_prerun.connect
def bind_task(task_id: str | None = None, task: Task | None = None, args: Any = None, kwargs: Any = None, **_: Any) -> None:
    if task is None:
        return
    _callers.set((*_callers.get(), structlog.contextvars.get_contextvars()))
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(**task_context(task, task_id, args, kwargs))


@task_postrun.connect
def unbind_task(**_: Any) -> None:
    structlog.contextvars.clear_contextvars()
    callers = _callers.get()
    if callers:
        _callers.set(callers[:-1])
        structlog.contextvars.bind_contextvars(**callers[-1])


def bind_claim(claimed: ClaimedChunk) -> None:
    """What the chunk's claim tells: which attempt this is (the ledger's count, across redeliveries
    and retries, where Celery's ``retries`` counts this message's retries only) and the operation."""
    structlog.contextvars.bind_contextvars(attempt=claimed.attempt, operation=claimed.operation)


def bind_run(session: Session, run_id: int) -> None:
    """A run-level task's operation, once its ledger call has loaded the run (so this reads the
    session's identity map, not the database): the messages carry only the run's id."""
    from warehouse.models import Run

    run = session.get(Run, run_id)
    if run is not None:
        structlog.contextvars.bind_contextvars(operation=run.operation)
