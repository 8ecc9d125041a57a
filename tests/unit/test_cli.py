"""The console scripts, run as their own processes against an embedded-mode ini (SQLite, in-process worker)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from warehouse.carrier.served import serve_stub

EMBEDDED_INI = """\
[app:main]
use = egg:warehouse
sqlalchemy.url = sqlite:///%(here)s/cli.sqlite
celery.broker_url = memory://localhost/
celery.result_backend = embedded://
celery.embedded_worker = true
celery.embedded_concurrency = 2
celery.worker_prefetch_multiplier = 8
celery.broker_transport_options = {"polling_interval": 0.05}
warehouse.tokens = operator:op viewer:vw
"""


def run_script(module: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def seeded_ini(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ini = tmp_path_factory.mktemp("cli") / "embedded.ini"
    ini.write_text(EMBEDDED_INI)
    assert run_script("warehouse.scripts.initialize_db", str(ini)).returncode == 0
    seeded = run_script("warehouse.scripts.seed", str(ini), "--warehouse", "cli", "--products", "1203")
    assert seeded.returncode == 0, seeded.stderr
    return ini


def test_run_waits_and_prints_the_final_run(seeded_ini: Path) -> None:
    done = run_script("warehouse.scripts.run", str(seeded_ini), "cli", "valuation", "--chunk-size", "100", "--wait")
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert run["status"] == "succeeded"
    assert run["chunks"] == {"total": 13, "done": 13, "failed": 0, "skipped": 0, "remaining": 0}
    assert run["items"]["done"] == 1203
    assert run["result"]["products_needing_reorder"] >= 0
    assert "succeeded" in done.stderr  # the progress bar's last state


def test_shipping_labels_from_the_command_line(seeded_ini: Path) -> None:
    """The project's answer to the seed post's management command: labels for what leaves in 14 days."""
    with serve_stub("--latency-ms", "10", "--max-in-flight", "20") as carrier:
        ini = seeded_ini.with_name("labels.ini")
        ini.write_text(EMBEDDED_INI + f"warehouse.carrier_url = {carrier.url}\nwarehouse.carrier_max_in_flight = 10\n")
        seeded = run_script("warehouse.scripts.seed", str(ini), "--warehouse", "cli-labels", "--shipments", "300")
        assert seeded.returncode == 0, seeded.stderr

        done = run_script("warehouse.scripts.run", str(ini), "cli-labels", "shipping_labels", "--wait")
        stats = carrier.stats()

    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert run["status"] == "succeeded"
    assert run["result"]["labels_bought"] == run["items"]["done"] == 100  # a third of 300 are due
    assert (stats["purchases"], stats["duplicate_purchases"]) == (100, 0)
    assert stats["max_in_flight"] <= 10
    assert "succeeded" in done.stderr  # the progress bar's last state


def test_embedded_mode_waits_even_without_wait(seeded_ini: Path) -> None:
    # The in-memory broker lives in the command's process: leaving early would strand the run.
    done = run_script("warehouse.scripts.run", str(seeded_ini), "cli", "valuation")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "succeeded"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nowhere", "valuation"], "no warehouse with code 'nowhere'"),
        (["cli", "teleport"], "unknown operation 'teleport'"),
        (["cli", "valuation", "--chunk-size", "0"], "--chunk-size"),
        (["cli", "valuation", "--chunk-size", "100001"], "--chunk-size"),
        (["cli", "valuation", "--tolerated-failure-percent", "101"], "--tolerated-failure-percent"),
    ],
)
def test_bad_arguments_exit_2_and_start_nothing(seeded_ini: Path, args: list[str], message: str) -> None:
    failed = run_script("warehouse.scripts.run", str(seeded_ini), *args)
    assert failed.returncode == 2
    assert message in failed.stderr
    assert failed.stdout == ""
    with sqlite3.connect(seeded_ini.parent / "cli.sqlite") as db:
        assert db.execute("SELECT count(*) FROM runs WHERE status = 'pending'").fetchone() == (0,)
