"""Every metric warehouse exports: its name, kind, labels and where it is served.

One list, so that the code that makes the metrics, the README's table and the Grafana dashboard's
test agree. Label values are bounded: route names, not paths; outcomes from a fixed set; never a run
id or a pid.
"""

from __future__ import annotations

from dataclasses import dataclass

WEB = "web"  # the web app's GET /metrics
NODE = "node"  # a worker node's warehouse.worker_metrics_port (and the web app, for the embedded worker)


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: str  # counter, gauge or histogram
    help: str
    labels: tuple[str, ...] = ()
    served_by: str = NODE

    def sample_names(self) -> tuple[str, ...]:
        """The names of the samples Prometheus stores for it (what a query names)."""
        if self.kind == "histogram":
            return (f"{self.name}_bucket", f"{self.name}_sum", f"{self.name}_count", f"{self.name}_created")
        if self.kind == "counter":
            base = self.name.removesuffix("_total")
            return (f"{base}_total", f"{base}_created")
        return (self.name,)


# Outcomes, so that their label values stay a fixed set.
# A chunk task that claimed its chunk: done (some items may have failed), failed for good, lost (taken
# over while it worked), or retried (a transient error: it will run again).
CHUNK_OUTCOMES = ("done", "failed", "lost", "retried")
ITEM_OUTCOMES = ("done", "failed")
CARRIER_OUTCOMES = ("sold", "refused", "rate_limited", "server_error", "no_answer", "bad_answer")
# A webhook attempt: a 2xx; another answer; no answer (a timeout, a refused connection or address);
# a 410, which disables the subscription.
WEBHOOK_OUTCOMES = ("delivered", "rejected", "no_answer", "gone")

SPECS: tuple[MetricSpec, ...] = (
    MetricSpec("warehouse_runs", "gauge", "Runs in the ledger by status.", ("status",), WEB),
    MetricSpec("warehouse_workers_alive", "gauge", "Worker processes heartbeating in the ledger.", (), WEB),
    MetricSpec(
        "warehouse_queue_length", "gauge",
        "Messages ready in the broker's queue, not yet handed to a worker (Redis priority sub-queues included).",
        ("queue",), WEB,
    ),
    MetricSpec(
        "warehouse_queue_unacked", "gauge",
        "Messages handed to a worker and not yet acknowledged (Redis brokers only).", ("queue",), WEB,
    ),
    MetricSpec(
        "warehouse_http_requests_total", "counter", "HTTP requests answered, by route name, method and status.",
        ("route", "method", "status"), WEB,
    ),
    MetricSpec("warehouse_http_request_seconds", "histogram", "Time to answer an HTTP request, by route name.", ("route",), WEB),
    MetricSpec(
        "warehouse_run_items_total", "counter", "Items (products, shipments) a chunk processed, by outcome.",
        ("operation", "outcome"),
    ),
    MetricSpec("warehouse_chunks_total", "counter", "Chunk tasks ended, by outcome.", ("operation", "outcome")),
    MetricSpec(
        "warehouse_chunks_skipped_total", "counter",
        "Chunk deliveries that found nothing to do: the chunk finished or held by another task, or skipped "
        "because its run was cancelled or past its failure threshold.",
    ),
    MetricSpec("warehouse_chunk_duration_seconds", "histogram", "Time a chunk's work took, claim to commit.", ("operation",)),
    MetricSpec("warehouse_carrier_calls_total", "counter", "Calls to the carrier API, by outcome.", ("outcome",)),
    MetricSpec("warehouse_carrier_call_seconds", "histogram", "Time a carrier API call took, answered or not."),
    MetricSpec("warehouse_carrier_in_flight", "gauge", "Carrier API calls in flight in this node's processes."),
    MetricSpec(
        "warehouse_webhook_deliveries_total", "counter", "Webhook delivery attempts, by outcome.", ("outcome",),
    ),
)

BY_NAME = {spec.name: spec for spec in SPECS}


def exported_sample_names() -> set[str]:
    return {sample for spec in SPECS for sample in spec.sample_names()}
