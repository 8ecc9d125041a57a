"""Status endpoint: ``GET /api/runs/{id}`` from 32 concurrent clients while a run is going, against a
bare waitress "hello" app served the same way in the same session.

Both servers run in subprocesses of their own, started the same way: ``python -m waitress`` on
127.0.0.1 with production.ini's ``[server:main]`` threads (16), each app built by a factory in this
module (``--call``). The warehouse app is built from the benchmark's production-shaped ini (PostgreSQL,
Redis, its logging set up as ``pserve`` would); the bare app answers every request with 200 "hello".

The load comes from ``wrk`` (a separate C process, so the client costs little CPU and the same client
measures both servers): 2 threads, 32 connections, the viewer's bearer token, the same URL path for both.
While a valuation run over VALUATION_PRODUCTS products (chunk 500, one worker node of 2 processes)
is going, each server gets a warm-up, then the two are measured in alternating rounds (bare, ours,
bare, ours, ...) so that both share the machine with the same background load; each server's figures
are the medians of its rounds. Targets (2-core machine): ours ≥ 50 % of the bare app's requests per
second, ours' p99 latency ≤ 50 ms.

Checks: every request answered (no non-2xx/3xx response, no socket error), the run still running when
the last round ended, and the run succeeded once finished. ``python bench/status.py --help`` runs it alone.
"""

from __future__ import annotations

import argparse
import configparser
import os
import re
import resource
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``bench`` and the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common, valuation
from bench.common import BenchError, Environment, Result, log
from warehouse import scratch

NAME = "status endpoint"
# Enough that the run outlasts the rounds with room to spare: 1,000,000 were 82 % done when they ended at
# 6d205eb, and 1,500,000 were 68 % done at 9381a86 (its chunks got cheaper).
VALUATION_PRODUCTS = 2_000_000
CLIENTS = 32
WRK_THREADS = 2
WARMUP_SECONDS = 2
ROUND_SECONDS = 5
ROUNDS = 3  # per server, alternating
TARGET_SHARE = 0.5  # ours ≥ 50 % of the bare app's requests per second
TARGET_P99_MS = 50.0
NODES = 1
CONCURRENCY = 2
HOST = "127.0.0.1"
SERVER_READY_TIMEOUT = 30.0
SERVER_STOP_TIMEOUT = 10.0
RUN_START_TIMEOUT = 60.0
RUN_TIMEOUT_SECONDS = 600.0
INI_VARIABLE = "BENCH_STATUS_INI"  # how the warehouse app's factory, in the server process, finds the ini
WRK_INSTALL = "apt-get install -y wrk"
# Above this share of the machine used by processes that are not the benchmark's, say the figures suffer.
QUIET_MACHINE_SHARE = 0.05


# --- the two apps, built in the server processes ----------------------------------------------------


def hello_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The bare WSGI app: 200 "hello" to every request."""
    body = b"hello"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def _ini_with_logging() -> Path:
    """The benchmark's ini (named by BENCH_STATUS_INI), its logging set up as ``pserve`` does, so that
    both servers log the same way (waitress's "Task queue depth" warnings included)."""
    from pyramid.paster import setup_logging

    ini = Path(os.environ[INI_VARIABLE])
    setup_logging(str(ini))
    return ini


def make_hello_app() -> Callable[..., Iterable[bytes]]:
    _ini_with_logging()
    return hello_app


def make_warehouse_app() -> Any:
    """The warehouse app built from the benchmark's production-shaped ini (PostgreSQL, Redis)."""
    from warehouse import main

    return main({}, **common.load_settings(_ini_with_logging()))


# The two servers: waitress --call these factories.
FACTORIES = {"bare": "bench.status:make_hello_app", "ours": "bench.status:make_warehouse_app"}


# --- serving them -------------------------------------------------------------------------------------


def server_threads() -> int:
    """``threads`` of production.ini's [server:main]: what production serves the app with."""
    parser = configparser.RawConfigParser()
    parser.read(common.PRODUCTION_INI)
    return parser.getint("server:main", "threads")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


@dataclass
class Server:
    name: str  # "bare" or "ours"
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}{path}"

    def log(self) -> str:
        return self.log_path.read_bytes().decode("utf-8", "replace")


@contextmanager
def waitress_server(env: Environment, name: str, factory: str, ini: Path, threads: int) -> Iterator[Server]:
    """``python -m waitress --call factory`` on a free port of HOST; terminated (then killed) afterwards."""
    port = free_port()
    command = [sys.executable, "-m", "waitress", f"--listen={HOST}:{port}", f"--threads={threads}", "--call", factory]
    pythonpath = os.pathsep.join(filter(None, [str(common.REPO_ROOT), os.environ.get("PYTHONPATH")]))
    environ = dict(os.environ, PYTHONPATH=pythonpath, PYTHONUNBUFFERED="1", **{INI_VARIABLE: str(ini)})
    with served(name, command, port, env.work_dir / f"server-{name}.log", env=environ) as server:
        yield server


@contextmanager
def served(name: str, command: list[str], port: int, log_path: Path, **popen: Any) -> Iterator[Server]:
    """``command``, a server listening on ``port``, its output in ``log_path``; terminated (then
    killed) afterwards, and gone with this process if it dies without cleaning up."""
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command, cwd=common.REPO_ROOT, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
            preexec_fn=scratch.parent_death_signal(), **popen,
        )
    try:
        yield Server(name, process, port, log_path)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=SERVER_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=SERVER_STOP_TIMEOUT)


def wait_until_answering(server: Server, path: str, token: str) -> None:
    """Until a GET of ``path`` answers 200: the app is built, and the URL and the token are right."""
    request = urllib.request.Request(server.url(path), headers={"Authorization": f"Bearer {token}"})
    deadline = time.monotonic() + SERVER_READY_TIMEOUT
    while True:
        if server.process.poll() is not None:
            raise BenchError(f"the {server.name} server exited with {server.process.returncode}:\n{server.log()[-4000:]}")
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError as error:
            raise BenchError(f"the {server.name} server answered {error.code} to GET {path}: {error.read()[:500]!r}") from None
        except OSError:
            pass  # not listening yet
        if time.monotonic() > deadline:
            raise BenchError(f"the {server.name} server did not answer in {SERVER_READY_TIMEOUT:.0f} s:\n{server.log()[-4000:]}")
        time.sleep(0.2)


# --- the load: wrk ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WrkReport:
    requests: int
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    bad_responses: int  # wrk's "Non-2xx or 3xx responses"
    socket_errors: int  # connect + read + write + timeout


_MILLISECONDS_PER = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def milliseconds(text: str) -> float:
    """One of wrk's times ("812.00us", "4.21ms", "1.02s", "1.50m") in milliseconds."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not match:
        raise BenchError(f"wrk printed a time this cannot read: {text!r}")
    return float(match[1]) * _MILLISECONDS_PER[match[2]]


def parse_wrk(output: str) -> WrkReport:
    """The figures of a ``wrk --latency`` report. The error lines appear only when there were errors."""

    def line(pattern: str) -> re.Match[str] | None:
        return re.search(pattern, output, re.MULTILINE)

    def required(pattern: str) -> re.Match[str]:
        match = line(pattern)
        if match is None:
            raise BenchError(f"wrk's report has no line matching {pattern!r}:\n{output}")
        return match

    bad = line(r"^\s*Non-2xx or 3xx responses: (\d+)")
    errors = line(r"^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
    return WrkReport(
        requests=int(required(r"^\s*(\d+) requests in ")[1]),
        requests_per_second=float(required(r"^Requests/sec:\s+([\d.]+)")[1]),
        p50_ms=milliseconds(required(r"^\s+50%\s+(\S+)")[1]),
        p99_ms=milliseconds(required(r"^\s+99%\s+(\S+)")[1]),
        bad_responses=int(bad[1]) if bad else 0,
        socket_errors=sum(int(count) for count in errors.groups()) if errors else 0,
    )


def require_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise BenchError(f"the status benchmark needs the load generator wrk; install it with: {WRK_INSTALL}")
    return path


def wrk(url: str, token: str, seconds: int) -> WrkReport:
    """``wrk -t2 -c32 -dNs --latency`` with the bearer token, as the same client for both servers."""
    command = [
        require_wrk(), f"-t{WRK_THREADS}", f"-c{CLIENTS}", f"-d{seconds}s", "--latency",
        "-H", f"Authorization: Bearer {token}", url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30)
    if done.returncode != 0:
        raise BenchError(f"wrk exited with {done.returncode}: {done.stderr.strip() or done.stdout.strip()}")
    return parse_wrk(done.stdout)


def _children_cpu_seconds() -> float:
    """CPU seconds of this process's finished and reaped children (wrk, once it has exited)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class Round:
    server: str
    report: WrkReport
    cpu: dict[str, float]  # CpuMeter's, plus "wrk"

    @property
    def server_ms_per_request(self) -> float:
        return self.cpu[f"{self.server} server"] / max(self.report.requests, 1) * 1000

    @property
    def busy_share(self) -> float:
        return self.cpu["machine busy"] / max(self.cpu["machine capacity"], 1e-9)


def measure_round(server: Server, path: str, token: str, seconds: int, cpu: common.CpuMeter) -> Round:
    wrk_before = _children_cpu_seconds()
    cpu.start()
    report = wrk(server.url(path), token, seconds)
    used = cpu.stop()
    # wrk has exited by now, so CpuMeter counted it among "other processes": move it to its own row.
    used["wrk"] = _children_cpu_seconds() - wrk_before
    used["other processes"] = max(0.0, used["other processes"] - used["wrk"])
    measured = Round(server.name, report, used)
    log(
        f"{NAME}: {server.name}: {report.requests_per_second:,.0f} requests/s, p50 {report.p50_ms:.1f} ms,"
        f" p99 {report.p99_ms:.1f} ms, {report.bad_responses} non-2xx/3xx, {report.socket_errors} socket errors;"
        f" {cpu_note([measured])}"
    )
    return measured


def cpu_note(rounds: Sequence[Round]) -> str:
    """Where the CPU went over ``rounds`` (all of one server): the machine's share, the server's CPU
    per request, and CPU seconds per round by group."""
    server = rounds[0].server
    groups = (f"{server} server", "wrk", "workers", "Redis + PostgreSQL", "other processes")
    per_round = ", ".join(f"{group} {statistics.mean(r.cpu[group] for r in rounds):.1f}" for group in groups)
    return (
        f"{statistics.mean(r.busy_share for r in rounds):.0%} of {os.cpu_count()} cores busy;"
        f" server CPU {statistics.median(r.server_ms_per_request for r in rounds):.2f} ms a request;"
        f" CPU s a round: {per_round}"
    )


# --- the benchmark ------------------------------------------------------------------------------------


def start_valuation(api: common.Api, products: int) -> dict[str, Any]:
    """A valuation run of the seeded warehouse, returned once its chunks are going (planning over):
    the background load both servers are measured under."""
    started = api.start_run(valuation.warehouse_code(products), "valuation")
    deadline = time.monotonic() + RUN_START_TIMEOUT
    while (run_doc := api.run(started["id"]))["status"] != "running" or not run_doc["items"]["done"]:
        if run_doc["status"] in common.TERMINAL_STATUSES or time.monotonic() > deadline:
            raise BenchError(f"the valuation run did not get going: {run_doc}")
        time.sleep(0.05)
    return run_doc


@dataclass
class Measurements:
    threads: int
    products: int
    round_seconds: int
    warmups: list[WrkReport]
    rounds: list[Round]
    run_after_rounds: dict[str, Any]
    run_finished: dict[str, Any]
    settings: Mapping[str, str]  # besides production.ini's

    def of(self, server: str) -> list[Round]:
        return [r for r in self.rounds if r.server == server]


def measure(
    env: Environment, products: int, rounds: int, round_seconds: int, warmup_seconds: int, settings: Mapping[str, str]
) -> Measurements:
    threads = server_threads()
    ini = env.write_ini(f"status-{secrets.token_hex(3)}", settings)
    with common.engine_for(ini) as engine, common.Stopwatch() as watch:
        valuation.seed_products(engine, products)
        valuation.vacuum_analyze(engine)
    log(f"{NAME}: seeded {products:,} products in {watch.seconds:.1f} s")

    with (
        common.workers(env, ini, nodes=NODES, concurrency=CONCURRENCY) as nodes,
        common.web_api(env, ini) as api,
        waitress_server(env, "bare", FACTORIES["bare"], ini, threads) as bare,
        waitress_server(env, "ours", FACTORIES["ours"], ini, threads) as ours,
    ):
        servers = (bare, ours)
        cpu = common.CpuMeter(
            {
                "bare server": ([bare.process.pid], False),
                "ours server": ([ours.process.pid], False),
                "workers": ([node.process.pid for node in nodes], True),
            }
        )
        run_id = start_valuation(api, products)["id"]
        path = f"/api/runs/{run_id}"
        for server in servers:
            wait_until_answering(server, path, env.viewer_token)
        warmups = [wrk(server.url(path), env.viewer_token, warmup_seconds) for server in servers]
        # Alternating rounds, so that both servers see the same phases of the run and of the machine.
        measured = [
            measure_round(server, path, env.viewer_token, round_seconds, cpu) for _ in range(rounds) for server in servers
        ]
        after_rounds = api.run(run_id)
        log(f"{NAME}: run {run_id} after the last round: {after_rounds['status']}, items {after_rounds['items']}")
        finished = api.wait_until_finished(run_id, RUN_TIMEOUT_SECONDS, poll_seconds=0.2)
    return Measurements(threads, products, round_seconds, warmups, measured, after_rounds, finished, settings)


def disturbance_warning(server: str, rounds: Sequence[Round]) -> str:
    """A warning (logged, and for the table's note) if processes that are not the benchmark's took more
    than QUIET_MACHINE_SHARE of the machine during ``rounds``. "Other processes" also holds CPU time the
    kernel does not charge to any process, such as part of the loopback network's work."""
    others = sum(r.cpu["other processes"] for r in rounds) / sum(r.cpu["machine capacity"] for r in rounds)
    if others <= QUIET_MACHINE_SHARE:
        return ""
    warning = f"WARNING: other processes used {others:.0%} of the machine during these rounds; the figures are pessimistic"
    log(f"{NAME}, {server}: {warning}")
    return f"; {warning}"


def met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def report(result: Result, m: Measurements) -> None:
    reports = m.warmups + [r.report for r in m.rounds]
    bad = sum(r.bad_responses for r in reports)
    errors = sum(r.socket_errors for r in reports)
    result.check(
        "every request answered 2xx/3xx, no socket error",
        bad == 0 and errors == 0,
        f"{sum(r.requests for r in reports):,} requests (warm-ups included): {bad} non-2xx/3xx responses, {errors} socket errors",
    )
    items = m.run_after_rounds["items"]
    result.check(
        "the valuation run was still going when the last round ended",
        m.run_after_rounds["status"] == "running" and items["remaining"] > 0,
        f"status {m.run_after_rounds['status']}, {items['done']:,} of {items['total']:,} products done",
    )
    result.check(
        "the valuation run succeeded", m.run_finished["status"] == "succeeded",
        f"status {m.run_finished['status']}, items {m.run_finished['items']}",
    )

    rps = {server: statistics.median(r.report.requests_per_second for r in m.of(server)) for server in FACTORIES}
    p99 = {server: statistics.median(r.report.p99_ms for r in m.of(server)) for server in FACTORIES}
    how = (
        f"median of {len(m.of('ours'))} rounds of {m.round_seconds} s, alternating with the other server,"
        f" wrk -t{WRK_THREADS} -c{CLIENTS}, waitress threads={m.threads}, during a valuation run of {m.products:,} products"
        + (f"; NOT as shipped: {', '.join(f'{key} = {value}' for key, value in m.settings.items())}" if m.settings else "")
    )
    labels = {"bare": 'bare waitress "hello" app', "ours": "ours, GET /api/runs/{id}"}
    for server in FACTORIES:
        rounds = m.of(server)
        result.figure(
            labels[server],
            f"{rps[server]:,.0f} requests/s, p99 {p99[server]:.1f} ms",
            f"{how}; rounds: "
            + ", ".join(f"{r.report.requests_per_second:,.0f}/s p99 {r.report.p99_ms:.1f} ms" for r in rounds)
            + f"; p50 {statistics.median(r.report.p50_ms for r in rounds):.1f} ms; {cpu_note(rounds)}"
            + disturbance_warning(server, rounds),
        )
    share = rps["ours"] / rps["bare"]
    result.figure(
        "ours ÷ bare, requests/s", f"{share:.1%}", f"target ≥ {TARGET_SHARE:.0%}: {met(share >= TARGET_SHARE)}"
    )
    worst = max(r.report.p99_ms for r in m.of("ours"))
    result.figure(
        "ours, p99 latency",
        f"{p99['ours']:.1f} ms",
        f"target ≤ {TARGET_P99_MS:g} ms: {met(p99['ours'] <= TARGET_P99_MS)} (worst round {worst:.1f} ms)",
    )


def run(
    env: Environment,
    *,
    products: int = VALUATION_PRODUCTS,
    rounds: int = ROUNDS,
    round_seconds: int = ROUND_SECONDS,
    warmup_seconds: int = WARMUP_SECONDS,
    settings: Mapping[str, str] | None = None,
) -> Result:
    """``settings``: extra ini settings (production.ini's as shipped by default), for experiments."""
    require_wrk()  # before the set-up, not a minute into it
    result = Result(NAME)
    report(result, measure(env, products, rounds, round_seconds, warmup_seconds, settings or {}))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The status-endpoint benchmark alone (make bench runs all of them).")
    parser.add_argument("--products", type=int, default=VALUATION_PRODUCTS,
                        help="products of the valuation run going meanwhile (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="measured rounds per server (default: %(default)s)")
    parser.add_argument("--seconds", type=int, default=ROUND_SECONDS, help="seconds per round (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=WARMUP_SECONDS, help="warm-up seconds per server (default: %(default)s)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="an extra ini setting, e.g. pyramid_openapi3.enable_response_validation=false (repeatable)")
    args = parser.parse_args(argv)
    settings = dict(item.split("=", 1) for item in args.set)
    return common.run_alone(
        run, products=args.products, rounds=args.rounds, round_seconds=args.seconds, warmup_seconds=args.warmup,
        settings=settings,
    )


if __name__ == "__main__":
    sys.exit(main())
