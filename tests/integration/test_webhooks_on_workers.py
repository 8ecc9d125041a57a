"""Webhooks on real ``celery worker`` processes over PostgreSQL and Redis, to a real receiver process
(tests/integration/webhook_receiver.py) that verifies every delivery with the standardwebhooks library.

- a receiver that fails the first attempts (a 500, then no answer for longer than the timeout) gets
  the run's start and its end, once each, with the same webhook-id on every attempt, and the
  delivery log shows each attempt;
- a worker killed (kill -9) while the receiver holds its request open: the delivery is still made,
  by a worker started afterwards, once the killed one's lease has run out;
- Redis's DB emptied (FLUSHDB of the lane's own broker DB) with the delivery's message in it: the
  reconciler sends it, and it is delivered;
- a subscription to a loopback address is refused, and one that got into the ledger anyway (as if
  its name resolved elsewhere when it was made) is refused at connect time: the receiver hears nothing;
- a 410 Gone disables the subscription.

Tests that kill or restart workers run on lanes of their own (``make_lane``); the 410 runs on the
session's w1 and w2. Timeouts and waits are set low in the lanes' inis so each test takes seconds.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import redis
from sqlalchemy import Engine, insert, select, text

from warehouse import scratch
from warehouse.models import Run, RunStatus, WebhookSubscription
from warehouse.scripts.seed import seed

HERE = Path(__file__).parent
bounded = pytest.mark.timeout(180, method="signal")
WAIT = 40.0

# Quick: an attempt times out after 1.5 s, waits between attempts start at 0.5 s, and every worker
# process looks for due deliveries every second. A claim's lease is then 2 x 1.5 + 5 = 8 s.
QUICK = {
    "warehouse.webhook_timeout_seconds": "1.5",
    "warehouse.webhook_backoff_seconds": "0.5",
    "warehouse.webhook_backoff_max_seconds": "2",
    "warehouse.worker_heartbeat_seconds": "1",
}


class Receiver:
    def __init__(self, process: subprocess.Popen[str], port: int) -> None:
        self.process = process
        self.port = port
        self.url = f"http://127.0.0.1:{port}/hooks/warehouse"

    def _call(self, path: str, document: Any = None) -> Any:
        data = None if document is None else json.dumps(document).encode()
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", data=data, timeout=5) as answer:
            return json.loads(answer.read())

    def configure(self, secrets: list[str], script: list[str]) -> None:
        self._call("/_configure", {"secrets": secrets, "script": script})

    def log(self) -> list[dict[str, Any]]:
        return self._call("/_log")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    process = subprocess.Popen(
        [sys.executable, str(HERE / "webhook_receiver.py")], stdout=subprocess.PIPE, text=True,
        preexec_fn=scratch.parent_death_signal(),
    )
    try:
        line = process.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith("port "), line
        yield Receiver(process, int(line.split()[1]))
    finally:
        process.kill()
        process.wait(timeout=10)


def wait_for(what: str, check: Callable[[], Any], timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout} s (last: {found!r})")
        time.sleep(0.2)


def subscribe(api: Any, url: str, events: list[str], code: str) -> dict[str, Any]:
    body = {"url": url, "events": events, "warehouse": code}
    return api.app.post_json("/api/webhooks", body, headers=api.operator, status=201).json


def deliveries(api: Any, subscription_id: int) -> list[dict[str, Any]]:
    return api.app.get(f"/api/webhooks/{subscription_id}/deliveries", headers=api.viewer, status=200).json["deliveries"]


def delivered(api: Any, subscription_id: int, count: int) -> Callable[[], list[dict[str, Any]] | None]:
    def check() -> list[dict[str, Any]] | None:
        listed = deliveries(api, subscription_id)
        return listed if len(listed) == count and all(each["status"] == "delivered" for each in listed) else None

    return check


def new_warehouse(api: Any, name: str) -> str:
    code = f"wh-{name}-{time.monotonic_ns() % 10**9}"
    api.app.post_json("/api/warehouses", {"code": code, "name": name}, headers=api.operator, status=201)
    return code


def pending_run(engine: Engine, code: str) -> int:
    """A run whose first task never went out: a cancel ends it at once (run.cancelled)."""
    with engine.begin() as connection:
        warehouse_id = connection.scalar(text("SELECT id FROM warehouses WHERE code = :code"), {"code": code})
        return connection.scalar(
            insert(Run).values(warehouse_id=warehouse_id, operation="valuation", status=RunStatus.PENDING, chunk_size=500)
            .returning(Run.id)
        )


def cancel(api: Any, run_id: int) -> None:
    api.app.post(f"/api/runs/{run_id}/cancel", headers=api.operator, status=202)


@bounded
def test_a_failing_then_slow_receiver_gets_each_event_once_with_one_webhook_id(make_lane, receiver: Receiver) -> None:
    lane = make_lane("wh_retry", workers=["h1", "h2"], settings=QUICK)
    code = new_warehouse(lane.api, "retry")
    seed(lane.engine, code, products=2_000, shipments=0)
    created = subscribe(lane.api, receiver.url, ["run.started", "run.succeeded"], code)
    receiver.configure([created["secret"]], ["500", "hang:4"])

    run = lane.api.start_run(code, "valuation")
    ended = lane.api.wait_until_finished(run["id"], timeout=60)
    listed = wait_for("two deliveries delivered", delivered(lane.api, created["id"], 2))

    assert ended["status"] == "succeeded"
    log = receiver.log()
    assert all(entry["verified"] for entry in log), log
    by_id: dict[str, list[dict[str, Any]]] = {}
    for entry in log:
        by_id.setdefault(entry["webhook_id"], []).append(entry)
    assert sorted(entries[0]["type"] for entries in by_id.values()) == ["run.started", "run.succeeded"]
    for entries in by_id.values():
        assert [entry["action"] for entry in entries] == ["500", "hang:4", "ok"], entries
        assert {entry["run_id"] for entry in entries} == {run["id"]}
        assert entries[0]["host"] == f"127.0.0.1:{receiver.port}" and entries[0]["path"] == "/hooks/warehouse"
    assert {each["message_id"] for each in listed} == set(by_id)
    for each in listed:
        assert [attempt["status_code"] for attempt in each["attempts"]] == [500, None, 200]
        assert each["attempts"][1]["error"] == "no answer within 1.5 s"
        assert each["attempt_count"] == 3 and each["next_attempt_at"] is None


@bounded
def test_a_worker_killed_mid_delivery_loses_nothing(make_lane, start_workers, receiver: Receiver) -> None:
    lane = make_lane("wh_kill", workers=["k1"], settings=QUICK)
    code = new_warehouse(lane.api, "kill")
    created = subscribe(lane.api, receiver.url, ["run.cancelled"], code)
    receiver.configure([created["secret"]], ["hang:60"])  # holds the first attempt open

    run_id = pending_run(lane.engine, code)
    cancel(lane.api, run_id)
    wait_for("a request held open", lambda: [entry for entry in receiver.log() if entry["finished"] is None])
    lane.workers[0].kill()  # kill -9 of the node and its pool children, mid-request
    killed_at = time.monotonic()
    start_workers(["k2"], ini_file=lane.ini_file, queues=[lane.queue], control_app=lane.control_app)

    [delivery] = wait_for("the delivery delivered after the kill", delivered(lane.api, created["id"], 1))
    assert time.monotonic() - killed_at < 30
    log = receiver.log()
    assert [entry["action"] for entry in log] == ["hang:60", "ok"]
    assert log[0]["webhook_id"] == log[1]["webhook_id"] == delivery["message_id"]
    # The killed attempt never ended, so only the one that did is in the log; both were counted.
    assert delivery["attempt_count"] == 2
    assert [attempt["status_code"] for attempt in delivery["attempts"]] == [200]


FLUSH_AND_CLAIM = """
redis.call('FLUSHDB')
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""


@bounded
def test_a_delivery_whose_message_redis_lost_is_sent_by_the_reconciler(
    harness: ModuleType, redis_url: str, make_lane, start_workers, receiver: Receiver
) -> None:
    session_db = redis.Redis.from_url(redis_url).connection_pool.connection_kwargs.get("db", 0)
    token = scratch.claim_token("test_webhooks_on_workers.py")
    with harness.claimed_redis_url("test_webhooks_on_workers.py", token=token, avoid=session_db) as broker_url:
        # No sweep, so no chore: only the message, then the reconciler, can send the delivery.
        lane = make_lane("wh_flush", workers=["f1"], settings={**QUICK, "warehouse.worker_sweep": "false"},
                         broker_url=broker_url)
        code = new_warehouse(lane.api, "flush")
        created = subscribe(lane.api, receiver.url, ["run.cancelled"], code)
        receiver.configure([created["secret"]], [])
        lane.workers[0].stop()  # nobody consumes: the message waits in Redis

        cancel(lane.api, pending_run(lane.engine, code))
        client = redis.Redis.from_url(broker_url)
        try:
            assert client.llen(f"{lane.queue}.runs") == 1
            client.eval(FLUSH_AND_CLAIM, 1, scratch.CLAIM_KEY, token)  # this DB only: the lane's broker
        finally:
            client.close()
        start_workers(["f2"], ini_file=lane.ini_file, queues=[lane.queue], control_app=lane.control_app)
        time.sleep(3)
        assert receiver.log() == [] and deliveries(lane.api, created["id"])[0]["status"] == "pending"

        reconciled = subprocess.run(
            [sys.executable, "-m", "warehouse.scripts.reconcile", str(lane.ini_file)],
            capture_output=True, text=True, timeout=60, check=True,
        )
        assert json.loads(reconciled.stdout.strip().splitlines()[-1])["webhook_deliveries_sent"] == 1
        [delivery] = wait_for("the delivery delivered after reconcile", delivered(lane.api, created["id"], 1))
        assert [entry["webhook_id"] for entry in receiver.log()] == [delivery["message_id"]]


@bounded
def test_a_private_address_is_refused_when_subscribing_and_when_connecting(make_lane, receiver: Receiver) -> None:
    lane = make_lane("wh_private", workers=["p1"],
                     settings={**QUICK, "warehouse.webhooks_allow_private_addresses": "false"})
    code = new_warehouse(lane.api, "private")

    refused = lane.api.app.post_json("/api/webhooks", {"url": receiver.url, "events": ["run.cancelled"]},
                                     headers=lane.api.operator, status=422).json["error"]
    assert refused["details"]["field"] == "url"
    assert refused["message"] == (
        "url points at a loopback address (127.0.0.1); webhooks may only go to public addresses"
    )
    # As if its name had resolved to a public address when it subscribed, and to loopback now.
    with lane.engine.begin() as connection:
        subscription_id = connection.scalar(
            insert(WebhookSubscription).values(
                url=receiver.url, events=["run.cancelled"], secret="whsec_" + "A" * 32, enabled=True,
                created_at=dt.datetime.now(dt.timezone.utc),
            ).returning(WebhookSubscription.id)
        )
    cancel(lane.api, pending_run(lane.engine, code))

    listed = wait_for("an attempt", lambda: [each for each in deliveries(lane.api, subscription_id) if each["attempts"]])
    assert listed[0]["attempts"][0]["error"] == (
        "refused: url points at a loopback address (127.0.0.1); webhooks may only go to public addresses"
    )
    assert listed[0]["status"] == "pending"  # it is tried again, in case the name changes back
    assert receiver.log() == []


@bounded
def test_a_410_disables_the_subscription(api, engine: Engine, workers, receiver: Receiver) -> None:
    code = new_warehouse(api, "gone")
    created = subscribe(api, receiver.url, ["run.cancelled"], code)
    receiver.configure([created["secret"]], ["410"])
    first = pending_run(engine, code)
    cancel(api, first)
    wait_for("the 410", lambda: [each for each in deliveries(api, created["id"]) if each["status"] == "failed"])
    cancel(api, pending_run(engine, code))

    [shown] = [each for each in api.app.get("/api/webhooks", headers=api.viewer).json["webhooks"] if each["id"] == created["id"]]
    assert shown["enabled"] is False and "410 Gone" in shown["disabled_reason"]
    assert [each["run_id"] for each in deliveries(api, created["id"])] == [first]  # the disabled one hears no more
    assert len(receiver.log()) == 1
    with engine.begin() as connection:
        assert connection.scalar(select(WebhookSubscription.enabled).where(WebhookSubscription.id == created["id"])) is False
