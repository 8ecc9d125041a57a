"""``warehouse-queue-depth INI [--cloudwatch] [--namespace Warehouse]``: the broker's queues and the
workers alive, as JSON, for autoscalers that cannot scrape Prometheus.

By default: ``{"queues": [{"queue", "ready", "unacked"}], "workers_alive": N, "backlog_per_worker": x}``.
With ``--cloudwatch``: exactly what ``aws cloudwatch put-metric-data --cli-input-json`` reads, so a
scheduled task or a sidecar can pipe one into the other, and ECS scales the workers on
``BacklogPerWorker`` (the README's "AWS" section).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from tasks.app import make_celery
from tasks.queues import QueueDepth, queue_depths
from warehouse.db import transaction
from warehouse.ledger.workers import count_alive_workers
from warehouse.settings import load_settings, setup_logging

DEFAULT_NAMESPACE = "Warehouse"


def backlog_per_worker(depths: list[QueueDepth], workers_alive: int) -> float:
    """Messages waiting per live worker process. With none alive, the whole backlog, so that a fleet
    scaled to zero still shows a target-tracking policy something to scale out for."""
    ready = sum(depth.ready for depth in depths)
    return round(ready / max(workers_alive, 1), 2)


def report(depths: list[QueueDepth], workers_alive: int) -> dict[str, Any]:
    return {
        "queues": [asdict(depth) for depth in depths],
        "workers_alive": workers_alive,
        "backlog_per_worker": backlog_per_worker(depths, workers_alive),
    }


def _datum(name: str, value: float, queue: str | None = None) -> dict[str, Any]:
    datum: dict[str, Any] = {"MetricName": name}
    if queue is not None:
        datum["Dimensions"] = [{"Name": "Queue", "Value": queue}]
    return {**datum, "Value": value, "Unit": "Count"}


def cloudwatch_input(depths: list[QueueDepth], workers_alive: int, namespace: str = DEFAULT_NAMESPACE) -> dict[str, Any]:
    """The input of ``aws cloudwatch put-metric-data`` (at most 1,000 data a call: we send a few).

    ``BacklogPerWorker`` and ``WorkersAlive`` carry no dimension, so that a target-tracking policy
    names them by namespace and name alone.
    """
    data = [_datum("QueueLength", depth.ready, depth.queue) for depth in depths]
    # RabbitMQ does not tell unacknowledged messages through AMQP: no datum rather than a false 0.
    data += [_datum("QueueUnacked", depth.unacked, depth.queue) for depth in depths if depth.unacked is not None]
    data += [
        _datum("WorkersAlive", workers_alive),
        _datum("BacklogPerWorker", backlog_per_worker(depths, workers_alive)),
    ]
    return {"Namespace": namespace, "MetricData": data}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="warehouse-queue-depth", description=__doc__.splitlines()[0])
    parser.add_argument("config_uri", metavar="INI", help="the application's ini file")
    parser.add_argument(
        "--cloudwatch", action="store_true", help="print the input of `aws cloudwatch put-metric-data --cli-input-json`"
    )
    parser.add_argument("--namespace", default=DEFAULT_NAMESPACE, help="CloudWatch namespace (default: %(default)s)")
    args = parser.parse_args(argv)
    setup_logging(args.config_uri)
    app = make_celery(load_settings(args.config_uri))
    try:
        depths = queue_depths(app)
        with transaction(app.warehouse.session_factory) as session:
            alive = count_alive_workers(session, app.warehouse.settings)
    finally:
        app.close()
    document = cloudwatch_input(depths, alive, args.namespace) if args.cloudwatch else report(depths, alive)
    print(json.dumps(document))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
