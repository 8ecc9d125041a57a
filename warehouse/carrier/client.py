"""The client side of the carrier API: buy one label, and say whether a failure is worth retrying.

One pooled ``httpx.Client`` per worker process serves every thread of every chunk, so connections are
reused across calls instead of opened per label.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import httpx

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


def _retry_after(response: httpx.Response) -> float | None:
    """The pause the carrier asks for, in seconds: 0 to MAX_RETRY_AFTER, or None if it asks none."""
    value = response.headers.get("Retry-After", "")
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds):
        # No number (or an HTTP date, which carriers rarely send): a 429 still means "slow down".
        return DEFAULT_RETRY_AFTER if response.status_code == 429 else None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _message(response: httpx.Response) -> str:
    try:
        body: Any = response.json()
        return str(body["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:500] or response.reason_phrase


class CarrierClient:
    def __init__(self, base_url: str, http: httpx.Client) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = http

    def buy_label(self, order: LabelOrder) -> Label:
        """Buy (or, for a key the carrier has seen, fetch again) the label for ``order``."""
        try:
            response = self.http.post(
                f"{self.base_url}/v1/labels",
                headers={"Idempotency-Key": order.idempotency_key},
                json={"shipment_reference": order.reference, "ship_to": order.ship_to, "weight_grams": order.weight_grams},
            )
        except (httpx.TimeoutException, httpx.TransportError) as error:
            raise TransientCarrierError(f"{type(error).__name__}: {error}") from error
        if response.status_code in (200, 201):
            try:
                body = response.json()
                return Label(label_id=body["label_id"], tracking_number=body["tracking_number"], label_url=body["label_url"])
            except (ValueError, KeyError, TypeError) as error:
                # Garbled on the way (a proxy, a cut connection)? Asking again with the same key is safe:
                # the carrier answers with the label it sold, or sells the one it did not.
                raise TransientCarrierError(f"carrier answered {response.status_code} without a label: {error!r}") from error
        message = f"carrier answered {response.status_code}: {_message(response)}"
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientCarrierError(message, _retry_after(response))
        raise PermanentCarrierError(message)


def make_http_client(timeout_seconds: float, max_connections: int) -> httpx.Client:
    """The pooled HTTP client a worker process shares between its threads."""
    return httpx.Client(
        timeout=httpx.Timeout(timeout_seconds),
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
    )
