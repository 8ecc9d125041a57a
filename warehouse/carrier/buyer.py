"""Buy many labels at once, as fast as the carrier allows and no faster.

A worker process keeps one ``LabelBuyer``: one pooled HTTP client and one thread pool, shared by every
chunk the process runs. Each label is one call in the pool, made while holding a slot of the shared
in-flight limit (``warehouse.carrier.limits``), and retried with backoff while the carrier says "not now".
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from ..backoff import backoff_seconds
from .client import CarrierClient, Label, LabelOrder, PermanentCarrierError, TransientCarrierError, make_http_client
from .limits import CarrierGate, limiter_url, make_gate

logger = logging.getLogger(__name__)

MAX_THREADS_PER_PROCESS = 256


@dataclass(frozen=True)
class CarrierSettings:
    url: str
    max_in_flight: int
    timeout_seconds: float
    max_attempts: int
    backoff_seconds: float
    threads_per_process: int

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> CarrierSettings:
        url = str(settings.get("warehouse.carrier_url", "")).strip()
        if not url:
            raise ValueError("warehouse.carrier_url is not set: the shipping_labels operation needs a carrier")
        max_in_flight = int(settings.get("warehouse.carrier_max_in_flight", 10))
        if max_in_flight < 1:
            raise ValueError("warehouse.carrier_max_in_flight must be at least 1")
        # More threads than the whole cap would only queue for slots; fewer lets several processes share it.
        threads = int(settings.get("warehouse.carrier_threads_per_process", 0)) or max_in_flight
        if threads < 1:
            raise ValueError("warehouse.carrier_threads_per_process must be at least 1 (or unset)")
        return cls(
            url=url,
            max_in_flight=max_in_flight,
            timeout_seconds=float(settings.get("warehouse.carrier_timeout_seconds", 10)),
            max_attempts=max(1, int(settings.get("warehouse.carrier_max_attempts", 6))),
            backoff_seconds=float(settings.get("warehouse.carrier_backoff_seconds", 0.5)),
            threads_per_process=min(threads, MAX_THREADS_PER_PROCESS),
        )


@dataclass(frozen=True)
class Purchase:
    """What became of one order: a label, or the reason there is none."""

    shipment_id: int
    label: Label | None = None
    error: str | None = None


class LabelBuyer:
    def __init__(self, carrier: CarrierSettings, client: CarrierClient, gate: CarrierGate) -> None:
        self.carrier = carrier
        self.client = client
        self.gate = gate
        self.pool = ThreadPoolExecutor(max_workers=carrier.threads_per_process, thread_name_prefix="carrier")

    def buy_all(self, orders: Sequence[LabelOrder]) -> list[Purchase]:
        """One purchase per order, in order. Raises if the shared limit cannot be consulted."""
        futures: list[Future[Purchase]] = [self.pool.submit(self.buy_one, order) for order in orders]
        try:
            return [future.result() for future in futures]
        except BaseException:
            # Calls not yet started are dropped; those under way finish (a retry replays them by key).
            for future in futures:
                future.cancel()
            wait(futures)
            raise

    def buy_one(self, order: LabelOrder) -> Purchase:
        last_error: TransientCarrierError | None = None
        for attempt in range(self.carrier.max_attempts):
            if attempt:
                time.sleep(backoff_seconds(attempt - 1, factor=self.carrier.backoff_seconds, maximum=30))
            self.gate.wait_while_paused()
            try:
                with self.gate.slot():
                    return Purchase(order.shipment_id, label=self.client.buy_label(order))
            except PermanentCarrierError as error:
                return Purchase(order.shipment_id, error=str(error))
            except TransientCarrierError as error:
                last_error = error
                if error.retry_after:
                    # The carrier asked to be left alone for a while: everyone waits, not just this call.
                    self.gate.pause(error.retry_after)
        return Purchase(order.shipment_id, error=f"gave up after {self.carrier.max_attempts} attempts: {last_error}")


_buyers: dict[tuple[int, CarrierSettings, str | None], LabelBuyer] = {}
_buyers_lock = threading.Lock()


def buyer_for(settings: Mapping[str, Any]) -> LabelBuyer:
    """This process's buyer for these settings. Keyed by pid too: a forked pool child must never use its
    parent's sockets or threads."""
    carrier = CarrierSettings.from_settings(settings)
    key = (os.getpid(), carrier, limiter_url(settings))
    with _buyers_lock:
        buyer = _buyers.get(key)
        if buyer is None:
            http = make_http_client(carrier.timeout_seconds, max_connections=carrier.threads_per_process)
            gate = make_gate(settings, carrier.url, carrier.max_in_flight, carrier.timeout_seconds, carrier.threads_per_process)
            buyer = _buyers[key] = LabelBuyer(carrier, CarrierClient(carrier.url, http), gate)
        return buyer
