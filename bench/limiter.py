"""The carrier in-flight limiter, old against new: py-redis-semaphore 0.2 as RedisGate used it before
warehouse/carrier/slots.py, and the token list RedisGate uses now.

    .venv/bin/python bench/limiter.py [--seconds 4] [--repeats 3]

(a) One thread, no contention: CPU and wall milliseconds per slot taken and given back.
(b) 2 processes x 100 threads against a cap of 100, each call a 200 ms sleep: calls per second
    against the ideal 500/s (the slots' pace: calls less the first hundred, over the time between the
    mean of the first hundred calls' starts and the mean of the last hundred's), and the mean time from a call giving its slot back to the next waiter
    holding it. That is worked out from every release's and every acquire's time (CLOCK_MONOTONIC,
    one clock for all processes): while callers wait, the k-th release after the start hands its
    slot to the (cap + k)-th acquire, and the mean of those differences does not depend on which
    release fed which acquire, so it is mean(acquire times) - mean(release times) over the pairs.

Runs on a Redis DB of its own (claimed as the tests claim theirs, flushed afterwards). Medians of
the repeats, with their range.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from warehouse import scratch
from warehouse.carrier.limits import RedisGate

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
CAP, PROCESSES, THREADS, CALL_SECONDS = 100, 2, 100, 0.2
IDEAL = CAP / CALL_SECONDS


class SemaphoreGate:
    """RedisGate.slot as it was before (py-redis-semaphore 0.2, a new Semaphore per call)."""

    def __init__(self, client: redis.Redis, name: str, max_in_flight: int, lease_seconds: float) -> None:
        from redis_semaphore import AcquireMode, SemaphoreConfig, TimeSource

        self._client = client
        self._config = SemaphoreConfig(
            name=name,
            namespace="warehouse:carrier-slots",
            limit=max_in_flight,
            lock_timeout=lease_seconds,
            acquire_mode=AcquireMode.BLPOP,
            blpop_timeout=1.0,
            time_source=TimeSource.SERVER,
        )

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        from redis_semaphore import Semaphore

        semaphore = Semaphore(self._client, self._config)
        semaphore.acquire(blocking=True)
        try:
            yield
        finally:
            semaphore.release()


DESIGNS: dict[str, Callable[..., object]] = {"py-redis-semaphore": SemaphoreGate, "token list": RedisGate}


def client_for(url: str, connections: int) -> redis.Redis:
    # As make_gate builds it.
    pool = redis.BlockingConnectionPool.from_url(
        url, max_connections=connections, timeout=10, socket_connect_timeout=2, socket_timeout=10
    )
    return redis.Redis(connection_pool=pool)


def one_thread(url: str, design: str, run: int, slots: int = 1000) -> tuple[float, float]:
    """CPU and wall ms per slot, one thread, nobody else."""
    gate = DESIGNS[design](client_for(url, 1 + 8), f"bench-a-{design}-{run}", CAP, 30.0)
    for _ in range(50):  # warm up: scripts loaded, the process registered, connections made
        with gate.slot():
            pass
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(slots):
        with gate.slot():
            pass
    return (time.process_time() - cpu) * 1000 / slots, (time.perf_counter() - wall) * 1000 / slots


def contended_process(url: str, design: str, name: str, start_at: float, stop_at: float, out: multiprocessing.Queue) -> None:
    gate = DESIGNS[design](client_for(url, THREADS + 8), name, CAP, 30.0)
    acquired: list[float] = []
    released: list[float] = []
    lock = threading.Lock()
    errors: list[str] = []

    def work() -> None:
        try:
            while time.monotonic() < start_at:
                time.sleep(0.005)
            while time.monotonic() < stop_at:
                with gate.slot():
                    got = time.monotonic()
                    time.sleep(CALL_SECONDS)
                    done = time.monotonic()
                with lock:
                    acquired.append(got)
                    released.append(done)
        except Exception as error:  # noqa: BLE001 - reported to the parent
            errors.append(repr(error))

    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out.put((acquired, released, errors, time.process_time()))


def contended(url: str, design: str, run: int, seconds: float) -> tuple[float, float, float]:
    """Calls/s, mean ms from a release to the next holder, CPU ms per call (all processes)."""
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    name = f"bench-b-{design}-{run}"
    start_at = time.monotonic() + 0.5  # time for the forked processes to start their threads
    stop_at = start_at + seconds
    processes = [
        context.Process(target=contended_process, args=(url, design, name, start_at, stop_at, out)) for _ in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    results = [out.get(timeout=seconds + 60) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    errors = [error for result in results for error in result[2]]
    if errors:
        raise SystemExit(f"{design}: {len(errors)} threads failed, e.g. {errors[0]}")
    acquired = sorted(t for result in results for t in result[0])
    released = sorted(t for result in results for t in result[1])
    # The pace of the slots once going, not calls counted over the window (which comes in waves of a
    # hundred 200 ms calls, so the count jumps by 100 at a time, and includes the first rush for
    # slots): between its first and its last call each slot went round (calls / CAP - 1) times.
    rate = (len(acquired) - CAP) / (statistics.fmean(acquired[-CAP:]) - statistics.fmean(acquired[:CAP]))
    # The first CAP acquires took free slots; each later one was fed by one earlier release.
    fed = acquired[CAP:]
    feeding = released[: len(fed)]
    handoff_ms = (statistics.fmean(fed) - statistics.fmean(feeding)) * 1000 if fed else float("nan")
    cpu_ms = sum(result[3] for result in results) * 1000 / max(1, len(acquired))
    return rate, handoff_ms, cpu_ms


def median_range(values: list[float], digits: int = 2) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def measure(url: str, repeats: int, seconds: float, slots: int) -> dict[str, dict[str, list[float]]]:
    rows: dict[str, dict[str, list[float]]] = {design: {} for design in DESIGNS}
    for run in range(repeats):
        for design in DESIGNS:  # interleaved, so a busier moment of the machine hits both alike
            cpu, wall = one_thread(url, design, run, slots)
            rate, handoff, cpu_call = contended(url, design, run, seconds)
            for key, value in (("cpu", cpu), ("wall", wall), ("rate", rate), ("handoff", handoff), ("cpu_call", cpu_call)):
                rows[design].setdefault(key, []).append(value)
            print(f"  run {run + 1} {design}: {cpu:.3f} / {wall:.3f} ms per slot; {rate:.0f} calls/s, "
                  f"hand-off {handoff:.1f} ms", file=sys.stderr, flush=True)
    return rows


def run(env: Any, repeats: int = 3, seconds: float = 4.0, slots: int = 1000) -> Any:
    """For ``make bench``: the same measurements on the session's Redis DB, as table rows."""
    from bench.common import Result

    result = Result("carrier limiter")
    rows = measure(env.redis_url, repeats, seconds, slots)
    for design, values in rows.items():
        result.figure(f"{design}: one thread, per slot", f"{median_range(values['cpu'], 3)} ms CPU",
                      f"{median_range(values['wall'], 3)} ms wall; {slots} slots taken and given back, no contention;"
                      f" median (range) of {repeats}")
        result.figure(f"{design}: {PROCESSES} processes × {THREADS} threads, cap {CAP}",
                      f"{median_range(values['rate'], 0)} calls/s",
                      f"ideal {IDEAL:.0f} ({median_range([100 * rate / IDEAL for rate in values['rate']], 1)} %);"
                      f" release to the next holder {median_range(values['handoff'], 1)} ms;"
                      f" {median_range(values['cpu_call'], 3)} ms CPU a call, all processes; {CALL_SECONDS * 1000:.0f} ms calls")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each contended run (default 4)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--slots", type=int, default=1000, help="slots per one-thread run (default 1000)")
    args = parser.parse_args()

    with scratch.claimed_redis_db(REDIS_HOST, REDIS_PORT, scratch.claim_token("bench-limiter")) as url:
        rows = measure(url, args.repeats, args.seconds, args.slots)

    print(f"\nMedians of {args.repeats} runs (range). (a) one thread, {args.slots} slots; "
          f"(b) {PROCESSES} processes x {THREADS} threads, cap {CAP}, {CALL_SECONDS * 1000:.0f} ms calls, "
          f"{args.seconds:.0f} s; ideal {IDEAL:.0f} calls/s.\n")
    header = ["design", "(a) CPU ms/slot", "(a) wall ms/slot", "(b) calls/s", "(b) % of ideal",
              "(b) release -> next holder ms", "(b) CPU ms/call"]
    table = [header]
    for design, values in rows.items():
        table.append([
            design,
            median_range(values["cpu"], 3),
            median_range(values["wall"], 3),
            median_range(values["rate"], 0),
            median_range([100 * rate / IDEAL for rate in values["rate"]], 1),
            median_range(values["handoff"], 1),
            median_range(values["cpu_call"], 3),
        ])
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for index, row in enumerate(table):
        print(" | ".join(cell.ljust(width) for cell, width in zip(row, widths)))
        if index == 0:
            print("-+-".join("-" * width for width in widths))


if __name__ == "__main__":
    main()
