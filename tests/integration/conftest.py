"""Integration fixtures: real PostgreSQL, real Redis and real ``celery worker`` processes.

Each test session gets a throwaway PostgreSQL database and a Redis database number of its own, writes
an ini file naming exactly those (environment overrides off, so a stray DATABASE_URL or REDIS_URL in the
shell changes nothing), and starts worker processes with ``WAREHOUSE_INI`` pointing at it. The web app
is built in-process from the same ini, so a run POSTed through WebTest goes to the real broker after
its transaction commits, exactly as in production.

When PostgreSQL or Redis cannot be reached (nor started), the tests are skipped, except under CI=true,
where they fail: CI must never go green by skipping them.
"""

from __future__ import annotations

import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from celery import Celery
from psycopg import sql
from pyramid.paster import get_appsettings
from sqlalchemy import Engine
from webtest import TestApp

REPO_ROOT = Path(__file__).resolve().parents[2]

PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
SERVICE_START_TIMEOUT = 30.0
WORKER_READY_TIMEOUT = 60.0
WORKER_STOP_TIMEOUT = 20.0
LOG_TAIL_LINES = 300

OPERATOR_TOKEN = "op-token"
VIEWER_TOKEN = "viewer-token"

START_POSTGRES = ["pg_ctlcluster", "--skip-systemctl-redirect", "15", "main", "start"]
START_REDIS = ["redis-server", "--daemonize", "yes", "--bind", REDIS_HOST, "--port", str(REDIS_PORT),
               "--save", "", "--appendonly", "no"]

# The shape of production.ini, pointed at this session's database and Redis DB only.
INI_TEMPLATE = """\
[app:main]
use = egg:warehouse

warehouse.environment_overrides = false

sqlalchemy.url = {database_url}
sqlalchemy.pool_size = 10
sqlalchemy.max_overflow = 10
sqlalchemy.pool_pre_ping = true

celery.broker_url = {redis_url}
celery.result_backend = {redis_url}
celery.broker_transport_options = {{"visibility_timeout": 14400}}
celery.worker_prefetch_multiplier = 1

warehouse.chunk_size = 500
warehouse.carrier_url = http://127.0.0.1:8081
warehouse.carrier_max_in_flight = 100
warehouse.tokens = operator:{operator_token} viewer:{viewer_token}

[server:main]
use = egg:waitress#main
listen = 127.0.0.1:6543
threads = 16

[loggers]
keys = root, warehouse, tasks

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = WARNING
handlers = console

[logger_warehouse]
level = INFO
handlers =
qualname = warehouse

[logger_tasks]
level = INFO
handlers =
qualname = tasks

[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = generic

[formatter_generic]
format = %(asctime)s %(levelname)-5.5s [%(name)s][%(threadName)s] %(message)s
"""


# --- services -----------------------------------------------------------------------------------


def _postgres_error() -> str | None:
    try:
        with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", connect_timeout=2):
            return None
    except Exception as error:  # noqa: BLE001 - any failure means "not reachable"
        return f"{type(error).__name__}: {error}".strip()


def _redis_error() -> str | None:
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
        return None
    except Exception as error:  # noqa: BLE001
        return f"{type(error).__name__}: {error}".strip()
    finally:
        client.close()


def _try_to_start(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=SERVICE_START_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"`{' '.join(command)}` could not run: {error}"
    return f"`{' '.join(command)}` exited {done.returncode}: {(done.stdout + done.stderr).strip()}"


def _ensure_service(name: str, probe: Callable[[], str | None], start: list[str]) -> str | None:
    """None once the service answers; otherwise why it does not, after trying to start it."""
    if probe() is None:
        return None
    attempt = _try_to_start(start)
    deadline = time.monotonic() + SERVICE_START_TIMEOUT
    while time.monotonic() < deadline:
        if (error := probe()) is None:
            return None
        time.sleep(0.5)
    return f"{name} is not reachable ({error}); tried {attempt}"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true, so not skipping: {reason}", pytrace=False)
    pytest.skip(f"integration tests need PostgreSQL and Redis: {reason}")


@pytest.fixture(scope="session")
def services() -> None:
    problems = [
        problem
        for problem in (
            _ensure_service(f"PostgreSQL at {PG_HOST}:{PG_PORT}", _postgres_error, START_POSTGRES),
            _ensure_service(f"Redis at {REDIS_HOST}:{REDIS_PORT}", _redis_error, START_REDIS),
        )
        if problem
    ]
    if problems:
        _unavailable("; ".join(problems))


# --- a database and a Redis DB of this session's own ---------------------------------------------


def _admin_connection() -> psycopg.Connection:
    return psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", autocommit=True)


@pytest.fixture(scope="session")
def database_url(services: None) -> Iterator[str]:
    name = f"warehouse_it_{secrets.token_hex(6)}"
    with _admin_connection() as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        with _admin_connection() as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


CLAIM_KEY = "warehouse:integration-tests:claimed-by"
# Atomically: if the DB is empty, FLUSHDB it (a no-op then, but the reset the session starts from)
# and claim it with a marker key, so a concurrent session (another checkout's tests) sees it taken.
CLAIM_IF_EMPTY = """
if redis.call('DBSIZE') == 0 then
    redis.call('FLUSHDB')
    return redis.call('SET', KEYS[1], ARGV[1])
end
return false
"""


@pytest.fixture(scope="session")
def redis_url(services: None) -> Iterator[str]:
    """A Redis DB number in 1..15 that was empty, for broker and result backend; flushed at the end."""
    token = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
    numbers = list(range(1, 16))
    random.shuffle(numbers)
    claimed = None
    for number in numbers:
        client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=number)
        try:
            if client.eval(CLAIM_IF_EMPTY, 1, CLAIM_KEY, token):
                claimed = number
                break
        finally:
            client.close()
    if claimed is None:
        pytest.fail("no empty Redis database among 1..15 for the integration tests", pytrace=False)
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=claimed)
    try:
        yield f"redis://{REDIS_HOST}:{REDIS_PORT}/{claimed}"
    finally:
        client.flushdb()
        client.close()


@pytest.fixture(scope="session")
def ini_file(tmp_path_factory: pytest.TempPathFactory, database_url: str, redis_url: str) -> Path:
    path = tmp_path_factory.mktemp("integration") / "integration.ini"
    path.write_text(
        INI_TEMPLATE.format(
            database_url=database_url,
            redis_url=redis_url,
            operator_token=OPERATOR_TOKEN,
            viewer_token=VIEWER_TOKEN,
        )
    )
    return path


@pytest.fixture(scope="session")
def settings(ini_file: Path) -> dict[str, Any]:
    """The ini's ``[app:main]`` settings, with the throwaway database migrated to head."""
    from warehouse.migrate import upgrade

    settings = dict(get_appsettings(str(ini_file), name="main"))
    assert "celery.embedded_worker" not in settings
    upgrade(settings)
    return settings


@pytest.fixture(scope="session")
def engine(settings: dict[str, Any]) -> Iterator[Engine]:
    from warehouse.db import make_engine

    engine = make_engine(settings)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def control_app(settings: dict[str, Any]) -> Iterator[Celery]:
    """A Celery app on the session's broker, for pinging and inspecting the workers."""
    from tasks.app import make_celery

    app = make_celery(settings)
    try:
        yield app
    finally:
        app.close()


# --- worker processes ---------------------------------------------------------------------------


@dataclass
class WorkerProcess:
    name: str  # the node name, e.g. w1@host
    process: subprocess.Popen[bytes]
    log_path: Path
    _log_file: Any = field(repr=False, default=None)

    def log(self, since: int = 0) -> str:
        with self.log_path.open("rb") as log:
            log.seek(since)
            return log.read().decode("utf-8", "replace")

    def log_size(self) -> int:
        return self.log_path.stat().st_size

    def stop(self) -> None:
        """SIGTERM (warm shutdown), then SIGKILL the whole process group if it does not end in time."""
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout=WORKER_STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    pass
            # The pool children are in the worker's own process group (start_new_session): nothing of
            # it may outlive the session, whether the parent ended cleanly or not.
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.process.wait(timeout=WORKER_STOP_TIMEOUT)
        finally:
            if self._log_file is not None:
                self._log_file.close()


# Workers alive now, so a failing test's report can carry their logs.
_running_workers: list[WorkerProcess] = []


def _parent_death_signal() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the worker get SIGTERM (a warm shutdown) if pytest itself is killed,
    so no worker outlives a session whose finalizers never ran. Linux only; None elsewhere.

    libc is loaded here, before the fork: the child (possibly forked from a process with threads, e.g.
    the functional tests' embedded worker) then only makes one system call before exec.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1
    return lambda: prctl(pr_set_pdeathsig, signal.SIGTERM)


def _start_worker(index: int, ini_file: Path, log_dir: Path) -> WorkerProcess:
    log_path = log_dir / f"w{index}.log"
    log_file = log_path.open("wb")
    env = dict(os.environ, WAREHOUSE_INI=str(ini_file), PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tasks", "worker", "--loglevel=INFO", "--concurrency=2",
         "--pool=prefork", "-n", f"w{index}@%h", "--without-mingle", "--without-gossip"],
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_parent_death_signal(),
    )
    return WorkerProcess(f"w{index}@{socket.gethostname()}", process, log_path, log_file)


def _wait_until_ready(control_app: Celery, workers: list[WorkerProcess]) -> None:
    waiting = {worker.name: worker for worker in workers}
    deadline = time.monotonic() + WORKER_READY_TIMEOUT
    while waiting:
        for worker in waiting.values():
            if worker.process.poll() is not None:
                raise RuntimeError(
                    f"worker {worker.name} exited with {worker.process.returncode} before it was ready:\n"
                    + worker.log()
                )
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {worker.name} ---\n{worker.log()}" for worker in waiting.values())
            raise RuntimeError(f"workers {sorted(waiting)} did not answer a ping in {WORKER_READY_TIMEOUT} s:\n{logs}")
        for reply in control_app.control.ping(destination=list(waiting), timeout=1.0) or []:
            for name in reply:
                waiting.pop(name, None)


@pytest.fixture(scope="session")
def start_workers(
    ini_file: Path, settings: dict[str, Any], control_app: Celery, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[int], list[WorkerProcess]]]:
    """``start_workers(n)`` starts n more worker processes (w1, w2, ...) and waits until each answers.

    Every worker started is stopped when the session ends, however it ends.
    """
    log_dir = tmp_path_factory.mktemp("worker-logs")
    started: list[WorkerProcess] = []

    def start(count: int) -> list[WorkerProcess]:
        first = len(started) + 1
        batch = []
        try:
            for index in range(first, first + count):
                worker = _start_worker(index, ini_file, log_dir)
                batch.append(worker)
                started.append(worker)
                _running_workers.append(worker)
            _wait_until_ready(control_app, batch)
        except BaseException:
            # Startup failed: say where the logs are, the finalizer below still stops everything.
            print(f"worker logs in {log_dir}", file=sys.stderr)
            raise
        return batch

    try:
        yield start
    finally:
        for worker in reversed(started):
            try:
                worker.stop()
            finally:
                if worker in _running_workers:
                    _running_workers.remove(worker)


@pytest.fixture(scope="session")
def workers(start_workers: Callable[[int], list[WorkerProcess]]) -> list[WorkerProcess]:
    """Two worker processes, w1 and w2, of two pool children each, shared by the session's tests."""
    return start_workers(2)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed and _running_workers:
        for worker in _running_workers:
            try:
                lines = worker.log().splitlines()
            except OSError as error:
                lines = [f"(cannot read {worker.log_path}: {error})"]
            tail = "\n".join(lines[-LOG_TAIL_LINES:])
            report.sections.append((f"worker {worker.name} log (last {LOG_TAIL_LINES} lines, {worker.log_path})", tail))


# --- the web app --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def webapp(settings: dict[str, Any]) -> Iterator[TestApp]:
    """The WSGI app in-process, built from the ini's settings; it sends tasks to the session's Redis."""
    from warehouse import main

    app = main({}, **settings)
    try:
        yield TestApp(app)
    finally:
        app.registry["celery_app"].close()
        app.registry["dbsession_factory"].kw["bind"].dispose()


TERMINAL_STATUSES = frozenset({"succeeded", "partially_failed", "failed", "cancelled"})
# processFinished waits 5 s between checks while chunks are unfinished; three times that is plenty.
FINALISE_GRACE = 15.0


class Api:
    """The runs API through WebTest, as an operator starts runs and a viewer polls them."""

    operator = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    viewer = {"Authorization": f"Bearer {VIEWER_TOKEN}"}

    def __init__(self, app: TestApp) -> None:
        self.app = app

    def start_run(self, code: str, operation: str, **options: Any) -> dict[str, Any]:
        response = self.app.post_json(
            f"/api/warehouses/{code}/runs", {"operation": operation, **options}, headers=self.operator, status=202
        )
        return response.json

    def run(self, run_id: int) -> dict[str, Any]:
        return self.app.get(f"/api/runs/{run_id}", headers=self.viewer, status=200).json

    def wait_for(
        self, run_id: int, until: Callable[[dict[str, Any]], bool], timeout: float, what: str = "the condition"
    ) -> dict[str, Any]:
        """Poll the run until ``until(run)`` holds; fail after ``timeout`` seconds, at a terminal status
        that does not satisfy it (nothing changes after that), or when every chunk has ended but the
        run stays unfinalised for FINALISE_GRACE seconds (processFinished failed or never came)."""
        deadline = time.monotonic() + timeout
        chunks_ended_at = None
        while True:
            run = self.run(run_id)
            if until(run):
                return run
            if run["status"] in TERMINAL_STATUSES:
                pytest.fail(f"run {run_id} ended without {what}: {run}")
            now = time.monotonic()
            if run["chunks"]["total"] and not run["chunks"]["remaining"]:
                chunks_ended_at = chunks_ended_at or now
                if now - chunks_ended_at > FINALISE_GRACE:
                    pytest.fail(f"run {run_id}: every chunk ended {FINALISE_GRACE} s ago, still no {what}: {run}")
            if now > deadline:
                pytest.fail(f"run {run_id}: no {what} within {timeout} s: {run}")
            time.sleep(0.1)

    def wait_until_finished(self, run_id: int, timeout: float) -> dict[str, Any]:
        return self.wait_for(run_id, lambda run: run["status"] in TERMINAL_STATUSES, timeout, "terminal status")


@pytest.fixture(scope="session")
def api(webapp: TestApp) -> Api:
    return Api(webapp)


def _wait_until_idle(control_app: Celery, redis_url: str, workers: list[WorkerProcess], timeout: float) -> None:
    """Wait until no task is queued, reserved, running or scheduled (a retry with a countdown) anywhere.

    After that, the workers' logs hold everything the tasks sent so far will ever log.
    """
    names = [worker.name for worker in workers]
    client = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    try:
        while True:
            inspect = control_app.control.inspect(destination=names, timeout=1.0)
            busy = {}
            for kind in ("active", "reserved", "scheduled"):
                replies = getattr(inspect, kind)() or {}
                if set(replies) != set(names):
                    busy[f"{kind} (no reply)"] = sorted(set(names) - set(replies))
                busy.update({f"{kind} on {name}": tasks for name, tasks in replies.items() if tasks})
            queued = client.llen("celery")
            if queued:
                busy["queued"] = queued
            if not busy:
                return
            if time.monotonic() > deadline:
                pytest.fail(f"workers still busy after {timeout} s: {busy}")
            time.sleep(0.2)
    finally:
        client.close()


@pytest.fixture
def wait_until_idle(control_app: Celery, redis_url: str, workers: list[WorkerProcess]) -> Callable[[float], None]:
    """``wait_until_idle(timeout)``: see ``_wait_until_idle``."""
    return lambda timeout: _wait_until_idle(control_app, redis_url, workers, timeout)
