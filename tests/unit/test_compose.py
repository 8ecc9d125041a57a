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


def test_flower_runs_from_the_image_behind_a_password() -> None:
    flower = load_compose()["services"]["flower"]
    # The Dockerfile installs the flower extra: nothing is installed when the container starts.
    assert flower["command"].startswith("celery -A tasks flower") and "pip" not in flower["command"]
    assert flower["environment"]["FLOWER_BASIC_AUTH"]
    assert "'.[flower]'" in (ROOT / "Dockerfile").read_text()


def load_prometheus_config(services: dict) -> dict:
    """The Prometheus config file the compose service mounts, at the path its command names."""
    prometheus = services["prometheus"]
    mounted = dict(volume.removesuffix(":ro").split(":", 1)[::-1] for volume in prometheus["volumes"])
    (config_path,) = [arg.split("=", 1)[1] for arg in prometheus["command"] if arg.startswith("--config.file=")]
    return yaml.safe_load((ROOT / mounted[config_path]).read_text())


def test_prometheus_scrapes_the_web_app_and_every_worker_replica() -> None:
    services = load_compose()["services"]
    assert services["prometheus"]["image"].startswith("prom/prometheus:")
    jobs = {job["job_name"]: job for job in load_prometheus_config(services)["scrape_configs"]}

    web = jobs["warehouse-web"]
    assert web["metrics_path"] == "/metrics"
    (target,) = [target for config in web["static_configs"] for target in config["targets"]]
    host, port = target.split(":")
    assert host in services and f"{port}:{port}" in services[host]["ports"]

    # --scale worker=N: every replica answers the service's DNS name, on the port its env gives it.
    (discovery,) = jobs["warehouse-workers"]["dns_sd_configs"]
    assert discovery["names"] == ["worker"] and discovery["type"] == "A"
    assert str(discovery["port"]) == services["worker"]["environment"]["WAREHOUSE_WORKER_METRICS_PORT"] == "9808"
    assert set(jobs) == {"warehouse-web", "warehouse-workers"}
