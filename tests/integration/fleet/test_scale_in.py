"""A node told to stop (SIGTERM: what Kubernetes, ECS and ``docker compose --scale`` send) in the middle
of a run: a warm shutdown. The chunks it is running finish and are recorded by it; the messages it had
taken but not started go back to the queue at once, so nothing waits for the dead-worker timeout; and
the ledger records that its processes stopped.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import text

from tests.integration.fleet.helpers import RUN_TIMEOUT, assert_exact, database_now
from tests.integration.nodes import running_chunks_of
from warehouse.scripts.seed import seed

# Well under the dead-worker timeout (15 s) plus a heartbeat: a chunk handed back at once starts on
# another node within a second or two; one left to the sweep would wait at least 15 s.
HANDED_BACK_WITHIN = 8.0


def reserved_chunk_starts(fleet, worker, run_id: int) -> set[int]:  # type: ignore[no-untyped-def]
    """Start ids of the run's chunks whose messages ``worker`` holds without running them yet."""
    replies = fleet.control_app.control.inspect(destination=[worker.name], timeout=1.0).reserved() or {}
    return {
        request["args"][1]
        for request in replies.get(worker.name, [])
        if request.get("name") == "processSomeProducts" and request["args"][0] == run_id
    }


@pytest.mark.timeout(300, method="signal")
def test_a_node_told_to_stop_finishes_its_chunks_and_hands_back_the_rest_at_once(make_fleet) -> None:
    fleet = make_fleet(**{"warehouse.test.chunk_delay_seconds": "1.0"})
    # n1 prefetches, so that it holds messages it has not started when it is told to stop.
    n1, n2, n3 = fleet.start_nodes(["n1", "n2", "n3"], extra_args={"n1": ["--prefetch-multiplier=4"]})
    seed(fleet.engine, "scaled-in", products=25_000, shipments=0)
    run_id = fleet.api.start_run("scaled-in", "slow_valuation")["id"]

    deadline = time.monotonic() + 30
    while True:
        running = running_chunks_of(fleet.engine, run_id, n1.name)
        reserved = reserved_chunk_starts(fleet, n1, run_id)
        if len(running) == 2 and reserved:
            break
        assert time.monotonic() < deadline, f"n1 never ran two chunks with more reserved: {running}, {reserved}"
        time.sleep(0.1)
    stopped_at = database_now(fleet.engine)
    n1.terminate()  # SIGTERM to its main process, as an orchestrator sends it
    assert n1.process.wait(timeout=30) == 0

    run = fleet.api.wait_until_finished(run_id, RUN_TIMEOUT)
    chunks = {chunk["start_id"]: chunk for chunk in assert_exact(fleet, "scaled-in", run, 25_000)}
    finished_by_n1 = [chunk for chunk in chunks.values() if chunk["id"] in running]
    assert len(finished_by_n1) == 2
    assert all(chunk["worker_hostname"] == n1.name and chunk["attempts"] == 1 for chunk in finished_by_n1)
    handed_back = [chunks[start] for start in reserved]
    for chunk in handed_back:
        assert not chunk["worker_hostname"].startswith("n1@"), chunk
        assert (chunk["started_at"] - stopped_at).total_seconds() < HANDED_BACK_WITHIN, (chunk, stopped_at)
    assert {chunk["attempts"] for chunk in chunks.values()} == {1}  # nothing was released and redone
    with fleet.engine.connect() as connection:
        stopped = connection.execute(
            text("SELECT count(*), count(stopped_at) FROM workers WHERE node = :node"), {"node": n1.name}
        ).one()
    assert stopped[0] == stopped[1] == 2, stopped
