"""docker-compose.yml cannot run here (no Docker engine), so check what it says by parsing it."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def load_compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_has_the_services_of_the_design() -> None:
    services = load_compose()["services"]
    assert {"web", "worker", "beat", "redis", "postgres", "flower", "carrier"} <= set(services)
    assert "warehouse-carrier-stub" in services["carrier"]["command"]


def test_app_services_share_one_environment_built_from_production_ini() -> None:
    services = load_compose()["services"]
    for name in ("web", "worker", "beat"):
        environment = services[name]["environment"]
        assert environment["WAREHOUSE_INI"].endswith("production.ini")
        assert environment["DATABASE_URL"].startswith("postgresql+psycopg://")
        assert environment["REDIS_URL"].startswith("redis://redis:")


def test_worker_is_scalable_and_runs_the_tasks_app() -> None:
    worker = load_compose()["services"]["worker"]
    assert "celery -A tasks worker" in worker["command"]
    # --scale needs no fixed container name or published port
    assert "container_name" not in worker and "ports" not in worker


def test_web_migrates_before_serving_on_6543() -> None:
    web = load_compose()["services"]["web"]
    assert "initialize_warehouse_db production.ini" in web["command"]
    assert "6543:6543" in web["ports"]


def test_workers_send_the_task_events_flower_shows() -> None:
    services = load_compose()["services"]
    assert "flower" in services["flower"]["command"]
    assert "-E" in services["worker"]["command"].split()
