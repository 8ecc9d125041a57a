"""A node cut off from the network in the middle of a run (its links down: packets vanish, connections
stay open), or from the broker alone. The others finish the run; once the link is back, the node
reconnects by itself and takes chunks again, and whatever it did while cut off changes nothing.
"""

from __future__ import annotations

import datetime as dt
import time

import pytest

from tests.fleet.network import BROKER
from tests.integration.fleet.helpers import (
    RECOVERY_BOUND,
    RUN_TIMEOUT,
    assert_exact,
    assert_redone_elsewhere,
    chunk_taken_by,
    cut_holding_a_chunk,
    database_now,
    ledger_snapshot,
    wait_until_settled,
)
from warehouse.scripts.seed import seed

CUT_SECONDS = 60.0
BROKER_CUT_SECONDS = 90.0


@pytest.mark.timeout(400, method="signal")
def test_a_node_cut_off_for_a_minute_is_worked_around_then_takes_chunks_again(make_fleet) -> None:
    fleet = make_fleet(**{"warehouse.test.chunk_delay_seconds": "0.3"})
    n1, n2, n3 = fleet.start_nodes(["n1", "n2", "n3"])
    seed(fleet.engine, "cut", products=30_000, shipments=0)
    seed(fleet.engine, "after-cut", products=150_000, shipments=0)
    run_id = fleet.api.start_run("cut", "slow_valuation")["id"]
    fleet.api.wait_for(run_id, lambda run: run["chunks"]["done"] >= 6, 60, "six chunks done")

    held = cut_holding_a_chunk(fleet.engine, run_id, n1, fleet.node("n1"), timeout=30)
    cut_at = database_now(fleet.engine)
    run = fleet.api.wait_until_finished(run_id, RUN_TIMEOUT)

    chunks = assert_exact(fleet, "cut", run, 30_000)
    assert_redone_elsewhere(chunks, held, "n1", cut_at)
    before_reconnect = ledger_snapshot(fleet.engine, run_id, "cut")
    time.sleep(max(0.0, CUT_SECONDS - (database_now(fleet.engine) - cut_at).total_seconds()))

    fleet.node("n1").reconnect()
    reconnected_at = database_now(fleet.engine)
    # A long run, so that n1 has time to come back before the others finish it.
    second = fleet.api.start_run("after-cut", "slow_valuation")["id"]
    taken_at = chunk_taken_by(fleet.engine, second, "n1", timeout=RECOVERY_BOUND + 10)

    assert (taken_at - reconnected_at).total_seconds() <= RECOVERY_BOUND, (taken_at, reconnected_at)
    print(f"n1 took a chunk {(taken_at - reconnected_at).total_seconds():.1f} s after its link came back")
    fleet.api.wait_until_finished(second, RUN_TIMEOUT * 2)
    wait_until_settled(fleet, [n1, n2, n3])
    assert ledger_snapshot(fleet.engine, run_id, "cut") == before_reconnect


@pytest.mark.timeout(360, method="signal")
def test_a_node_that_loses_the_broker_for_a_while_takes_work_again_once_it_is_back(make_fleet) -> None:
    fleet = make_fleet(**{"warehouse.test.chunk_delay_seconds": "0.3"})
    n1, n2 = fleet.start_nodes(["n1", "n2"])
    seed(fleet.engine, "during", products=20_000, shipments=0)
    seed(fleet.engine, "after", products=60_000, shipments=0)

    # n1 keeps its database, so it keeps heartbeating: nothing of it is declared dead, it only
    # cannot hear the broker. The run goes on without it.
    fleet.node("n1").cut(BROKER)
    cut_at = time.monotonic()
    during = fleet.api.wait_until_finished(fleet.api.start_run("during", "slow_valuation")["id"], RUN_TIMEOUT)
    assert_exact(fleet, "during", during, 20_000)
    # Minutes rather than seconds: far longer than every socket timeout and health check set.
    time.sleep(max(0.0, BROKER_CUT_SECONDS - (time.monotonic() - cut_at)))

    fleet.node("n1").reconnect(BROKER)
    back_at = database_now(fleet.engine)
    after = fleet.api.start_run("after", "slow_valuation")["id"]
    taken_at = chunk_taken_by(fleet.engine, after, "n1", timeout=RECOVERY_BOUND + 10)

    assert (taken_at - back_at) <= dt.timedelta(seconds=RECOVERY_BOUND), (taken_at, back_at)
    print(f"n1 took a chunk {(taken_at - back_at).total_seconds():.1f} s after the broker came back")
    run = fleet.api.wait_until_finished(after, RUN_TIMEOUT)
    assert_exact(fleet, "after", run, 60_000)
