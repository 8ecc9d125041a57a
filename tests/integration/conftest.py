"""Integration fixtures: real PostgreSQL, real Redis and real ``celery worker`` processes.

Each test session gets a throwaway PostgreSQL database and a Redis database number of its own, writes
an ini file naming exactly those (environment overrides off, so a stray DATABASE_URL or REDIS_URL in the
shell changes nothing), and starts worker processes with ``WAREHOUSE_INI`` pointing at it. The web app
is built in-process from the same ini, so a run POSTed through WebTest goes to the real broker after
its transaction commits, exactly as in production.

The session's two workers (``workers``: w1, w2) are shared by tests that only start runs. A test that
kills a worker or restarts a service does so on a ``Lane`` of its own (``make_lane``): its own queue,
ini, web app and workers, all stopped when it ends, so that the order of tests never matters.
The ini registers the probes of ``probe_operations.py`` (``slow_valuation``) and makes retries quick.

When PostgreSQL or Redis cannot be reached (nor started), the tests are skipped, except under CI=true,
where they fail: CI must never go green by skipping them.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
import pytest
import redis
from celery import Celery
from pyramid.paster import get_appsettings
from sqlalchemy import Engine
from webtest import TestApp

from tasks.app import runs_queue_name
from warehouse import scratch

REPO_ROOT = Path(__file__).resolve().parents[2]
# ``warehouse.extra_operations`` names the tests' probes as tests.integration.probe_operations, which the
# web apps built in this process resolve too: the repository root must be importable, however pytest
# was started (``python -m pytest`` puts it on the path, the ``pytest`` script does not).
if str(REPO_ROOT) not in sys.path:
    sys.path.append(str(REPO_ROOT))

PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
SERVICE_START_TIMEOUT = 30.0
WORKER_READY_TIMEOUT = 60.0
WORKER_STOP_TIMEOUT = 20.0
LOG_TAIL_LINES = 300

OPERATOR_TOKEN = "op-token"
VIEWER_TOKEN = "viewer-token"

PG_CTLCLUSTER = ["pg_ctlcluster", "--skip-systemctl-redirect", "15", "main"]
START_POSTGRES = [*PG_CTLCLUSTER, "start"]
# Fast shutdown: every client connection is terminated at once, as when the server crashes or fails over.
STOP_POSTGRES = [*PG_CTLCLUSTER, "stop", "-m", "fast"]
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

celery.broker_url = {broker_url}
celery.result_backend = {redis_url}
celery.broker_transport_options = {{"visibility_timeout": 14400}}
celery.worker_prefetch_multiplier = 1

warehouse.chunk_size = 500
warehouse.tokens = operator:{operator_token} viewer:{viewer_token}
{tunable_settings}
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
class = {log_formatter}
format = %(asctime)s %(levelname)-5.5s [%(name)s][%(threadName)s] %(message)s
"""


# Taken while this module is being imported: every conftest is imported under the name "conftest",
# so sys.modules[__name__] names whichever was imported last by the time a fixture runs.
_THIS_MODULE = sys.modules[__name__]


@pytest.fixture(scope="session")
def harness() -> ModuleType:
    """This conftest as pytest loaded it, for test modules that need its helpers (``write_ini``,
    ``WorkerStarter``, ``Api``, ...): one copy of them, so that failure reports carry every worker's log."""
    return _THIS_MODULE


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


# Every session holds this file's shared lock while it uses the PostgreSQL cluster; a test that stops
# the cluster holds the exclusive lock, so it never cuts off another session's tests (another
# checkout's, or a second run on the same machine), and no session starts while the cluster is down.
POSTGRES_LOCK_PATH = Path(tempfile.gettempdir()) / "warehouse-integration-postgresql.lock"
# How long a test that would stop the cluster waits for the other sessions to finish.
POSTGRES_ALONE_WAIT = 60.0


class PostgresqlLock:
    def __init__(self, path: Path) -> None:
        self.file = path.open("a")
        fcntl.flock(self.file, fcntl.LOCK_SH)

    def try_alone(self, wait: float) -> bool:
        """Trade the shared lock for the exclusive one, within ``wait`` seconds; False (holding the
        shared lock again) if other sessions still use the cluster by then."""
        # flock cannot upgrade atomically: let go of the shared lock, then ask for the exclusive one.
        fcntl.flock(self.file, fcntl.LOCK_UN)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() > deadline:
                    fcntl.flock(self.file, fcntl.LOCK_SH)
                    return False
                time.sleep(0.2)

    def share(self) -> None:
        fcntl.flock(self.file, fcntl.LOCK_SH)

    def close(self) -> None:
        self.file.close()  # releases the lock


@pytest.fixture(scope="session")
def postgresql_lock(services: None) -> Iterator[PostgresqlLock]:
    lock = PostgresqlLock(POSTGRES_LOCK_PATH)
    try:
        yield lock
    finally:
        lock.close()


@pytest.fixture(scope="session")
def database_url(services: None, postgresql_lock: PostgresqlLock) -> Iterator[str]:
    with scratch.throwaway_database(PG_HOST, PG_PORT, PG_USER, "warehouse_it") as url:
        yield url


@contextmanager
def claimed_redis_url(who: str, token: str | None = None, avoid: int | None = None) -> Iterator[str]:
    """A Redis DB number in 1..15 that was empty, claimed for ``who`` (``warehouse.scratch``) and
    flushed at the end; the test fails if none is free."""
    with ExitStack() as stack:
        try:
            url = stack.enter_context(
                scratch.claimed_redis_db(REDIS_HOST, REDIS_PORT, token or scratch.claim_token(who), avoid=avoid)
            )
        except LookupError as error:
            pytest.fail(f"{error} for {who}", pytrace=False)
        yield url


@pytest.fixture(scope="session")
def redis_url(services: None) -> Iterator[str]:
    """A Redis DB number of the session's own, for broker and result backend; flushed at the end."""
    with claimed_redis_url("the integration tests") as url:
        yield url


# Settings of the ini that a test may change (``write_ini``'s ``extra_settings``), with their defaults.
TUNABLE_SETTINGS = {
    # Retries wait between half and all of 1, 2, 4, 8, 16 s: quick enough for a test to sit through.
    "warehouse.retry_backoff_seconds": "1",
    # The tests' probes (tests/integration/probe_operations.py): slow_valuation, picky_valuation.
    "warehouse.extra_operations": (
        "tests.integration.probe_operations:SlowValuation tests.integration.probe_operations:PickyValuation"
    ),
    "warehouse.test.chunk_delay_seconds": "0.2",
    # Tests of shipping_labels point these at a stub of their own (tests/integration/test_labels_on_workers.py).
    "warehouse.carrier_url": "http://127.0.0.1:8081",
    "warehouse.carrier_max_in_flight": "100",
    # Webhook receivers of the tests listen on loopback (tests/integration/webhook_receiver.py); the
    # test of the refusal at send time turns this off for its lane.
    "warehouse.webhooks_allow_private_addresses": "true",
}


def write_ini(
    path: Path,
    database_url: str,
    redis_url: str,
    extra_settings: dict[str, str] | None = None,
    broker_url: str | None = None,
    log_formatter: str = "logging.Formatter",
) -> Path:
    """Write the integration ini to ``path``, with ``extra_settings`` added to ``TUNABLE_SETTINGS``
    (an ini section cannot name a setting twice, so the template's fixed settings cannot be changed).
    The broker is ``redis_url`` too unless ``broker_url`` names another (RabbitMQ). Lines are plain
    text unless ``log_formatter`` names another class (``warehouse.logs.JsonFormatter``)."""
    tunable = {**TUNABLE_SETTINGS, **(extra_settings or {})}
    path.write_text(
        INI_TEMPLATE.format(
            database_url=database_url,
            redis_url=redis_url,
            broker_url=broker_url or redis_url,
            operator_token=OPERATOR_TOKEN,
            viewer_token=VIEWER_TOKEN,
            log_formatter=log_formatter,
            tunable_settings="".join(f"{key} = {value}\n" for key, value in tunable.items()),
        )
    )
    return path


@pytest.fixture(scope="session")
def ini_file(tmp_path_factory: pytest.TempPathFactory, database_url: str, redis_url: str) -> Path:
    return write_ini(tmp_path_factory.mktemp("integration") / "integration.ini", database_url, redis_url)


def load_ini_settings(ini_file: Path) -> dict[str, Any]:
    return dict(get_appsettings(str(ini_file), name="main"))


def open_ini(ini_file: Path, resources: ExitStack) -> tuple[dict[str, Any], Engine, Celery]:
    """What a test stage of its own needs of its ini: the settings, with the database migrated to
    head; an engine on that database; a Celery app to ping its workers. Closed with ``resources``."""
    from tasks.app import make_celery
    from warehouse.db import make_engine
    from warehouse.migrate import upgrade

    settings = load_ini_settings(ini_file)
    upgrade(settings)
    engine = make_engine(settings)
    resources.callback(engine.dispose)
    control_app = make_celery(settings)
    resources.callback(control_app.close)
    return settings, engine, control_app


@pytest.fixture(scope="session")
def settings(ini_file: Path) -> dict[str, Any]:
    """The ini's ``[app:main]`` settings, with the throwaway database migrated to head."""
    from warehouse.migrate import upgrade

    settings = load_ini_settings(ini_file)
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

    def terminate(self) -> None:
        """Ask for a warm shutdown (SIGTERM) without waiting for it."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        """SIGTERM (warm shutdown), then SIGKILL the whole process group if it does not end in time."""
        try:
            self.terminate()
            try:
                self.process.wait(timeout=WORKER_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
            self.kill()
        finally:
            if self._log_file is not None:
                self._log_file.close()

    def kill(self) -> None:
        """SIGKILL the worker and its pool children at once, as when its node dies, and reap it."""
        # The pool children are in the worker's own process group (start_new_session): nothing of
        # it may outlive the test, whether the parent ended cleanly or not.
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.process.wait(timeout=WORKER_STOP_TIMEOUT)


# Workers alive now, so a failing test's report can carry their logs.
_running_workers: list[WorkerProcess] = []


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now, for a server a test starts."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _worker_environment(ini_file: Path) -> dict[str, str]:
    # The repository root on the path, so that ``warehouse.extra_operations`` can name the tests' probes
    # (tests.integration.probe_operations) whatever the worker's working directory.
    pythonpath = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    return dict(os.environ, WAREHOUSE_INI=str(ini_file), PYTHONUNBUFFERED="1", PYTHONPATH=pythonpath)


def _start_worker(
    name: str,
    ini_file: Path,
    log_dir: Path,
    queues: list[str] | None = None,
    concurrency: int = 2,
    host_prefix: list[str] | None = None,
    extra_args: list[str] | None = None,
) -> WorkerProcess:
    """A ``celery worker`` node; ``host_prefix`` runs it elsewhere (``ip netns exec NODE``);
    ``extra_args`` are more options of ``celery worker``."""
    log_path = log_dir / f"{name}.log"
    log_file = log_path.open("wb")
    command = [
        *(host_prefix or []),
        sys.executable, "-m", "celery", "-A", "tasks", "worker", "--loglevel=INFO", f"--concurrency={concurrency}",
        "--pool=prefork", "-n", f"{name}@%h", "--without-mingle", "--without-gossip",
    ]
    if queues:  # each with its run-level companion (tasks/app.py), as a worker without -Q reads both
        command += ["-Q", ",".join([*queues, *map(runs_queue_name, queues)])]
    command += extra_args or []
    process = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=_worker_environment(ini_file),
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=scratch.parent_death_signal(),
    )
    return WorkerProcess(f"{name}@{socket.gethostname()}", process, log_path, log_file)


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


class WorkerStarter:
    """Starts worker processes, waits until each answers a ping, and stops every one of them at the end."""

    def __init__(self, control_app: Celery, default_ini: Path, log_dir: Path) -> None:
        self.control_app = control_app
        self.default_ini = default_ini
        self.log_dir = log_dir
        self.started: list[WorkerProcess] = []

    def __call__(
        self,
        names: list[str],
        ini_file: Path | None = None,
        queues: list[str] | None = None,
        concurrency: int = 2,
        host_prefixes: dict[str, list[str]] | None = None,
        extra_args: dict[str, list[str]] | None = None,
        control_app: Celery | None = None,
    ) -> list[WorkerProcess]:
        """Start workers with these node names (``w3`` becomes ``w3@host``) on ``ini_file`` (the
        session's by default), consuming ``queues`` (the ini's default queue if None); a name in
        ``host_prefixes`` runs behind that prefix, one in ``extra_args`` gets those options too (see
        ``_start_worker``)."""
        batch = []
        try:
            for name in names:
                prefix = (host_prefixes or {}).get(name)
                worker = _start_worker(
                    name, ini_file or self.default_ini, self.log_dir, queues, concurrency, prefix,
                    (extra_args or {}).get(name),
                )
                batch.append(worker)
                self.started.append(worker)
                _running_workers.append(worker)
            _wait_until_ready(control_app or self.control_app, batch)
        except BaseException:
            # Startup failed: say where the logs are; stop_all() still stops everything.
            print(f"worker logs in {self.log_dir}", file=sys.stderr)
            raise
        return batch

    def stop_all(self) -> None:
        for worker in self.started:  # all shut down together, not one after the other
            worker.terminate()
        for worker in reversed(self.started):
            try:
                worker.stop()
            finally:
                if worker in _running_workers:
                    _running_workers.remove(worker)
        self.started.clear()


@pytest.fixture(scope="session")
def workers(
    ini_file: Path, settings: dict[str, Any], control_app: Celery, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[WorkerProcess]]:
    """Two worker processes, w1 and w2, of two pool children each, shared by the session's tests.

    Tests must not stop or kill them (nor the services under them): those that do use workers of
    their own (``start_workers``), usually on a queue of their own (``make_lane``).
    """
    starter = WorkerStarter(control_app, ini_file, tmp_path_factory.mktemp("worker-logs"))
    try:
        yield starter(["w1", "w2"])
    finally:
        starter.stop_all()


@pytest.fixture
def start_workers(
    ini_file: Path, settings: dict[str, Any], control_app: Celery, tmp_path: Path
) -> Iterator[WorkerStarter]:
    """``start_workers(["w3"], ini_file=..., queues=[...], concurrency=2)``: workers of this test's own,
    stopped (SIGTERM, then SIGKILL of their process groups) when the test ends, however it ends."""
    log_dir = tmp_path / "worker-logs"
    log_dir.mkdir()
    starter = WorkerStarter(control_app, ini_file, log_dir)
    try:
        yield starter
    finally:
        starter.stop_all()


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


@contextmanager
def _web_app(settings: dict[str, Any]) -> Iterator[TestApp]:
    """The WSGI app in-process, built from ``settings``; it sends tasks to their Redis."""
    from warehouse import main

    app = main({}, **settings)
    try:
        yield TestApp(app)
    finally:
        app.registry["celery_app"].close()
        app.registry["dbsession_factory"].kw["bind"].dispose()


@pytest.fixture(scope="session")
def webapp(settings: dict[str, Any]) -> Iterator[TestApp]:
    """The WSGI app in-process, built from the ini's settings; it sends tasks to the session's Redis."""
    with _web_app(settings) as app:
        yield app


TERMINAL_STATUSES = frozenset({"succeeded", "partially_failed", "failed", "cancelled"})
# processFinished waits 5 s between checks while chunks are unfinished; three times that is plenty.
FINALISE_GRACE = 15.0


class Api:
    """The runs API through WebTest, as an operator starts runs and a viewer polls them."""

    operator = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    viewer = {"Authorization": f"Bearer {VIEWER_TOKEN}"}

    def __init__(self, app: TestApp) -> None:
        self.app = app
        self.started_run_ids: list[int] = []

    def start_run(self, code: str, operation: str, **options: Any) -> dict[str, Any]:
        response = self.app.post_json(
            f"/api/warehouses/{code}/runs", {"operation": operation, **options}, headers=self.operator, status=202
        )
        self.started_run_ids.append(response.json["id"])
        return response.json

    def run(self, run_id: int) -> dict[str, Any]:
        return self.app.get(f"/api/runs/{run_id}", headers=self.viewer, status=200).json

    def wait_for(
        self,
        run_id: int,
        until: Callable[[dict[str, Any]], bool],
        timeout: float,
        what: str = "the condition",
        tolerate_errors: bool = False,
    ) -> dict[str, Any]:
        """Poll the run until ``until(run)`` holds; fail after ``timeout`` seconds, at a terminal status
        that does not satisfy it (nothing changes after that), or when every chunk has ended but the
        run stays unfinalised for FINALISE_GRACE seconds (processFinished failed or never came).

        ``tolerate_errors``: a poll that fails (an error answer, or an exception while the database is
        down) is tried again until the timeout, instead of failing the test at once.
        """
        deadline = time.monotonic() + timeout
        chunks_ended_at = None
        last_error = None
        while True:
            try:
                run = self.run(run_id)
            except Exception as error:  # noqa: BLE001 - whatever a poll fails with, poll again
                if not tolerate_errors:
                    raise
                last_error = error
                if time.monotonic() > deadline:
                    pytest.fail(f"run {run_id}: no {what} within {timeout} s; the last poll failed: {error!r}")
                time.sleep(0.2)
                continue
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
                pytest.fail(f"run {run_id}: no {what} within {timeout} s: {run} (last poll error: {last_error!r})")
            time.sleep(0.1)

    def wait_until_finished(self, run_id: int, timeout: float, tolerate_errors: bool = False) -> dict[str, Any]:
        return self.wait_for(
            run_id, lambda run: run["status"] in TERMINAL_STATUSES, timeout, "terminal status", tolerate_errors
        )


@pytest.fixture(scope="session")
def api(webapp: TestApp) -> Api:
    return Api(webapp)


DEFAULT_QUEUE = "celery"


def queued_messages(client: redis.Redis, queue: str) -> int:
    """Messages waiting in ``queue`` and in its run-level companion (tasks/app.py) on Redis."""
    return client.llen(queue) + client.llen(runs_queue_name(queue))


def _wait_until_idle(
    control_app: Celery, redis_url: str, workers: list[WorkerProcess], timeout: float, queue: str = DEFAULT_QUEUE
) -> None:
    """Wait until no task is queued (on ``queue``), reserved, running or scheduled (a retry with a
    countdown) on any of ``workers``.

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
            queued = queued_messages(client, queue)
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


# --- lanes: a queue, an ini, a web app and workers of one test's own -------------------------------


@dataclass
class Lane:
    """What a test that kills or restarts things runs on, so that the session's w1 and w2 never see
    its tasks: a database of its own (every worker sweeps its database for the chunks of dead
    workers, and must find only its own fleet's there), a queue of its own
    (``celery.task_default_queue``, so chunks, retries and the chord's callback all stay on it), its
    own ini (the session's Redis DB), web app and workers."""

    queue: str
    ini_file: Path
    settings: dict[str, Any]
    api: Api
    workers: list[WorkerProcess]
    control_app: Celery
    redis_url: str
    engine: Engine

    def wait_until_idle(self, timeout: float) -> None:
        _wait_until_idle(self.control_app, self.redis_url, self.workers, timeout, queue=self.queue)


@pytest.fixture
def make_lane(
    redis_url: str,
    settings: dict[str, Any],
    control_app: Celery,
    start_workers: WorkerStarter,
    postgresql_lock: PostgresqlLock,
    tmp_path: Path,
) -> Iterator[Callable[..., Lane]]:
    """``make_lane(name, workers=["r1"], concurrency=2, settings={...}, worker_args=[...])``: a ``Lane``
    for this test, with ``settings`` added to its ini and ``worker_args`` to each worker's command line.
    When the test ends its workers are stopped, its queue is deleted and its database dropped."""
    from warehouse.db import make_engine
    from warehouse.migrate import upgrade

    resources = ExitStack()
    queues: list[str] = []

    def make(
        name: str,
        workers: list[str],
        concurrency: int = 2,
        settings: dict[str, str] | None = None,
        broker_url: str | None = None,
        worker_args: list[str] | None = None,
        log_formatter: str = "logging.Formatter",
    ) -> Lane:
        queue = f"q_{name}_{secrets.token_hex(3)}"
        queues.append(queue)
        database_url = resources.enter_context(scratch.throwaway_database(PG_HOST, PG_PORT, PG_USER, "warehouse_lane"))
        ini = write_ini(
            tmp_path / f"{name}.ini",
            database_url,
            redis_url,
            {"celery.task_default_queue": queue, **(settings or {})},
            broker_url=broker_url,
            log_formatter=log_formatter,
        )
        lane_settings = load_ini_settings(ini)
        upgrade(lane_settings)
        engine = make_engine(lane_settings)
        resources.callback(engine.dispose)
        api = Api(resources.enter_context(_web_app(lane_settings)))
        lane_control = control_app
        if broker_url:  # workers on another broker answer pings there
            from tasks.app import make_celery

            lane_control = make_celery(lane_settings)
            resources.callback(lane_control.close)
        started = start_workers(
            workers, ini_file=ini, queues=[queue], concurrency=concurrency, control_app=lane_control,
            extra_args={worker: worker_args for worker in workers} if worker_args else None,
        )
        return Lane(queue, ini, lane_settings, api, started, lane_control, redis_url, engine)

    try:
        yield make
    finally:
        # Workers first (start_workers' own teardown runs after this one): stop them before their
        # database is dropped under them.
        start_workers.stop_all()
        resources.close()
        client = redis.Redis.from_url(redis_url)
        try:
            if queues:
                client.delete(*queues, *map(runs_queue_name, queues))
        finally:
            client.close()


# --- RabbitMQ -------------------------------------------------------------------------------------

RABBITMQ_HOST, RABBITMQ_PORT = "127.0.0.1", 5672
START_RABBITMQ = ["rabbitmq-server", "-detached"]


def _rabbitmq_error() -> str | None:
    from kombu import Connection

    try:
        with Connection(f"amqp://guest:guest@{RABBITMQ_HOST}:{RABBITMQ_PORT}//", connect_timeout=2) as connection:
            connection.ensure_connection(max_retries=1)
        return None
    except Exception as error:  # noqa: BLE001
        return f"{type(error).__name__}: {error}".strip()


def _rabbitmqctl(*args: str) -> None:
    done = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"`rabbitmqctl {' '.join(args)}` exited {done.returncode}: {done.stderr.strip()}")


@pytest.fixture(scope="session")
def rabbitmq_url() -> Iterator[str]:
    """The machine's RabbitMQ, on a vhost of this session's own (deleted at the end, queues and all)."""
    problem = _ensure_service(f"RabbitMQ at {RABBITMQ_HOST}:{RABBITMQ_PORT}", _rabbitmq_error, START_RABBITMQ)
    if problem:
        _unavailable(problem)
    vhost = f"warehouse_it_{secrets.token_hex(4)}"
    _rabbitmqctl("add_vhost", vhost)
    try:
        _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield f"amqp://guest:guest@{RABBITMQ_HOST}:{RABBITMQ_PORT}/{vhost}"
    finally:
        _rabbitmqctl("delete_vhost", vhost)


# --- PostgreSQL going away -------------------------------------------------------------------------


@contextmanager
def _postgresql_stopped() -> Iterator[None]:
    """Stop the PostgreSQL cluster with a fast shutdown (every connection is cut at once) for the
    block; start it again however the block ends, and wait until it answers."""
    stopped = subprocess.run(STOP_POSTGRES, capture_output=True, text=True, timeout=SERVICE_START_TIMEOUT)
    if stopped.returncode != 0:
        raise RuntimeError(f"`{' '.join(STOP_POSTGRES)}` exited {stopped.returncode}: {stopped.stdout}{stopped.stderr}")
    try:
        yield
    finally:
        attempt = _try_to_start(START_POSTGRES)
        deadline = time.monotonic() + SERVICE_START_TIMEOUT
        while (error := _postgres_error()) is not None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not come back ({error}); tried {attempt}")
            time.sleep(0.2)


@pytest.fixture
def postgresql_stopped(database_url: str, postgresql_lock: PostgresqlLock) -> Iterator[Callable[[], Any]]:
    """``with postgresql_stopped(): ...``: the whole cluster is down inside the block.

    Stopping it stops every database of the cluster, so the test waits (set-up, before anything else
    of it runs) until no other test session uses the cluster, and keeps others from starting until
    it ends; it is skipped if they do not finish in POSTGRES_ALONE_WAIT seconds (under CI=true it
    fails instead: CI must never go green by skipping).
    """
    if not postgresql_lock.try_alone(POSTGRES_ALONE_WAIT):
        reason = (
            f"another integration test session still uses PostgreSQL after {POSTGRES_ALONE_WAIT:.0f} s"
            f" (it holds {POSTGRES_LOCK_PATH}); stopping the cluster would break its tests"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true, so not skipping: {reason}", pytrace=False)
        pytest.skip(reason)
    try:
        yield _postgresql_stopped
    finally:
        postgresql_lock.share()
