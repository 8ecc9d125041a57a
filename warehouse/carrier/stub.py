"""A stand-in for the carrier's label API, with the limits and faults a real carrier has.

It serves the "Carrier API" of DESIGN.md: ``POST /v1/labels`` buys a label once per idempotency key,
and the stub counts what a client did to it (purchases, replayed keys, labels bought twice for the same
shipment, peak concurrency) so tests and benchmarks can check the client was well behaved. Its faults
(an in-flight cap, random 429s and 503s, slow calls) are configurable at start-up and at run time.

``make_app(StubConfig(...))`` gives the WSGI app; ``warehouse-carrier-stub`` serves it with waitress.
"""

from __future__ import annotations

import dataclasses
import enum
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from webob import Request, Response
from webob.dec import wsgify

from warehouse.errors import error_body

MAX_WEIGHT_GRAMS = 70_000

# What POST /v1/config may change; the seed only matters when the random generator is created.
RUNTIME_SETTINGS = (
    "latency_ms", "max_in_flight", "fail_rate", "rate_limited_rate", "slow_rate", "slow_ms", "retry_after"
)
_COUNT_SETTINGS = ("latency_ms", "max_in_flight", "slow_ms", "retry_after")
_RATE_SETTINGS = ("fail_rate", "rate_limited_rate", "slow_rate")


class CarrierError(Exception):
    """An answer other than a label: the stub's error body, with ``field`` named for bad input."""

    def __init__(
        self, status: int, code: str, message: str, field: str | None = None, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = dict(headers or {})

    def response(self) -> Response:
        details = {"field": self.field} if self.field else None
        return json_response(error_body(self.code, self.message, details), self.status, self.headers)


class InvalidField(CarrierError):
    """Bad input in one named field: 422, a permanent error for the client."""

    def __init__(self, field: str, reason: str, code: str = "invalid_field") -> None:
        super().__init__(422, code, f"{field}: {reason}", field=field)
        self.reason = reason


def _is_integer(value: Any) -> bool:
    # JSON true/false arrive as bool, which is an int subclass in Python but never a count.
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return _is_integer(value) or isinstance(value, float)


@dataclass(frozen=True)
class StubConfig:
    """How the stub behaves. Frozen, so a request works with one consistent snapshot even while
    ``POST /v1/config`` swaps in another."""

    latency_ms: int = 0
    max_in_flight: int = 0  # 0: no cap
    fail_rate: float = 0.0
    rate_limited_rate: float = 0.0
    slow_rate: float = 0.0
    slow_ms: int = 10_000  # long enough to outlast a client's timeout, which is what slow calls are for
    retry_after: int = 1
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in _COUNT_SETTINGS:
            value = getattr(self, name)
            if not _is_integer(value) or value < 0:
                raise InvalidField(name, "must be a non-negative integer")
        for name in _RATE_SETTINGS:
            value = getattr(self, name)
            if not _is_number(value) or not 0 <= value <= 1:
                raise InvalidField(name, "must be a number from 0 to 1")
            object.__setattr__(self, name, float(value))
        if self.seed is not None and not _is_integer(self.seed):
            raise InvalidField("seed", "must be an integer")

    def updated(self, changes: Mapping[str, Any]) -> StubConfig:
        """A copy with ``changes`` (from ``POST /v1/config``) applied and validated."""
        for name in changes:
            if name not in RUNTIME_SETTINGS:
                raise InvalidField(name, f"is not a setting; use any of {', '.join(RUNTIME_SETTINGS)}")
        return dataclasses.replace(self, **changes)

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class LabelOrder:
    """The body of ``POST /v1/labels``; compared field by field to spot a key reused for another order."""

    shipment_reference: str
    ship_to: str
    weight_grams: int

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> LabelOrder:
        for name in ("shipment_reference", "ship_to"):
            value = body.get(name)
            if not isinstance(value, str) or not value.strip():
                raise InvalidField(name, "must be a non-empty string")
        weight = body.get("weight_grams")
        if not _is_integer(weight) or not 1 <= weight <= MAX_WEIGHT_GRAMS:
            raise InvalidField("weight_grams", f"must be an integer from 1 to {MAX_WEIGHT_GRAMS}")
        return cls(body["shipment_reference"], body["ship_to"], weight)


@dataclass(frozen=True)
class Label:
    label_id: str
    tracking_number: str
    label_url: str

    def as_json(self) -> dict[str, str]:
        return dataclasses.asdict(self)


@dataclass
class Counters:
    requests: int = 0  # every POST /v1/labels, whatever its answer
    purchases: int = 0  # labels created (201s)
    duplicate_keys: int = 0  # replays of a known key (200s)
    duplicate_purchases: int = 0  # a new key buying for a shipment that already has a label
    max_in_flight: int = 0  # peak of admitted concurrent requests
    rejected_over_cap: int = 0
    rate_limited: int = 0  # the random 429s, not the over-cap ones
    failed: int = 0  # the random 503s


class Outcome(enum.Enum):
    OVER_CAP = "over_cap"
    RATE_LIMITED = "rate_limited"
    FAILED = "failed"
    PURCHASE = "purchase"


@dataclass(frozen=True)
class Admission:
    """What the stub decided for one label request on arrival, and how long it takes to say so."""

    outcome: Outcome
    delay_seconds: float
    retry_after: int


class CarrierState:
    """Everything the stub remembers: config, counters, labels. Every access holds ``lock``, since
    waitress serves requests on many threads."""

    def __init__(self, config: StubConfig) -> None:
        self.lock = threading.Lock()
        self.config = config
        self.rng = random.Random(config.seed)
        self.in_flight = 0
        # Label numbers keep counting across resets, so one stub process never hands out an id twice
        # (a client's database may still hold labels bought before the reset).
        self.last_label_number = 0
        self.counters = Counters()
        self.labels_by_key: dict[str, tuple[LabelOrder, Label]] = {}
        self.labels_by_id: dict[str, Label] = {}
        self.references_with_label: set[str] = set()

    def count_request(self) -> None:
        with self.lock:
            self.counters.requests += 1

    @contextmanager
    def admission(self) -> Iterator[Admission]:
        """Decide a label request's fate; while it is admitted (not over the cap) it counts as in flight."""
        admission = self._admit()
        try:
            yield admission
        finally:
            if admission.outcome is not Outcome.OVER_CAP:
                with self.lock:
                    self.in_flight -= 1

    def _admit(self) -> Admission:
        with self.lock:
            config = self.config
            if config.max_in_flight and self.in_flight >= config.max_in_flight:
                # Refused requests never count as in flight, so the peak shows the cap was kept.
                self.counters.rejected_over_cap += 1
                return Admission(Outcome.OVER_CAP, 0.0, config.retry_after)
            self.in_flight += 1
            self.counters.max_in_flight = max(self.counters.max_in_flight, self.in_flight)
            outcome = self._draw_outcome(config)
            slow = self.rng.random() < config.slow_rate
            delay_ms = config.slow_ms if slow else config.latency_ms
            return Admission(outcome, delay_ms / 1000, config.retry_after)

    def _draw_outcome(self, config: StubConfig) -> Outcome:
        if self.rng.random() < config.rate_limited_rate:
            self.counters.rate_limited += 1
            return Outcome.RATE_LIMITED
        if self.rng.random() < config.fail_rate:
            self.counters.failed += 1
            return Outcome.FAILED
        return Outcome.PURCHASE

    def buy(self, key: str, order: LabelOrder, base_url: str) -> tuple[Label, bool]:
        """The label for ``key`` and whether it was created now; the same key again gets the same label."""
        with self.lock:
            known = self.labels_by_key.get(key)
            if known is not None:
                known_order, label = known
                if known_order != order:
                    raise CarrierError(
                        422, "idempotency_key_reused", "this Idempotency-Key was used for a different label request"
                    )
                self.counters.duplicate_keys += 1
                return label, False
            if order.shipment_reference in self.references_with_label:
                self.counters.duplicate_purchases += 1
            label = self._new_label(base_url)
            self.labels_by_key[key] = (order, label)
            self.labels_by_id[label.label_id] = label
            self.references_with_label.add(order.shipment_reference)
            self.counters.purchases += 1
            return label, True

    def _new_label(self, base_url: str) -> Label:
        self.last_label_number += 1
        label_id = f"LBL-{self.last_label_number:06d}"
        return Label(label_id, f"1ZSTUB{self.last_label_number:010d}", f"{base_url}/v1/labels/{label_id}.pdf")

    def label(self, label_id: str) -> Label | None:
        with self.lock:
            return self.labels_by_id.get(label_id)

    def stats(self) -> dict[str, int]:
        with self.lock:
            return {**dataclasses.asdict(self.counters), "in_flight": self.in_flight}

    def reset(self) -> None:
        with self.lock:
            self.counters = Counters()
            # Requests still in flight will finish after the reset; the peak starts from them.
            self.counters.max_in_flight = self.in_flight
            self.labels_by_key.clear()
            self.labels_by_id.clear()
            self.references_with_label.clear()

    def reconfigure(self, changes: Mapping[str, Any]) -> StubConfig:
        with self.lock:
            self.config = self.config.updated(changes)
            return self.config


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    response = Response(json_body=body, status=status)
    response.headers.update(headers or {})
    return response


def json_object(request: Request) -> dict[str, Any]:
    try:
        body = request.json_body
    except ValueError:  # also covers bytes that are not UTF-8
        raise CarrierError(422, "invalid_json", "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise CarrierError(422, "invalid_json", "the body must be a JSON object")
    return body


def fake_pdf(label: Label) -> bytes:
    return (
        f"%PDF-1.4\n% carrier stub label {label.label_id}, tracking {label.tracking_number}\n%%EOF\n"
    ).encode("ascii")


LABEL_PDF_PATH = re.compile(r"^/v1/labels/(?P<label_id>[^/]+)\.pdf$")


class CarrierStub:
    """The WSGI app. Routing is a table lookup: five fixed paths and one pattern need no framework."""

    def __init__(self, config: StubConfig) -> None:
        self.state = CarrierState(config)
        self.routes: dict[tuple[str, str], Callable[[Request], Response]] = {
            ("POST", "/v1/labels"): self.create_label,
            ("GET", "/v1/stats"): self.stats,
            ("POST", "/v1/reset"): self.reset,
            ("GET", "/v1/config"): self.config,
            ("POST", "/v1/config"): self.reconfigure,
        }

    @wsgify
    def __call__(self, request: Request) -> Response:
        try:
            return self.route(request)(request)
        except CarrierError as error:
            return error.response()

    def route(self, request: Request) -> Callable[[Request], Response]:
        view = self.routes.get((request.method, request.path_info))
        if view is not None:
            return view
        if request.method == "GET" and LABEL_PDF_PATH.match(request.path_info):
            return self.label_pdf
        if request.path_info in {path for _, path in self.routes} or LABEL_PDF_PATH.match(request.path_info):
            raise CarrierError(405, "method_not_allowed", f"{request.method} is not allowed on {request.path_info}")
        raise CarrierError(404, "not_found", f"no such resource: {request.path_info}")

    def create_label(self, request: Request) -> Response:
        self.state.count_request()
        key = request.headers.get("Idempotency-Key", "").strip()
        if not key:
            raise CarrierError(400, "missing_idempotency_key", "the Idempotency-Key header is required")
        # Bad input is refused before the cap and the faults: it is cheap to check, and a permanent error
        # must look the same to the client however busy the carrier is.
        order = LabelOrder.from_json(json_object(request))
        with self.state.admission() as admission:
            if admission.outcome is Outcome.OVER_CAP:
                # Refused at once: a gateway sheds load before doing any work for the request.
                raise self.too_many_requests(admission, "too_many_in_flight", "too many requests in flight")
            # The random faults come from the carrier's backend, so they take as long as a real call would.
            time.sleep(admission.delay_seconds)
            if admission.outcome is Outcome.RATE_LIMITED:
                raise self.too_many_requests(admission, "rate_limited", "rate limit exceeded")
            if admission.outcome is Outcome.FAILED:
                raise CarrierError(503, "unavailable", "the carrier is temporarily unavailable")
            label, created = self.state.buy(key, order, request.host_url)
        return json_response(label.as_json(), 201 if created else 200)

    @staticmethod
    def too_many_requests(admission: Admission, code: str, message: str) -> CarrierError:
        return CarrierError(429, code, message, headers={"Retry-After": str(admission.retry_after)})

    def label_pdf(self, request: Request) -> Response:
        match = LABEL_PDF_PATH.match(request.path_info)
        assert match is not None  # route() only sends matching paths here
        label = self.state.label(match["label_id"])
        if label is None:
            raise CarrierError(404, "not_found", f"no such label: {match['label_id']}")
        return Response(body=fake_pdf(label), content_type="application/pdf")

    def stats(self, request: Request) -> Response:
        return json_response(self.state.stats())

    def reset(self, request: Request) -> Response:
        self.state.reset()
        return json_response({})

    def config(self, request: Request) -> Response:
        return json_response(self.state.config.as_json())

    def reconfigure(self, request: Request) -> Response:
        return json_response(self.state.reconfigure(json_object(request)).as_json())


def make_app(config: StubConfig | None = None) -> CarrierStub:
    """The stub as a WSGI app; its ``state`` is there for in-process tests to look at."""
    return CarrierStub(config or StubConfig())
