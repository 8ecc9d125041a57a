"""deploy/kubernetes/: every manifest validated against the Kubernetes API's schemas (strict: an
unknown or misplaced field is refused), offline with kubernetes-validate's bundled schemas, and what
the README promises checked: the worker's grace period and soft shutdown, probes, beat, the
migration, the settings every pod is given, and the KEDA ScaledObject's target and trigger.

The ScaledObject is validated against KEDA's CRD schema by @kubernetes-models/keda (validators
generated from KEDA's CRDs, on Node: tests/keda_schema/, installed by `make test`), and checked
field by field below, since a CRD schema lets unknown fields through, as Kubernetes prunes them.
"""

from __future__ import annotations

import configparser
import copy
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import schema_contents
from referencing import Registry, Resource

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "deploy" / "kubernetes"
# A Kubernetes release still supported when this was written; kubernetes-validate bundles its schemas.
KUBERNETES_VERSION = "1.33"
DEFINITIONS_ID = "https://kubernetes.io/api/_definitions.json"
KEDA_SCHEMA = ROOT / "tests" / "keda_schema"


def manifest_files() -> list[Path]:
    return sorted(path for path in MANIFESTS.glob("*.yaml") if path.name != "kustomization.yaml")


def load_resources() -> list[dict[str, Any]]:
    return [doc for path in manifest_files() for doc in yaml.safe_load_all(path.read_text()) if doc]


def resource(kind: str, name: str) -> dict[str, Any]:
    (found,) = [doc for doc in load_resources() if doc["kind"] == kind and doc["metadata"]["name"] == name]
    return found


def container(deployment: str) -> dict[str, Any]:
    (only,) = resource("Deployment", deployment)["spec"]["template"]["spec"]["containers"]
    return only


def env(container: dict[str, Any]) -> dict[str, str]:
    return {variable["name"]: variable.get("value") for variable in container.get("env", [])}


def validate(document: dict[str, Any]) -> None:
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def validate_against_definition(value: Any, definition: str) -> None:
    """``value`` against one of the Kubernetes API's definitions (io.k8s....), strictly."""
    schema_dir = f"kubernetes-json-schema/v{KUBERNETES_VERSION}.0-local-strict"
    definitions = schema_contents(f"{schema_dir}/_definitions.json", KUBERNETES_VERSION)
    registry = Registry().with_resource(DEFINITIONS_ID, Resource.from_contents(definitions))
    schema = {"$ref": f"{DEFINITIONS_ID}#/$defs/{definition}"}
    jsonschema.Draft202012Validator(schema, registry=registry).validate(value)


@pytest.mark.parametrize("path", manifest_files(), ids=lambda path: path.name)
def test_each_manifest_is_valid_for_kubernetes(path: Path) -> None:
    for document in yaml.safe_load_all(path.read_text()):
        if document and not document["apiVersion"].startswith("keda.sh/"):
            validate(document)


@pytest.mark.parametrize(
    "break_it",
    [
        lambda worker: worker["spec"]["template"]["spec"]["containers"][0].update(terminationGracePeriodSeconds=120),
        lambda worker: worker["spec"].update(replicas="two"),
        lambda worker: worker["spec"]["template"]["spec"]["containers"][0].pop("name"),
    ],
    ids=["misplaced field", "wrong type", "required field missing"],
)
def test_a_broken_manifest_is_refused(break_it) -> None:
    broken = copy.deepcopy(resource("Deployment", "warehouse-worker"))
    break_it(broken)
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(broken)


def test_kustomization_applies_every_manifest() -> None:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == [path.name for path in manifest_files()]
    assert kustomization["namespace"] == "warehouse"


def test_every_pod_gets_the_settings_and_only_names_keys_that_exist() -> None:
    config, secret = resource("ConfigMap", "warehouse-config"), resource("Secret", "warehouse-secrets")
    assert {"DATABASE_URL", "REDIS_URL", "WAREHOUSE_TOKENS", "WAREHOUSE_METRICS_TOKEN"} <= set(secret["stringData"])
    for document in load_resources():
        pod = document.get("spec", {}).get("template", {}).get("spec")
        if pod is None:
            continue
        for each in pod["containers"]:
            sources = {(source.get("configMapRef") or source.get("secretRef"))["name"] for source in each["envFrom"]}
            assert sources == {"warehouse-config", "warehouse-secrets"}, document["metadata"]["name"]
        for volume in pod.get("volumes", []):
            assert volume["configMap"]["name"] == "warehouse-config"
            assert {item["key"] for item in volume["configMap"]["items"]} <= set(config["data"])


def test_the_worker_shuts_down_softly_within_its_grace_period(tmp_path: Path) -> None:
    worker = resource("Deployment", "warehouse-worker")["spec"]["template"]["spec"]
    main = container("warehouse-worker")
    assert main["command"][:4] == ["celery", "-A", "tasks", "worker"] and "-E" in main["command"]
    assert env(main)["REMAP_SIGTERM"] == "SIGQUIT"

    # WAREHOUSE_INI is the ConfigMap's worker.ini, mounted where it says.
    (mount,) = main["volumeMounts"]
    ini_path = Path(env(main)["WAREHOUSE_INI"])
    assert ini_path.parent == Path(mount["mountPath"])
    (volume,) = [volume for volume in worker["volumes"] if volume["name"] == mount["name"]]
    assert [item["path"] for item in volume["configMap"]["items"]] == [ini_path.name]
    worker_ini = resource("ConfigMap", "warehouse-config")["data"][ini_path.name]

    # It is production.ini (at /app in the image) plus the soft shutdown: load it the same way.
    assert "COPY production.ini" in (ROOT / "Dockerfile").read_text() and "WORKDIR /app" in (ROOT / "Dockerfile").read_text()
    local = tmp_path / "worker.ini"
    local.write_text(worker_ini.replace("config:/app/production.ini", f"config:{ROOT / 'production.ini'}"))
    from warehouse.settings import load_settings

    settings = load_settings(str(local))
    assert settings["warehouse.environment_overrides"] == "true"  # still production.ini's
    assert settings["celery.worker_enable_soft_shutdown_on_idle"] == "true"
    soft_timeout = float(settings["celery.worker_soft_shutdown_timeout"])
    # The soft shutdown ends (chunks cancelled and requeued) before Kubernetes's SIGKILL.
    assert worker["terminationGracePeriodSeconds"] >= soft_timeout + 5
    assert soft_timeout >= 60, "the soft shutdown must cover the longest chunk"
    parser = configparser.ConfigParser()
    parser.read_string(worker_ini)
    assert parser.sections() == ["app:main"]


def test_the_metrics_ports_are_served_and_annotated_for_prometheus() -> None:
    for deployment, port in (("warehouse-web", 6543), ("warehouse-worker", 9808)):
        template = resource("Deployment", deployment)["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/path"] == "/metrics"
        assert int(annotations["prometheus.io/port"]) == port
        assert port in {each["containerPort"] for each in container(deployment)["ports"]}
    assert env(container("warehouse-worker"))["WAREHOUSE_WORKER_METRICS_PORT"] == "9808"


def test_web_readiness_is_the_health_check_and_liveness_does_not_hang_on_dependencies() -> None:
    web = container("warehouse-web")
    assert web["command"] == ["pserve", "production.ini"]
    assert web["readinessProbe"]["httpGet"]["path"] == "/api/health"
    # /api/health answers 503 while the database or the broker is down: restarting then helps nothing.
    assert web["livenessProbe"]["httpGet"]["path"] != "/api/health"
    service = resource("Service", "warehouse-web")
    assert service["spec"]["selector"].items() <= resource("Deployment", "warehouse-web")["spec"]["template"]["metadata"]["labels"].items()


def test_beat_runs_alone_and_the_migration_is_a_job() -> None:
    beat = resource("Deployment", "warehouse-beat")
    assert beat["spec"]["replicas"] == 1 and beat["spec"]["strategy"]["type"] == "Recreate"
    assert container("warehouse-beat")["command"][:4] == ["celery", "-A", "tasks", "beat"]
    (migrate,) = resource("Job", "warehouse-migrate")["spec"]["template"]["spec"]["containers"]
    assert migrate["command"] == ["initialize_warehouse_db", "production.ini"]


def test_keda_scales_the_workers_on_the_chunks_redis_list() -> None:
    scaled = resource("ScaledObject", "warehouse-worker")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    validate_against_definition(scaled["metadata"], "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
    spec = scaled["spec"]
    assert set(spec) <= {
        "scaleTargetRef", "pollingInterval", "cooldownPeriod", "idleReplicaCount", "minReplicaCount",
        "maxReplicaCount", "fallback", "advanced", "triggers",
    }
    target = spec["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == ("apps/v1", "Deployment", "warehouse-worker")
    assert target["envSourceContainerName"] == container("warehouse-worker")["name"]
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    assert all(isinstance(spec[key], int) for key in ("pollingInterval", "cooldownPeriod", "minReplicaCount", "maxReplicaCount"))
    validate_against_definition(
        spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"], "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerBehavior"
    )

    (trigger,) = spec["triggers"]
    assert trigger["type"] == "redis"
    metadata = trigger["metadata"]
    # KEDA's trigger metadata is a map of strings.
    assert all(isinstance(value, str) for value in metadata.values())
    assert metadata["listName"] == "celery" and int(metadata["listLength"]) > 0
    # The variables KEDA reads come from the worker container's ConfigMap and Secret.
    config, secret = resource("ConfigMap", "warehouse-config"), resource("Secret", "warehouse-secrets")
    assert metadata["addressFromEnv"] in config["data"] and metadata["passwordFromEnv"] in secret["stringData"]
    host_port = config["data"][metadata["addressFromEnv"]]
    assert host_port.count(":") == 1 and "//" not in host_port, "KEDA wants host:port, not a URL"
    assert f"@{host_port}/{metadata['databaseIndex']}" in secret["stringData"]["REDIS_URL"]


def keda_refusals(scaled_objects: list[dict[str, Any]]) -> list[str]:
    """What KEDA's CRD schema refuses in these ScaledObjects, one line each."""
    node = shutil.which("node")
    if node is None or not (KEDA_SCHEMA / "node_modules" / "@kubernetes-models" / "keda").is_dir():
        reason = "the KEDA schema check needs node and `make keda-schema` (tests/keda_schema/)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true, so not skipping: {reason}", pytrace=False)
        pytest.skip(reason)
    done = subprocess.run(
        [node, "validate.mjs"], input=json.dumps(scaled_objects), capture_output=True, text=True, cwd=KEDA_SCHEMA,
        timeout=60, check=True,
    )
    return json.loads(done.stdout)


def test_the_scaled_object_is_valid_for_keda_s_crd_schema() -> None:
    assert keda_refusals([resource("ScaledObject", "warehouse-worker")]) == []


@pytest.mark.parametrize(
    "break_it, refused",
    [
        (lambda spec: spec.update(minReplicaCount="one"), "minReplicaCount must be integer"),
        (lambda spec: spec["triggers"][0].update(metadata={"listLength": 5}), "must be string"),
        (lambda spec: spec.pop("scaleTargetRef"), "scaleTargetRef"),
    ],
    ids=["count-as-text", "metadata-not-strings", "no-target"],
)
def test_keda_s_schema_refuses_a_broken_scaled_object(break_it, refused: str) -> None:
    broken = copy.deepcopy(resource("ScaledObject", "warehouse-worker"))
    break_it(broken["spec"])

    (refusal,) = keda_refusals([broken])

    assert refused in refusal
