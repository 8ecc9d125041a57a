"""A worker node's figures (warehouse/metrics/node.py): every process's files added up, a process
that ended without a word (SIGKILL) no longer in flight while its counters still count, the
directory emptied at start, and the tasks' import making no metric before the node chose it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from warehouse.metrics import node

REPO_ROOT = Path(__file__).resolve().parents[2]

# A process of the node: one chunk counted, one carrier call left in flight, then it ends as a
# SIGKILL would leave it (no clean-up), or waits to be killed while the test scrapes.
PROCESS = textwrap.dedent("""
    import os, sys, time
    from warehouse.metrics import recording
    recording.chunk_ended("valuation", "done", 0.05, items_done=500)
    call = recording.carrier_call()
    call.__enter__()
    print("ready", flush=True)
    if sys.argv[1] == "die":
        os._exit(0)
    time.sleep(60)
""")


def run_process(directory: Path, how: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", PROCESS, how],
        env={**os.environ, node.ENVIRONMENT: str(directory)}, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True,
    )


def figures(directory: Path) -> dict[tuple[str, tuple], float]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(node.NodeFigures(directory))
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for sample in family.samples
    }


def test_every_process_counts_and_one_that_died_is_no_longer_in_flight(tmp_path: Path) -> None:
    dead = run_process(tmp_path, "die")
    assert dead.stdout.readline().strip() == "ready"
    dead.wait(timeout=30)
    alive = run_process(tmp_path, "wait")
    try:
        assert alive.stdout.readline().strip() == "ready"

        seen = figures(tmp_path)
    finally:
        alive.kill()
        alive.wait(timeout=30)

    assert seen[("warehouse_chunks_total", (("operation", "valuation"), ("outcome", "done")))] == 2
    assert seen[("warehouse_run_items_total", (("operation", "valuation"), ("outcome", "done")))] == 1_000
    assert seen[("warehouse_chunk_duration_seconds_count", (("operation", "valuation"),))] == 2
    # Each left a call in flight; only the living one's counts.
    assert seen[("warehouse_carrier_in_flight", ())] == 1
    assert not list(tmp_path.glob(f"gauge_livesum_{dead.pid}.db"))

    after = figures(tmp_path)  # both ended now: none in flight, both counted
    assert after.get(("warehouse_carrier_in_flight", ()), 0) == 0
    assert after[("warehouse_chunks_total", (("operation", "valuation"), ("outcome", "done")))] == 2


def test_the_directory_starts_empty_and_ended_nodes_are_cleared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(node.tempfile, "gettempdir", lambda: str(tmp_path))
    parent = tmp_path / "warehouse-worker-metrics"
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    (parent / ended.stdout.strip()).mkdir(parents=True)
    (parent / ended.stdout.strip() / "counter_1.db").write_bytes(b"old")
    mine = parent / str(os.getpid())
    mine.mkdir()
    (mine / "counter_2.db").write_bytes(b"from an earlier start")
    # setenv first, so that the variable prepare_directory sets is undone after the test (delenv of an
    # unset variable records nothing to restore): /metrics of later tests would read this directory.
    monkeypatch.setenv(node.ENVIRONMENT, "")
    monkeypatch.delenv(node.ENVIRONMENT)

    directory = node.prepare_directory({})

    assert directory == mine
    assert list(directory.iterdir()) == []
    assert not (parent / ended.stdout.strip()).exists()
    assert os.environ[node.ENVIRONMENT] == str(directory)


def test_a_configured_directory_is_emptied_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chosen = tmp_path / "node-metrics"
    chosen.mkdir()
    (chosen / "histogram_7.db").write_bytes(b"old")
    # setenv first, so that the variable prepare_directory sets is undone after the test (delenv of an
    # unset variable records nothing to restore): /metrics of later tests would read this directory.
    monkeypatch.setenv(node.ENVIRONMENT, "")
    monkeypatch.delenv(node.ENVIRONMENT)

    assert node.prepare_directory({node.DIRECTORY_SETTING: str(chosen)}) == chosen
    assert list(chosen.iterdir()) == []


@pytest.mark.parametrize("port, expected", [("", None), (None, None), ("9808", 9808), ("0", 0)])
def test_the_port_setting(port: str | None, expected: int | None) -> None:
    assert node.metrics_port({node.PORT_SETTING: port}) == expected


@pytest.mark.parametrize("port", ["http", "-1", "70000", "98.08"])
def test_a_bad_port_is_refused_by_name(port: str) -> None:
    with pytest.raises(ValueError, match="warehouse.worker_metrics_port must be a port number"):
        node.metrics_port({node.PORT_SETTING: port})


def test_building_the_tasks_makes_no_metric_yet() -> None:
    """A metric made before the node picks its directory would stay per process in every child."""
    script = textwrap.dedent("""
        import sys
        from tasks.app import make_celery
        make_celery({"sqlalchemy.url": "sqlite://", "celery.broker_url": "memory://"})
        print("prometheus_client" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    assert done.stdout.strip() == "False"


def test_a_port_already_taken_is_logged_and_the_worker_runs_on(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import socket
    from types import SimpleNamespace

    from tasks import node_metrics

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = {node.PORT_SETTING: str(port), node.ADDRESS_SETTING: "127.0.0.1"}
        app = SimpleNamespace(warehouse=SimpleNamespace(settings=settings))
        node_metrics._prepared[id(app)] = tmp_path

        node_metrics._node_ready(sender=SimpleNamespace(app=app, hostname="w9@node"))

    assert f"w9@node: cannot serve metrics on port {port}" in caplog.text
