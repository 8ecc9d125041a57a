"""What the code counts and times: chunks, items, carrier calls, webhook attempts, HTTP requests.

The metrics are made on first use, not on import. A worker node counts its prefork children in
prometheus_client's multiprocess mode, which a process takes up when prometheus_client is imported
(``PROMETHEUS_MULTIPROC_DIR`` is read then), and the node sets that directory when the worker starts
(``warehouse.metrics.node``), after the tasks were imported: so importing the tasks must not import
prometheus_client, and nothing here does until a figure is recorded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

from .specs import BY_NAME

# Chunks take tens of milliseconds (valuation) to minutes (labels); carrier calls about 0.2 s, up to
# the client's timeout; web requests a few milliseconds.
CHUNK_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
CARRIER_BUCKETS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 2, 5, 10, 30)
HTTP_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _make(name: str, **options: Any) -> Any:
    import prometheus_client

    spec = BY_NAME[name]
    kind = {"counter": prometheus_client.Counter, "gauge": prometheus_client.Gauge, "histogram": prometheus_client.Histogram}
    return kind[spec.kind](name, spec.help, spec.labels, **options)


class Instruments:
    def __init__(self) -> None:
        self.items = _make("warehouse_run_items_total")
        self.chunks = _make("warehouse_chunks_total")
        self.chunks_skipped = _make("warehouse_chunks_skipped_total")
        self.chunk_seconds = _make("warehouse_chunk_duration_seconds", buckets=CHUNK_BUCKETS)
        self.carrier_calls = _make("warehouse_carrier_calls_total")
        self.carrier_seconds = _make("warehouse_carrier_call_seconds", buckets=CARRIER_BUCKETS)
        # livesum: a node's scrape adds up the calls in flight in its live processes only (a child
        # killed mid-call leaves its file behind; warehouse.metrics.node marks it dead).
        self.carrier_in_flight = _make("warehouse_carrier_in_flight", multiprocess_mode="livesum")
        self.webhook_attempts = _make("warehouse_webhook_deliveries_total")
        self.http_requests = _make("warehouse_http_requests_total")
        self.http_seconds = _make("warehouse_http_request_seconds", buckets=HTTP_BUCKETS)


_making = threading.Lock()


@cache
def instruments() -> Instruments:
    """This process's metrics, made on first use (see the module's docstring). Under a lock: a
    chunk's carrier threads all ask at once, and a metric registered twice is an error."""
    with _making:
        return _instruments_once()


@cache
def _instruments_once() -> Instruments:
    return Instruments()


def chunk_ended(operation: str, outcome: str, seconds: float | None = None, items_done: int = 0, items_failed: int = 0) -> None:
    """A chunk task that claimed its chunk ended (after its transaction committed, or rolled back)."""
    metrics = instruments()
    metrics.chunks.labels(operation, outcome).inc()
    if seconds is not None:
        metrics.chunk_seconds.labels(operation).observe(seconds)
    if items_done:
        metrics.items.labels(operation, "done").inc(items_done)
    if items_failed:
        metrics.items.labels(operation, "failed").inc(items_failed)


def chunk_skipped() -> None:
    instruments().chunks_skipped.inc()


@contextmanager
def carrier_call() -> Iterator[dict[str, str]]:
    """Time one carrier call and count it in flight; the caller sets ``["outcome"]`` in the dict it
    gets (left unset, a call that raised counts as no_answer)."""
    metrics = instruments()
    result = {"outcome": "no_answer"}
    metrics.carrier_in_flight.inc()
    started = time.perf_counter()
    try:
        yield result
    finally:
        metrics.carrier_in_flight.dec()
        metrics.carrier_seconds.observe(time.perf_counter() - started)
        metrics.carrier_calls.labels(result["outcome"]).inc()


def webhook_attempted(outcome: str) -> None:
    instruments().webhook_attempts.labels(outcome).inc()


def http_request(route: str, method: str, status: int, seconds: float) -> None:
    metrics = instruments()
    method = method if method in KNOWN_METHODS else "other"
    metrics.http_requests.labels(route, method, str(status)).inc()
    metrics.http_seconds.labels(route).observe(seconds)
