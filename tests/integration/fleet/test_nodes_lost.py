"""Worker nodes on hosts of their own sharing a run, and one of them killed outright in its middle,
beat with it. The run ends right, with every count and value exact, and what the lost node held runs
elsewhere within seconds, with nobody's help: no beat, no cron, no resume. The defaults of warehouse.worker_heartbeat_seconds (5) and worker_dead_after_seconds (15)
are the ones in force, so the times asserted are the times the README promises.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

import pytest

from tests.integration.fleet.helpers import RUN_TIMEOUT, assert_exact, assert_redone_elsewhere, database_now, nodes_of
from tests.integration.nodes import freeze_holding_a_chunk, kill_node, process_children
from warehouse.scripts.seed import seed

@pytest.mark.timeout(240, method="signal")
def test_three_nodes_on_three_hosts_share_one_run(make_fleet) -> None:
    fleet = make_fleet(**{"warehouse.test.chunk_delay_seconds": "0.1"})
    fleet.start_nodes(["n1", "n2", "n3"])
    seed(fleet.engine, "shared", products=30_000, shipments=0)

    run = fleet.api.wait_until_finished(fleet.api.start_run("shared", "slow_valuation")["id"], RUN_TIMEOUT)

    chunks = assert_exact(fleet, "shared", run, 30_000)
    assert set(nodes_of(chunks)) == {"n1", "n2", "n3"}, nodes_of(chunks)
    assert {chunk["attempts"] for chunk in chunks} == {1}
    # The ledger knows the six processes, alive, and what each did (counted with its heartbeats).
    deadline = time.monotonic() + 15
    while True:
        listed = fleet.api.app.get("/api/workers", headers=fleet.api.viewer, status=200).json["workers"]
        done_by_node = Counter()
        for worker in listed:
            done_by_node[worker["node"].split("@")[0]] += worker["chunks_done"]
        if sum(done_by_node.values()) == len(chunks) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(listed) == 6 and all(worker["alive"] for worker in listed), listed
    assert done_by_node == nodes_of(chunks)


@pytest.mark.timeout(300, method="signal")
def test_a_node_killed_outright_with_beat_its_chunks_run_elsewhere_within_seconds(make_fleet) -> None:
    fleet = make_fleet(**{"warehouse.test.chunk_delay_seconds": "0.3"})
    n1, n2, n3 = fleet.start_nodes(["n1", "n2", "n3"])
    beat = fleet.start_on(
        fleet.node("n3").exec_prefix(),
        ["celery", "-A", "tasks", "beat", "--loglevel=INFO", "-s", str(fleet.log_dir / "beat-schedule")],
        "beat",
    )
    seed(fleet.engine, "killed", products=60_000, shipments=0)
    run_id = fleet.api.start_run("killed", "slow_valuation")["id"]
    fleet.api.wait_for(run_id, lambda run: run["chunks"]["done"] >= 10, 60, "ten chunks done")

    children = process_children(n1.process.pid)
    held = freeze_holding_a_chunk(fleet.engine, run_id, n1, timeout=30)
    killed_at = database_now(fleet.engine)
    kill_node(n1, children)
    os.killpg(beat.pid, signal.SIGKILL)  # and the beat process with it: nobody left to reconcile
    beat.wait(timeout=10)

    run = fleet.api.wait_until_finished(run_id, RUN_TIMEOUT)

    chunks = assert_exact(fleet, "killed", run, 60_000)
    assert_redone_elsewhere(chunks, held, "n1", killed_at)
