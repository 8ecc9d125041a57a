"""Metrics after a real run on PostgreSQL and Redis: a worker node of two prefork processes serves
the figures of both on its metrics port, the web app's /metrics has the ledger's and the broker's,
and both are read with prometheus_client's own parser."""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from typing import Any

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.checks import chunk_rows
from warehouse.scripts.seed import seed

bounded = pytest.mark.timeout(300, method="signal")
CHUNKS = 12


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def scrape_node(port: int, timeout: float = 30.0) -> Samples:
    """The node's metrics port, once it answers (the worker opens it as it starts)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
                return parse(answer.read().decode())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@bounded
def test_a_node_of_two_processes_and_the_web_app_count_what_the_ledger_holds(make_lane: Any) -> None:
    port = free_port()
    lane = make_lane(
        "metrics", workers=["m1"], concurrency=2,
        settings={"warehouse.worker_metrics_port": str(port), "warehouse.worker_metrics_address": "127.0.0.1"},
    )
    seed(lane.engine, "it-metrics", products=CHUNKS * 100, shipments=0)
    web_before = parse(lane.api.app.get("/metrics").text)
    assert value(scrape_node(port), "warehouse_chunks_total", operation="slow_valuation", outcome="done") == 0

    run = lane.api.start_run("it-metrics", "slow_valuation", chunk_size=100)
    run = lane.api.wait_for(run["id"], lambda run: run["status"] == "succeeded", timeout=120)
    for _ in range(3):
        lane.api.run(run["id"])
    node = scrape_node(port)
    web = parse(lane.api.app.get("/metrics").text)

    chunks = chunk_rows(lane.engine, run["id"])
    # Both pool children ran chunks, so the node's figures are the sum of two processes' files.
    assert len({chunk["worker_id"] for chunk in chunks}) == 2
    assert value(node, "warehouse_chunks_total", operation="slow_valuation", outcome="done") == len(chunks) == CHUNKS
    assert value(node, "warehouse_run_items_total", operation="slow_valuation", outcome="done") == run["items"]["done"] == CHUNKS * 100
    assert value(node, "warehouse_chunk_duration_seconds_count", operation="slow_valuation") == CHUNKS
    assert value(node, "warehouse_chunk_duration_seconds_sum", operation="slow_valuation") >= CHUNKS * 0.2

    def moved(name: str, **labels: str) -> float:
        return value(web, name, **labels) - value(web_before, name, **labels)

    assert moved("warehouse_http_requests_total", route="api.warehouse.runs", method="POST", status="202") == 1
    assert moved("warehouse_http_requests_total", route="api.run", method="GET", status="200") >= 4
    assert moved("warehouse_http_requests_total", route="metrics", method="GET", status="200") == 1
    assert value(web, "warehouse_runs", status="succeeded") == 1
    assert value(web, "warehouse_workers_alive") == 2

    # Messages no worker takes: the web's queue length is what Redis holds, list by list.
    lane.workers[0].stop()
    for start in range(5):
        lane.control_app.send_task("processSomeProducts", args=[10**9, start, start], queue=lane.queue)
    client = redis.Redis.from_url(lane.redis_url)
    try:
        queued, runs_queued = client.llen(lane.queue), client.llen(f"{lane.queue}.runs")
        unacked = sum(1 for entry in client.hvals("unacked") if json.loads(entry)[2] == lane.queue)
    finally:
        client.close()
    web = parse(lane.api.app.get("/metrics").text)
    assert queued == 5
    assert value(web, "warehouse_queue_length", queue=lane.queue) == queued
    assert value(web, "warehouse_queue_length", queue=f"{lane.queue}.runs") == runs_queued
    assert value(web, "warehouse_queue_unacked", queue=lane.queue) == unacked
