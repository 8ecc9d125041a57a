"""Pollers: 1,000 keep-alive clients, each polling a run every 2 s through ``pserve production.ini``,
during a valuation of 1,000,000 products; against the same run with nobody polling.

The web server is ``pserve`` on a production-shaped ini (production.ini's ``[server:main]``: waitress,
16 threads, 4,000 connections, poll(); only ``listen`` moved to a free local port), in a process of
its own. The load generator is another process (aiohttp, one connection per client, each client's
first request spread over the first interval), so the measuring process stays out of the way; every
request's latency and outcome is recorded (an error: anything but 200, or no answer within 10 s).

Rounds alternate: a run unpolled (the baseline), then the same run polled; the run's duration is the
ledger's ``finished_at - started_at``. Targets: 0 errors, p99 ≤ 250 ms, the polled run ≤ 1.15 × the
unpolled one. Pollers and run share the machine's 2 cores, so part of any slowdown is the load
generator's own CPU (reported).
"""

from __future__ import annotations

import argparse
import asyncio
import configparser
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``bench`` and the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text

from bench import common, valuation
from bench.common import BenchError, Environment, Result, log

NAME = "pollers"
PRODUCTS = 1_000_000
CLIENTS = 1_000
INTERVAL = 2.0
REQUEST_TIMEOUT = 10.0
RUN_TIMEOUT = 900.0
TARGET_P99_MS = 250.0
TARGET_SLOWDOWN = 1.15


# --- the load generator (its own process: ``python bench/pollers.py --load ...``) --------------------


async def _client(session: Any, url: str, headers: dict[str, str], start_after: float, stop: asyncio.Event,
                  samples: list[tuple[float, bool]]) -> None:
    import aiohttp

    await asyncio.sleep(start_after)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    while not stop.is_set():
        began = time.perf_counter()
        try:
            async with session.get(url, headers=headers, timeout=timeout) as response:
                await response.read()
                ok = response.status == 200
        except Exception:  # noqa: BLE001 - a timeout or a refused connection is an error, counted
            ok = False
        samples.append((time.perf_counter() - began, ok))
        await asyncio.sleep(max(0.0, INTERVAL - (time.perf_counter() - began)))


async def _load(url: str, token: str, clients: int, stop_file: Path) -> list[tuple[float, bool]]:
    import aiohttp

    samples: list[tuple[float, bool]] = []
    stop = asyncio.Event()
    # One connection per client, kept alive between its polls, as browsers and scripts do.
    connector = aiohttp.TCPConnector(limit=clients, limit_per_host=clients, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        headers = {"Authorization": f"Bearer {token}"}
        tasks = [
            asyncio.create_task(_client(session, url, headers, INTERVAL * number / clients, stop, samples))
            for number in range(clients)
        ]
        while not stop_file.exists():
            await asyncio.sleep(0.2)
        stop.set()
        await asyncio.gather(*tasks)
    return samples


def load_main(url: str, token: str, clients: int, stop_file: Path, out: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, clients * 2 + 100)), hard))
    samples = asyncio.run(_load(url, token, clients, stop_file))
    out.write_text(json.dumps(samples))


# --- the measuring side ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def listening_on(ini: Path, port: int) -> Path:
    """A copy of ``ini`` whose server listens on 127.0.0.1:``port`` (the rest of [server:main] kept)."""
    parser = configparser.RawConfigParser()
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(ini)
    parser.set("server:main", "listen", f"127.0.0.1:{port}")
    served = ini.with_name(f"{ini.stem}-served.ini")
    with served.open("w") as file:
        parser.write(file)
    return served


@contextmanager
def pserve(env: Environment, ini: Path) -> Iterator[str]:
    """``pserve INI`` in a process of its own, answering on a free port; its base URL."""
    port = free_port()
    served = listening_on(ini, port)
    log_path = env.work_dir / "pserve.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [str(Path(sys.executable).with_name("pserve")), str(served)],
            cwd=common.REPO_ROOT, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise BenchError(f"pserve did not start:\n{log_path.read_text(errors='replace')[-3000:]}") from None
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def run_seconds(engine: Any, run_id: int) -> float:
    with engine.connect() as connection:
        started, finished = connection.execute(
            text("SELECT started_at, finished_at FROM runs WHERE id = :id"), {"id": run_id}
        ).one()
    return (finished - started).total_seconds()


def valuation_run(api: common.Api, engine: Any, products: int) -> tuple[int, float]:
    run = api.start_run(valuation.warehouse_code(products), "valuation")
    done = api.wait_until_finished(run["id"], RUN_TIMEOUT, poll_seconds=0.5)
    if done["status"] != "succeeded":
        raise BenchError(f"the valuation run did not succeed: {done}")
    return run["id"], run_seconds(engine, run["id"])


def polled_run(env: Environment, api: common.Api, engine: Any, url: str, products: int, clients: int) -> dict[str, Any]:
    """Start the load generator, let every client make a first poll, start the run, and have them poll
    it until it ends; the run's seconds, the samples and the generator's CPU seconds."""
    stop_file, out = env.work_dir / "pollers.stop", env.work_dir / "pollers.json"
    stop_file.unlink(missing_ok=True)
    run = api.start_run(valuation.warehouse_code(products), "valuation")
    generator = subprocess.Popen(
        [sys.executable, __file__, "--load", f"{url}/api/runs/{run['id']}", env.viewer_token, str(clients), str(stop_file), str(out)],
        cwd=common.REPO_ROOT,
    )
    try:
        done = api.wait_until_finished(run["id"], RUN_TIMEOUT, poll_seconds=0.5)
    finally:
        stop_file.touch()
        generator.wait(timeout=60)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done["status"] != "succeeded":
        raise BenchError(f"the polled valuation run did not succeed: {done}")
    return {"seconds": run_seconds(engine, run["id"]), "samples": json.loads(out.read_text()),
            "children_cpu": usage.ru_utime + usage.ru_stime}


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run(env: Environment, products: int = PRODUCTS, clients: int = CLIENTS, repeats: int = 3) -> Result:
    result = Result(NAME)
    ini = env.write_ini("pollers")
    with common.engine_for(ini) as engine, common.web_api(env, ini) as api:
        valuation.seed_products(engine, products)
        with common.workers(env, ini, nodes=1, concurrency=2), pserve(env, ini) as url:
            baselines, polled, cpu_before = [], [], 0.0
            for round_number in range(1, repeats + 1):
                baselines.append(valuation_run(api, engine, products)[1])
                polled.append(polled_run(env, api, engine, url, products, clients))
                polled[-1]["generator_cpu"] = polled[-1]["children_cpu"] - cpu_before
                cpu_before = polled[-1]["children_cpu"]
                log(f"round {round_number}: unpolled {baselines[-1]:.1f} s, polled {polled[-1]['seconds']:.1f} s")
    report(result, baselines, polled, clients, products)
    return result


def report(result: Result, baselines: list[float], polled: list[dict[str, Any]], clients: int, products: int) -> None:
    latencies = [seconds * 1000 for entry in polled for seconds, _ in entry["samples"]]
    errors = sum(1 for entry in polled for _, ok in entry["samples"] if not ok)
    p99s = [percentile([s * 1000 for s, _ in entry["samples"]], 0.99) for entry in polled]
    ratios = [entry["seconds"] / base for entry, base in zip(polled, baselines)]
    median_ratio = statistics.median(ratios)
    result.figure(f"{products:,} products valued, nobody polling", f"{statistics.median(baselines):.1f} s",
                  f"{min(baselines):.1f}-{max(baselines):.1f} over {len(baselines)} runs")
    result.figure(f"the same, {clients} clients polling every {INTERVAL:.0f} s",
                  f"{statistics.median(entry['seconds'] for entry in polled):.1f} s",
                  f"{median_ratio:.2f} x unpolled (range {min(ratios):.2f}-{max(ratios):.2f}); target <= {TARGET_SLOWDOWN} x")
    result.figure("poll requests", f"{len(latencies):,}", f"{errors} errors (non-200 or no answer in {REQUEST_TIMEOUT:.0f} s)")
    result.figure("poll latency p50 / p95 / p99",
                  f"{percentile(latencies, 0.5):.1f} / {percentile(latencies, 0.95):.1f} / {percentile(latencies, 0.99):.1f} ms",
                  f"p99 by round {', '.join(f'{p:.0f}' for p in p99s)} ms; target p99 <= {TARGET_P99_MS:.0f} ms")
    cpu = [entry["generator_cpu"] / entry["seconds"] for entry in polled]
    result.figure("load generator CPU", f"{statistics.median(cpu):.2f} cores", "shares the 2 cores with the run")
    result.check("no poll failed", errors == 0, f"{errors} of {len(latencies)}")
    result.check(f"poll p99 <= {TARGET_P99_MS:.0f} ms", max(p99s) <= TARGET_P99_MS, f"worst round {max(p99s):.0f} ms")
    result.check(f"polled run <= {TARGET_SLOWDOWN} x unpolled", median_ratio <= TARGET_SLOWDOWN, f"median {median_ratio:.2f} x")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--load"]:
        url, token, clients, stop_file, out = argv[1:6]
        load_main(url, token, int(clients), Path(stop_file), Path(out))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=PRODUCTS)
    parser.add_argument("--clients", type=int, default=CLIENTS)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    return common.run_alone(run, products=args.products, clients=args.clients, repeats=args.repeats)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
