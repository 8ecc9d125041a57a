"""The client side of the carrier API: buy one label, and say whether a failure is worth retrying.

One pooled HTTP transport per worker process serves every thread of every chunk, so connections are
reused across calls instead of opened per label. It is urllib3's: with a hundred threads in one
process, httpx spent 2.3 ms of CPU a call in its connection pool against urllib3's 0.5 ms, and took
three times as long for the same calls (measured against the stub; see docs/benchmarks.md).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import urllib3

from warehouse.metrics import recording as metrics

# Retry-After when a 429 names none.
DEFAULT_RETRY_AFTER = 1.0
# A longer Retry-After pauses every worker: past five minutes it is more likely a carrier's mistake.
MAX_RETRY_AFTER = 300.0


@dataclass(frozen=True)
class LabelOrder:
    shipment_id: int
    reference: str
    ship_to: str
    weight_grams: int

    @property
    def idempotency_key(self) -> str:
        # Stable per shipment: a retry, a redelivered chunk or a rerun can never buy a second label.
        return f"shipment-{self.shipment_id}"


@dataclass(frozen=True)
class Label:
    label_id: str
    tracking_number: str
    label_url: str


class CarrierError(Exception):
    """The carrier did not sell the label."""


class TransientCarrierError(CarrierError):
    """Worth another try later: 429, 5xx, a timeout, a connection error."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentCarrierError(CarrierError):
    """The carrier refused this order (other 4xx): retrying would get the same answer."""


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes


class TransportFailure(Exception):
    """No answer: a timeout, a refused or dropped connection."""


class HttpTransport(Protocol):
    def post(self, url: str, headers: Mapping[str, str], body: bytes) -> HttpResponse:
        """POST ``body``; the answer, whatever its status. Raises TransportFailure without one."""


class Urllib3Transport:
    """A pooled urllib3 transport, shared by a process's threads (urllib3's pools are thread-safe)."""

    def __init__(self, timeout_seconds: float, max_connections: int) -> None:
        # block=True: a thread waits for a free connection instead of opening one the pool cannot keep.
        self.pool = urllib3.PoolManager(
            maxsize=max_connections, block=True, timeout=urllib3.Timeout(total=timeout_seconds), retries=False
        )

    def post(self, url: str, headers: Mapping[str, str], body: bytes) -> HttpResponse:
        try:
            response = self.pool.request("POST", url, body=body, headers=dict(headers))
        except urllib3.exceptions.HTTPError as error:
            raise TransportFailure(f"{type(error).__name__}: {error}") from error
        return HttpResponse(response.status, response.headers, response.data)


def _retry_after(response: HttpResponse) -> float | None:
    """The pause the carrier asks for, in seconds: 0 to MAX_RETRY_AFTER, or None if it asks none."""
    value = response.headers.get("Retry-After", "")
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds):
        # No number (or an HTTP date, which carriers rarely send): a 429 still means "slow down".
        return DEFAULT_RETRY_AFTER if response.status == 429 else None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _message(response: HttpResponse) -> str:
    try:
        body: Any = json.loads(response.body)
        return str(body["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.body[:500].decode("utf-8", "replace") or f"HTTP {response.status}"


def _refusal_outcome(response: HttpResponse) -> str:
    """An answer that sold nothing, for the metrics (warehouse.metrics.specs.CARRIER_OUTCOMES); a
    call without an answer counts as no_answer."""
    if response.status == 429:
        return "rate_limited"
    return "server_error" if response.status >= 500 else "refused"


class CarrierClient:
    def __init__(self, base_url: str, http: HttpTransport) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = http

    def buy_label(self, order: LabelOrder) -> Label:
        """Buy (or, for a key the carrier has seen, fetch again) the label for ``order``."""
        with metrics.carrier_call() as call:
            response = self._post_order(order)
            # Set before _label, which raises on a 2xx whose label is garbled: that is a bad answer.
            call["outcome"] = "bad_answer" if response.status in (200, 201) else _refusal_outcome(response)
            label = _label(response)
            if label:
                call["outcome"] = "sold"
        if label:
            return label
        message = f"carrier answered {response.status}: {_message(response)}"
        if response.status == 429 or response.status >= 500:
            raise TransientCarrierError(message, _retry_after(response))
        raise PermanentCarrierError(message)

    def _post_order(self, order: LabelOrder) -> HttpResponse:
        payload = {"shipment_reference": order.reference, "ship_to": order.ship_to, "weight_grams": order.weight_grams}
        try:
            return self.http.post(
                f"{self.base_url}/v1/labels",
                {"Idempotency-Key": order.idempotency_key, "Content-Type": "application/json"},
                json.dumps(payload).encode(),
            )
        except TransportFailure as error:
            raise TransientCarrierError(str(error)) from error


def _label(response: HttpResponse) -> Label | None:
    """The label a 200 or 201 carries; None for any other status."""
    if response.status not in (200, 201):
        return None
    try:
        body = json.loads(response.body)
        return Label(label_id=body["label_id"], tracking_number=body["tracking_number"], label_url=body["label_url"])
    except (ValueError, KeyError, TypeError) as error:
        # Garbled on the way (a proxy, a cut connection)? Asking again with the same key is safe:
        # the carrier answers with the label it sold, or sells the one it did not.
        raise TransientCarrierError(f"carrier answered {response.status} without a label: {error!r}") from error


def make_http_client(timeout_seconds: float, max_connections: int) -> HttpTransport:
    """The pooled HTTP transport a worker process shares between its threads."""
    return Urllib3Transport(timeout_seconds, max_connections)
