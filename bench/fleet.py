"""The fleet: shipping labels on 1, 2 and 3 worker nodes on hosts of their own, and how long a killed
node's chunks take to run elsewhere.

Each node is a Linux network namespace (tests/fleet: the same harness as the fleet tests), with a
PostgreSQL and a Redis of the benchmark's own on a services namespace, and the carrier stub there too.
The stub has no in-flight cap of its own and the shared limit is set far above what the nodes can
use, so what bounds throughput is each node's own carrier threads (two processes of
``CARRIER_THREADS`` threads each): three nodes should label about three times as fast as one (target
≥ 2.6 ×). Each run labels a fresh warehouse's due shipments; time is from the POST to the terminal
status as a client polling every 50 ms sees it.

Then, on three nodes, a node is killed outright (kill -9 of its process group) while it holds a
chunk, and the figure is the time from the kill to the last of its chunks starting on another node
(the ledger's clock), with the default heartbeat (5 s) and dead-worker timeout (15 s): target ≤ 30 s.

Needs root and iproute2, like the fleet tests.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``bench`` and the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text

from bench import common
from bench.common import BenchError, Environment, Result, log
from tests.fleet.network import DATABASE, Network, network, network_unavailable
from tests.fleet.services import ServicesHost, services_host, services_unavailable
from warehouse.carrier.served import serve_stub

NAME = "fleet"
NODES = ("n1", "n2", "n3")
LATENCY_MS = 200
CARRIER_THREADS = 10  # per worker process; two processes a node
CHUNK = 50
DUE_SHIPMENTS = 3_000  # per run (three times as many shipments are seeded): long enough that the
# fixed cost of a run (dispatch, the first chunk, the last poll) does not hide the scaling
TARGET_SCALING = 2.6
TARGET_RECOVERY_SECONDS = 30.0
RUN_TIMEOUT = 300.0


@contextmanager
def fleet_environment(env: Environment) -> Iterator[tuple[Network, ServicesHost, Environment]]:
    """The network, the services host, and an Environment on the services host's database and Redis."""
    from warehouse.migrate import upgrade

    reason = network_unavailable() or services_unavailable()
    if reason:
        raise BenchError(f"the fleet benchmark needs network namespaces: {reason}")
    with network(list(NODES)) as net, services_host(net) as host, host.database("warehouse_bench_fleet") as url:
        fleet_env = Environment(env.work_dir, url, host.redis_url, env.operator_token, env.viewer_token)
        upgrade(common.load_settings(fleet_env.write_ini("fleet-migrate")))
        yield net, host, fleet_env


def labels_run(api: common.Api, engine: Any, carrier: Any, due: int, duplicates: list[int]) -> float:
    """Seconds from the POST to the terminal status of a labels run over a fresh warehouse. The stub
    is reset first (each warehouse's shipment references start again at 1, and the stub tells labels
    apart by reference), and the labels it sold twice are added to ``duplicates``."""
    from warehouse.scripts.seed import seed

    carrier.reset()
    code = f"bench-fleet-{secrets.token_hex(3)}"
    seed(engine, code, products=0, shipments=due * 3)
    started = time.perf_counter()
    run = api.wait_until_finished(api.start_run(code, "shipping_labels", chunk_size=CHUNK)["id"], RUN_TIMEOUT)
    seconds = time.perf_counter() - started
    if run["status"] != "succeeded" or run["items"]["done"] != due:
        raise BenchError(f"labels run did not label all {due} due shipments: {run}")
    duplicates.append(carrier.stats()["duplicate_purchases"])
    return seconds


def held_chunks(engine: Any, run_id: int, node: str) -> list[int]:
    with engine.connect() as connection:
        return list(connection.scalars(
            text("SELECT id FROM run_chunks WHERE run_id = :run AND status = 'running' AND worker_hostname LIKE :node"),
            {"run": run_id, "node": f"{node}@%"},
        ))


def recovery_seconds(
    api: common.Api, engine: Any, carrier: Any, victim: common.WorkerNode, due: int, duplicates: list[int]
) -> float:
    """Kill ``victim`` while it holds a chunk of a labels run; seconds until its last chunk started
    elsewhere."""
    from warehouse.scripts.seed import seed

    carrier.reset()
    code = f"bench-fleet-kill-{secrets.token_hex(3)}"
    seed(engine, code, products=0, shipments=due * 3)
    run_id = api.start_run(code, "shipping_labels", chunk_size=CHUNK)["id"]
    node = victim.name.split("@")[0]
    deadline = time.monotonic() + 60
    while not (held := held_chunks(engine, run_id, node)):
        if time.monotonic() > deadline:
            raise BenchError(f"{victim.name} took no chunk of run {run_id}")
        time.sleep(0.05)
    os.killpg(victim.process.pid, signal.SIGKILL)
    with engine.connect() as connection:
        killed_at = connection.scalar(text("SELECT now()"))
    run = api.wait_until_finished(run_id, RUN_TIMEOUT)
    if run["status"] != "succeeded":
        raise BenchError(f"the run with a node killed did not succeed: {run}")
    duplicates.append(carrier.stats()["duplicate_purchases"])
    with engine.connect() as connection:
        last_start = connection.scalar(
            text("SELECT max(started_at) FROM run_chunks WHERE id = ANY(:ids) AND attempts >= 2"), {"ids": held}
        )
    if last_start is None:
        raise BenchError(f"the chunks {held} of the killed node were not redone")
    return (last_start - killed_at).total_seconds()


def run(env: Environment, repeats: int = 3, due: int = DUE_SHIPMENTS) -> Result:
    result = Result(NAME)
    with fleet_environment(env) as (net, host, fleet_env), ExitStack() as stack:
        carrier = stack.enter_context(serve_stub(
            "--host", net.services_address(DATABASE), "--latency-ms", str(LATENCY_MS), "--max-in-flight", "0",
            host_prefix=net.services_prefix(),
        ))
        ini = fleet_env.write_ini("fleet", {
            "warehouse.carrier_url": carrier.url,
            "warehouse.carrier_max_in_flight": "1000",
            "warehouse.carrier_threads_per_process": str(CARRIER_THREADS),
        })
        api = stack.enter_context(common.web_api(fleet_env, ini))
        engine = stack.enter_context(common.engine_for(ini))
        seconds: dict[int, list[float]] = {}
        duplicates: list[int] = []
        for count in (1, 2, 3):
            prefixes = [net.nodes[name].exec_prefix() for name in NODES[:count]]
            with common.workers(fleet_env, ini, nodes=count, prefix=f"fleet{count}-", host_prefixes=prefixes):
                labels_run(api, engine, carrier, 100, duplicates)  # warm-up: pools, the first chunk's set-up
                seconds[count] = [labels_run(api, engine, carrier, due, duplicates) for _ in range(repeats)]
            log(f"{count} node(s): {[f'{s:.2f}' for s in seconds[count]]} s")
        prefixes = [net.nodes[name].exec_prefix() for name in NODES]
        recoveries = []
        for attempt in range(repeats):
            with common.workers(fleet_env, ini, nodes=3, prefix=f"kill{attempt}-", host_prefixes=prefixes) as nodes:
                recoveries.append(recovery_seconds(api, engine, carrier, nodes[0], due, duplicates))
            log(f"kill {attempt + 1}: chunks ran elsewhere {recoveries[-1]:.1f} s after the kill")
    report(result, seconds, recoveries, due, duplicates)
    return result


def _median_range(values: Sequence[float]) -> str:
    return f"{statistics.median(values):.2f} s ({min(values):.2f}-{max(values):.2f})"


def report(result: Result, seconds: dict[int, list[float]], recoveries: list[float], due: int, duplicates: list[int]) -> None:
    per_node = 2 * CARRIER_THREADS * 1000 / LATENCY_MS
    for count, runs in seconds.items():
        floor = due / (per_node * count)
        result.figure(
            f"labels, {count} node(s) of 2 processes x {CARRIER_THREADS} threads",
            _median_range(runs),
            f"{due} labels at {LATENCY_MS} ms; the nodes' own floor {floor:.1f} s; {len(runs)} runs",
        )
    scaling = {count: statistics.median(seconds[1]) / statistics.median(runs) for count, runs in seconds.items()}
    result.figure("throughput, 2 nodes / 1 node", f"{scaling[2]:.2f} x", "medians")
    result.figure("throughput, 3 nodes / 1 node", f"{scaling[3]:.2f} x", f"target >= {TARGET_SCALING} x")
    result.figure(
        "node killed -> its chunks running elsewhere",
        f"{statistics.median(recoveries):.1f} s ({min(recoveries):.1f}-{max(recoveries):.1f})",
        f"kill -9 on 3 nodes, heartbeat 5 s, dead after 15 s; target <= {TARGET_RECOVERY_SECONDS:.0f} s",
    )
    result.target(f"3 nodes >= {TARGET_SCALING} x one node", scaling[3] >= TARGET_SCALING, f"{scaling[3]:.2f} x")
    result.check(
        f"a killed node's chunks run elsewhere within {TARGET_RECOVERY_SECONDS:.0f} s",
        max(recoveries) <= TARGET_RECOVERY_SECONDS, f"slowest {max(recoveries):.1f} s",
    )
    result.check("no label bought twice", not any(duplicates), f"labels sold twice, run by run: {duplicates}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--due", type=int, default=DUE_SHIPMENTS, help="due shipments per run")
    args = parser.parse_args(argv)
    return common.run_alone(run, repeats=args.repeats, due=args.due)


if __name__ == "__main__":
    sys.exit(main())
