"""The label buyer (warehouse.carrier.buyer) against the stub carrier in process or a scripted
``httpx.MockTransport``: retries, the shared pause, permanent refusals, the limiter going away, and
the settings and per-process cache behind it. No sockets, no Redis."""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.httpx_transport import HttpxTransport
from warehouse.carrier.buyer import MAX_THREADS_PER_PROCESS, CarrierSettings, LabelBuyer, Purchase, buyer_for
from warehouse.carrier.client import CarrierClient, LabelOrder
from warehouse.carrier.limits import LimiterUnavailable, LocalGate, RedisGate
from warehouse.carrier.stub import StubConfig, make_app

CARRIER_URL = "http://carrier.test"

# Tiny backoff: a retried call waits microseconds, not the default half second.
BASE_SETTINGS = {
    "warehouse.carrier_url": CARRIER_URL,
    "warehouse.carrier_backoff_seconds": "0.001",
    "warehouse.carrier_max_attempts": "4",
    "warehouse.carrier_max_in_flight": "4",
}


def order(shipment_id: int, weight_grams: int = 1200) -> LabelOrder:
    return LabelOrder(shipment_id, f"SHP-{shipment_id}", f"{shipment_id} Quay St, Dublin", weight_grams)


def label_json(n: int) -> dict[str, str]:
    return {"label_id": f"LBL-{n}", "tracking_number": f"1ZTEST{n:06d}", "label_url": f"{CARRIER_URL}/v1/labels/LBL-{n}.pdf"}


class RecordingGate:
    """A gate that lets every call through at once and records what the buyer asked of it."""

    def __init__(self, max_in_flight: int = 4) -> None:
        self.max_in_flight = max_in_flight
        self.events: list[Any] = []
        self._lock = threading.Lock()

    def _record(self, event: Any) -> None:
        with self._lock:
            self.events.append(event)

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        self._record("slot")
        try:
            yield
        finally:
            self._record("free")

    def pause(self, seconds: float) -> None:
        self._record(("pause", seconds))

    def wait_while_paused(self) -> None:
        self._record("wait")


class KeyRecorder:
    """WSGI middleware in front of the stub: the Idempotency-Key of every label request, in order."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app
        self.keys: list[str | None] = []
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("PATH_INFO") == "/v1/labels":
            with self._lock:
                self.keys.append(environ.get("HTTP_IDEMPOTENCY_KEY"))
        return self.app(environ, start_response)


class Script:
    """A MockTransport handler answering label requests from a list of steps (the last one repeats):
    an ``httpx.Response``, or an exception class to raise. Records every request it saw."""

    def __init__(self, *steps: Any) -> None:
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []
        self.times: list[float] = []
        self._lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            index = len(self.requests)
            self.requests.append(request)
            self.times.append(time.monotonic())
        step = self.steps[min(index, len(self.steps) - 1)]
        if isinstance(step, type) and issubclass(step, Exception):
            raise step(f"scripted {step.__name__}", request=request)
        return step

    @property
    def keys(self) -> list[str | None]:
        return [request.headers.get("Idempotency-Key") for request in self.requests]

    @property
    def bodies(self) -> list[bytes]:
        return [request.content for request in self.requests]


@pytest.fixture
def make_buyer() -> Iterator[Callable[..., LabelBuyer]]:
    """``make_buyer(transport, gate=None, **settings)``: a LabelBuyer on ``transport`` with
    BASE_SETTINGS plus ``settings``; its pool and HTTP client are closed when the test ends."""
    made: list[LabelBuyer] = []

    def make(transport: httpx.BaseTransport, gate: Any = None, **settings: str) -> LabelBuyer:
        carrier = CarrierSettings.from_settings({**BASE_SETTINGS, **settings})
        client = CarrierClient(carrier.url, HttpxTransport(httpx.Client(transport=transport)))
        buyer = LabelBuyer(carrier, client, gate if gate is not None else LocalGate(carrier.max_in_flight))
        made.append(buyer)
        return buyer

    yield make
    for buyer in made:
        buyer.pool.shutdown(wait=True, cancel_futures=True)
        buyer.client.http.client.close()


# --- buying ----------------------------------------------------------------------------------------


def test_buy_all_returns_one_purchase_per_order_in_order_and_each_key_reaches_the_carrier_once(
    make_buyer: Callable[..., LabelBuyer],
) -> None:
    stub = make_app(StubConfig(latency_ms=5))
    recorder = KeyRecorder(stub)
    buyer = make_buyer(httpx.WSGITransport(app=recorder), **{"warehouse.carrier_threads_per_process": "6"})
    # Ids out of order: the purchases must follow the orders, not the ids or the completion order.
    ids = [17, 3, 42, 8, 25, 1, 99, 64, 5, 31, 12, 77]

    purchases = buyer.buy_all([order(i) for i in ids])

    assert [purchase.shipment_id for purchase in purchases] == ids
    assert all(purchase.error is None and purchase.label is not None for purchase in purchases), purchases
    # Each purchase holds the label the carrier sold for that very shipment's key.
    for shipment_id, purchase in zip(ids, purchases):
        _, sold = stub.state.labels_by_key[f"shipment-{shipment_id}"]
        assert purchase.label is not None
        assert (purchase.label.label_id, purchase.label.tracking_number, purchase.label.label_url) == (
            sold.label_id,
            sold.tracking_number,
            sold.label_url,
        )
    assert len({purchase.label.label_id for purchase in purchases if purchase.label}) == len(ids)
    assert Counter(recorder.keys) == Counter(f"shipment-{i}" for i in ids)
    stats = stub.state.stats()
    assert stats["purchases"] == len(ids)
    assert stats["duplicate_keys"] == 0
    assert stats["requests"] == len(ids)


def test_buy_all_of_nothing_is_nothing(make_buyer: Callable[..., LabelBuyer]) -> None:
    script = Script(httpx.Response(201, json=label_json(1)))
    assert make_buyer(httpx.MockTransport(script)).buy_all([]) == []
    assert script.requests == []


def test_the_gate_keeps_calls_in_flight_under_the_carriers_cap(make_buyer: Callable[..., LabelBuyer]) -> None:
    # More threads than slots: only the gate stands between them and the carrier's cap of 3.
    stub = make_app(StubConfig(latency_ms=20, max_in_flight=3))
    buyer = make_buyer(
        httpx.WSGITransport(app=stub),
        **{"warehouse.carrier_max_in_flight": "3", "warehouse.carrier_threads_per_process": "8"},
    )

    purchases = buyer.buy_all([order(i) for i in range(1, 25)])

    assert all(purchase.label is not None for purchase in purchases), purchases
    stats = stub.state.stats()
    assert stats["rejected_over_cap"] == 0
    assert stats["max_in_flight"] == 3
    assert stats["requests"] == 24


def test_a_transient_failure_is_retried_with_the_same_idempotency_key(make_buyer: Callable[..., LabelBuyer]) -> None:
    script = Script(
        httpx.Response(503, json={"error": {"code": "unavailable", "message": "try later"}}),
        httpx.Response(201, json=label_json(7)),
    )
    buyer = make_buyer(httpx.MockTransport(script))

    purchase = buyer.buy_one(order(7))

    assert purchase.error is None
    assert purchase.label is not None and purchase.label.label_id == "LBL-7"
    assert len(script.requests) == 2
    assert script.keys == ["shipment-7", "shipment-7"]
    # The retry asks for the very same label, so the carrier can answer it from the key.
    assert script.bodies[0] == script.bodies[1]


def test_a_429_with_retry_after_pauses_everyone_then_the_retry_succeeds(make_buyer: Callable[..., LabelBuyer]) -> None:
    script = Script(
        httpx.Response(429, headers={"Retry-After": "2"}, json={"error": {"code": "rate_limited", "message": "slow down"}}),
        httpx.Response(201, json=label_json(9)),
    )
    gate = RecordingGate()
    buyer = make_buyer(httpx.MockTransport(script), gate=gate)

    purchase = buyer.buy_one(order(9))

    assert purchase.label is not None and purchase.error is None
    assert len(script.requests) == 2
    # The slot is given back, the pause asked of the gate (for every caller), and the retry waits for
    # it before it takes a slot again.
    assert gate.events == ["wait", "slot", "free", ("pause", 2.0), "wait", "slot", "free"]


def test_a_429_pause_on_a_local_gate_delays_the_retry(make_buyer: Callable[..., LabelBuyer]) -> None:
    script = Script(
        httpx.Response(429, headers={"Retry-After": "0.4"}, json={"error": {"code": "rate_limited", "message": "slow down"}}),
        httpx.Response(201, json=label_json(10)),
    )
    buyer = make_buyer(httpx.MockTransport(script), gate=LocalGate(4))

    purchase = buyer.buy_one(order(10))

    assert purchase.label is not None
    assert len(script.times) == 2
    # The backoff is microseconds: only the pause can hold the retry back this long.
    assert script.times[1] - script.times[0] >= 0.35


def test_a_503_without_retry_after_pauses_nobody(make_buyer: Callable[..., LabelBuyer]) -> None:
    script = Script(httpx.Response(503, text="down"), httpx.Response(201, json=label_json(11)))
    gate = RecordingGate()

    purchase = make_buyer(httpx.MockTransport(script), gate=gate).buy_one(order(11))

    assert purchase.label is not None
    assert not [event for event in gate.events if isinstance(event, tuple)], gate.events


def test_a_permanent_refusal_is_an_error_with_the_carriers_message_after_one_call(
    make_buyer: Callable[..., LabelBuyer],
) -> None:
    stub = make_app(StubConfig())
    gate = RecordingGate()
    buyer = make_buyer(httpx.WSGITransport(app=stub), gate=gate)

    refused, bought = buyer.buy_all([order(5, weight_grams=0), order(6)])

    assert (refused.shipment_id, refused.label) == (5, None)
    assert refused.error is not None
    assert "422" in refused.error
    assert "weight_grams: must be an integer from 1 to 70000" in refused.error
    assert bought.label is not None and bought.error is None
    assert stub.state.stats()["requests"] == 2  # one each: the refusal was not retried
    assert not [event for event in gate.events if isinstance(event, tuple)], gate.events


def test_always_503_gives_up_after_max_attempts_naming_the_last_error(make_buyer: Callable[..., LabelBuyer]) -> None:
    stub = make_app(StubConfig(fail_rate=1.0))
    buyer = make_buyer(httpx.WSGITransport(app=stub), **{"warehouse.carrier_max_attempts": "3"})

    purchase = buyer.buy_one(order(12))

    assert purchase.label is None
    assert purchase.error is not None
    assert purchase.error.startswith("gave up after 3 attempts: ")
    assert "carrier answered 503: the carrier is temporarily unavailable" in purchase.error
    assert stub.state.stats()["requests"] == 3
    assert stub.state.stats()["failed"] == 3


@pytest.mark.parametrize("error", [httpx.ReadTimeout, httpx.ConnectTimeout, httpx.ConnectError], ids=lambda e: e.__name__)
def test_timeouts_and_connection_errors_are_retried(make_buyer: Callable[..., LabelBuyer], error: type[Exception]) -> None:
    script = Script(error, error, httpx.Response(201, json=label_json(13)))
    buyer = make_buyer(httpx.MockTransport(script))

    purchase = buyer.buy_one(order(13))

    assert purchase.error is None
    assert purchase.label is not None and purchase.label.label_id == "LBL-13"
    assert script.keys == ["shipment-13"] * 3


def test_timeouts_until_the_last_attempt_give_up_naming_the_timeout(make_buyer: Callable[..., LabelBuyer]) -> None:
    script = Script(httpx.ReadTimeout)
    buyer = make_buyer(httpx.MockTransport(script), **{"warehouse.carrier_max_attempts": "2"})

    purchase = buyer.buy_one(order(14))

    assert purchase.label is None
    assert purchase.error is not None
    assert purchase.error.startswith("gave up after 2 attempts: ")
    assert "ReadTimeout" in purchase.error
    assert len(script.requests) == 2


# --- the limiter going away ------------------------------------------------------------------------


def test_limiter_unavailable_ends_the_chunk_after_the_call_under_way_and_starts_no_other(
    make_buyer: Callable[..., LabelBuyer],
) -> None:
    """Two lanes, six orders. Order 2's call is under way when the gate finds Redis gone for order 1:
    buy_all must raise LimiterUnavailable only once order 2's call has finished, and no other order
    may reach the carrier, not even from the lane that was busy with order 2 when the other failed."""
    failed = threading.Event()
    second_call_started = threading.Event()
    second_call_finished = threading.Event()
    keys: list[str | None] = []
    keys_lock = threading.Lock()

    def carrier(request: httpx.Request) -> httpx.Response:
        key = request.headers.get("Idempotency-Key")
        with keys_lock:
            keys.append(key)
        if key == "shipment-2":
            second_call_started.set()
            failed.wait(timeout=5)
            time.sleep(0.3)  # still under way when the other lane gives the chunk up
            second_call_finished.set()
        return httpx.Response(201, json=label_json(int(str(key).rsplit("-", 1)[1])))

    current = threading.local()

    class RedisGoneForOrderOne(LocalGate):
        def wait_while_paused(self) -> None:
            if current.shipment_id == 1:
                second_call_started.wait(timeout=5)
                failed.set()
                raise LimiterUnavailable("carrier limiter: Error 111 connecting to 127.0.0.1:6379. Connection refused.")
            super().wait_while_paused()

    buyer = make_buyer(
        httpx.MockTransport(carrier), gate=RedisGoneForOrderOne(4), **{"warehouse.carrier_threads_per_process": "2"}
    )
    buy_one = buyer.buy_one

    def buy_one_noting_the_order(order: LabelOrder, kept: Any = None) -> Purchase:
        current.shipment_id = order.shipment_id
        return buy_one(order, kept)

    buyer.buy_one = buy_one_noting_the_order  # type: ignore[method-assign]

    with pytest.raises(LimiterUnavailable, match="Connection refused"):
        buyer.buy_all([order(i) for i in range(1, 7)])

    # The call under way was allowed to finish before the chunk was given up (a retry replays it by key).
    assert second_call_finished.is_set(), "buy_all raised while order 2's call was still under way"
    assert keys == ["shipment-2"]


class CountingGate(LocalGate):
    """A LocalGate that counts the slots taken and given back."""

    def __init__(self, max_in_flight: int) -> None:
        super().__init__(max_in_flight)
        self.taken = self.given_back = 0
        self._count_lock = threading.Lock()

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        with super().slot():
            with self._count_lock:
                self.taken += 1
            try:
                yield
            finally:
                with self._count_lock:
                    self.given_back += 1


def test_a_lane_keeps_its_slot_from_one_call_to_the_next_and_gives_it_back_at_the_end(
    make_buyer: Callable[..., LabelBuyer],
) -> None:
    stub = make_app(StubConfig(latency_ms=2))
    gate = CountingGate(3)
    buyer = make_buyer(httpx.WSGITransport(app=stub), gate=gate, **{"warehouse.carrier_threads_per_process": "3"})

    purchases = buyer.buy_all([order(i) for i in range(1, 31)])

    assert all(purchase.label is not None for purchase in purchases), purchases
    assert stub.state.stats()["requests"] == 30
    # Three lanes, one slot each for the whole chunk, all given back: not one slot per call.
    assert (gate.taken, gate.given_back) == (3, 3)


def test_a_lane_gives_its_slot_back_while_it_backs_off(make_buyer: Callable[..., LabelBuyer]) -> None:
    script = Script(httpx.Response(503, text="down"), httpx.Response(201, json=label_json(15)))
    gate = RecordingGate()

    purchases = make_buyer(httpx.MockTransport(script), gate=gate).buy_all([order(15)])

    assert purchases[0].label is not None
    assert gate.events == ["wait", "slot", "free", "wait", "slot", "free"]


def test_limiter_unavailable_on_every_call_makes_no_carrier_call(make_buyer: Callable[..., LabelBuyer]) -> None:
    class RedisDown(RecordingGate):
        def wait_while_paused(self) -> None:
            raise LimiterUnavailable("carrier limiter: connection refused")

    script = Script(httpx.Response(201, json=label_json(1)))
    buyer = make_buyer(httpx.MockTransport(script), gate=RedisDown())

    with pytest.raises(LimiterUnavailable):
        buyer.buy_all([order(i) for i in range(1, 9)])

    assert script.requests == []


def test_limiter_unavailable_from_slot_propagates_too(make_buyer: Callable[..., LabelBuyer]) -> None:
    class SlotsDown(RecordingGate):
        @contextlib.contextmanager
        def slot(self) -> Iterator[None]:
            raise LimiterUnavailable("carrier limiter: connection refused")
            yield  # pragma: no cover - makes this a generator

    script = Script(httpx.Response(201, json=label_json(1)))
    buyer = make_buyer(httpx.MockTransport(script), gate=SlotsDown())

    with pytest.raises(LimiterUnavailable):
        buyer.buy_all([order(1), order(2)])
    assert script.requests == []


# --- settings ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [None, "", "   "], ids=["missing", "empty", "blank"])
def test_carrier_url_is_required(url: str | None) -> None:
    settings = {} if url is None else {"warehouse.carrier_url": url}
    with pytest.raises(ValueError, match=r"warehouse\.carrier_url"):
        CarrierSettings.from_settings(settings)


@pytest.mark.parametrize("value", ["0", "-3"])
def test_max_in_flight_must_be_at_least_one(value: str) -> None:
    with pytest.raises(ValueError, match=r"warehouse\.carrier_max_in_flight"):
        CarrierSettings.from_settings({"warehouse.carrier_url": CARRIER_URL, "warehouse.carrier_max_in_flight": value})


def test_a_negative_thread_count_is_refused() -> None:
    with pytest.raises(ValueError, match=r"warehouse\.carrier_threads_per_process"):
        CarrierSettings.from_settings({"warehouse.carrier_url": CARRIER_URL, "warehouse.carrier_threads_per_process": "-2"})


def test_carrier_settings_defaults() -> None:
    carrier = CarrierSettings.from_settings({"warehouse.carrier_url": "  http://carrier.test/  "})
    assert carrier == CarrierSettings(
        url="http://carrier.test/",
        max_in_flight=10,
        timeout_seconds=10.0,
        max_attempts=6,
        backoff_seconds=0.5,
        threads_per_process=10,
    )


@pytest.mark.parametrize(
    ("max_in_flight", "threads", "expected"),
    [
        ("7", None, 7),  # default: as many threads as the whole cap
        ("7", "0", 7),
        ("1000", None, MAX_THREADS_PER_PROCESS),
        ("100", "5", 5),
        ("4", "1000", MAX_THREADS_PER_PROCESS),
    ],
)
def test_threads_per_process_default_to_the_cap_and_are_capped(max_in_flight: str, threads: str | None, expected: int) -> None:
    settings = {"warehouse.carrier_url": CARRIER_URL, "warehouse.carrier_max_in_flight": max_in_flight}
    if threads is not None:
        settings["warehouse.carrier_threads_per_process"] = threads
    assert CarrierSettings.from_settings(settings).threads_per_process == expected
    assert MAX_THREADS_PER_PROCESS == 256


def test_explicit_carrier_settings_are_parsed() -> None:
    carrier = CarrierSettings.from_settings(
        {
            "warehouse.carrier_url": "http://127.0.0.1:8081",
            "warehouse.carrier_max_in_flight": "25",
            "warehouse.carrier_timeout_seconds": "2.5",
            "warehouse.carrier_max_attempts": "3",
            "warehouse.carrier_backoff_seconds": "0.25",
            "warehouse.carrier_threads_per_process": "12",
        }
    )
    assert carrier == CarrierSettings(
        url="http://127.0.0.1:8081",
        max_in_flight=25,
        timeout_seconds=2.5,
        max_attempts=3,
        backoff_seconds=0.25,
        threads_per_process=12,
    )


def test_max_attempts_is_at_least_one() -> None:
    carrier = CarrierSettings.from_settings({"warehouse.carrier_url": CARRIER_URL, "warehouse.carrier_max_attempts": "0"})
    assert carrier.max_attempts == 1


# --- one buyer per process and settings ------------------------------------------------------------


def unique_settings(**overrides: str) -> dict[str, str]:
    # A carrier URL of this test's own, so no other test's cached buyer can answer.
    return {
        "warehouse.carrier_url": f"http://carrier-{secrets.token_hex(6)}.test",
        "celery.broker_url": "memory://",
        **overrides,
    }


def test_buyer_for_the_same_settings_twice_is_the_same_buyer() -> None:
    settings = unique_settings()

    first = buyer_for(settings)
    again = buyer_for(dict(settings))  # an equal mapping, not the same object

    assert again is first
    assert isinstance(first.gate, LocalGate)
    assert first.carrier == CarrierSettings.from_settings(settings)
    assert first.client.base_url == settings["warehouse.carrier_url"]


def test_buyer_for_different_settings_is_another_buyer() -> None:
    settings = unique_settings()
    first = buyer_for(settings)

    other_cap = buyer_for({**settings, "warehouse.carrier_max_in_flight": "3"})
    other_carrier = buyer_for(unique_settings())

    assert other_cap is not first
    assert other_cap.gate.max_in_flight == 3
    assert other_carrier is not first
    assert other_carrier is not other_cap


def test_buyer_for_in_another_process_is_another_buyer(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = unique_settings()
    parent = buyer_for(settings)

    # As in a forked pool child: same settings, another pid.
    child_pid = os.getpid() + 100_000
    monkeypatch.setattr(os, "getpid", lambda: child_pid)
    child = buyer_for(settings)

    assert child is not parent
    assert child.pool is not parent.pool
    assert child.client is not parent.client


def test_buyer_for_settings_naming_another_limiter_gets_that_limiter() -> None:
    # Same carrier settings, but one names a shared limit in Redis and the other has none: the cache
    # must not hand the second the first's in-process gate (or the reverse). make_gate only builds a
    # client here; nothing connects to Redis.
    local = unique_settings()
    shared = {**local, "warehouse.carrier_limiter_url": "redis://127.0.0.1:6379/0"}

    local_buyer = buyer_for(local)
    shared_buyer = buyer_for(shared)

    assert isinstance(local_buyer.gate, LocalGate)
    assert isinstance(shared_buyer.gate, RedisGate), (
        "buyer_for handed settings with warehouse.carrier_limiter_url the cached buyer of settings without it"
    )
