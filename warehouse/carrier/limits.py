"""One limit for every worker: how many carrier calls are in flight, and when everyone must pause.

``warehouse.carrier_max_in_flight`` bounds the calls in flight across all worker processes and nodes.
With Redis, the slots are tokens in a Redis list (``warehouse.carrier.slots``): a call takes one with
a blocking ``BLMOVE`` and gives it back with one script, and each process holds its tokens on a
lease that its heartbeat renews, so the slots of a worker killed with ``kill -9`` come back by
themselves when its lease runs out, instead of leaking for good.

A 429 with ``Retry-After`` pauses every caller, not only the one that got it: the pause is a Redis key
with that time to live, and every call waits for it to expire before it takes a slot.

Without Redis (development.ini's in-memory broker, one process) the same two rules hold in-process.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

import redis

from .slots import TokenSlots, held_slots

logger = logging.getLogger(__name__)

# Redis connections beyond one per carrier thread: the lease's heartbeat and the pause check.
CONNECTIONS_SPARE = 8
# Where the slots live in Redis.
SLOTS_NAMESPACE = "warehouse:carrier-slots"
# How stale this process's view of the shared pause may be.
PAUSE_CHECK_SECONDS = 0.05
# Jitter added to a pause, so that the callers it held do not all call again in the same millisecond.
PAUSE_JITTER_SECONDS = 0.05


class LimiterUnavailable(ConnectionError):
    """The shared limit cannot be consulted (Redis is down): calling anyway could break the cap."""


class CarrierGate(Protocol):
    max_in_flight: int

    def slot(self) -> contextlib.AbstractContextManager[None]:
        """Hold one of the ``max_in_flight`` slots for the duration of one call."""

    def pause(self, seconds: float) -> None:
        """Make every caller wait ``seconds`` (or longer, if a pause already runs longer)."""

    def wait_while_paused(self) -> None:
        """Return when no pause is in force."""


class LocalGate:
    """The limit and the pause for the threads of one process."""

    def __init__(self, max_in_flight: int) -> None:
        self.max_in_flight = max_in_flight
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._lock = threading.Lock()
        self._paused_until = 0.0

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        with self._slots:
            yield

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    def wait_while_paused(self) -> None:
        while (remaining := self._paused_until - time.monotonic()) > 0:
            time.sleep(remaining + random.uniform(0, PAUSE_JITTER_SECONDS))


class RedisGate:
    """The limit and the pause shared by every process that names the same Redis and carrier."""

    def __init__(self, client: redis.Redis, name: str, max_in_flight: int, lease_seconds: float) -> None:
        self.max_in_flight = max_in_flight
        self.name = name
        self._client = client
        self._pause_key = f"warehouse:carrier-pause:{name}"
        # This process's view of the shared pause: until when, and when Redis was last asked.
        self._lock = threading.Lock()
        self._paused_until = 0.0
        self._checked_at = -PAUSE_CHECK_SECONDS
        # A slot outlives a dead holder by at most lease_seconds; the heartbeat renews it every third.
        self.lease_seconds = lease_seconds
        self._slots = TokenSlots(client, name, max_in_flight, lease_seconds, SLOTS_NAMESPACE)

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        try:
            token = self._slots.acquire()
        except redis.RedisError as error:
            raise LimiterUnavailable(f"carrier limiter: {error}") from error
        try:
            yield
        finally:
            try:
                self._slots.release(token)
            except redis.RedisError:
                # This process's heartbeat finds the token it no longer knows and gives it back within
                # two beats (warehouse.carrier.slots); the call's own outcome matters more.
                logger.warning("could not give back a carrier slot; the lease's heartbeat gives it back shortly")

    def pause(self, seconds: float) -> None:
        milliseconds = max(1, int(seconds * 1000))
        with self._lock:
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)
        try:
            with self._client.pipeline(transaction=True) as pipeline:
                # Create the pause, or lengthen one that ends sooner; never shorten a longer one.
                pipeline.set(self._pause_key, 1, px=milliseconds, nx=True)
                pipeline.pexpire(self._pause_key, milliseconds, gt=True)
                pipeline.execute()
        except redis.RedisError as error:
            raise LimiterUnavailable(f"carrier limiter: {error}") from error

    def wait_while_paused(self) -> None:
        # Redis is asked at most every PAUSE_CHECK_SECONDS per process, not before every call: at a
        # hundred calls in flight that is one round trip saved per call, and a pause another worker
        # set is still honoured within that time.
        while True:
            now = time.monotonic()
            with self._lock:
                paused_until, fresh = self._paused_until, now - self._checked_at < PAUSE_CHECK_SECONDS
            if paused_until > now:
                time.sleep(paused_until - now + random.uniform(0, PAUSE_JITTER_SECONDS))
                continue
            if fresh:
                return
            try:
                remaining_ms = self._client.pttl(self._pause_key)
            except redis.RedisError as error:
                raise LimiterUnavailable(f"carrier limiter: {error}") from error
            with self._lock:
                self._checked_at = now
                if remaining_ms > 0:
                    self._paused_until = max(self._paused_until, now + remaining_ms / 1000)
            if remaining_ms <= 0:
                return


def slots_held(client: redis.Redis) -> int:
    """How many carrier slots are held right now, over every carrier in ``client``'s database (for
    diagnostics, such as the labels benchmark's sampler)."""
    return held_slots(client, SLOTS_NAMESPACE)


def limiter_url(settings: Mapping[str, Any]) -> str | None:
    """Where the shared limit lives: ``warehouse.carrier_limiter_url``, else a Redis broker, else nowhere."""
    explicit = str(settings.get("warehouse.carrier_limiter_url", "")).strip()
    if explicit:
        return explicit
    broker = str(settings.get("celery.broker_url", ""))
    return broker if broker.startswith(("redis://", "rediss://", "unix://")) else None


def make_gate(
    settings: Mapping[str, Any], carrier_url: str, max_in_flight: int, call_timeout: float, threads: int = 1
) -> CarrierGate:
    """The gate for ``threads`` threads of this process calling ``carrier_url``."""
    url = limiter_url(settings)
    if url is None:
        logger.info("no Redis for the carrier limit: %s calls in flight per process", max_in_flight)
        return LocalGate(max_in_flight)
    # One connection per thread at most (each may be blocked waiting for a slot), a few spare for the
    # heartbeats; a thread that finds none free waits for one rather than failing its call, which
    # redis-py's default pool (100 connections, then "Too many connections") would do.
    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=threads + CONNECTIONS_SPARE,
        timeout=max(5.0, call_timeout),
        socket_connect_timeout=2,
        socket_timeout=max(5.0, call_timeout),
        health_check_interval=30,
    )
    # Every deployment that talks to the same carrier through the same Redis shares one limit.
    return RedisGate(redis.Redis(connection_pool=pool), carrier_url.rstrip("/"), max_in_flight, lease_seconds=max(30.0, 3 * call_timeout))
