"""The seed post's way of buying labels, for comparison: ``multiprocessing.Pool(os.cpu_count()).map`` of
one blocking HTTP call per shipment (a new connection each time, as ``requests.post`` makes).

It makes os.cpu_count() calls at a time, so its time is linear in the number of calls: the labels
benchmark times it on a subset and scales it (starting the pool is timed apart and counted once).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from bench.common import BenchError, Stopwatch

SEED_TIMEOUT_SECONDS = 600.0

Order = tuple[int, str, str, int]  # shipment id, reference, ship_to, weight_grams

_seed_carrier_url = ""


def _seed_worker_start(carrier_url: str, ready: Any) -> None:
    global _seed_carrier_url
    _seed_carrier_url = carrier_url
    ready.wait()  # the pool counts as started once every process is up


def seed_create_shipping_label(order: Order) -> int:
    """The seed's ``create_shipping_label(shipment)``: one blocking HTTP call, a new connection each time
    (as ``requests.post`` does). Returns the HTTP status."""
    shipment_id, reference, ship_to, weight = order
    response = httpx.post(
        f"{_seed_carrier_url}/v1/labels",
        headers={"Idempotency-Key": f"shipment-{shipment_id}"},
        json={"shipment_reference": reference, "ship_to": ship_to, "weight_grams": weight},
        timeout=30,
    )
    return response.status_code


@dataclass
class SeedTiming:
    start_seconds: float  # starting Pool(os.cpu_count()): paid once, whatever the number of shipments
    map_seconds: float  # pool.map over the orders
    statuses: list[int]


def seed_approach(carrier_url: str, orders: Sequence[Order]) -> SeedTiming:
    """``Pool(processes=cpu_count()).map(create_shipping_label, shipments)``, as in the seed post.

    The pool's processes are spawned rather than forked (the seed's Linux default): a fork of this
    process, which has run threads (the web app's, Celery's), may inherit a lock held by one of them
    and hang. Spawning costs more at start-up, which is timed apart and not scaled."""
    processes = os.cpu_count() or 1
    context = multiprocessing.get_context("spawn")
    ready = context.Barrier(processes + 1)
    starting = time.perf_counter()
    pool = context.Pool(processes=processes, initializer=_seed_worker_start, initargs=(carrier_url, ready))
    try:
        ready.wait(timeout=60)  # every process of the pool is up
        start_seconds = time.perf_counter() - starting
        with Stopwatch() as mapping:
            statuses = pool.map_async(seed_create_shipping_label, orders).get(timeout=SEED_TIMEOUT_SECONDS)
    except (multiprocessing.TimeoutError, threading.BrokenBarrierError) as error:
        raise BenchError(f"the seed approach's pool did not do {len(orders)} calls in time: {error!r}") from None
    finally:
        pool.terminate()
        pool.join()
    return SeedTiming(start_seconds, mapping.seconds, statuses)
