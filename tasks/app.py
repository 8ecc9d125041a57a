"""Build the Celery app from the same settings as the web app."""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from celery import Celery
from celery.signals import worker_process_init
from kombu import Exchange, Queue
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from warehouse import operations

from .connections import OneConnection, one_connection
from warehouse.db import make_engine, make_session_factory

# Delivery settings; each is explained in the README's "Delivery settings" section.
CELERY_DEFAULTS: dict[str, Any] = {
    "task_serializer": "json",
    "result_serializer": "json",
    "accept_content": ["json"],
    "enable_utc": True,
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "worker_prefetch_multiplier": 1,
    "result_expires": 7 * 24 * 3600,
    "broker_transport_options": {"visibility_timeout": 4 * 3600},
    "broker_connection_retry_on_startup": True,
    # With the broker down, give up publishing within about two seconds: the API answers 202 anyway
    # and the reconciler sends what was not sent (the ledger has it).
    "broker_connection_timeout": 2,
    "task_publish_retry_policy": {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 0.5},
    # `celery -A tasks beat` sends the reconciler every minute, fires the due schedules every 10 s
    # (``warehouse.schedule_fire_seconds``, tasks/schedules.py), and purges old runs' chunk details
    # every hour (tasks/retention.py).
    "beat_schedule": {
        "reconcile-runs": {"task": "reconcileRuns", "schedule": 60.0},
        "fire-schedules": {"task": "fireSchedules", "schedule": 10.0},
        "purge-run-details": {"task": "purgeRunDetails", "schedule": 3600.0},
    },
}


def _parse(value: Any) -> Any:
    """Ini values are strings; JSON-looking ones (numbers, booleans, objects, lists) become values."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


# A Redis connection that goes silent (a node cut off, a NAT or firewall dropping the flow) must fail
# within seconds rather than block for ever (redis-py's default): socket timeouts, keepalives, and
# health checks, which kombu 5.7 also runs on the BRPOP connection a consumer waits on. Celery on
# Redis has been reported stuck after a reconnect without them (celery#10205, #10302).
REDIS_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = {
    "socket_timeout": 15,
    "socket_connect_timeout": 5,
    "socket_keepalive": True,
    "health_check_interval": 10,
    "retry_on_timeout": True,
}
REDIS_RESULT_BACKEND_SETTINGS: dict[str, Any] = {
    "redis_socket_timeout": 15,
    "redis_socket_connect_timeout": 5,
    "redis_socket_keepalive": True,
    "redis_backend_health_check_interval": 10,
    "redis_retry_on_timeout": True,
}
# RabbitMQ: AMQP heartbeats every 10 s, so both ends notice a vanished peer within about 20 s (the
# broker then gives the dead consumer's unacknowledged messages to others at once).
AMQP_BROKER_SETTINGS: dict[str, Any] = {"broker_heartbeat": 10}
# Settings whose value is an object: the ini's keys are added to ours instead of replacing them all.
MERGED_SETTINGS = ("broker_transport_options", "result_backend_transport_options")


def _scheme(url: Any) -> str:
    return str(url or "").split(":", 1)[0].lower()


def celery_config(settings: Mapping[str, Any]) -> dict[str, Any]:
    config = dict(CELERY_DEFAULTS)
    from_ini = {
        key.removeprefix("celery."): _parse(value)
        for key, value in settings.items()
        if key.startswith("celery.") and not key.startswith("celery.embedded_")
    }
    broker, backend = _scheme(from_ini.get("broker_url")), _scheme(from_ini.get("result_backend"))
    if broker in ("redis", "rediss"):
        config["broker_transport_options"] = {**config["broker_transport_options"], **REDIS_BROKER_TRANSPORT_OPTIONS}
    elif broker in ("amqp", "amqps", "pyamqp"):
        config.update(AMQP_BROKER_SETTINGS)
    if backend in ("redis", "rediss"):
        config.update(REDIS_RESULT_BACKEND_SETTINGS)
    for key, value in from_ini.items():
        if key in MERGED_SETTINGS and isinstance(value, dict):
            config[key] = {**config.get(key, {}), **value}
        else:
            config[key] = value
    return config


class WorkerContext:
    """What tasks need from the warehouse app: settings and a database engine of their own.

    The engine is made on first use, so each forked pool child makes its own; ``worker_process_init``
    also drops any connection a child inherited, which must never be shared across a fork.
    """

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.settings = dict(settings)
        self._engine: Engine | None = None
        self._session_factory: sessionmaker[Session] | None = None
        self._lock = threading.Lock()
        # This process in the ledger's workers table, once it runs tasks (tasks/presence.py).
        self.presence: Any = None

    @property
    def session_factory(self) -> sessionmaker[Session]:
        with self._lock:
            if self._session_factory is None:
                self._engine = make_engine(self.settings, for_workers=True)
                self._session_factory = make_session_factory(self._engine)
            return self._session_factory

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A fresh session and transaction for one task invocation, closed when it ends."""
        with self.session_factory() as session, session.begin():
            yield session

    @contextmanager
    def one_connection(self) -> Iterator[OneConnection]:
        """One pooled connection for a task's steps, checked out once (tasks/connections.py)."""
        self.session_factory  # noqa: B018 - makes the engine on first use
        assert self._engine is not None
        with one_connection(self._engine) as connection:
            yield connection

    def forget_inherited_connections(self) -> None:
        if self._engine is not None:
            self._engine.dispose(close=False)


_contexts: weakref.WeakSet[WorkerContext] = weakref.WeakSet()


@worker_process_init.connect
def _after_fork(**_kwargs: Any) -> None:
    for context in list(_contexts):
        context.forget_inherited_connections()


# A run's own tasks (its planning and fan-out, its end, and the reconciler) go to a queue of their own
# beside the chunks' (``<default queue>.runs``; every worker consumes both), so that they never wait
# behind a backlog of chunks: a cancel ends its run in moments even with 20,000 chunks queued, and a
# run starts while another's chunks are still queued. A worker takes from each queue in turn.
# A webhook's delivery goes there too: it tells of a run's end, so it should not wait behind chunks
# either, and each is bounded by warehouse.webhook_timeout_seconds. Retention's purge is bounded by
# its time budget, and must not wait behind chunks either.
RUN_LEVEL_TASKS = (
    "processWholeWarehouse", "processFinished", "reconcileRuns", "fireSchedules", "deliverWebhook", "purgeRunDetails",
)


def runs_queue_name(default_queue: str) -> str:
    return f"{default_queue}.runs"


def route_run_level_tasks(app: Celery) -> None:
    """Declare the chunks' queue and the runs' queue, and route the run-level tasks to the latter
    (unless the ini declares queues of its own: then routing is the ini's business)."""
    if app.conf.task_queues:
        return
    default = app.conf.task_default_queue
    runs = runs_queue_name(default)
    app.conf.task_queues = (Queue(default, Exchange(default), routing_key=default), Queue(runs, Exchange(runs), routing_key=runs))
    app.conf.task_routes = {name: {"queue": runs} for name in RUN_LEVEL_TASKS}


def make_celery(settings: Mapping[str, Any]) -> Celery:
    # presence and node_metrics connect the worker signals that start them, logcontext those that
    # bind each task's log context; schedules and webhooks register their chores on import.
    from . import logcontext, node_metrics, presence, runs, schedules, webhooks  # noqa: F401

    operations.register_from_settings(settings)
    # So does a chunk size setting that is no size, or names no operation.
    operations.check_chunk_sizes(settings)
    # A metrics port that is no port stops every process that builds the app, naming the setting
    # (the worker would otherwise find out only after it forked, with no log to say so).
    node_metrics.node.metrics_port(settings)
    app = Celery("warehouse", set_as_current=False)
    app.conf.update(celery_config(settings))
    route_run_level_tasks(app)
    app.warehouse = context = WorkerContext(settings)  # type: ignore[attr-defined]
    _contexts.add(context)
    runs.register(app)
    schedules.register(app)
    webhooks.register(app)
    # Every process builds this app (web, workers, beat, commands), so a retention setting that is
    # nonsense stops each of them at start, naming the setting.
    from . import retention

    retention.register(app)
    return app
