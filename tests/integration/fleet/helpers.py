"""What the fleet tests check and wait for, on top of tests/integration/checks.py and nodes.py."""

from __future__ import annotations

import datetime as dt
import os
import signal
import time
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import Engine, text

from tests.integration.checks import assert_all_done, assert_valued, chunk_rows, run_row, valuation_mismatches, warehouse_id
from tests.integration.nodes import running_chunks_of

# Seconds from losing a node to its chunks running elsewhere, with the default heartbeat (5 s) and
# dead-worker timeout (15 s): what the README promises.
RECOVERY_BOUND = 30.0
RUN_TIMEOUT = 120.0


def database_now(engine: Engine) -> dt.datetime:
    with engine.connect() as connection:
        return connection.scalar(text("SELECT now()"))


def nodes_of(chunks: list[dict[str, Any]]) -> Counter[str]:
    """How many done chunks each node (n1, n2, ...) did."""
    return Counter(chunk["worker_hostname"].split("@")[0] for chunk in chunks if chunk["status"] == "done")


def assert_exact(fleet: Any, code: str, run: dict[str, Any], products: int) -> list[dict[str, Any]]:
    """Succeeded, each chunk done once in the ledger, every product valued right; the chunk rows."""
    assert run["status"] == "succeeded", run
    chunks = chunk_rows(fleet.engine, run["id"])
    assert_all_done(run["chunks"], len(chunks))
    assert_all_done(run["items"], products)
    assert Counter(chunk["status"] for chunk in chunks) == {"done": len(chunks)}
    assert sum(chunk["items_done"] for chunk in chunks) == products
    assert_valued(fleet.engine, code, run, products)
    return chunks


def assert_redone_elsewhere(chunks: list[dict[str, Any]], held: list[int], lost_node: str, lost_at: dt.datetime) -> float:
    """The chunks ``held`` by ``lost_node`` were done again by another node, each started within
    RECOVERY_BOUND seconds of ``lost_at``, and nothing else ran twice; the slowest recovery, in seconds."""
    redone = [chunk for chunk in chunks if chunk["id"] in held]
    assert len(redone) == len(held) >= 1
    slowest = 0.0
    for chunk in redone:
        assert chunk["attempts"] == 2, chunk
        assert not chunk["worker_hostname"].startswith(f"{lost_node}@"), chunk
        slowest = max(slowest, (chunk["started_at"] - lost_at).total_seconds())
    assert slowest <= RECOVERY_BOUND, (slowest, redone)
    assert {chunk["id"] for chunk in chunks if chunk["attempts"] != 1} == set(held)
    print(f"chunks held by {lost_node} ran elsewhere {slowest:.1f} s after it was lost")
    return slowest


def ledger_snapshot(engine: Engine, run_id: int, code: str) -> dict[str, Any]:
    """Everything a late write could change: the run, its chunks, the products' values."""
    return {
        "run": run_row(engine, run_id),
        "chunks": chunk_rows(engine, run_id),
        "products": valuation_mismatches(engine, warehouse_id(engine, code)),
    }


def cut_holding_a_chunk(engine: Engine, run_id: int, worker: Any, node: Any, timeout: float) -> list[int]:
    """Cut ``node`` off at a moment when its worker holds a chunk of the run (checked after the cut,
    when nothing it does can land any more); the ids of the chunks it holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if running_chunks_of(engine, run_id, worker.name):
            node.cut()
            time.sleep(0.5)  # what was on the wire before the cut lands meanwhile
            held = running_chunks_of(engine, run_id, worker.name)
            if held:
                return held
            node.reconnect()
        time.sleep(0.05)
    pytest.fail(f"{worker.name} held no chunk of run {run_id} within {timeout} s")


def thaw(worker: Any) -> None:
    os.killpg(worker.process.pid, signal.SIGCONT)


def wait_until_settled(fleet: Any, workers: list[Any], timeout: float = 60.0) -> None:
    """Nothing queued, reserved, running or scheduled on ``workers``: whatever a thawed or reconnected
    node still had to say has been said."""
    fleet.harness._wait_until_idle(fleet.control_app, fleet.host.redis_url, workers, timeout)


def chunk_taken_by(engine: Engine, run_id: int, node: str, timeout: float) -> dt.datetime:
    """When ``node`` first claimed a chunk of the run (waiting up to ``timeout`` seconds for it)."""
    deadline = time.monotonic() + timeout
    while True:
        with engine.connect() as connection:
            started = connection.scalar(
                text("SELECT min(started_at) FROM run_chunks WHERE run_id = :run AND worker_hostname LIKE :node"),
                {"run": run_id, "node": f"{node}@%"},
            )
        if started is not None:
            return started
        if time.monotonic() > deadline:
            pytest.fail(f"{node} took no chunk of run {run_id} within {timeout} s")
        time.sleep(0.2)
