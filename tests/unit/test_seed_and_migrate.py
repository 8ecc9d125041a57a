"""The schema scripts on a SQLite file: initialize_warehouse_db (Alembic) and warehouse-seed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, func, select
from sqlalchemy.orm import InstrumentedAttribute

from warehouse.migrate import alembic_config
from warehouse.models import Base, Product, Shipment, Warehouse
from warehouse.scripts import initialize_db, seed

INI_TEMPLATE = """\
[app:main]
use = egg:warehouse
sqlalchemy.url = sqlite:///%(here)s/{database}
"""


def write_ini(directory: Path, database: str = "test.sqlite") -> Path:
    path = directory / "test.ini"
    path.write_text(INI_TEMPLATE.format(database=database))
    return path


@pytest.fixture
def ini_file(tmp_path: Path) -> Path:
    return write_ini(tmp_path)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'test.sqlite'}")
    yield engine
    engine.dispose()


def count(engine: Engine, column: InstrumentedAttribute[Any]) -> int:
    with engine.connect() as connection:
        return connection.scalar(select(func.count(column)))


def count_distinct(engine: Engine, column: InstrumentedAttribute[Any]) -> int:
    with engine.connect() as connection:
        return connection.scalar(select(func.count(column.distinct())))


def seed_demo(ini_file: Path) -> None:
    seed.main([str(ini_file), "--warehouse", "demo", "--products", "1234", "--shipments", "300"])


def test_initialize_db_twice_leaves_the_database_at_head(ini_file: Path, engine: Engine) -> None:
    assert initialize_db.main([str(ini_file)]) == 0
    assert initialize_db.main([str(ini_file)]) == 0

    head = ScriptDirectory.from_config(alembic_config({"sqlalchemy.url": str(engine.url)})).get_current_head()
    with engine.connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() == head


def test_every_migration_downgrades_and_upgrades_again(ini_file: Path, engine: Engine) -> None:
    from alembic import command

    config = alembic_config({"sqlalchemy.url": str(engine.url)})
    command.upgrade(config, "head")
    command.downgrade(config, "base")
    with engine.connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() is None
    command.upgrade(config, "head")
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []


def test_initialize_db_creates_the_directory_of_the_sqlite_file(tmp_path: Path) -> None:
    initialize_db.main([str(write_ini(tmp_path, database="data/nested/warehouse.sqlite"))])

    assert (tmp_path / "data" / "nested" / "warehouse.sqlite").is_file()


def test_migrated_sqlite_schema_matches_the_models(ini_file: Path, engine: Engine) -> None:
    initialize_db.main([str(ini_file)])

    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []


def test_seed_adds_products_and_shipments_with_a_third_due(ini_file: Path, engine: Engine) -> None:
    initialize_db.main([str(ini_file)])

    seed_demo(ini_file)

    assert count(engine, Warehouse.id) == 1
    assert count(engine, Product.id) == 1234
    assert count_distinct(engine, Product.sku) == 1234
    assert count(engine, Shipment.id) == 300
    today = dt.datetime.now(dt.timezone.utc).date()
    with engine.connect() as connection:
        due = connection.scalar(
            select(func.count()).where(Shipment.shipping_date.between(today, today + dt.timedelta(days=14)))
        )
        labelled = connection.scalar(select(func.count(Shipment.label_id)))
        valued = connection.scalar(select(func.count(Product.stock_value)))
    assert 0.25 <= due / 300 <= 0.42
    assert labelled == 0
    assert valued == 0


def test_seeding_again_appends_without_conflicts(ini_file: Path, engine: Engine) -> None:
    initialize_db.main([str(ini_file)])

    seed_demo(ini_file)
    seed_demo(ini_file)

    assert count(engine, Warehouse.id) == 1
    assert count(engine, Product.id) == count_distinct(engine, Product.sku) == 2468
    assert count(engine, Shipment.id) == count_distinct(engine, Shipment.reference) == 600
    with engine.connect() as connection:
        assert connection.scalar(select(func.max(Product.sku))) == "SKU-00002468"


def test_alembic_config_keeps_percent_encoded_urls_intact() -> None:
    url = "postgresql+psycopg://warehouse:p%40ss%25word@db:5432/warehouse"

    assert alembic_config({"sqlalchemy.url": url}).get_main_option("sqlalchemy.url") == url
