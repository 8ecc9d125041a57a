"""shipping_labels on real workers against the carrier stub as a process of its own: every due shipment
labelled exactly once, under faults, through a node killed outright, and never more calls in flight
than ``warehouse.carrier_max_in_flight`` however many nodes share it.

Each test gets a stub of its own (a fresh port, so fresh counters and a shared limit of its own in
Redis), a warehouse of its own and a lane of its own (database, queue, ini, web app, workers).
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine, text

from tests.integration.checks import chunk_rows, warehouse_id
from tests.integration.nodes import freeze_holding_a_chunk, kill_node, process_children
from warehouse.carrier.served import StubServer, serve_stub
from warehouse.operations.shipping_labels import WINDOW_DAYS
from warehouse.scripts.seed import seed

OPERATION = "shipping_labels"
RUN_TIMEOUT = 180.0


def new_warehouse(engine: Engine, shipments: int) -> str:
    """A warehouse with that many shipments, a third of them due in the window (the seed spreads
    the due ones evenly over the ids); its code."""
    code = f"it-labels-{secrets.token_hex(4)}"
    seed(engine, code, products=0, shipments=shipments)
    return code


@pytest.fixture
def stub() -> Callable[..., Any]:
    """``with stub("--latency-ms", "20", ...) as carrier:`` a carrier stub process of this test's own."""
    return serve_stub


def carrier_settings(carrier: StubServer, max_in_flight: int, **more: str) -> dict[str, str]:
    return {
        "warehouse.carrier_url": carrier.url,
        "warehouse.carrier_max_in_flight": str(max_in_flight),
        # Retries of a failed call come quickly, so a test with faults sits through them.
        "warehouse.carrier_backoff_seconds": "0.1",
        **more,
    }


def shipments(engine: Engine, code: str) -> dict[int, dict[str, Any]]:
    """Every shipment of the warehouse by id, with whether it is due in the window today (UTC)."""
    today = dt.datetime.now(dt.timezone.utc).date()
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT id, reference, shipping_date, label_id, tracking_number, label_url, label_error"
                " FROM shipments WHERE warehouse_id = :warehouse ORDER BY id"
            ),
            {"warehouse": warehouse_id(engine, code)},
        )
        return {
            row.id: {**row._asdict(), "due": today <= row.shipping_date <= today + dt.timedelta(days=WINDOW_DAYS)}
            for row in rows
        }


def label_some_already(engine: Engine, code: str, every: int) -> set[int]:
    """Give every ``every``-th due shipment a label bought elsewhere; their ids."""
    due = sorted(id_ for id_, row in shipments(engine, code).items() if row["due"])
    chosen = set(due[::every])
    with engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE shipments SET label_id = 'PRE-' || id, tracking_number = 'PRE', label_url = 'pre://'"
                " WHERE id = ANY(:ids)"
            ),
            {"ids": sorted(chosen)},
        )
    return chosen


def failures_of(api: Any, run_id: int) -> dict[int, str]:
    """Every failed item of the run (all pages of the failures endpoint): item id -> error."""
    failures: dict[int, str] = {}
    params = {"limit": 500}
    while True:
        page = api.app.get(f"/api/runs/{run_id}/failures", params, headers=api.viewer, status=200).json
        failures.update({item["item_id"]: item["error"] for item in page["items"]})
        if not page["next_cursor"]:
            return failures
        params["cursor"] = page["next_cursor"]


def assert_labelled_once(before: dict[int, dict[str, Any]], after: dict[int, dict[str, Any]], to_label: set[int]) -> None:
    """Each shipment of ``to_label`` has a label of its own from the carrier; every other one is untouched."""
    labelled = {id_: after[id_] for id_ in to_label}
    assert [id_ for id_, row in labelled.items() if not (row["label_id"] or "").startswith("LBL-")] == []
    assert all(row["tracking_number"] and row["label_url"] and row["label_error"] is None for row in labelled.values())
    assert len({row["label_id"] for row in labelled.values()}) == len(labelled)  # no label shared
    assert {id_: row for id_, row in after.items() if id_ not in to_label} == {
        id_: row for id_, row in before.items() if id_ not in to_label
    }


# --- 1. Every due, unlabelled shipment gets exactly one label ------------------------------------------


@pytest.mark.timeout(240)
def test_every_due_unlabelled_shipment_gets_exactly_one_label(make_lane, stub) -> None:
    with stub("--latency-ms", "20", "--max-in-flight", "50") as carrier:
        lane = make_lane("labels", workers=["lb1", "lb2"], settings=carrier_settings(carrier, 20))
        engine = lane.engine
        code = new_warehouse(engine, 1_200)  # 400 due
        pre_labelled = label_some_already(engine, code, every=10)
        before = shipments(engine, code)
        to_label = {id_ for id_, row in before.items() if row["due"] and row["label_id"] is None}
        assert len(to_label) == 360 and len(pre_labelled) == 40

        run = lane.api.wait_until_finished(lane.api.start_run(code, OPERATION, chunk_size=50)["id"], RUN_TIMEOUT)

        assert run["status"] == "succeeded", run
        assert run["items"]["total"] == run["items"]["done"] == 360
        assert run["result"]["labels_bought"] == 360
        assert run["result"]["labels_failed"] == run["result"]["shipments_skipped"] == 0
        assert_labelled_once(before, shipments(engine, code), to_label)
        stats = carrier.stats()
        assert (stats["purchases"], stats["requests"], stats["duplicate_keys"], stats["duplicate_purchases"]) == (360, 360, 0, 0)

        # A rerun finds nothing left to label, and calls the carrier for nothing.
        again = lane.api.wait_until_finished(lane.api.start_run(code, OPERATION)["id"], RUN_TIMEOUT)
        assert again["status"] == "succeeded", again
        assert again["items"]["total"] == 0
        assert carrier.stats()["requests"] == 360


# --- 2. Faults: 503s, 429s with Retry-After, calls slower than the client waits ----------------------------


@pytest.mark.timeout(300)
def test_under_faults_every_shipment_ends_labelled_once_or_failed_with_a_reason(make_lane, stub) -> None:
    faults = [
        "--fail-rate", "0.2", "--rate-limited-rate", "0.1", "--retry-after", "1",
        # One call in 20 takes 1.5 s; the client gives up after 0.5 s (the carrier still sells the label).
        "--slow-rate", "0.05", "--slow-ms", "1500",
    ]
    with stub("--latency-ms", "20", "--max-in-flight", "50", *faults) as carrier:
        settings = carrier_settings(carrier, 20, **{"warehouse.carrier_timeout_seconds": "0.5"})
        lane = make_lane("labels-faults", workers=["lf1", "lf2"], settings=settings)
        engine = lane.engine
        code = new_warehouse(engine, 600)  # 200 due
        before = shipments(engine, code)
        to_label = {id_ for id_, row in before.items() if row["due"]}
        started = lane.api.start_run(code, OPERATION, chunk_size=50, tolerated_failure_percent=100)
        run = lane.api.wait_until_finished(started["id"], RUN_TIMEOUT)
        stats = carrier.stats()

    assert run["status"] in ("succeeded", "partially_failed"), run
    after = shipments(engine, code)
    failures = failures_of(lane.api, run["id"])
    labelled = {id_ for id_ in to_label if after[id_]["label_id"]}
    failed = to_label - labelled
    # Every shipment is labelled, or listed as failed with the reason on the run and on the shipment.
    assert set(failures) == failed
    assert all(failures[id_] and after[id_]["label_error"] for id_ in failed)
    assert_labelled_once(before, {**after, **{id_: before[id_] for id_ in failed}}, labelled)
    assert run["result"]["labels_bought"] == len(labelled) and run["result"]["labels_failed"] == len(failed)
    # The faults happened, and no retry bought a second label.
    assert stats["failed"] > 0 and stats["rate_limited"] > 0, stats
    assert stats["duplicate_purchases"] == 0, stats
    assert stats["purchases"] >= len(labelled)


# --- 3. A worker node killed outright in the middle of the run ----------------------------------------


@pytest.mark.timeout(300, method="signal")
def test_a_node_killed_mid_run_buys_no_label_twice(make_lane, stub) -> None:
    with stub("--latency-ms", "100", "--max-in-flight", "50") as carrier:
        lane = make_lane("labels-kill", workers=["lk-victim", "lk-survivor"], settings=carrier_settings(carrier, 20))
        engine = lane.engine
        code = new_warehouse(engine, 3_000)  # 1,000 due
        before = shipments(engine, code)
        to_label = {id_ for id_, row in before.items() if row["due"]}
        victim = lane.workers[0]
        run_id = lane.api.start_run(code, OPERATION, chunk_size=50)["id"]
        lane.api.wait_for(run_id, lambda run: run["chunks"]["done"] >= 3, timeout=60, what="3 chunks done")
        held = freeze_holding_a_chunk(engine, run_id, victim, timeout=30)
        kill_node(victim, process_children(victim.process.pid))

        # Nobody reconciles: the survivor's sweep finds the victim silent, and sends its chunks again.
        # Its carrier slots come back when their leases run out.
        run = lane.api.wait_until_finished(run_id, RUN_TIMEOUT)
        stats = carrier.stats()

    assert run["status"] == "succeeded", run
    assert run["items"]["done"] == 1_000 and run["result"]["labels_bought"] == 1_000
    assert_labelled_once(before, shipments(engine, code), to_label)
    assert stats["duplicate_purchases"] == 0, stats
    assert stats["purchases"] == 1_000, stats
    redone = [chunk for chunk in chunk_rows(engine, run_id) if chunk["id"] in held]
    assert [(chunk["attempts"], chunk["worker_hostname"] != victim.name) for chunk in redone] == [(2, True)] * len(held)


# --- 4. The in-flight cap holds across nodes --------------------------------------------------------


@pytest.mark.timeout(240)
def test_calls_in_flight_never_exceed_the_cap_across_two_nodes(make_lane, stub) -> None:
    # The stub admits everything (no cap of its own), so its peak is exactly what the workers sent.
    with stub("--latency-ms", "50", "--max-in-flight", "0") as carrier:
        # Two nodes of two pool children, each with 10 threads for carrier calls: 40 would-be callers.
        lane = make_lane("labels-cap", workers=["lc1", "lc2"], settings=carrier_settings(carrier, 10))
        engine = lane.engine
        code = new_warehouse(engine, 900)  # 300 due
        run = lane.api.wait_until_finished(lane.api.start_run(code, OPERATION, chunk_size=25)["id"], RUN_TIMEOUT)
        stats = carrier.stats()

    assert run["status"] == "succeeded", run
    assert stats["purchases"] == 300 and stats["duplicate_purchases"] == 0, stats
    assert 8 <= stats["max_in_flight"] <= 10, stats
    # Both nodes took part, so the cap held across nodes, not just inside one.
    assert len({chunk["worker_hostname"] for chunk in chunk_rows(engine, run["id"])}) >= 2
