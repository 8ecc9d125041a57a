"""The core run tests again with RabbitMQ as the broker (Celery's recommended production broker;
Amazon MQ on AWS) and Redis as the result backend: a run shared by two nodes, and a node killed
outright in the middle of one. RabbitMQ gives a dead consumer's unacknowledged messages back as soon as
its connection closes, and the sweep sends what the dead node held again: either way, within seconds.

Each test has a lane of its own (database, queue, ini, web app, workers) on the session's RabbitMQ
vhost (tests/integration/conftest.py: ``rabbitmq_url``).
"""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import Engine, text

from tests.integration.checks import assert_all_done, assert_valued, chunk_rows
from tests.integration.nodes import freeze_holding_a_chunk, kill_node, process_children
from warehouse.scripts.seed import seed

RUN_TIMEOUT = 120.0
RECOVERY_BOUND = 30.0


def database_now(engine: Engine):  # type: ignore[no-untyped-def]
    with engine.connect() as connection:
        return connection.scalar(text("SELECT now()"))


def assert_succeeded_exactly(lane, code: str, run: dict, products: int) -> list[dict]:  # type: ignore[no-untyped-def]
    assert run["status"] == "succeeded", run
    chunks = chunk_rows(lane.engine, run["id"])
    assert_all_done(run["chunks"], len(chunks))
    assert_all_done(run["items"], products)
    assert Counter(chunk["status"] for chunk in chunks) == {"done": len(chunks)}
    assert_valued(lane.engine, code, run, products)
    return chunks


@pytest.mark.timeout(180, method="signal")
def test_a_run_on_two_nodes_over_rabbitmq(make_lane, rabbitmq_url: str) -> None:
    lane = make_lane(
        "amqp-run", workers=["a1", "a2"], broker_url=rabbitmq_url, settings={"warehouse.test.chunk_delay_seconds": "0.05"}
    )
    seed(lane.engine, "amqp", products=20_000, shipments=0)

    run = lane.api.wait_until_finished(lane.api.start_run("amqp", "slow_valuation")["id"], RUN_TIMEOUT)

    chunks = assert_succeeded_exactly(lane, "amqp", run, 20_000)
    assert {chunk["worker_hostname"] for chunk in chunks} == {worker.name for worker in lane.workers}
    assert {chunk["attempts"] for chunk in chunks} == {1}


@pytest.mark.timeout(240, method="signal")
def test_a_node_killed_outright_over_rabbitmq_its_chunks_run_elsewhere_within_seconds(make_lane, rabbitmq_url: str) -> None:
    lane = make_lane(
        "amqp-kill", workers=["ak-victim", "ak-survivor"], broker_url=rabbitmq_url,
        settings={"warehouse.test.chunk_delay_seconds": "0.3"},
    )
    victim = lane.workers[0]
    seed(lane.engine, "amqp-kill", products=30_000, shipments=0)
    run_id = lane.api.start_run("amqp-kill", "slow_valuation")["id"]
    lane.api.wait_for(run_id, lambda run: run["chunks"]["done"] >= 4, 60, "four chunks done")

    held = freeze_holding_a_chunk(lane.engine, run_id, victim, timeout=30)
    killed_at = database_now(lane.engine)
    kill_node(victim, process_children(victim.process.pid))
    run = lane.api.wait_until_finished(run_id, RUN_TIMEOUT)

    chunks = assert_succeeded_exactly(lane, "amqp-kill", run, 30_000)
    redone = [chunk for chunk in chunks if chunk["id"] in held]
    assert len(redone) == len(held) >= 1
    for chunk in redone:
        assert chunk["attempts"] == 2 and chunk["worker_hostname"] != victim.name, chunk
        assert (chunk["started_at"] - killed_at).total_seconds() <= RECOVERY_BOUND, (chunk, killed_at)
    assert {chunk["id"] for chunk in chunks if chunk["attempts"] != 1} == set(held)
