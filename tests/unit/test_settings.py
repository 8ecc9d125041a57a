"""Environment overrides apply only when the ini asks for them (production.ini), never otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from warehouse.settings import DEFAULT_CHUNK_SIZE, apply_environment, chunk_size, load_settings

BASE = {
    "sqlalchemy.url": "sqlite:///ini.sqlite",
    "celery.broker_url": "memory://",
    "celery.result_backend": "cache+memory://",
    "warehouse.tokens": "operator:from-ini",
}
ENVIRONMENT = {
    "DATABASE_URL": "postgresql+psycopg://db/warehouse",
    "REDIS_URL": "redis://redis:6379/0",
    "WAREHOUSE_CHUNK_SIZE": "250",
    "CARRIER_URL": "http://carrier:8081",
    "CARRIER_MAX_IN_FLIGHT": "50",
    "WAREHOUSE_TOKENS": "operator:from-env",
}


@pytest.mark.parametrize("flag", [None, "false", "no", "0", ""])
def test_environment_is_ignored_unless_overrides_are_enabled(flag: str | None) -> None:
    settings = dict(BASE) if flag is None else {**BASE, "warehouse.environment_overrides": flag}

    assert apply_environment(settings, ENVIRONMENT) == settings


@pytest.mark.parametrize("flag", ["true", "True", "yes", "1", "on"])
def test_environment_overrides_every_listed_setting_when_enabled(flag: str) -> None:
    settings = {**BASE, "warehouse.environment_overrides": flag}

    result = apply_environment(settings, ENVIRONMENT)

    assert result == {
        "warehouse.environment_overrides": flag,
        "sqlalchemy.url": "postgresql+psycopg://db/warehouse",
        "celery.broker_url": "redis://redis:6379/0",
        "celery.result_backend": "redis://redis:6379/0",
        "warehouse.chunk_size": "250",
        "warehouse.carrier_url": "http://carrier:8081",
        "warehouse.carrier_max_in_flight": "50",
        "warehouse.tokens": "operator:from-env",
    }


def test_the_first_variable_set_wins_and_empty_ones_do_not_count() -> None:
    settings = {**BASE, "warehouse.environment_overrides": "true"}
    environ = {"BROKER_URL": "redis://broker/1", "RESULT_BACKEND": "", "REDIS_URL": "redis://redis/2", "DATABASE_URL": ""}

    result = apply_environment(settings, environ)

    assert result["celery.broker_url"] == "redis://broker/1"
    assert result["celery.result_backend"] == "redis://redis/2"
    assert result["sqlalchemy.url"] == BASE["sqlalchemy.url"]
    assert result["warehouse.tokens"] == BASE["warehouse.tokens"]


def test_apply_environment_returns_a_copy() -> None:
    settings = {**BASE, "warehouse.environment_overrides": "true"}

    result = apply_environment(settings, ENVIRONMENT)

    assert result is not settings
    assert settings["sqlalchemy.url"] == BASE["sqlalchemy.url"]


def test_apply_environment_reads_the_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://from-os-environ/db")

    assert apply_environment({**BASE, "warehouse.environment_overrides": "true"})["sqlalchemy.url"] == (
        "postgresql+psycopg://from-os-environ/db"
    )
    assert apply_environment(BASE)["sqlalchemy.url"] == BASE["sqlalchemy.url"]


@pytest.mark.parametrize(("overrides", "applied"), [("true", True), ("false", False), (None, False)])
def test_load_settings_applies_overrides_only_when_the_ini_enables_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, overrides: str | None, applied: bool
) -> None:
    ini = tmp_path / "app.ini"
    flag = "" if overrides is None else f"warehouse.environment_overrides = {overrides}\n"
    ini.write_text(f"[app:main]\nuse = egg:warehouse\n{flag}sqlalchemy.url = sqlite:///%(here)s/app.sqlite\n")
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://env/db")

    settings = load_settings(str(ini))

    expected = "postgresql+psycopg://env/db" if applied else f"sqlite:///{tmp_path}/app.sqlite"
    assert settings["sqlalchemy.url"] == expected


def test_chunk_size_defaults_to_500_and_reads_the_setting() -> None:
    assert DEFAULT_CHUNK_SIZE == 500
    assert chunk_size({}) == 500
    assert chunk_size({"warehouse.chunk_size": "250"}) == 250
    assert chunk_size({"warehouse.chunk_size": 7}) == 7
