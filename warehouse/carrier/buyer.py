"""Buy many labels at once, as fast as the carrier allows and no faster.

A worker process keeps one ``LabelBuyer``: one pooled HTTP client and one thread pool, shared by every
chunk the process runs. A chunk's orders are shared out to lanes, one per thread; each label is one
call, made while the lane holds a slot of the shared in-flight limit (``warehouse.carrier.limits``), and
retried with backoff while the carrier says "not now".
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
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
        """One purchase per order, in order. Raises if the shared limit cannot be consulted.

        The orders are shared out to lanes, one per carrier thread: a lane takes a slot and keeps it
        from one call to the next while the chunk has orders left, and gives it back when it runs out
        (or backs off). That spares two Redis round trips a call and, across processes, lets a process
        that is between chunks leave the whole limit to the others: their lanes keep every slot busy
        instead of both processes winding down and starting up together (docs/benchmarks.md).
        """
        queue = _Orders(orders)
        lanes = [self.pool.submit(self._lane, queue) for _ in range(min(self.carrier.threads_per_process, len(orders)))]
        # Every lane ends before this returns or raises: on an error, the lane that met it stops the
        # others from starting another call, and those under way finish (a retry of the chunk replays
        # them by key). The same if this thread is interrupted (a time limit, a shutdown).
        try:
            wait(lanes)
        except BaseException:
            queue.stop()
            wait(lanes)
            raise
        for lane in lanes:
            lane.result()
        return queue.purchases()

    def _lane(self, queue: _Orders) -> None:
        kept = _KeptSlot(self.gate)
        try:
            while (taken := queue.take()) is not None:
                number, order = taken
                queue.done(number, self.buy_one(order, kept))
        except BaseException:
            queue.stop()
            raise
        finally:
            kept.let_go()

    def buy_one(self, order: LabelOrder, kept: _KeptSlot | None = None) -> Purchase:
        """Buy one label, retrying while the carrier says "not now". With ``kept``, the call uses (and
        leaves held) the lane's slot; without, it takes one for itself and gives it back."""
        slot = kept or _KeptSlot(self.gate)
        try:
            return self._buy(order, slot)
        finally:
            if kept is None:
                slot.let_go()

    def _buy(self, order: LabelOrder, slot: _KeptSlot) -> Purchase:
        last_error: TransientCarrierError | None = None
        for attempt in range(self.carrier.max_attempts):
            if attempt:
                slot.let_go()  # nobody holds a slot while backing off
                time.sleep(backoff_seconds(attempt - 1, factor=self.carrier.backoff_seconds, maximum=30))
            # A pause another worker set while this lane holds its slot is waited out with it held:
            # nobody calls the carrier during a pause, so the slot is kept from no one who could.
            self.gate.wait_while_paused()
            slot.hold()
            try:
                return Purchase(order.shipment_id, label=self.client.buy_label(order))
            except PermanentCarrierError as error:
                return Purchase(order.shipment_id, error=str(error))
            except TransientCarrierError as error:
                last_error = error
                if error.retry_after:
                    # The carrier asked to be left alone for a while: everyone waits, not just this call.
                    slot.let_go()
                    self.gate.pause(error.retry_after)
        return Purchase(order.shipment_id, error=f"gave up after {self.carrier.max_attempts} attempts: {last_error}")


class _KeptSlot:
    """A lane's slot of the shared limit, held from one call to the next until let go."""

    def __init__(self, gate: CarrierGate) -> None:
        self.gate = gate
        self._held = contextlib.ExitStack()
        self._holding = False

    def hold(self) -> None:
        if not self._holding:
            self._held.enter_context(self.gate.slot())
            self._holding = True

    def let_go(self) -> None:
        if self._holding:
            self._holding = False
            self._held.close()


class _Orders:
    """A chunk's orders, handed out one at a time to its lanes, and their purchases in order."""

    def __init__(self, orders: Sequence[LabelOrder]) -> None:
        self._waiting = deque(enumerate(orders))
        self._purchases: list[Purchase | None] = [None] * len(orders)
        self._stopped = False

    def take(self) -> tuple[int, LabelOrder] | None:
        if self._stopped:
            return None
        try:
            return self._waiting.popleft()  # atomic: no two lanes get the same order
        except IndexError:
            return None

    def done(self, number: int, purchase: Purchase) -> None:
        self._purchases[number] = purchase

    def stop(self) -> None:
        self._stopped = True

    def purchases(self) -> list[Purchase]:
        # Asked only once every lane ended without an error, so every order has its purchase.
        purchases = [purchase for purchase in self._purchases if purchase is not None]
        assert len(purchases) == len(self._purchases), "an order was left without a purchase"
        return purchases


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
