"""Pollers: 1,000 keep-alive clients, each polling a run every 2 s through ``pserve production.ini``,
during a valuation of 1,000,000 products; against the same run with nobody polling.

The server is ``pserve`` on a production-shaped ini (production.ini's ``[server:main]``; only ``listen``
moved to a free port of 127.0.0.1): Granian. The load generator is a process of its own
(bench/poll_load.py), each client on a keep-alive connection of its own. The clients start staggered
over 2 s on the round's previous (finished) run and move to the measured run once all are in, so the
whole run is polled. An error: anything but 200, an exception, or no answer in 10 s.

Each round: the run polled only by this process (every 0.5 s, to see the end), and again under the
pollers, in turn first and second from one round to the next; before each, the values are reset and the table VACUUM ANALYZEd (bench/valuation.py). A run's
time is the ledger's ``finished_at - started_at``. Targets: 0 errors, p99 ≤ 250 ms, slowdown ≤ 15 %.
The pollers share the 2 cores with the run, so part of any slowdown is their own CPU (measured).
"""

from __future__ import annotations

import argparse
import configparser
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``bench`` and the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text

from bench import common, status, valuation
from bench.poll_load import INTERVAL, REQUEST_TIMEOUT
from bench.common import BenchError, Environment, Result, log
from warehouse import scratch

NAME = "pollers"
PRODUCTS = 1_000_000
CLIENTS = 1_000
REPEATS = 3
OWN_POLL_SECONDS = 0.5  # this process's own poll, to see a run end
RUN_TIMEOUT = 900.0
READY_TIMEOUT = 60.0
TARGET_P99_MS = 250.0
TARGET_SLOWDOWN = 0.15
HOST = "127.0.0.1"
SERVER_SETTINGS = ("use", "workers", "threads", "backlog")


def raise_open_files(needed: int) -> None:
    """The soft RLIMIT_NOFILE up to ``needed`` (children inherit it): a socket per client, and more."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise BenchError(f"{needed} open files needed, the hard limit is {hard} (ulimit -Hn)")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


# --- the server ------------------------------------------------------------------------------------


def listening_on(ini: Path, port: int) -> tuple[Path, str]:
    """A copy of ``ini`` whose [server:main] listens on HOST:``port``, everything else as written; and
    the settings that matter to pollers, for the table."""
    parser = configparser.RawConfigParser()  # raw: the logging format's %(...)s stays as written
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(ini)
    parser.set("server:main", "listen", f"{HOST}:{port}")
    served = ini.with_name(f"{ini.stem}-served.ini")
    with served.open("w") as file:
        parser.write(file)
    return served, ", ".join(f"{key} = {parser.get('server:main', key)}" for key in SERVER_SETTINGS)


@contextmanager
def pserve(env: Environment, ini: Path) -> Iterator[tuple[status.Server, str]]:
    """``pserve INI`` (as production runs it) on a free port; terminated (then killed) afterwards."""
    port = status.free_port()
    served, settings = listening_on(ini, port)
    with status.served("pserve", [str(Path(sys.executable).with_name("pserve")), str(served)], port,
                       env.work_dir / "pserve.log") as server:
        yield server, settings


def established(port: int) -> int:
    """The server's ESTABLISHED TCP connections on ``port`` (state 01 in /proc/net/tcp, local side)."""
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(1 for line in lines if (f := line.split())[3] == "01" and int(f[1].rsplit(":", 1)[1], 16) == port)


# --- the runs --------------------------------------------------------------------------------------


@dataclass
class Timed:
    run_id: int
    began: float  # the ledger's started_at (epoch)
    seconds: float  # the ledger's finished_at - started_at
    cpu: dict[str, float]  # CpuMeter's, over the run
    wrong: int  # products whose values differ from the SQL expression's afterwards
    connections: tuple[int, int] = (0, 0)  # the server's established connections, least and most
    samples: list[tuple[float, float, str]] | None = None  # (epoch sent, ms, outcome), ramp-up included

    def requests_per_second(self) -> float:
        return sum(1 for sent, _, _ in self.samples or [] if 0 <= sent - self.began < self.seconds) / self.seconds


def timed_run(api: common.Api, engine: Any, products: int, meter: common.CpuMeter,
              started: Callable[[int], None] = lambda run_id: None, sample: Callable[[], int] | None = None) -> Timed:
    """One valuation run from a reset table to its terminal status, polled by this process every 0.5 s."""
    wid = valuation.warehouse_id(engine, products)
    valuation.reset_values(engine, wid)
    run_id = api.start_run(valuation.warehouse_code(products), "valuation")["id"]
    started(run_id)
    meter.start()
    counts: list[int] = []
    deadline = time.monotonic() + RUN_TIMEOUT
    while (run := api.run(run_id))["status"] not in common.TERMINAL_STATUSES:
        if time.monotonic() > deadline:
            raise BenchError(f"run {run_id} not finished after {RUN_TIMEOUT:.0f} s: {run}")
        if sample is not None:
            counts.append(sample())
        time.sleep(OWN_POLL_SECONDS)
    cpu = meter.stop()
    if run["status"] != "succeeded":
        raise BenchError(f"valuation run {run_id} ended {run['status']}: {run}")
    with engine.connect() as connection:
        began, seconds = connection.execute(
            text("SELECT EXTRACT(EPOCH FROM started_at), EXTRACT(EPOCH FROM finished_at - started_at) FROM runs"
                 " WHERE id = :id"), {"id": run_id}
        ).one()
    connections = (min(counts), max(counts)) if counts else (0, 0)
    return Timed(run_id, float(began), float(seconds), cpu, valuation.wrong_products(engine, wid), connections)


def polled_run(env: Environment, api: common.Api, engine: Any, server: status.Server, products: int, clients: int,
               groups: dict[str, tuple[list[int], bool]], previous_run: int) -> Timed:
    """The load generator polling ``previous_run`` until every client is in, then the measured run."""
    directory = env.work_dir / "load"
    directory.mkdir(exist_ok=True)
    for name in ("ready", "stop", "samples.json"):
        (directory / name).unlink(missing_ok=True)

    def point_at(run_id: int) -> None:
        (directory / "url.new").write_text(server.url(f"/api/runs/{run_id}"))
        os.replace(directory / "url.new", directory / "url")  # whole, never half-written

    point_at(previous_run)
    generator = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve().with_name("poll_load.py")), str(directory), env.viewer_token, str(clients)],
        cwd=common.REPO_ROOT, stdin=subprocess.DEVNULL, preexec_fn=scratch.parent_death_signal(),
    )
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while not (directory / "ready").exists():
            if generator.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"the load generator did not get its {clients} clients polling (exit {generator.poll()})")
            time.sleep(0.1)
        meter = common.CpuMeter({**groups, "load generator": ([generator.pid], False)})
        timed = timed_run(api, engine, products, meter, started=point_at, sample=lambda: established(server.port))
    finally:
        (directory / "stop").touch()
        try:
            generator.wait(timeout=30)
        except subprocess.TimeoutExpired:
            generator.kill()
            generator.wait()
    if generator.returncode != 0:
        raise BenchError(f"the load generator exited with {generator.returncode}")
    timed.samples = [tuple(sample) for sample in json.loads((directory / "samples.json").read_text())]
    return timed


# --- the benchmark ---------------------------------------------------------------------------------


def run(env: Environment, *, products: int = PRODUCTS, clients: int = CLIENTS, repeats: int = REPEATS) -> Result:
    raise_open_files(clients + 1024)  # pserve inherits it: a socket per poller, plus the database's and Redis's
    ini = env.write_ini("pollers")
    baselines: list[Timed] = []
    polled: list[Timed] = []
    with common.engine_for(ini) as engine:
        valuation.seed_products(engine, products)
        log(f"{NAME}: seeded {products:,} products")
        with common.web_api(env, ini) as api, common.workers(env, ini, nodes=1, concurrency=2) as nodes, \
                pserve(env, ini) as (server, settings):
            groups = {
                "workers": ([node.process.pid for node in nodes], True),
                "pserve": ([server.process.pid], True),  # with Granian's worker processes
                "this process": ([os.getpid()], False),
            }
            # Unmeasured: the first run after seeding is slower (cold caches, fresh workers), and pserve
            # builds its app meanwhile. Then its answer checked (URL, token) before the clients lean on it.
            warm_up = timed_run(api, engine, products, common.CpuMeter(groups))
            status.wait_until_answering(server, f"/api/runs/{warm_up.run_id}", env.viewer_token)
            last_run = warm_up.run_id
            for round_number in range(1, repeats + 1):
                # Odd rounds run the unpolled run first, even rounds the polled one: whatever drifts
                # across a round (the table's bloat, caches) falls on both sides alike.
                for polled_now in ((False, True) if round_number % 2 else (True, False)):
                    if polled_now:
                        polled.append(polled_run(env, api, engine, server, products, clients, groups, last_run))
                        last_run = polled[-1].run_id
                    else:
                        baselines.append(timed_run(api, engine, products, common.CpuMeter(groups)))
                        last_run = baselines[-1].run_id
                log(f"{NAME}: round {round_number}: unpolled {baselines[-1].seconds:.1f} s,"
                    f" polled {polled[-1].seconds:.1f} s, {len(polled[-1].samples or [])} polls")
    result = Result(NAME)
    report(result, baselines, polled, products, clients, settings)
    return result


def spread(values: Sequence[float], fmt: str = "{:.1f}") -> str:
    """Median (min-max), as the table shows a figure measured in several rounds."""
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def report(result: Result, baselines: list[Timed], polled: list[Timed], products: int, clients: int,
           settings: str) -> None:
    latencies = [[ms for _, ms, _ in timed.samples or []] for timed in polled]
    p50, p95, p99 = zip(*(itemgetter(49, 94, 98)(statistics.quantiles(ms, n=100, method="inclusive")) for ms in latencies))
    errors = Counter(outcome for timed in polled for _, _, outcome in timed.samples or [] if outcome != "200")
    requests = sum(map(len, latencies))
    slowdowns = [p.seconds / b.seconds - 1 for p, b in zip(polled, baselines)]
    least, most = min(p.connections[0] for p in polled), max(p.connections[1] for p in polled)

    def cores(group: str, runs: list[Timed]) -> str:  # CPU seconds ÷ the run's wall time
        return spread([t.cpu[group] / t.cpu["machine capacity"] * (os.cpu_count() or 1) for t in runs], "{:.2f}")

    result.figure(f"valuation of {products:,} products, unpolled", f"{spread([b.seconds for b in baselines])} s",
                  f"median (range) of {len(polled)} round(s); the ledger's finished_at - started_at; 1 node of 2 processes")
    result.figure(f"the same, {clients:,} pollers every {INTERVAL:g} s", f"{spread([p.seconds for p in polled])} s",
                  f"one keep-alive connection each, {least:,}-{most:,} established at the server; pserve {settings}")
    result.figure("slowdown", f"{spread([s * 100 for s in slowdowns], '{:+.0f}')} %",
                  f"polled ÷ unpolled of the same round - 1; target ≤ {TARGET_SLOWDOWN:.0%}; the load generator runs on"
                  " the same 2 cores, so part of it is the pollers' own CPU")
    result.figure("poll requests", f"{requests:,}, {spread([t.requests_per_second() for t in polled], '{:.0f}')}/s",
                  f"{sum(errors.values())} errors{f' {dict(errors)}' if errors else ''} (not 200, an exception, or no answer in"
                  f" {REQUEST_TIMEOUT:g} s), ramp-up included; per second: those sent during the run ÷ its time")
    result.figure("poll latency p50 / p95 / p99", f"{spread(p50)} / {spread(p95)} / {spread(p99)} ms",
                  f"target p99 ≤ {TARGET_P99_MS:g} ms")
    result.figure("CPU, cores", f"load generator {cores('load generator', polled)}, pserve {cores('pserve', polled)}",
                  f"polled runs; workers {cores('workers', polled)} polled, {cores('workers', baselines)} unpolled;"
                  f" other processes {cores('other processes', baselines + polled)} (another job on the machine skews it all)")

    wrong = {t.run_id: t.wrong for t in baselines + polled if t.wrong}
    result.check("every run valued every product", not wrong, f"products wrong by run: {wrong or 'none'}")
    result.check(f"the server held the {clients:,} pollers' connections", least >= clients,
                 f"at least {least:,} established throughout the polled runs")
    result.check("no poll failed", not errors, f"{sum(errors.values())} of {requests:,}")
    result.target(f"poll p99 ≤ {TARGET_P99_MS:g} ms", statistics.median(p99) <= TARGET_P99_MS,
                 f"median of rounds {statistics.median(p99):.0f} ms, worst {max(p99):.0f} ms")
    result.target(f"slowdown ≤ {TARGET_SLOWDOWN:.0%}", statistics.median(slowdowns) <= TARGET_SLOWDOWN,
                 f"median {statistics.median(slowdowns):+.1%}, worst {max(slowdowns):+.1%}")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description="The pollers benchmark alone (make bench runs all of them).")
    parser.add_argument("--products", type=int, default=PRODUCTS, help="products valued (default: %(default)s)")
    parser.add_argument("--clients", type=int, default=CLIENTS, help="polling clients (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=REPEATS, help="rounds, unpolled then polled (default: %(default)s)")
    args = parser.parse_args(argv)
    return common.run_alone(run, products=args.products, clients=args.clients, repeats=args.repeats)


if __name__ == "__main__":
    sys.exit(main())
