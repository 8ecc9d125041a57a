"""The in-process carrier limit (LocalGate) and how the limiter is chosen from the settings
(limiter_url, make_gate). The Redis gate is tested against a real Redis in
tests/integration/test_carrier_limits_redis.py."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from tests.concurrency import InFlight
from warehouse.carrier.limits import LimiterUnavailable, LocalGate, RedisGate, limiter_url, make_gate

CARRIER_URL = "http://carrier.test"


def test_local_gate_admits_exactly_max_in_flight_at_once() -> None:
    gate = LocalGate(3)
    calls = InFlight()
    start = threading.Barrier(12)

    def call() -> None:
        start.wait()
        with gate.slot(), calls:
            time.sleep(0.05)

    threads = [threading.Thread(target=call) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert not any(thread.is_alive() for thread in threads)
    assert (calls.finished, calls.peak, calls.now) == (12, 3, 0)


def test_local_gate_frees_its_slot_when_the_call_raises() -> None:
    gate = LocalGate(1)
    with pytest.raises(RuntimeError):
        with gate.slot():
            raise RuntimeError("the call failed")

    acquired = threading.Event()

    def take() -> None:
        with gate.slot():
            acquired.set()

    thread = threading.Thread(target=take, daemon=True)
    thread.start()
    assert acquired.wait(timeout=5), "the slot of a failed call was never given back"


def timed_wait(gate: Any) -> float:
    """How long ``gate.wait_while_paused()`` takes in another thread."""
    took: list[float] = []

    def wait() -> None:
        started = time.monotonic()
        gate.wait_while_paused()
        took.append(time.monotonic() - started)

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    thread.join(timeout=10)
    assert took, "wait_while_paused did not return within 10 s"
    return took[0]


def test_local_gate_without_a_pause_does_not_wait() -> None:
    assert timed_wait(LocalGate(2)) < 0.1


def test_local_gate_pause_holds_other_threads() -> None:
    gate = LocalGate(2)
    gate.pause(0.3)
    assert timed_wait(gate) >= 0.25


def test_local_gate_a_shorter_pause_never_shortens_a_longer_one() -> None:
    gate = LocalGate(2)
    gate.pause(0.6)
    gate.pause(0.05)
    assert timed_wait(gate) >= 0.5


def test_local_gate_a_longer_pause_lengthens_a_shorter_one() -> None:
    gate = LocalGate(2)
    gate.pause(0.05)
    gate.pause(0.4)
    assert timed_wait(gate) >= 0.35


def test_local_gate_pause_runs_from_when_it_was_asked() -> None:
    gate = LocalGate(2)
    gate.pause(0.3)
    time.sleep(0.35)
    # The pause is over: nobody waits for it again.
    assert timed_wait(gate) < 0.1


# --- where the limit lives -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        # An explicit limiter wins over the broker, whatever the broker is.
        (
            {"warehouse.carrier_limiter_url": "redis://limits:6379/3", "celery.broker_url": "redis://broker:6379/0"},
            "redis://limits:6379/3",
        ),
        ({"warehouse.carrier_limiter_url": "  redis://limits:6379/3  ", "celery.broker_url": "memory://"}, "redis://limits:6379/3"),
        # Otherwise a Redis broker is the limiter.
        ({"celery.broker_url": "redis://broker:6379/0"}, "redis://broker:6379/0"),
        ({"celery.broker_url": "rediss://broker:6380/0"}, "rediss://broker:6380/0"),
        ({"warehouse.carrier_limiter_url": "", "celery.broker_url": "redis://broker:6379/1"}, "redis://broker:6379/1"),
        ({"warehouse.carrier_limiter_url": "   ", "celery.broker_url": "redis://broker:6379/1"}, "redis://broker:6379/1"),
        # A broker that is not Redis: no shared limit.
        ({"celery.broker_url": "memory://"}, None),
        ({"celery.broker_url": "amqp://guest@rabbit:5672//"}, None),
        ({}, None),
    ],
    ids=[
        "explicit-over-redis-broker",
        "explicit-stripped",
        "redis-broker",
        "rediss-broker",
        "empty-explicit",
        "blank-explicit",
        "memory-broker",
        "amqp-broker",
        "nothing",
    ],
)
def test_limiter_url(settings: dict[str, str], expected: str | None) -> None:
    assert limiter_url(settings) == expected


@pytest.mark.parametrize("broker", ["memory://", "amqp://guest@rabbit:5672//"])
def test_make_gate_without_redis_is_a_local_gate(broker: str) -> None:
    gate = make_gate({"celery.broker_url": broker}, CARRIER_URL, max_in_flight=7, call_timeout=10)
    assert isinstance(gate, LocalGate)
    assert gate.max_in_flight == 7


def test_make_gate_with_redis_is_a_redis_gate_named_after_the_carrier() -> None:
    # Building the gate only builds a client: nothing connects until a slot or a pause is asked for.
    settings = {"warehouse.carrier_limiter_url": "redis://127.0.0.1:6379/0", "celery.broker_url": "memory://"}
    gate = make_gate(settings, CARRIER_URL + "/", max_in_flight=5, call_timeout=20)
    same_carrier = make_gate(settings, CARRIER_URL, max_in_flight=5, call_timeout=20)

    assert isinstance(gate, RedisGate)
    assert gate.max_in_flight == 5
    # Every deployment naming this carrier (with or without a trailing slash) shares one limit and pause.
    assert gate.name == same_carrier.name == CARRIER_URL
    assert gate._pause_key == same_carrier._pause_key
    assert gate.max_in_flight == 5
    # A lease outlives a call's timeout (three times over), and is never under 30 s.
    assert gate.lease_seconds == 60
    assert make_gate(settings, CARRIER_URL, 5, call_timeout=2).lease_seconds == 30


def test_limiter_unavailable_is_a_transient_error_for_the_chunk_task() -> None:
    # The chunk task retries it (tasks/retry.py) instead of failing the chunk's shipments for good.
    from tasks.retry import is_transient

    assert issubclass(LimiterUnavailable, ConnectionError)
    assert is_transient(LimiterUnavailable("carrier limiter: Error 111 connecting to 127.0.0.1:6379."))
