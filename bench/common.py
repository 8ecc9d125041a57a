"""What every benchmark stands on: real PostgreSQL and Redis, production-shaped settings, real workers.

``environment()`` gives a benchmark session a throwaway PostgreSQL database (migrated to head) and a
Redis DB number of its own, and removes both afterwards however the session ends. ``Environment.write_ini``
writes production.ini with only its URLs, tokens and the benchmark's own settings changed (environment
overrides off, so a stray DATABASE_URL or REDIS_URL in the shell points nothing elsewhere).
``workers()`` starts ``celery -A tasks worker`` processes on such an ini and stops them afterwards;
``web_api()`` is the WSGI app in-process, whose runs go to those workers through the real broker.

A benchmark reports a ``Result``: figures (rows of the one table ``bench/run.py`` prints) and checks
(correctness conditions; a failed one makes ``make bench`` exit non-zero). ``Stopwatch`` times,
``CpuMeter`` says which processes used the CPU meanwhile, and ``machine_facts()`` what ran it.
Set BENCH_KEEP_LOGS=1 to keep the inis and worker logs of a session.
"""

from __future__ import annotations

import configparser
import datetime as dt
import os
import platform
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import redis

from warehouse import scratch

REPO_ROOT = Path(__file__).resolve().parents[1]
PRODUCTION_INI = REPO_ROOT / "production.ini"

PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379

WORKER_READY_TIMEOUT = 60.0
WORKER_STOP_TIMEOUT = 20.0
TERMINAL_STATUSES = frozenset({"succeeded", "partially_failed", "failed", "cancelled"})


class BenchError(RuntimeError):
    """The benchmark could not be set up or run (as opposed to a figure that missed its target)."""


# --- results --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """One row of the table: what was measured, its value, and how to read it."""

    measure: str
    value: str
    note: str = ""


@dataclass(frozen=True)
class Check:
    """A correctness condition; a failed one makes ``make bench`` exit non-zero and leaves the
    figures unwritten. A speed target (``target``) is listed the same way, met or not, but a missed
    one is a figure to report, not a wrong result: it fails nothing."""

    name: str
    ok: bool
    detail: str
    target: bool = False


@dataclass(frozen=True)
class Point:
    """One measured (or estimated) run time, for the plot."""

    products: int
    seconds: float
    estimated: bool = False


@dataclass
class Result:
    benchmark: str
    figures: list[Figure] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    # Lines for the plot (bench/plot.py): name -> points (products, seconds, estimated?).
    series: dict[str, list[Point]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks if not check.target)

    def figure(self, measure: str, value: str, note: str = "") -> None:
        self.figures.append(Figure(measure, value, note))

    def check(self, name: str, ok: bool, detail: str) -> bool:
        self.checks.append(Check(name, ok, detail))
        return ok

    def target(self, name: str, met: bool, detail: str) -> bool:
        self.checks.append(Check(name, met, detail, target=True))
        return met

    def point(self, line: str, products: int, seconds: float, estimated: bool = False) -> None:
        self.series.setdefault(line, []).append(Point(products, seconds, estimated))


class Stopwatch:
    """``with Stopwatch() as watch: ...`` then ``watch.seconds``; reads the running time inside, too."""

    def __enter__(self) -> Stopwatch:
        self.started = time.perf_counter()
        self.stopped: float | None = None
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stopped = time.perf_counter()

    @property
    def seconds(self) -> float:
        return (self.stopped or time.perf_counter()) - self.started


def log(message: str) -> None:
    """Progress on stderr, so that stdout holds only the results."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- services ---------------------------------------------------------------------------------------


def _admin_connection() -> psycopg.Connection:
    return psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", autocommit=True, connect_timeout=3)


def _redis(db: int = 0) -> redis.Redis:
    return redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db, socket_connect_timeout=3, socket_timeout=10)


def require_services() -> None:
    """Fail with a clear message (rather than a stack trace halfway through) if a service is down."""
    problems = []
    try:
        _admin_connection().close()
    except Exception as error:  # noqa: BLE001 - any failure means "not reachable"
        problems.append(f"PostgreSQL at {PG_HOST}:{PG_PORT} (user {PG_USER}): {error}")
    client = _redis()
    try:
        client.ping()
    except Exception as error:  # noqa: BLE001
        problems.append(f"Redis at {REDIS_HOST}:{REDIS_PORT}: {error}")
    finally:
        client.close()
    if problems:
        raise BenchError("the benchmarks need PostgreSQL and Redis running: " + "; ".join(problems))


@contextmanager
def throwaway_database() -> Iterator[str]:
    """A new, empty PostgreSQL database for this session; dropped (connections and all) afterwards."""
    with scratch.throwaway_database(PG_HOST, PG_PORT, PG_USER, "warehouse_bench") as url:
        yield url


@contextmanager
def own_redis_db() -> Iterator[str]:
    """The URL of a Redis DB number in 1..15 that was empty; only that DB is flushed afterwards."""
    with ExitStack() as stack:
        try:
            url = stack.enter_context(scratch.claimed_redis_db(REDIS_HOST, REDIS_PORT, scratch.claim_token("bench")))
        except LookupError as error:
            raise BenchError(f"{error} to run the benchmarks in") from None
        yield url


# --- settings -------------------------------------------------------------------------------------


def production_shaped_ini(settings: Mapping[str, str]) -> str:
    """production.ini's text with ``settings`` set in ``[app:main]`` (added or replaced)."""
    parser = configparser.RawConfigParser()  # raw: the logging format's %(...)s stays as written
    parser.optionxform = str  # type: ignore[assignment,method-assign] - keep the keys' case
    parser.read(PRODUCTION_INI)
    for key, value in settings.items():
        parser.set("app:main", key, value)
    lines: list[str] = [f"# Written by bench/common.py from {PRODUCTION_INI.name}; only [app:main] settings differ.\n"]
    for section in parser.sections():
        lines.append(f"\n[{section}]\n")
        lines.extend(f"{key} = {value}\n" for key, value in parser.items(section))
    return "".join(lines)


@dataclass
class Environment:
    """A benchmark session's database, Redis DB, tokens and scratch directory."""

    work_dir: Path
    database_url: str
    redis_url: str
    operator_token: str = field(default_factory=lambda: secrets.token_hex(16))
    viewer_token: str = field(default_factory=lambda: secrets.token_hex(16))

    def write_ini(self, name: str, extra_settings: Mapping[str, Any] | None = None) -> Path:
        """``WORK_DIR/NAME.ini``: production.ini pointed at this session's database and Redis DB."""
        settings = {
            "warehouse.environment_overrides": "false",
            "sqlalchemy.url": self.database_url,
            "celery.broker_url": self.redis_url,
            "celery.result_backend": self.redis_url,
            "warehouse.tokens": f"operator:{self.operator_token} viewer:{self.viewer_token}",
            **{key: str(value) for key, value in (extra_settings or {}).items()},
        }
        path = self.work_dir / f"{name}.ini"
        path.write_text(production_shaped_ini(settings))
        return path


def load_settings(ini: Path) -> dict[str, Any]:
    from warehouse.settings import load_settings as load

    return load(str(ini))


@contextmanager
def environment() -> Iterator[Environment]:
    """Services checked, a throwaway database migrated to head, a Redis DB claimed; all undone after."""
    from warehouse.migrate import upgrade

    require_services()
    with _work_dir() as work_dir, throwaway_database() as database_url, own_redis_db() as redis_url:
        env = Environment(work_dir, database_url, redis_url)
        upgrade(load_settings(env.write_ini("migrate")))
        yield env


@contextmanager
def _work_dir() -> Iterator[Path]:
    """A scratch directory for inis and worker logs: removed afterwards, unless BENCH_KEEP_LOGS is set."""
    if os.environ.get("BENCH_KEEP_LOGS"):
        path = Path(tempfile.mkdtemp(prefix="warehouse-bench-"))
        log(f"inis and worker logs kept in {path}")
        yield path
    else:
        with tempfile.TemporaryDirectory(prefix="warehouse-bench-") as path:
            yield Path(path)


def machine_facts() -> dict[str, str]:
    """What the figures depend on: the machine, the versions of the services, when, and which commit."""
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    with _admin_connection() as admin:
        postgresql = admin.execute("SHOW server_version").fetchone()[0]
    client = _redis()
    try:
        redis_version = client.info("server")["redis_version"]
    finally:
        client.close()
    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=REPO_ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "CPUs": f"{os.cpu_count()}" + (f" × {cpu_model}" if cpu_model else ""),
        "memory": memory or "unknown",
        "OS": platform.platform(),
        "Python": platform.python_version(),
        "PostgreSQL": postgresql.split()[0],
        "Redis": redis_version,
        "commit": commit or "unknown",
    }


# --- worker processes -----------------------------------------------------------------------------


@dataclass
class WorkerNode:
    name: str  # node name as Celery reports it, e.g. bench1@host
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_bytes().decode("utf-8", "replace")

    def stop(self) -> None:
        """Warm shutdown (SIGTERM); then SIGKILL the whole process group, pool children included."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=WORKER_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.process.wait(timeout=WORKER_STOP_TIMEOUT)


def _start_node(
    name: str, ini: Path, log_path: Path, concurrency: int, loglevel: str, host_prefix: Sequence[str] = ()
) -> WorkerNode:
    """A ``celery worker`` node; ``host_prefix`` runs it elsewhere (``ip netns exec NODE``)."""
    command = [
        *host_prefix,
        sys.executable, "-m", "celery", "-A", "tasks", "worker", f"--loglevel={loglevel}",
        "--pool=prefork", f"--concurrency={concurrency}", "-n", f"{name}@%h", "--without-mingle", "--without-gossip",
    ]
    pythonpath = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, WAREHOUSE_INI=str(ini), PYTHONPATH=pythonpath, PYTHONUNBUFFERED="1")
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so stop() reaches the pool children too
            preexec_fn=scratch.parent_death_signal(),
        )
    return WorkerNode(f"{name}@{socket.gethostname()}", process, log_path)


def _wait_until_ready(settings: Mapping[str, Any], nodes: list[WorkerNode]) -> None:
    from tasks.app import make_celery

    control = make_celery(settings)
    try:
        waiting = {node.name: node for node in nodes}
        deadline = time.monotonic() + WORKER_READY_TIMEOUT
        while waiting:
            for node in waiting.values():
                if node.process.poll() is not None:
                    raise BenchError(f"worker {node.name} exited with {node.process.returncode}:\n{node.log()[-4000:]}")
            if time.monotonic() > deadline:
                raise BenchError(f"workers {sorted(waiting)} did not answer a ping in {WORKER_READY_TIMEOUT:.0f} s")
            for reply in control.control.ping(destination=list(waiting), timeout=1.0) or []:
                for name in reply:
                    waiting.pop(name, None)
    finally:
        control.close()


@contextmanager
def workers(
    env: Environment,
    ini: Path,
    *,
    nodes: int = 1,
    concurrency: int = 2,
    prefix: str = "bench",
    loglevel: str = "INFO",
    host_prefixes: Sequence[Sequence[str]] = (),
) -> Iterator[list[WorkerNode]]:
    """``nodes`` worker nodes of ``concurrency`` prefork children each, ready (they answered a ping)
    when this yields; all stopped afterwards, however the block ends. Logs go to the work directory.
    Node ``i`` runs behind ``host_prefixes[i]`` if given (a network namespace of its own, say)."""
    started: list[WorkerNode] = []
    try:
        for number in range(1, nodes + 1):
            name = f"{prefix}{number}"
            where = host_prefixes[number - 1] if number <= len(host_prefixes) else ()
            started.append(_start_node(name, ini, env.work_dir / f"{name}.log", concurrency, loglevel, where))
        _wait_until_ready(load_settings(ini), started)
        yield started
    finally:
        for node in started:
            if node.process.poll() is None:
                node.process.send_signal(signal.SIGTERM)  # all shut down together
        for node in started:
            node.stop()


# --- the API --------------------------------------------------------------------------------------


class Api:
    """The runs API through WebTest: an operator starts a run, a viewer polls it."""

    def __init__(self, app: Any, operator_token: str, viewer_token: str) -> None:
        self.app = app
        self.operator = {"Authorization": f"Bearer {operator_token}"}
        self.viewer = {"Authorization": f"Bearer {viewer_token}"}

    def start_run(self, code: str, operation: str, **options: Any) -> dict[str, Any]:
        return self.app.post_json(
            f"/api/warehouses/{code}/runs", {"operation": operation, **options}, headers=self.operator, status=202
        ).json

    def run(self, run_id: int) -> dict[str, Any]:
        return self.app.get(f"/api/runs/{run_id}", headers=self.viewer, status=200).json

    def wait_until_finished(self, run_id: int, timeout: float, poll_seconds: float = 0.05) -> dict[str, Any]:
        """Poll until the run has a terminal status; BenchError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.run(run_id)
            if run["status"] in TERMINAL_STATUSES:
                return run
            if time.monotonic() > deadline:
                raise BenchError(f"run {run_id} not finished after {timeout:.0f} s: {run}")
            time.sleep(poll_seconds)


@contextmanager
def web_api(env: Environment, ini: Path) -> Iterator[Api]:
    """The WSGI app in-process, built from ``ini``; the runs it starts go to Redis like production's."""
    from webtest import TestApp

    from warehouse import main

    app = main({}, **load_settings(ini))
    try:
        yield Api(TestApp(app), env.operator_token, env.viewer_token)
    finally:
        app.registry["celery_app"].close()
        app.registry["dbsession_factory"].kw["bind"].dispose()


@contextmanager
def engine_for(ini: Path) -> Iterator[Any]:
    from warehouse.db import make_engine

    engine = make_engine(load_settings(ini))
    try:
        yield engine
    finally:
        engine.dispose()


# --- CPU accounting (Linux /proc) -------------------------------------------------------------------


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
SERVICE_COMMANDS = frozenset({"redis-server", "postgres"})


def _stat_fields(pid: int) -> tuple[str, list[str]] | None:
    """The command name and the fields after it of /proc/PID/stat (the name may hold spaces)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name = text[text.index("(") + 1 : text.rindex(")")]
    return name, text[text.rindex(")") + 2 :].split()


def _cpu_seconds(pid: int) -> float:
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    # utime and stime are fields 14 and 15 of stat, i.e. 11 and 12 after the name and state.
    return (int(fields[1][11]) + int(fields[1][12])) / _CLOCK_TICKS


def _all_processes() -> dict[int, tuple[str, int]]:
    """pid -> (command name, parent pid) for every process."""
    processes = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))) is not None:
            processes[int(entry.name)] = (fields[0], int(fields[1][1]))
    return processes


def _with_descendants(roots: list[int], processes: dict[int, tuple[str, int]]) -> set[int]:
    found = set(roots)
    changed = True
    while changed:
        changed = False
        for pid, (_name, parent) in processes.items():
            if parent in found and pid not in found:
                found.add(pid)
                changed = True
    return found


def pool_children(node: WorkerNode) -> list[int]:
    """The pids of a worker node's pool processes (the prefork children doing the tasks)."""
    processes = _all_processes()
    return sorted(pid for pid, (_name, parent) in processes.items() if parent == node.process.pid)


def peak_rss_mib(pid: int) -> float:
    """A process's peak resident memory since it started (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"no VmHWM for process {pid}")


def _machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle since boot (user, nice, system, irq, softirq, steal)."""
    values = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (values + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / _CLOCK_TICKS


class CpuMeter:
    """CPU seconds used between ``start()`` and ``stop()`` by named groups of processes (each group: the
    given pids and, with ``tree=True``, their descendants), by Redis and PostgreSQL, and by everything
    else on the machine. It shows whether a run was CPU-bound, and whether something else was running."""

    def __init__(self, groups: Mapping[str, tuple[list[int], bool]]) -> None:
        self.groups = groups

    def _sample(self) -> tuple[float, dict[str, float]]:
        processes = _all_processes()
        used = {}
        for name, (pids, tree) in self.groups.items():
            members = _with_descendants(pids, processes) if tree else set(pids)
            used[name] = sum(_cpu_seconds(pid) for pid in members)
        used["Redis + PostgreSQL"] = sum(
            _cpu_seconds(pid) for pid, (command, _parent) in processes.items() if command in SERVICE_COMMANDS
        )
        return _machine_busy_seconds(), used

    def start(self) -> None:
        self.started = time.perf_counter()
        self.busy, self.used = self._sample()

    def stop(self) -> dict[str, float]:
        """CPU seconds per group, ``other processes``, ``machine busy`` and ``machine capacity``."""
        busy, used = self._sample()
        wall = time.perf_counter() - self.started
        result = {name: used[name] - self.used.get(name, 0.0) for name in used}
        machine = busy - self.busy
        result["other processes"] = max(0.0, machine - sum(result.values()))
        result["machine busy"] = machine
        result["machine capacity"] = wall * (os.cpu_count() or 1)
        return result


# --- reporting ------------------------------------------------------------------------------------


def exit_cleanly_on_sigterm() -> None:
    """SIGTERM raises SystemExit, so the context managers above stop workers and drop the database."""

    def handler(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def results_table(results: list[Result]) -> str:
    """One Markdown table of every benchmark's figures."""
    lines = ["| benchmark | measure | value | note |", "|---|---|---:|---|"]
    for result in results:
        for figure in result.figures:
            lines.append(
                f"| {_cell(result.benchmark)} | {_cell(figure.measure)} | {_cell(figure.value)} | {_cell(figure.note)} |"
            )
    return "\n".join(lines)


def checks_list(results: list[Result]) -> str:
    return "\n".join(
        f"- {_verdict(check)}: {result.benchmark}: {check.name} ({check.detail})"
        for result in results
        for check in result.checks
    )


def _verdict(check: Check) -> str:
    if check.target:
        return "target met" if check.ok else "target **NOT met**"
    return "ok" if check.ok else "**FAILED**"


def facts_list(facts: Mapping[str, str]) -> str:
    return "\n".join(f"- {key}: {value}" for key, value in facts.items())


def format_results(results: list[Result], facts: Mapping[str, str] | None = None) -> str:
    """What a benchmark run prints: the machine, the table, the checks."""
    parts = []
    if facts:
        parts.append(facts_list(facts))
    parts += [results_table(results), "Checks:\n" + checks_list(results)]
    return "\n\n".join(parts)


def run_alone(run: Callable[..., Result], **options: Any) -> int:
    """A benchmark module's ``main``: ``run(env, **options)`` in an environment of its own, its table
    printed. Exit status 0 if every check passed, 1 if one failed, 2 if it could not run."""
    exit_cleanly_on_sigterm()
    try:
        with environment() as env:
            result = run(env, **options)
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 2
    print(format_results([result]))
    return 0 if result.ok else 1
