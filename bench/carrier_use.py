"""How busy the carrier was kept during a labels run, sampled every 0.1 s: calls in flight at the stub and
shared slots held in Redis, with the time of each sample.

From the samples: how long the run took to fill the carrier (the ramp: its start to the first sample
at 90 % of the cap), how long it ran below that at the end (the tail: the last sample at 90 % to the end
the client saw), and how many slots were held with no call at the carrier behind them (a slot held
past its call is carrier time lost).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
import redis

from bench.common import log

# A sample at or above this share of the cap counts as "the carrier is kept full".
FULL_SHARE = 0.9


@dataclass(frozen=True)
class CarrierUse:
    ramp_seconds: float | None  # the run's start to the carrier first kept full
    tail_seconds: float | None  # the carrier last kept full to the run's end
    slots_held: float | None  # mean shared slots held in Redis over the run
    carrier_in_flight: float | None  # mean calls in flight at the stub over the run


class CarrierSampler:
    """Samples, every ``interval`` seconds while a run goes on, the stub's calls in flight and the
    slots held in Redis (``warehouse.carrier.limits.slots_held``)."""

    def __init__(self, redis_url: str, stub: Any, interval: float = 0.1) -> None:
        self.redis_url = redis_url
        self.stub = stub
        self.interval = interval
        self.samples: list[tuple[float, int, int | None]] = []  # (time, stub in flight, slots held)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="carrier-sampler", daemon=True)

    def __enter__(self) -> CarrierSampler:
        self.started = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.ended = time.perf_counter()
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        from warehouse.carrier.limits import slots_held

        client = redis.Redis.from_url(self.redis_url, socket_timeout=5)
        http = httpx.Client(timeout=5)
        try:
            while not self._stop.wait(self.interval):
                in_flight = http.get(f"{self.stub.url}/v1/stats").json()["in_flight"]
                self.samples.append((time.perf_counter(), in_flight, slots_held(client)))
        except Exception as error:  # noqa: BLE001 - a diagnostic must never fail the benchmark
            log(f"carrier sampler stopped: {error!r}")
        finally:
            client.close()
            http.close()

    def use(self, cap: int) -> CarrierUse:
        full = [moment for moment, in_flight, _slots in self.samples if in_flight >= FULL_SHARE * cap]
        held = [slots for _moment, _in_flight, slots in self.samples if slots is not None]
        at_stub = [in_flight for _moment, in_flight, _slots in self.samples]
        return CarrierUse(
            ramp_seconds=full[0] - self.started if full else None,
            tail_seconds=self.ended - full[-1] if full else None,
            slots_held=sum(held) / len(held) if held else None,
            carrier_in_flight=sum(at_stub) / len(at_stub) if at_stub else None,
        )
