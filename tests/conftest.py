"""Fixtures shared by the unit and functional tests: the embedded app on a SQLite file.

One SQLite database, one Celery app and one embedded (in-process, thread-pool) worker serve the whole
test session: starting a worker is slow, and its thread never stops cleanly. Tests keep out of each
other's way by working on warehouses of their own (``db.add_warehouse()`` gives each a unique code)
rather than by emptying tables, so a run still finishing in the background can never lose its rows.

tests/integration has its own conftest.py (PostgreSQL, Redis, worker processes); its fixtures of the
same names (``settings``, ...) override these ones there. Every test under it is marked
``integration``; ``pytest`` runs everything, ``pytest --skip-integration`` (or ``-m "not integration"``)
leaves those out.
"""

from __future__ import annotations

import datetime as dt
import itertools
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pyramid.router import Router
from sqlalchemy import Engine, func, insert, select
from sqlalchemy.orm import Session, sessionmaker
from webtest import TestApp

OPERATOR_TOKEN = "op-token"
VIEWER_TOKEN = "viewer-token"
TERMINAL_RUN_STATUSES = frozenset({"succeeded", "partially_failed", "failed", "cancelled"})
RUN_TIMEOUT = 30.0

INTEGRATION_DIR = Path(__file__).parent / "integration"


# --- the integration marker and option -----------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("warehouse").addoption(
        "--skip-integration",
        action="store_true",
        default=False,
        help="leave out the tests marked 'integration' (real PostgreSQL, Redis and worker processes); "
        "by default every test runs",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "integration: needs real PostgreSQL, Redis and worker processes (every test in tests/integration)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION_DIR in item.path.parents:
            item.add_marker(pytest.mark.integration)
    if not config.getoption("--skip-integration"):
        return
    kept = [item for item in items if item.get_closest_marker("integration") is None]
    left_out = [item for item in items if item.get_closest_marker("integration") is not None]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = kept


# --- settings and the database -------------------------------------------------------------------


def make_settings(database: Path, **overrides: Any) -> dict[str, Any]:
    """Settings of the embedded mode on the SQLite file ``database``, as development.ini has them."""
    settings: dict[str, Any] = {
        "sqlalchemy.url": f"sqlite:///{database}",
        "celery.broker_url": "memory://",
        "celery.result_backend": "embedded://",
        "celery.embedded_worker": "true",
        "celery.embedded_concurrency": "4",
        "celery.worker_prefetch_multiplier": "8",
        "celery.broker_transport_options": '{"polling_interval": 0.05}',
        "warehouse.tokens": f"operator:{OPERATOR_TOKEN} viewer:{VIEWER_TOKEN}",
        # Tests write runs straight into the ledger, in states a sweep would act on (quiet, pending
        # chunks): the session's embedded worker must not. The sweep has tests of its own
        # (tests/unit/test_sweep.py, and the fleet tests on real workers).
        "warehouse.worker_sweep": "false",
        # Webhook receivers must be public addresses, as in production: the tests that deliver swap
        # the sending for a fake receiver (tests/functional/test_webhooks.py).
        "warehouse.webhooks_allow_private_addresses": "false",
    }
    settings.update(overrides)
    return settings


@pytest.fixture(name="make_settings", scope="session")
def make_settings_fixture() -> Callable[..., dict[str, Any]]:
    """``make_settings(database_path, **overrides)``: embedded-mode settings for another SQLite file."""
    return make_settings


@pytest.fixture(scope="session")
def database_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("db") / "test.sqlite"


class CarrierAtHand:
    """The carrier stub served by waitress on a thread of this process: its URL, and its state to
    read counters from and reconfigure."""

    def __init__(self, url: str, stub: Any) -> None:
        self.url = url
        self.stub = stub

    def stats(self) -> dict[str, int]:
        return self.stub.state.stats()


@pytest.fixture(scope="session")
def carrier() -> Iterator[CarrierAtHand]:
    """The stand-in carrier for the session's shipping_labels runs, over real HTTP on a free port."""
    import waitress

    from warehouse.carrier.stub import StubConfig, make_app

    stub = make_app(StubConfig(latency_ms=5))
    server = waitress.create_server(stub, host="127.0.0.1", port=0, threads=16)
    thread = threading.Thread(target=server.run, name="carrier-stub", daemon=True)
    thread.start()
    try:
        yield CarrierAtHand(f"http://127.0.0.1:{server.effective_port}", stub)
    finally:
        server.close()


@pytest.fixture(scope="session")
def settings(database_path: Path, carrier: CarrierAtHand) -> dict[str, Any]:
    """The session's settings, with its SQLite database migrated to head."""
    from warehouse.migrate import upgrade

    settings = make_settings(
        database_path, **{"warehouse.carrier_url": carrier.url, "warehouse.carrier_max_in_flight": "8"}
    )
    upgrade(settings)
    return settings


@pytest.fixture(scope="session")
def engine(settings: dict[str, Any]) -> Iterator[Engine]:
    from warehouse.db import make_engine

    engine = make_engine(settings)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def session_factory(engine: Engine) -> sessionmaker[Session]:
    from warehouse.db import make_session_factory

    return make_session_factory(engine)


_codes = itertools.count(1)


class Database:
    """Direct access to the test database, one short transaction per call.

    Never keep a transaction open while a run is in flight: on SQLite every transaction takes the
    write lock at BEGIN (``warehouse.db``), so an open one stalls the worker until it ends.
    """

    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self.session_factory = session_factory

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in a transaction, committed when the block ends (rolled back if it raises)."""
        with self.session_factory.begin() as session:
            yield session

    def scalar(self, statement: Any) -> Any:
        with self.session() as session:
            return session.scalar(statement)

    def scalars(self, statement: Any) -> list[Any]:
        with self.session() as session:
            return list(session.scalars(statement))

    def rows(self, statement: Any) -> list[Any]:
        with self.session() as session:
            return list(session.execute(statement))

    def execute(self, statement: Any, parameters: Any = None) -> None:
        with self.session() as session:
            session.execute(statement, parameters)

    def row_counts(self) -> dict[str, int]:
        """Rows in every table: to check that a refused request wrote nothing."""
        from warehouse.models import Base

        with self.session() as session:
            return {
                table.name: session.scalar(select(func.count()).select_from(table))
                for table in Base.metadata.sorted_tables
            }

    def add_warehouse(self, code: str | None = None, name: str = "Test warehouse") -> Any:
        """A new warehouse with a code no other test uses (unless ``code`` is given)."""
        from warehouse.models import Warehouse

        code = code or f"w{next(_codes)}-{uuid.uuid4().hex[:8]}"
        with self.session() as session:
            warehouse = Warehouse(code=code, name=name)
            session.add(warehouse)
            session.flush()
            session.refresh(warehouse)
        return warehouse

    def add_products(
        self,
        warehouse_id: int,
        count: int,
        ids: Sequence[int] | None = None,
        values: Callable[[int], Mapping[str, Any]] | None = None,
    ) -> list[int]:
        """Insert ``count`` products (with explicit ``ids`` if given); their ids in ascending order.

        ``values(i)`` gives the i-th product's qty_on_hand, unit_cost and reorder_point; the default
        mixes products below, at and above their reorder point, and costs with cents.
        """
        from warehouse.models import Product

        if ids is not None:
            assert len(ids) == count
        values = values or product_values
        batch = uuid.uuid4().hex[:8]
        rows = []
        for i in range(count):
            row = {"warehouse_id": warehouse_id, "sku": f"SKU-{batch}-{i:06d}", **values(i)}
            if ids is not None:
                row["id"] = ids[i]
            rows.append(row)
        return self._insert_batch(Product, Product.sku, warehouse_id, f"SKU-{batch}-", rows)

    def add_shipments(self, warehouse_id: int, days_ahead: Sequence[int], **values: Any) -> list[int]:
        """One shipment per entry of ``days_ahead`` (its shipping date, in days from today in UTC, as
        runs count them), with ``values`` for every one; their ids in ascending order."""
        from warehouse.models import Shipment

        today = dt.datetime.now(dt.timezone.utc).date()
        batch = uuid.uuid4().hex[:8]
        rows = [
            {
                "warehouse_id": warehouse_id,
                # References unique across the session: the session's one stub counts purchases by them.
                "reference": f"SHP-{batch}-{i:05d}",
                "ship_to": f"{i} Test Street, Testville",
                "weight_grams": 500 + i,
                "shipping_date": today + dt.timedelta(days=days),
                **values,
            }
            for i, days in enumerate(days_ahead)
        ]
        return self._insert_batch(Shipment, Shipment.reference, warehouse_id, f"SHP-{batch}-", rows)

    def _insert_batch(self, model: Any, key: Any, warehouse_id: int, prefix: str, rows: list[dict[str, Any]]) -> list[int]:
        """Insert ``rows`` (whose keys all start with ``prefix``); their ids in ascending order."""
        with self.session() as session:
            if rows:
                session.execute(insert(model), rows)
            return list(
                session.scalars(
                    select(model.id).where(model.warehouse_id == warehouse_id, key.like(f"{prefix}%")).order_by(model.id)
                )
            )

    def max_product_id(self) -> int:
        from warehouse.models import Product

        return self.scalar(select(func.coalesce(func.max(Product.id), 0)))


def product_values(i: int) -> dict[str, Any]:
    return {
        "qty_on_hand": (i * 7) % 60,
        "unit_cost": Decimal((i * 37) % 10_000) / 100,
        "reorder_point": (i * 3) % 40,
    }


@pytest.fixture
def db(session_factory: sessionmaker[Session]) -> Database:
    return Database(session_factory)


@pytest.fixture
def dbsession(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    """A plain session for ledger-level tests; rolled back at the end unless the test committed.

    Keep it out of tests that wait for the worker (see ``Database``).
    """
    session = session_factory()
    yield session
    session.rollback()
    session.close()


# --- the app, its Celery app and the embedded worker ----------------------------------------------


@pytest.fixture(scope="session")
def celery_app(settings: dict[str, Any]) -> Any:
    from tasks.app import make_celery

    return make_celery(settings)


@pytest.fixture(scope="session")
def wsgi_app(settings: dict[str, Any], celery_app: Any) -> Iterator[Router]:
    """The WSGI app, which starts the session's one embedded worker on ``celery_app``."""
    import warehouse

    app = warehouse.main({}, celery_app=celery_app, **settings)
    yield app
    worker = app.registry.get("embedded_worker")
    if worker is not None:
        # A thread-pool WorkController does not always return from stop(): try, but don't wait on it.
        from tasks.embedded import stop_embedded_worker

        stopper = threading.Thread(target=stop_embedded_worker, args=(worker,), daemon=True)
        stopper.start()
        stopper.join(timeout=5)


@pytest.fixture
def testapp(wsgi_app: Router) -> TestApp:
    return TestApp(wsgi_app)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def operator() -> dict[str, str]:
    """Headers of a request with the operator's token."""
    return bearer(OPERATOR_TOKEN)


@pytest.fixture
def viewer() -> dict[str, str]:
    """Headers of a request with the viewer's token."""
    return bearer(VIEWER_TOKEN)


def wait_for_run(testapp: TestApp, run_id: int, timeout: float = RUN_TIMEOUT) -> dict[str, Any]:
    """Poll ``GET /api/runs/{id}`` until the run reaches a terminal status; its JSON then.

    Fails the test (with the run's last state) if that takes longer than ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        run = testapp.get(f"/api/runs/{run_id}", headers=bearer(VIEWER_TOKEN), status=200).json
        if run["status"] in TERMINAL_RUN_STATUSES:
            return run
        if time.monotonic() > deadline:
            pytest.fail(f"run {run_id} did not end within {timeout} s: {run}")
        time.sleep(0.05)


@pytest.fixture(name="wait_for_run")
def wait_for_run_fixture() -> Callable[..., dict[str, Any]]:
    """``wait_for_run(testapp, run_id, timeout=30)``: see ``wait_for_run``."""
    return wait_for_run
