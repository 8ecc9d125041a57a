"""Under development.ini the work runs inside the process that started it (``make run``'s pserve, or
``warehouse-run --wait``) and its queue dies with it. A run whose process was killed is finished by
the next embedded process to start: its sweep finds the chunks the dead one held and the run's
pending chunks, and sends them again (tasks/sweep.py). Real processes on a SQLite file of their own."""

from __future__ import annotations

import configparser
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import create_engine, text

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PRODUCTS = 4_000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def development_ini(directory: Path) -> Path:
    parser = configparser.RawConfigParser()
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(REPO_ROOT / "development.ini")
    parser.set("app:main", "sqlalchemy.url", f"sqlite:///{directory / 'embedded.sqlite'}")
    # Quicker than the defaults (5 s, 15 s), so that the test waits seconds rather than tens of them.
    parser.set("app:main", "warehouse.worker_heartbeat_seconds", "1")
    parser.set("app:main", "warehouse.worker_dead_after_seconds", "3")
    parser.set("server:main", "listen", f"127.0.0.1:{free_port()}")
    path = directory / "embedded.ini"
    with path.open("w") as file:
        parser.write(file)
    return path


def run_row(engine, run_id: int | None = None) -> dict:  # type: ignore[no-untyped-def]
    with engine.connect() as connection:
        query = "SELECT id, status, chunks_total, chunks_done, items_done FROM runs"
        row = connection.execute(text(query + (" WHERE id = :id" if run_id else " ORDER BY id DESC LIMIT 1")),
                                 {"id": run_id}).mappings().first()
        return dict(row) if row else {}


def wait_for(condition, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, what
        time.sleep(0.1)
    return value


def test_a_run_whose_process_was_killed_is_finished_by_the_next_start(tmp_path: Path) -> None:
    ini = development_ini(tmp_path)
    subprocess.run([str(BIN / "initialize_warehouse_db"), str(ini)], check=True, capture_output=True)
    subprocess.run([str(BIN / "warehouse-seed"), str(ini), "--warehouse", "demo", "--products", str(PRODUCTS),
                    "--shipments", "0"], check=True, capture_output=True)
    engine = create_engine(f"sqlite:///{tmp_path / 'embedded.sqlite'}")
    log = (tmp_path / "first.log").open("wb")
    first = subprocess.Popen([str(BIN / "warehouse-run"), str(ini), "demo", "valuation", "--chunk-size", "1", "--wait"],
                             cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        row = wait_for(lambda: (r := run_row(engine)) and r["chunks_done"] >= 200 and r, 120,
                       "the first process did not get going")
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    run_id = row["id"]
    stuck = run_row(engine, run_id)
    assert stuck["status"] == "running" and stuck["chunks_done"] < PRODUCTS, stuck

    second = subprocess.Popen([str(BIN / "pserve"), str(ini)], cwd=REPO_ROOT, stdout=(tmp_path / "second.log").open("wb"),
                              stderr=subprocess.STDOUT, start_new_session=True)
    try:
        done = wait_for(lambda: (r := run_row(engine, run_id))["status"] not in ("pending", "running") and r, 180,
                        f"run {run_id} not finished by the next start: {run_row(engine, run_id)}")
    finally:
        os.killpg(second.pid, signal.SIGTERM)
        second.wait(timeout=30)
    assert (done["status"], done["chunks_done"], done["items_done"]) == ("succeeded", PRODUCTS, PRODUCTS), done
    with engine.connect() as connection:
        unvalued = connection.execute(text("SELECT count(*) FROM products WHERE stock_value IS NULL")).scalar()
    assert unvalued == 0
