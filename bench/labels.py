"""Shipping labels: due shipments bought from a carrier that takes 200 ms a call and 100 calls at once.

The carrier alone sets a floor: N calls × 0.2 s / 100 in flight (10 s for 5,000, 40 s for 20,000),
however the caller works. This benchmark times a ``shipping_labels`` run end to end (POST
/api/warehouses/{code}/runs until GET /api/runs/{id}, polled every 0.1 s, shows a terminal status)
for 5,000 and 20,000 due shipments, on one worker node of 2 prefork processes (the shape of a 2-core
machine) and on two such nodes, three times each, and compares the medians with the floor (target:
at most 1.15 × the floor). Each variant in VARIANTS (settings only, no code change) is measured the
same way, so that the table shows what a setting is worth.

The seed post's approach, ``multiprocessing.Pool(os.cpu_count()).map`` of one blocking call per shipment
against the same stub, would take minutes: it is timed on a subset in the same session and scaled
linearly (bench/labels_seed.py); the table says so.

Correctness is checked on the stub's own counters after every run: exactly one purchase per shipment,
no shipment bought twice, the cap never exceeded, the run succeeded and stored every label.
``python bench/labels.py --help`` runs this benchmark alone, with knobs for experiments.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import secrets
import statistics
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``bench`` and the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common
from bench.carrier_use import CarrierSampler, CarrierUse
from bench.common import Environment, Result, Stopwatch, log
from bench.labels_data import due_orders, forget_labels, labelled_shipments, phases, seed_shipments
from bench.labels_seed import seed_approach

NAME = "shipping labels"
SHIPMENT_COUNTS = (5_000, 20_000)
LATENCY_MS = 200
MAX_IN_FLIGHT = 100
TARGET_RATIO = 1.15
SEED_SUBSET = 200
# Worker nodes of 2 prefork processes each: one node is the shape of a 2-core machine; two share
# its cores here, as two nodes of a fleet share the carrier's cap (through Redis).
NODE_COUNTS = (1, 2)
CONCURRENCY = 2
RUN_TIMEOUT_SECONDS = 600.0
# Ours is run this many times per shape (the labels forgotten and the stub reset in between).
REPEATS = 3
POLL_SECONDS = 0.1
# Above this share of the machine used by processes that are not the benchmark's, say the figures suffer.
QUIET_MACHINE_SHARE = 0.05
# As the README and `make worker` start workers.
WORKER_LOGLEVEL = "INFO"


def floor_seconds(shipments: int, latency_ms: int, max_in_flight: int) -> float:
    """The least time the carrier allows: every call takes ``latency_ms``, ``max_in_flight`` at a time."""
    return shipments * latency_ms / 1000 / max_in_flight


def warehouse_code(shipments: int) -> str:
    return f"bench-labels-{shipments}"


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


VARIANTS = (Variant("as shipped"),)


@dataclass
class Measurement:
    """One run of ours: its time, what the ledger, the database and the stub say of it, the CPU it took."""

    seconds: float
    run: dict[str, Any]
    stub: dict[str, int]
    phases: dict[str, float]
    labelled: int
    cpu: dict[str, float]
    use: CarrierUse
    seen_after_end: float  # the client's GET that showed the end, after the ledger's finished_at


def measure_once(
    env: Environment, api: common.Api, stub: Any, engine: Any, cpu: common.CpuMeter, code: str, options: Mapping[str, Any]
) -> Measurement:
    forget_labels(engine, code)
    stub.reset()
    cpu.start()
    with CarrierSampler(env.redis_url, stub) as sampler, Stopwatch() as watch:
        started = api.start_run(code, "shipping_labels", **options)
        finished = api.wait_until_finished(started["id"], RUN_TIMEOUT_SECONDS, poll_seconds=POLL_SECONDS)
    seen = dt.datetime.now(dt.timezone.utc)
    used = cpu.stop()
    return Measurement(
        watch.seconds,
        finished,
        stub.stats(),
        phases(engine, finished["id"]),
        labelled_shipments(engine, code),
        used,
        sampler.use(MAX_IN_FLIGHT),
        (seen - dt.datetime.fromisoformat(finished["finished_at"])).total_seconds(),
    )


@dataclass(frozen=True)
class Shape:
    nodes: int
    shipments: int

    def describe(self) -> str:
        return f"{self.shipments:,} shipments, {self.nodes} node{'s' if self.nodes > 1 else ''} × {CONCURRENCY}"


def measure_nodes(
    env: Environment, stub: Any, engine: Any, variant: Variant, *, nodes: int, shipment_counts: Sequence[int],
    repeats: int, concurrency: int, loglevel: str,
) -> dict[Shape, list[Measurement]]:
    """``repeats`` runs of each count of shipments on ``nodes`` worker nodes started with the variant's
    settings (stopped afterwards)."""
    ini = env.write_ini(
        f"labels-{secrets.token_hex(3)}",
        {"warehouse.carrier_url": stub.url, "warehouse.carrier_max_in_flight": MAX_IN_FLIGHT, **variant.settings},
    )
    options = {"chunk_size": variant.chunk_size} if variant.chunk_size else {}
    log(f"{NAME}, {variant.name}: {nodes} worker node(s) × {concurrency} processes, --loglevel={loglevel}; {variant.describe()}")
    measured: dict[Shape, list[Measurement]] = {}
    with common.workers(env, ini, nodes=nodes, concurrency=concurrency, loglevel=loglevel) as started, common.web_api(env, ini) as api:
        cpu = common.CpuMeter(
            {
                "workers": ([node.process.pid for node in started], True),
                "carrier stub": ([stub.process.pid], False),
                "this process (API, polls)": ([os.getpid()], False),
            }
        )
        for shipments in shipment_counts:
            shape = Shape(nodes, shipments)
            floor = floor_seconds(shipments, LATENCY_MS, MAX_IN_FLIGHT)
            for number in range(1, repeats + 1):
                one = measure_once(env, api, stub, engine, cpu, warehouse_code(shipments), options)
                log(f"{NAME}, {variant.name}, {shape.describe()}: run {number}/{repeats}: {one.seconds:.2f} s ="
                    f" {one.seconds / floor:.2f} × floor; phases {one.phases}; {one.use}; stub {one.stub}; {cpu_note(one)}")
                measured.setdefault(shape, []).append(one)
    return measured


def check_runs(result: Result, label: str, shipments: int, measurements: list[Measurement]) -> None:
    """Every correctness condition, over every run (each run's values in the detail)."""

    def check(name: str, holds: Callable[[Measurement], bool], value: Callable[[Measurement], Any], what: str) -> None:
        passed = sum(1 for measured in measurements if holds(measured))
        values = ", ".join(str(value(measured)) for measured in measurements)
        result.check(f"{label}: {name}", passed == len(measurements), f"{passed} of {len(measurements)} runs; {what}: {values}")

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


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} s"


def add_shape_figures(result: Result, label: str, variant: Variant, measurements: list[Measurement], floor: float) -> None:
    middle = median(measurements)
    ratio = middle.seconds / floor
    times = sorted(measured.seconds for measured in measurements)
    result.figure(
        f"ours, {label}",
        f"{middle.seconds:.2f} s = {ratio:.2f} × floor",
        f"median of {len(measurements)} runs ({', '.join(f'{m.seconds:.2f}' for m in measurements)} s; ratios"
        f" {times[0] / floor:.2f}-{times[-1] / floor:.2f} ×), POST to terminal status; target ≤ {TARGET_RATIO} ×:"
        f" {'met' if ratio <= TARGET_RATIO else 'NOT met'}; {variant.describe()}; chunk size {middle.run['chunk_size']}"
        f" ({middle.run['chunks']['total']} chunks)",
    )
    where, use = middle.phases, middle.use
    result.figure(
        f"where the time went, {label}",
        f"{where['queued']:.2f} + {where['planned']:.2f} + {where['chunks']:.2f} + {where['finalised']:.2f} s",
        "queued + planned and dispatched + chunks (first start to last end) + finalised, from the ledger;"
        f" one chunk took {where['chunk_min']:.1f} to {where['chunk_max']:.1f} s; carrier kept full (≥ 90 in flight)"
        f" {_seconds(use.ramp_seconds)} after the POST, until {_seconds(use.tail_seconds)} before the end was seen;"
        f" the client saw the end {middle.seen_after_end:.2f} s after the ledger's finished_at (polled every {POLL_SECONDS} s)",
    )
    at_carrier = middle.stub["requests"] * LATENCY_MS / 1000 / middle.seconds
    sampled = (
        f"sampled every 0.1 s: {use.slots_held:.0f} slots held in Redis, {use.carrier_in_flight:.0f} calls at the stub"
        if use.slots_held is not None and use.carrier_in_flight is not None
        else "slots in Redis not sampled"
    )
    busy = middle.cpu["machine busy"] / middle.cpu["machine capacity"]
    result.figure(
        f"carrier use and CPU, {label}",
        f"{at_carrier:.0f} of {MAX_IN_FLIGHT}; {busy:.0%} busy",
        f"calls in flight on average over the run (calls × latency ÷ time); {sampled}; {cpu_note(middle)};"
        f" replayed keys {' / '.join(str(m.stub['duplicate_keys']) for m in measurements)}",
    )
    others = middle.cpu["other processes"] / middle.cpu["machine capacity"]
    if others > QUIET_MACHINE_SHARE:
        log(f"{NAME}, {label}: WARNING: other processes used {others:.0%} of the machine during the median run;"
            " its figures are pessimistic")
    if any(measured.stub["duplicate_keys"] for measured in measurements):
        log(f"{NAME}, {label}: WARNING: keys were replayed although no fault was injected; see the workers' logs")


def run(
    env: Environment,
    *,
    shipment_counts: Sequence[int] = SHIPMENT_COUNTS,
    node_counts: Sequence[int] = NODE_COUNTS,
    repeats: int = REPEATS,
    seed_subset: int = SEED_SUBSET,
    variants: Sequence[Variant] = VARIANTS,
    concurrency: int = CONCURRENCY,
    worker_loglevel: str = WORKER_LOGLEVEL,
) -> Result:
    from warehouse.carrier.served import serve_stub

    result = Result(NAME)
    measured: list[tuple[Variant, Shape, list[Measurement]]] = []
    with serve_stub("--latency-ms", str(LATENCY_MS), "--max-in-flight", str(MAX_IN_FLIGHT)) as stub:
        with common.engine_for(env.write_ini("labels-data")) as engine:
            for shipments in shipment_counts:
                log(f"{NAME}: seeding {3 * shipments:,} shipments, {shipments:,} of them due, in {warehouse_code(shipments)}")
                seed_shipments(engine, warehouse_code(shipments), shipments)
            subset = due_orders(engine, warehouse_code(min(shipment_counts)), seed_subset)
            for variant in variants:
                for nodes in node_counts:
                    by_shape = measure_nodes(
                        env, stub, engine, variant, nodes=nodes, shipment_counts=shipment_counts, repeats=repeats,
                        concurrency=concurrency, loglevel=worker_loglevel,
                    )
                    measured += [(variant, shape, runs) for shape, runs in by_shape.items()]
        log(f"{NAME}: the seed approach on {len(subset)} shipments")
        stub.reset()
        seed_timing = seed_approach(stub.url, subset)
        seed_stats = stub.stats()

    def label(variant: Variant, shape: Shape) -> str:
        return f"{variant.name}, {shape.describe()}" if len(variants) > 1 else shape.describe()

    for variant, shape, runs in measured:
        check_runs(result, label(variant, shape), shape.shipments, runs)
    statuses = sorted(set(seed_timing.statuses))
    result.check("the seed approach bought its subset", seed_stats["purchases"] == len(subset) and statuses == [201],
                 f"{seed_stats['purchases']} purchases for {len(subset)} shipments, statuses {statuses}")

    for shipments in shipment_counts:
        result.figure(f"carrier floor, {shipments:,} shipments", f"{floor_seconds(shipments, LATENCY_MS, MAX_IN_FLIGHT):.1f} s",
                      f"{shipments:,} calls × {LATENCY_MS / 1000:g} s / {MAX_IN_FLIGHT} in flight")
    for variant, shape, runs in measured:
        add_shape_figures(result, label(variant, shape), variant, runs, floor_seconds(shape.shipments, LATENCY_MS, MAX_IN_FLIGHT))
    ratios = [median(runs).seconds / floor_seconds(shape.shipments, LATENCY_MS, MAX_IN_FLIGHT) for _v, shape, runs in measured]
    result.figure(
        "ours ÷ floor, every shape",
        f"{min(ratios):.2f}-{max(ratios):.2f} ×",
        f"the medians above, median of them {statistics.median(ratios):.2f} ×; target ≤ {TARGET_RATIO} × for each:"
        f" {'met' if max(ratios) <= TARGET_RATIO else 'NOT met'}",
    )

    smallest = min(shipment_counts)
    scale = smallest / max(len(subset), 1)
    seed_scaled = seed_timing.start_seconds + seed_timing.map_seconds * scale
    floor = floor_seconds(smallest, LATENCY_MS, MAX_IN_FLIGHT)
    result.figure(
        f"seed approach, {smallest:,} shipments, scaled",
        f"{seed_scaled:.0f} s = {seed_scaled / floor:.1f} × floor",
        f"SCALED from a subset: pool.map took {seed_timing.map_seconds:.2f} s for {len(subset)} shipments, × {scale:g},"
        f" plus {seed_timing.start_seconds:.2f} s to start Pool({os.cpu_count()}); one blocking call per shipment, same stub",
    )
    for variant, shape, runs in measured:
        ratio = median(runs).seconds / floor_seconds(shape.shipments, LATENCY_MS, MAX_IN_FLIGHT)
        log(f"{NAME}, {label(variant, shape)}: {median(runs).seconds:.2f} s = {ratio:.2f} × the floor"
            f" (target ≤ {TARGET_RATIO} ×: {'met' if ratio <= TARGET_RATIO else 'NOT met'})")
    return result


def _counts(value: str) -> list[int]:
    return [int(part.replace("_", "")) for part in value.split(",") if part]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The shipping-labels benchmark alone (make bench runs all of them).")
    parser.add_argument("--shipments", type=_counts, default=list(SHIPMENT_COUNTS), help="due shipments per run, comma-separated (default: %(default)s)")
    parser.add_argument("--nodes", type=_counts, default=list(NODE_COUNTS), help="worker node counts, comma-separated (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=REPEATS, help="runs of ours per shape; the median counts (default: %(default)s)")
    parser.add_argument("--seed-subset", type=int, default=SEED_SUBSET, help="shipments the seed approach is timed on")
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
        shipment_counts=args.shipments,
        node_counts=args.nodes,
        repeats=args.repeats,
        seed_subset=args.seed_subset,
        variants=variants,
        concurrency=args.concurrency,
        worker_loglevel=args.loglevel,
    )


if __name__ == "__main__":
    sys.exit(main())
