"""Shipping labels: 5,000 due shipments against a carrier that takes 200 ms a call and 100 calls at once.

The carrier alone sets a floor: 5,000 calls × 0.2 s / 100 in flight = 10 s, however the caller works.
This benchmark times a ``shipping_labels`` run end to end (POST /api/warehouses/{code}/runs until
GET /api/runs/{id} shows a terminal status) on one worker node of 2 prefork processes, the shape of a
2-core machine, three times, and compares the median with the floor (target: at most 1.3 × the floor).
It does so for the settings as shipped and for each other variant in VARIANTS (settings only, no code
change), so that the table shows what a setting is worth.

The seed post's approach, ``multiprocessing.Pool(os.cpu_count()).map`` of one blocking call per shipment
against the same stub, would take minutes for all 5,000: it is timed on a subset in the same session
and scaled linearly (it makes os.cpu_count() calls at a time, so its time is linear in the number of
calls; starting the pool is timed apart and counted once); the table says so.

Correctness is checked on the stub's own counters after every run: exactly one purchase per shipment,
no shipment bought twice, the cap never exceeded, the run succeeded and stored every label.
``python bench/labels.py --help`` runs this benchmark alone, with knobs for experiments.
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``bench`` and the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import redis
from sqlalchemy import func, select, update

from bench import common
from bench.common import BenchError, Environment, Result, Stopwatch, log

NAME = "shipping labels"
WAREHOUSE = "bench-labels"
SHIPMENTS_DUE = 5_000
LATENCY_MS = 200
MAX_IN_FLIGHT = 100
TARGET_RATIO = 1.3
SEED_SUBSET = 200
# 2 worker processes in all on this 2-core machine: one node, two prefork children (each child has
# its own carrier thread pool; the in-flight cap is shared by both through Redis).
NODES = 1
CONCURRENCY = 2
RUN_TIMEOUT_SECONDS = 600.0
# Ours is run this many times (the labels forgotten and the stub reset in between); the median counts.
REPEATS = 3
POLL_SECONDS = 0.1
# The shared in-flight limit's leases in Redis (warehouse.carrier.limits), for the slot sampler.
SLOT_KEYS = "warehouse:carrier-slots*"
SEED_TIMEOUT_SECONDS = 600.0
# Above this share of the machine used by processes that are not the benchmark's, say the figures suffer.
QUIET_MACHINE_SHARE = 0.05
# As the README and `make worker` start workers.
WORKER_LOGLEVEL = "INFO"


def floor_seconds(shipments: int, latency_ms: int, max_in_flight: int) -> float:
    """The least time the carrier allows: every call takes ``latency_ms``, ``max_in_flight`` at a time."""
    return shipments * latency_ms / 1000 / max_in_flight


# --- the seed post's approach -------------------------------------------------------------------------

Order = tuple[int, str, str, int]  # shipment id, reference, ship_to, weight_grams

_seed_carrier_url = ""


def _seed_worker_start(carrier_url: str, ready: Any) -> None:
    global _seed_carrier_url
    _seed_carrier_url = carrier_url
    ready.wait()  # the pool counts as started once every process is up


def seed_create_shipping_label(order: Order) -> int:
    """The seed's ``create_shipping_label(shipment)``: one blocking HTTP call, a new connection each time
    (as ``requests.post`` does). Returns the HTTP status."""
    shipment_id, reference, ship_to, weight = order
    response = httpx.post(
        f"{_seed_carrier_url}/v1/labels",
        headers={"Idempotency-Key": f"shipment-{shipment_id}"},
        json={"shipment_reference": reference, "ship_to": ship_to, "weight_grams": weight},
        timeout=30,
    )
    return response.status_code


@dataclass
class SeedTiming:
    start_seconds: float  # starting Pool(os.cpu_count()): paid once, whatever the number of shipments
    map_seconds: float  # pool.map over the orders
    statuses: list[int]


def seed_approach(carrier_url: str, orders: Sequence[Order]) -> SeedTiming:
    """``Pool(processes=cpu_count()).map(create_shipping_label, shipments)``, as in the seed post.

    The pool's processes are spawned rather than forked (the seed's Linux default): a fork of this
    process, which has run threads (the web app's, Celery's), may inherit a lock held by one of them
    and hang. Spawning costs more at start-up, which is timed apart and not scaled."""
    processes = os.cpu_count() or 1
    context = multiprocessing.get_context("spawn")
    ready = context.Barrier(processes + 1)
    starting = time.perf_counter()
    pool = context.Pool(processes=processes, initializer=_seed_worker_start, initargs=(carrier_url, ready))
    try:
        ready.wait(timeout=60)  # every process of the pool is up
        start_seconds = time.perf_counter() - starting
        with Stopwatch() as mapping:
            statuses = pool.map_async(seed_create_shipping_label, orders).get(timeout=SEED_TIMEOUT_SECONDS)
    except (multiprocessing.TimeoutError, threading.BrokenBarrierError) as error:
        raise BenchError(f"the seed approach's pool did not do {len(orders)} calls in time: {error!r}") from None
    finally:
        pool.terminate()
        pool.join()
    return SeedTiming(start_seconds, mapping.seconds, statuses)


# --- the data ----------------------------------------------------------------------------------------


def seed_shipments(engine: Any, due: int) -> None:
    """``due`` shipments due in the window among three times as many (the seed's default third), so
    that planning filters the warehouse as in real life."""
    from warehouse.scripts.seed import seed

    seed(engine, WAREHOUSE, products=0, shipments=3 * due)


def due_orders(engine: Any, limit: int) -> list[Order]:
    """The first ``limit`` shipments the run covers, as the seed command would read them."""
    from warehouse.models import Shipment, Warehouse
    from warehouse.operations.shipping_labels import ShippingLabels

    today = dt.datetime.now(dt.timezone.utc).date()
    with engine.connect() as connection:
        warehouse_id = connection.scalar(select(Warehouse.id).where(Warehouse.code == WAREHOUSE))
        due_ids = ShippingLabels().item_ids(warehouse_id, today).order_by(Shipment.id).limit(limit).subquery()
        rows = connection.execute(
            select(Shipment.id, Shipment.reference, Shipment.ship_to, Shipment.weight_grams)
            .where(Shipment.id.in_(select(due_ids.c.id)))
            .order_by(Shipment.id)
        ).all()
    return [tuple(row) for row in rows]


def labelled_shipments(engine: Any) -> int:
    from warehouse.models import Shipment, Warehouse

    with engine.connect() as connection:
        return connection.scalar(
            select(func.count())
            .select_from(Shipment)
            .join(Warehouse, Warehouse.id == Shipment.warehouse_id)
            .where(Warehouse.code == WAREHOUSE, Shipment.label_id.is_not(None))
        )


def phases(engine: Any, run_id: int) -> dict[str, float]:
    """Where a run's time went, from the ledger's timestamps (all written on this machine's clock)."""
    from warehouse.models import Run, RunChunk

    with engine.connect() as connection:
        created, started, finished = connection.execute(
            select(Run.created_at, Run.started_at, Run.finished_at).where(Run.id == run_id)
        ).one()
        first_start, last_start, last_end, shortest, longest = connection.execute(
            select(
                func.min(RunChunk.started_at),
                func.max(RunChunk.started_at),
                func.max(RunChunk.finished_at),
                func.min(RunChunk.finished_at - RunChunk.started_at),
                func.max(RunChunk.finished_at - RunChunk.started_at),
            ).where(RunChunk.run_id == run_id)
        ).one()
    return {
        "queued": (started - created).total_seconds(),  # POST committed → processWholeWarehouse began
        "planned": (first_start - started).total_seconds(),  # planning and dispatch → first chunk began
        "chunks": (last_end - first_start).total_seconds(),  # first chunk began → last chunk done
        "last_chunk_start": (last_start - first_start).total_seconds(),
        "finalised": (finished - last_end).total_seconds(),  # last chunk done → run finished
        "chunk_min": shortest.total_seconds(),
        "chunk_max": longest.total_seconds(),
    }


# --- the benchmark -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """A configuration of ours: ini settings on top of the production-shaped ones, and the run's chunk size."""

    name: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    chunk_size: int | None = None

    def describe(self) -> str:
        parts = [f"{key.removeprefix('warehouse.')} = {value}" for key, value in self.settings.items()]
        if self.chunk_size:
            parts.append(f"chunk_size = {self.chunk_size}")
        return ", ".join(parts) or "production.ini's settings"


VARIANTS = (
    Variant("as shipped"),
    # Each process's thread pool defaults to the whole cap (100), so 2 processes run 200 threads for 100
    # slots; this gives each process its share instead.
    Variant("threads per process = cap / processes", {"warehouse.carrier_threads_per_process": MAX_IN_FLIGHT // CONCURRENCY}),
)


class SlotSampler:
    """Samples, every ``interval`` seconds while a run goes on, how many shared carrier slots are held in
    Redis (the in-flight limit's sorted sets of leases, found by name) and how many calls the stub has
    in flight. Their difference is time a slot is held without a call at the carrier. Best effort: a
    limiter that keeps its slots elsewhere is reported as not sampled."""

    def __init__(self, redis_url: str, stub: Any, interval: float = 0.1) -> None:
        self.redis_url = redis_url
        self.stub = stub
        self.interval = interval
        self.slots: list[int] = []
        self.in_flight: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="slot-sampler", daemon=True)

    def __enter__(self) -> SlotSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        client = redis.Redis.from_url(self.redis_url, socket_timeout=5)
        http = httpx.Client(timeout=5)
        try:
            while not self._stop.wait(self.interval):
                keys = [key for key in client.scan_iter(match=SLOT_KEYS, count=1000) if client.type(key) == b"zset"]
                if keys:
                    self.slots.append(sum(client.zcard(key) for key in keys))
                self.in_flight.append(http.get(f"{self.stub.url}/v1/stats").json()["in_flight"])
        except Exception as error:  # noqa: BLE001 - a diagnostic must never fail the benchmark
            log(f"slot sampler stopped: {error!r}")
        finally:
            client.close()
            http.close()

    @staticmethod
    def mean(values: list[int]) -> float | None:
        return sum(values) / len(values) if values else None


@dataclass
class Measurement:
    """One run of ours: its time, what the ledger, the database and the stub say of it, the CPU it took."""

    seconds: float
    run: dict[str, Any]
    stub: dict[str, int]
    phases: dict[str, float]
    labelled: int
    cpu: dict[str, float]
    slots_held: float | None  # mean number of shared slots held in Redis, sampled
    carrier_in_flight: float | None  # mean number of calls in flight at the stub, sampled


def forget_labels(engine: Any) -> None:
    """Every shipment of the benchmark's warehouse back to "no label", for the next run."""
    from warehouse.models import Shipment, Warehouse

    with engine.begin() as connection:
        warehouse_id = connection.scalar(select(Warehouse.id).where(Warehouse.code == WAREHOUSE))
        connection.execute(
            update(Shipment)
            .where(Shipment.warehouse_id == warehouse_id)
            .values(label_id=None, tracking_number=None, label_url=None, label_error=None)
        )


def measure_once(
    env: Environment, api: common.Api, stub: Any, engine: Any, cpu: common.CpuMeter, options: Mapping[str, Any]
) -> Measurement:
    forget_labels(engine)
    stub.reset()
    cpu.start()
    with SlotSampler(env.redis_url, stub) as sampler, Stopwatch() as watch:
        started = api.start_run(WAREHOUSE, "shipping_labels", **options)
        finished = api.wait_until_finished(started["id"], RUN_TIMEOUT_SECONDS, poll_seconds=POLL_SECONDS)
    used = cpu.stop()
    return Measurement(
        watch.seconds,
        finished,
        stub.stats(),
        phases(engine, finished["id"]),
        labelled_shipments(engine),
        used,
        sampler.mean(sampler.slots),
        sampler.mean(sampler.in_flight),
    )


def measure_variant(
    env: Environment,
    stub: Any,
    engine: Any,
    variant: Variant,
    *,
    floor: float,
    repeats: int,
    nodes: int,
    concurrency: int,
    loglevel: str,
) -> list[Measurement]:
    """``repeats`` runs of ours on workers started with the variant's settings (stopped afterwards)."""
    ini = env.write_ini(
        f"labels-{secrets.token_hex(3)}",
        {"warehouse.carrier_url": stub.url, "warehouse.carrier_max_in_flight": MAX_IN_FLIGHT, **variant.settings},
    )
    options = {"chunk_size": variant.chunk_size} if variant.chunk_size else {}
    log(f"{NAME}, {variant.name}: {nodes} worker node(s) × {concurrency} processes, --loglevel={loglevel}; {variant.describe()}")
    measurements = []
    with common.workers(env, ini, nodes=nodes, concurrency=concurrency, loglevel=loglevel) as started, common.web_api(env, ini) as api:
        cpu = common.CpuMeter(
            {
                "workers": ([node.process.pid for node in started], True),
                "carrier stub": ([stub.process.pid], False),
                "this process (API, polls)": ([os.getpid()], False),
            }
        )
        for number in range(1, repeats + 1):
            measured = measure_once(env, api, stub, engine, cpu, options)
            log(f"{NAME}, {variant.name}: run {number}/{repeats}: {measured.seconds:.2f} s = {measured.seconds / floor:.2f} × floor;"
                f" phases {measured.phases}; stub {measured.stub}; {cpu_note(measured)}")
            measurements.append(measured)
    return measurements


def check_variant(result: Result, variant: Variant, shipments: int, measurements: list[Measurement]) -> None:
    """Every correctness condition, over every run of the variant (each run's values in the detail)."""

    def check(name: str, holds: Callable[[Measurement], bool], value: Callable[[Measurement], Any], what: str) -> None:
        passed = sum(1 for measured in measurements if holds(measured))
        values = ", ".join(str(value(measured)) for measured in measurements)
        result.check(f"{variant.name}: {name}", passed == len(measurements),
                     f"{passed} of {len(measurements)} runs; {what}: {values}")

    check("run succeeded", lambda m: m.run["status"] == "succeeded", lambda m: m.run["status"], "status")
    check("exactly one purchase per shipment", lambda m: m.stub["purchases"] == shipments, lambda m: m.stub["purchases"],
          f"purchases for {shipments:,} shipments")
    check("no duplicate purchases", lambda m: m.stub["duplicate_purchases"] == 0, lambda m: m.stub["duplicate_purchases"],
          "duplicate purchases")
    check("in-flight cap kept", lambda m: m.stub["max_in_flight"] <= MAX_IN_FLIGHT, lambda m: m.stub["max_in_flight"],
          f"peak in flight (cap {MAX_IN_FLIGHT})")
    # The stub admits at most its cap and refuses the rest with a 429: a refusal means our limit let one too many go.
    check("no call refused over the cap", lambda m: m.stub["rejected_over_cap"] == 0, lambda m: m.stub["rejected_over_cap"],
          "calls refused over the cap")
    check("every label stored", lambda m: m.labelled == shipments, lambda m: m.labelled, "shipments with a label")


def cpu_note(measured: Measurement) -> str:
    used = measured.cpu
    parts = [f"{name} {seconds:.1f}" for name, seconds in used.items() if name not in ("machine busy", "machine capacity")]
    return f"CPU seconds over {measured.seconds:.1f} s × {os.cpu_count()} cores: " + ", ".join(parts)


def median(measurements: list[Measurement]) -> Measurement:
    return sorted(measurements, key=lambda measured: measured.seconds)[len(measurements) // 2]


def add_variant_figures(result: Result, variant: Variant, measurements: list[Measurement], floor: float) -> None:
    middle = median(measurements)
    ratio = middle.seconds / floor
    where = middle.phases
    busy = middle.cpu["machine busy"] / middle.cpu["machine capacity"]
    result.figure(
        f"ours, {variant.name}",
        f"{middle.seconds:.2f} s",
        f"median of {len(measurements)} runs ({', '.join(f'{m.seconds:.2f}' for m in measurements)} s), POST to terminal"
        f" status; {variant.describe()}; chunk size {middle.run['chunk_size']} ({middle.run['chunks']['total']} chunks)",
    )
    result.figure(
        f"ours ÷ floor, {variant.name}", f"{ratio:.2f} ×", f"target ≤ {TARGET_RATIO} ×: {'met' if ratio <= TARGET_RATIO else 'NOT met'}"
    )
    result.figure(
        f"where the time went, {variant.name}",
        f"{where['queued']:.2f} + {where['planned']:.2f} + {where['chunks']:.2f} + {where['finalised']:.2f} s",
        "queued + planned and dispatched + chunks (first start to last end) + finalised, from the ledger;"
        f" one chunk took {where['chunk_min']:.1f} to {where['chunk_max']:.1f} s",
    )
    result.figure(f"CPU busy, {variant.name}", f"{busy:.0%}", cpu_note(middle))
    at_carrier = middle.stub["requests"] * LATENCY_MS / 1000 / middle.seconds
    sampled = (
        f"sampled every 0.1 s: {middle.slots_held:.0f} slots held in Redis, {middle.carrier_in_flight:.0f} calls at the stub"
        if middle.slots_held is not None and middle.carrier_in_flight is not None
        else "slots in Redis not sampled"
    )
    result.figure(
        f"carrier use, {variant.name}",
        f"{at_carrier:.0f} of {MAX_IN_FLIGHT}",
        f"calls in flight on average over the run (calls × latency ÷ time; the floor assumes {MAX_IN_FLIGHT}); {sampled}",
    )
    others = middle.cpu["other processes"] / middle.cpu["machine capacity"]
    if others > QUIET_MACHINE_SHARE:
        log(f"{NAME}, {variant.name}: WARNING: other processes used {others:.0%} of the machine during the median run;"
            " its figures are pessimistic")


def add_counter_figure(result: Result, variant: Variant, measurements: list[Measurement]) -> None:
    """The stub's counters, run by run. No faults are injected, so a replayed key means that our side
    retried a call or a whole chunk: harmless (the key makes it so) but worth a look."""

    def per_run(counter: str) -> str:
        return " / ".join(f"{measured.stub[counter]:,}" for measured in measurements)

    result.figure(
        f"carrier counters, {variant.name}",
        f"{per_run('purchases')} purchases",
        f"run by run: duplicate purchases {per_run('duplicate_purchases')}, replayed keys {per_run('duplicate_keys')},"
        f" peak in flight {per_run('max_in_flight')}, refused over the cap {per_run('rejected_over_cap')}",
    )
    if any(measured.stub["duplicate_keys"] for measured in measurements):
        log(f"{NAME}, {variant.name}: WARNING: keys were replayed although no fault was injected; see the workers' logs")


def run(
    env: Environment,
    *,
    shipments: int = SHIPMENTS_DUE,
    repeats: int = REPEATS,
    seed_subset: int = SEED_SUBSET,
    variants: Sequence[Variant] = VARIANTS,
    nodes: int = NODES,
    concurrency: int = CONCURRENCY,
    worker_loglevel: str = WORKER_LOGLEVEL,
) -> Result:
    from warehouse.carrier.served import serve_stub

    result = Result(NAME)
    floor = floor_seconds(shipments, LATENCY_MS, MAX_IN_FLIGHT)
    measured: list[tuple[Variant, list[Measurement]]] = []
    with serve_stub("--latency-ms", str(LATENCY_MS), "--max-in-flight", str(MAX_IN_FLIGHT)) as stub:
        with common.engine_for(env.write_ini("labels-data")) as engine:
            log(f"{NAME}: seeding {3 * shipments:,} shipments, {shipments:,} of them due")
            seed_shipments(engine, shipments)
            subset = due_orders(engine, seed_subset)
            for variant in variants:
                measurements = measure_variant(
                    env,
                    stub,
                    engine,
                    variant,
                    floor=floor,
                    repeats=repeats,
                    nodes=nodes,
                    concurrency=concurrency,
                    loglevel=worker_loglevel,
                )
                measured.append((variant, measurements))
        log(f"{NAME}: the seed approach on {len(subset)} shipments")
        stub.reset()
        seed_timing = seed_approach(stub.url, subset)
        seed_stats = stub.stats()

    for variant, measurements in measured:
        check_variant(result, variant, shipments, measurements)
    statuses = sorted(set(seed_timing.statuses))
    result.check("the seed approach bought its subset", seed_stats["purchases"] == len(subset) and statuses == [201],
                 f"{seed_stats['purchases']} purchases for {len(subset)} shipments, statuses {statuses}")

    headline = median(measured[0][1])
    scale = shipments / max(len(subset), 1)
    seed_scaled = seed_timing.start_seconds + seed_timing.map_seconds * scale
    result.figure("carrier floor", f"{floor:.1f} s", f"{shipments:,} calls × {LATENCY_MS / 1000:g} s / {MAX_IN_FLIGHT} in flight")
    for variant, measurements in measured:
        add_variant_figures(result, variant, measurements, floor)
        add_counter_figure(result, variant, measurements)
    result.figure(
        "seed approach, scaled",
        f"{seed_scaled:.0f} s",
        f"SCALED from a subset: pool.map took {seed_timing.map_seconds:.2f} s for {len(subset)} shipments, × {scale:g},"
        f" plus {seed_timing.start_seconds:.2f} s to start Pool({os.cpu_count()}); one blocking call per shipment, same stub",
    )
    result.figure(
        "seed approach ÷ floor",
        f"{seed_scaled / floor:.1f} ×",
        f"ours ({variants[0].name}) is {seed_scaled / headline.seconds:.0f} × faster",
    )
    for variant, measurements in measured:
        ratio = median(measurements).seconds / floor
        log(f"{NAME}, {variant.name}: {median(measurements).seconds:.2f} s = {ratio:.2f} × the {floor:.1f} s floor"
            f" (target ≤ {TARGET_RATIO} ×: {'met' if ratio <= TARGET_RATIO else 'NOT met'})")
    log(f"{NAME}: the seed approach {seed_scaled:.0f} s (scaled) = {seed_scaled / floor:.1f} × the floor")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The shipping-labels benchmark alone (make bench runs all of them).")
    parser.add_argument("--shipments", type=int, default=SHIPMENTS_DUE, help="due shipments (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=REPEATS, help="runs of ours per variant; the median counts (default: %(default)s)")
    parser.add_argument("--seed-subset", type=int, default=SEED_SUBSET, help="shipments the seed approach is timed on")
    parser.add_argument("--nodes", type=int, default=NODES, help="worker nodes (default: %(default)s)")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY, help="processes per node (default: %(default)s)")
    parser.add_argument("--loglevel", default=WORKER_LOGLEVEL, help="the workers' --loglevel (default: %(default)s)")
    parser.add_argument("--chunk-size", type=int, help="one variant only: the run's chunk_size")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="one variant only: an extra ini setting")
    args = parser.parse_args(argv)
    variants: Sequence[Variant] = VARIANTS
    if args.set or args.chunk_size:
        variants = [Variant("custom", dict(item.split("=", 1) for item in args.set), args.chunk_size)]
    return common.run_alone(
        run,
        shipments=args.shipments,
        repeats=args.repeats,
        seed_subset=args.seed_subset,
        variants=variants,
        nodes=args.nodes,
        concurrency=args.concurrency,
        worker_loglevel=args.loglevel,
    )


if __name__ == "__main__":
    sys.exit(main())
