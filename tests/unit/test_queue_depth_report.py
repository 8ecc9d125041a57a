"""warehouse-queue-depth's figures, worked out from queue depths without a broker."""

from __future__ import annotations

from tasks.queues import QueueDepth
from warehouse.scripts import queue_depth


def test_backlog_per_worker_with_no_worker_alive_is_the_whole_backlog() -> None:
    depths = [QueueDepth("celery", 7, None), QueueDepth("celery.runs", 1, None)]
    assert queue_depth.backlog_per_worker(depths, 0) == 8
    assert queue_depth.backlog_per_worker(depths, 3) == 2.67
    # RabbitMQ: no unacked figure, so no QueueUnacked datum rather than a false zero.
    names = [datum["MetricName"] for datum in queue_depth.cloudwatch_input(depths, 3)["MetricData"]]
    assert names == ["QueueLength", "QueueLength", "WorkersAlive", "BacklogPerWorker"]
