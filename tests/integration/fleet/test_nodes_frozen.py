"""A node frozen in the middle of a chunk (SIGSTOP: a paused VM, or a partition that keeps TCP up): it
keeps its connections, its open transaction and its row locks, and answers nothing. The other nodes
finish the run anyway, and when the frozen node is thawed, its late writes change nothing: every count
and value stays exact, and the carrier sells no label twice.
"""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text

from tests.integration.checks import chunk_rows
from tests.integration.fleet.helpers import (
    RUN_TIMEOUT,
    assert_exact,
    assert_redone_elsewhere,
    database_now,
    ledger_snapshot,
    thaw,
    wait_until_settled,
)
from tests.integration.nodes import freeze_holding_a_chunk
from warehouse.scripts.seed import seed


@pytest.mark.timeout(300, method="signal")
def test_a_node_frozen_holding_row_locks_neither_stalls_the_run_nor_changes_it_when_thawed(make_fleet) -> None:
    # holding_valuation writes its chunk's products, then waits half a second before it commits: a
    # node frozen then holds those rows locked, in a transaction that sends nothing.
    fleet = make_fleet(**{"warehouse.test.hold_seconds": "0.5"})
    n1, n2, n3 = fleet.start_nodes(["n1", "n2", "n3"])
    seed(fleet.engine, "frozen", products=40_000, shipments=0)
    run_id = fleet.api.start_run("frozen", "holding_valuation")["id"]
    fleet.api.wait_for(run_id, lambda run: run["chunks"]["done"] >= 6, 60, "six chunks done")

    held = freeze_holding_a_chunk(fleet.engine, run_id, n1, timeout=30)
    frozen_at = database_now(fleet.engine)
    run = fleet.api.wait_until_finished(run_id, RUN_TIMEOUT)  # n1 still frozen

    chunks = assert_exact(fleet, "frozen", run, 40_000)
    assert_redone_elsewhere(chunks, held, "n1", frozen_at)
    for chunk in chunks:
        if chunk["id"] in held:  # the redo did not wait out the frozen node's locks
            assert (chunk["finished_at"] - chunk["started_at"]).total_seconds() < 5, chunk
    before_thaw = ledger_snapshot(fleet.engine, run_id, "frozen")

    thaw(n1)
    wait_until_settled(fleet, [n1, n2, n3])

    assert ledger_snapshot(fleet.engine, run_id, "frozen") == before_thaw
    # Its attempt ended in its own rollback: PostgreSQL had ended its transaction while it was frozen,
    # or (frozen before its writes) its commit found the chunk taken over.
    late = n1.log()
    assert "idle-in-transaction timeout" in late or "was taken over" in late, late[-3000:]


@pytest.mark.timeout(300, method="signal")
def test_a_node_frozen_mid_labels_buys_no_label_twice_when_thawed(make_fleet, carrier_on_services_host) -> None:
    with carrier_on_services_host("--latency-ms", "500", "--max-in-flight", "60") as carrier:
        fleet = make_fleet(**{
            "warehouse.carrier_url": carrier.url,
            "warehouse.carrier_max_in_flight": "60",
            "warehouse.carrier_threads_per_process": "10",
            "warehouse.carrier_backoff_seconds": "0.1",
        })
        n1, n2, n3 = fleet.start_nodes(["n1", "n2", "n3"])
        seed(fleet.engine, "frozen-labels", products=0, shipments=6_000)  # 2,000 due
        run_id = fleet.api.start_run("frozen-labels", "shipping_labels", chunk_size=50)["id"]
        fleet.api.wait_for(run_id, lambda run: run["chunks"]["done"] >= 3, 60, "three chunks done")

        held = freeze_holding_a_chunk(fleet.engine, run_id, n1, timeout=30)  # in the middle of its calls
        frozen_at = database_now(fleet.engine)
        run = fleet.api.wait_until_finished(run_id, RUN_TIMEOUT)
        before_thaw = chunk_rows(fleet.engine, run_id)
        labels_before_thaw = labels(fleet.engine)

        thaw(n1)
        wait_until_settled(fleet, [n1, n2, n3])
        stats = carrier.stats()

    assert run["status"] == "succeeded", run
    assert run["items"]["done"] == 2_000 and run["result"]["labels_bought"] == 2_000, run
    assert_redone_elsewhere(before_thaw, held, "n1", frozen_at)
    assert chunk_rows(fleet.engine, run_id) == before_thaw
    assert labels(fleet.engine) == labels_before_thaw
    assert len(labels_before_thaw) == len(set(labels_before_thaw.values())) == 2_000
    assert stats["purchases"] == 2_000 and stats["duplicate_purchases"] == 0, stats


def labels(engine: Engine) -> dict[int, str]:
    with engine.connect() as connection:
        return dict(connection.execute(text("SELECT id, label_id FROM shipments WHERE label_id IS NOT NULL")).all())
