"""The webhooks API through WebTest on the embedded app: subscribing (the secret shown once), listing,
deleting, the delivery log and a retry; bad input refused in words with nothing written or sent;
roles.

Deliveries really go through the outbox, the ``deliverWebhook`` task on the embedded worker and the
signing; only the network is replaced, by a fake receiver (``receiver``) standing in for
``warehouse.webhooks.delivering.post``, so no test reaches outside this machine. Subscriptions are
made for warehouses of the test's own, so no other test's runs are told to anyone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import delete, func, select
from standardwebhooks import Webhook
from webtest import TestApp

from tests.functional.helpers import Sent, add_run, assert_error, nothing_written_or_sent
from warehouse.models import RunStatus, Warehouse, WebhookDelivery, WebhookSubscription
from warehouse.webhooks import delivering
from warehouse.webhooks.addresses import Target
from warehouse.webhooks.sending import Answer

PUBLIC_URL = "https://93.184.216.34/hooks/warehouse"  # a literal public address: nothing to resolve
ALL_EVENTS = ["run.started", "run.succeeded", "run.partially_failed", "run.failed", "run.cancelled"]
WAIT_SECONDS = 20.0


@dataclass
class Received:
    target: Target
    body: str
    headers: dict[str, str]


@dataclass
class FakeReceiver:
    """Answers every POST with the next of ``answers`` (200 once they run out) and keeps what came."""

    answers: list[Answer] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)

    def post(self, target: Target, body: str, headers: dict[str, str], timeout: float) -> Answer:
        self.received.append(Received(target, body, dict(headers)))
        return self.answers.pop(0) if self.answers else Answer(200, None, 3)


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> FakeReceiver:
    fake = FakeReceiver()
    monkeypatch.setattr(delivering, "post", fake.post)
    return fake


@pytest.fixture
def subscribe(testapp: TestApp, operator: dict, db: Any) -> Iterator[Callable[..., dict[str, Any]]]:
    """``subscribe(warehouse_code, events=[...], url=...)``: a subscription, deleted at the end."""
    made: list[int] = []

    def make(code: str | None, events: list[str] | None = None, url: str = PUBLIC_URL) -> dict[str, Any]:
        body: dict[str, Any] = {"url": url, "events": events or ALL_EVENTS}
        if code is not None:
            body["warehouse"] = code
        created = testapp.post_json("/api/webhooks", body, headers=operator, status=201).json
        made.append(created["id"])
        return created

    yield make
    with db.session() as session:
        session.execute(delete(WebhookSubscription).where(WebhookSubscription.id.in_(made)))


def deliveries(testapp: TestApp, viewer: dict, subscription_id: int, **query: Any) -> dict[str, Any]:
    return testapp.get(f"/api/webhooks/{subscription_id}/deliveries", query, headers=viewer, status=200).json


def wait_for_deliveries(testapp: TestApp, viewer: dict, subscription_id: int, until: Callable[[list[dict]], bool]) -> list[dict]:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        listed = deliveries(testapp, viewer, subscription_id)["deliveries"]
        if until(listed):
            return listed
        if time.monotonic() > deadline:
            pytest.fail(f"deliveries of webhook {subscription_id} never got there: {listed}")
        time.sleep(0.05)


def all_delivered(count: int) -> Callable[[list[dict]], bool]:
    return lambda listed: len(listed) == count and all(each["status"] == "delivered" for each in listed)


# --- subscribing ----------------------------------------------------------------------------------


def test_a_subscription_shows_its_secret_once(
    testapp: TestApp, operator: dict, viewer: dict, warehouse: Warehouse, subscribe: Callable[..., dict]
) -> None:
    created = subscribe(warehouse.code, ["run.succeeded", "run.failed"])

    assert created["secret"].startswith("whsec_")
    Webhook(created["secret"])  # a secret the Standard Webhooks library takes
    assert created["url"] == PUBLIC_URL
    assert created["events"] == ["run.succeeded", "run.failed"]
    assert (created["warehouse"], created["enabled"], created["disabled_reason"]) == (warehouse.code, True, None)
    listed = testapp.get("/api/webhooks", headers=viewer, status=200)
    shown = [each for each in listed.json["webhooks"] if each["id"] == created["id"]]
    assert shown == [{key: value for key, value in created.items() if key != "secret"}]
    assert created["secret"] not in listed.text


def test_two_subscriptions_get_different_secrets(warehouse: Warehouse, subscribe: Callable[..., dict]) -> None:
    assert subscribe(warehouse.code)["secret"] != subscribe(warehouse.code)["secret"]


def test_a_subscription_without_a_warehouse_hears_of_every_warehouse(subscribe: Callable[..., dict]) -> None:
    created = subscribe(None, ["run.cancelled"])

    assert created["warehouse"] is None


SUBSCRIPTION_REFUSALS = [
    ({"events": ["run.failed"]}, 400, "url", None),
    ({"url": PUBLIC_URL}, 400, "events", None),
    ({"url": PUBLIC_URL, "events": []}, 400, "events", None),
    ({"url": PUBLIC_URL, "events": ["run.exploded", "run.failed", "run.vanished"]}, 422, "events", "'run.exploded', 'run.vanished'"),
    ({"url": PUBLIC_URL, "events": ["run.failed"], "secret": "whsec_mine"}, 400, "body", None),
    ({"url": "ftp://93.184.216.34/x", "events": ["run.failed"]}, 400, "url", "http or https"),
    ({"url": "not a url", "events": ["run.failed"]}, 400, "url", None),
    ({"url": "https://user:pw@93.184.216.34/", "events": ["run.failed"]}, 400, "url", "password"),
    ({"url": "http://10.0.0.5/hook", "events": ["run.failed"]}, 422, "url",
     "url points at a private address (10.0.0.5); webhooks may only go to public addresses"),
    ({"url": "http://127.0.0.1:8080/", "events": ["run.failed"]}, 422, "url", "loopback address (127.0.0.1)"),
    ({"url": "http://[::1]/", "events": ["run.failed"]}, 422, "url", "loopback address (::1)"),
    ({"url": "http://169.254.169.254/latest/meta-data", "events": ["run.failed"]}, 422, "url", "link-local"),
    ({"url": "http://localhost/", "events": ["run.failed"]}, 422, "url", "loopback"),
    ({"url": "http://no-such-host.invalid/", "events": ["run.failed"]}, 422, "url", "could not be resolved"),
    ({"url": PUBLIC_URL, "events": ["run.failed"], "warehouse": "no-such-warehouse"}, 404, "warehouse", "no-such-warehouse"),
]


@pytest.mark.parametrize(("body", "status", "field", "words"), SUBSCRIPTION_REFUSALS,
                         ids=[f"{field}-{status}-{i}" for i, (_, status, field, _) in enumerate(SUBSCRIPTION_REFUSALS)])
def test_a_subscription_that_cannot_be_is_refused_in_words_writing_nothing(
    body: dict, status: int, field: str, words: str | None, testapp: TestApp, operator: dict, db: Any, sent: list[Sent]
) -> None:
    with nothing_written_or_sent(db, sent):
        response = testapp.post_json("/api/webhooks", body, headers=operator, status=status)

    error = assert_error(response, status, field=field)
    if words:
        assert words in error["message"]


def test_private_addresses_are_allowed_when_the_settings_say_so(
    testapp: TestApp, operator: dict, wsgi_app: Any, monkeypatch: pytest.MonkeyPatch, warehouse: Warehouse, db: Any
) -> None:
    monkeypatch.setitem(wsgi_app.registry.settings, "warehouse.webhooks_allow_private_addresses", "true")

    created = testapp.post_json("/api/webhooks", {"url": "http://127.0.0.1:9/hook", "events": ["run.failed"],
                                                  "warehouse": warehouse.code}, headers=operator, status=201).json

    testapp.delete(f"/api/webhooks/{created['id']}", headers=operator, status=204)


# --- deleting -------------------------------------------------------------------------------------


def test_delete_removes_the_subscription_and_its_deliveries(
    testapp: TestApp, operator: dict, viewer: dict, db: Any, warehouse: Warehouse, subscribe: Callable[..., dict],
    receiver: FakeReceiver,
) -> None:
    created = subscribe(warehouse.code, ["run.cancelled"])
    run_id = add_run(db, warehouse.id, RunStatus.PENDING)
    receiver.answers = [Answer(503, "the receiver answered 503", 5)]
    testapp.post(f"/api/runs/{run_id}/cancel", headers=operator, status=202)
    wait_for_deliveries(testapp, viewer, created["id"], lambda listed: listed and listed[0]["attempts"])

    testapp.delete(f"/api/webhooks/{created['id']}", headers=operator, status=204)

    assert db.scalar(select(func.count()).select_from(WebhookDelivery).where(WebhookDelivery.subscription_id == created["id"])) == 0
    assert_error(testapp.get(f"/api/webhooks/{created['id']}/deliveries", headers=viewer, status=404), 404, "webhook_not_found", "id")
    assert_error(testapp.delete(f"/api/webhooks/{created['id']}", headers=operator, status=404), 404, "webhook_not_found", "id")


# --- deliveries -----------------------------------------------------------------------------------


def test_a_run_start_and_end_are_delivered_signed_with_the_run_as_the_api_shows_it(
    testapp: TestApp, operator: dict, viewer: dict, db: Any, warehouse: Warehouse, subscribe: Callable[..., dict],
    receiver: FakeReceiver, wait_for_run: Callable[..., dict],
) -> None:
    created = subscribe(warehouse.code)
    db.add_products(warehouse.id, 30)

    run = testapp.post_json(f"/api/warehouses/{warehouse.code}/runs", {"operation": "valuation", "chunk_size": 10},
                            headers=operator, status=202).json
    ended = wait_for_run(testapp, run["id"])
    listed = wait_for_deliveries(testapp, viewer, created["id"], all_delivered(2))

    assert [each["event_type"] for each in listed] == ["run.succeeded", "run.started"]  # newest first
    assert {each["run_id"] for each in listed} == {run["id"]}
    bodies = {}
    for each in receiver.received:
        assert each.target.address == "93.184.216.34" and each.target.hostname == "93.184.216.34"
        assert each.headers["content-type"] == "application/json"
        payload = Webhook(created["secret"]).verify(each.body, each.headers)
        bodies[payload["type"]] = payload
    assert set(bodies) == {"run.started", "run.succeeded"}
    assert bodies["run.succeeded"]["data"] == testapp.get(f"/api/runs/{run['id']}", headers=viewer).json == ended
    assert bodies["run.started"]["data"]["status"] == "running"
    for each in listed:
        assert each["message_id"] in {received.headers["webhook-id"] for received in receiver.received}
        assert (each["attempt_count"], each["last_status_code"], each["next_attempt_at"]) == (1, 200, None)
        assert [(a["status_code"], a["error"]) for a in each["attempts"]] == [(200, None)]
        assert each["delivered_at"] is not None


def test_only_the_events_and_the_warehouse_subscribed_to_are_delivered(
    testapp: TestApp, operator: dict, viewer: dict, db: Any, warehouse: Warehouse, subscribe: Callable[..., dict],
    receiver: FakeReceiver,
) -> None:
    other = db.add_warehouse()
    wants_failures = subscribe(warehouse.code, ["run.failed"])
    wants_cancels = subscribe(warehouse.code, ["run.cancelled"])
    elsewhere = subscribe(other.code, ["run.cancelled"])

    run_id = add_run(db, warehouse.id, RunStatus.PENDING)
    testapp.post(f"/api/runs/{run_id}/cancel", headers=operator, status=202)

    listed = wait_for_deliveries(testapp, viewer, wants_cancels["id"], all_delivered(1))
    assert listed[0]["event_type"] == "run.cancelled"
    assert deliveries(testapp, viewer, wants_failures["id"])["deliveries"] == []
    assert deliveries(testapp, viewer, elsewhere["id"])["deliveries"] == []


def test_the_delivery_log_pages_newest_first(
    testapp: TestApp, operator: dict, viewer: dict, db: Any, warehouse: Warehouse, subscribe: Callable[..., dict],
    receiver: FakeReceiver,
) -> None:
    created = subscribe(warehouse.code, ["run.cancelled"])
    run_ids = []
    for _ in range(3):
        run_ids.append(add_run(db, warehouse.id, RunStatus.PENDING))
        testapp.post(f"/api/runs/{run_ids[-1]}/cancel", headers=operator, status=202)
    wait_for_deliveries(testapp, viewer, created["id"], all_delivered(3))

    seen, cursor = [], None
    while True:
        page = deliveries(testapp, viewer, created["id"], limit=2, **({"cursor": cursor} if cursor else {}))
        seen += [each["run_id"] for each in page["deliveries"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == run_ids[::-1]


def test_a_failed_attempt_is_logged_and_a_retry_sends_it_again_with_the_same_webhook_id(
    testapp: TestApp, operator: dict, viewer: dict, db: Any, warehouse: Warehouse, subscribe: Callable[..., dict],
    receiver: FakeReceiver, sent: list[Sent],
) -> None:
    created = subscribe(warehouse.code, ["run.cancelled"])
    receiver.answers = [Answer(500, "the receiver answered 500", 12)]
    run_id = add_run(db, warehouse.id, RunStatus.PENDING)
    testapp.post(f"/api/runs/{run_id}/cancel", headers=operator, status=202)
    [failed] = wait_for_deliveries(testapp, viewer, created["id"], lambda listed: listed and listed[0]["attempts"])

    assert (failed["status"], failed["last_status_code"], failed["attempt_count"]) == ("pending", 500, 1)
    assert failed["attempts"][0]["error"] == "the receiver answered 500"
    assert failed["attempts"][0]["duration_ms"] == 12
    assert failed["next_attempt_at"] is not None and failed["give_up_at"] is not None

    answer = testapp.post(f"/api/webhooks/{created['id']}/deliveries/{failed['id']}/retry", headers=operator, status=202).json
    assert (answer["id"], answer["status"], answer["message_id"]) == (failed["id"], "pending", failed["message_id"])
    assert [each.name for each in sent if each.name == "deliverWebhook"][-1:] == ["deliverWebhook"]
    [delivered] = wait_for_deliveries(testapp, viewer, created["id"], all_delivered(1))
    assert [a["status_code"] for a in delivered["attempts"]] == [500, 200]
    assert [each.headers["webhook-id"] for each in receiver.received] == [failed["message_id"]] * 2

    # A delivered one is sent again too, when asked.
    testapp.post(f"/api/webhooks/{created['id']}/deliveries/{failed['id']}/retry", headers=operator, status=202)
    [again] = wait_for_deliveries(testapp, viewer, created["id"], lambda listed: len(listed[0]["attempts"]) == 3)
    assert again["status"] == "delivered" and len(receiver.received) == 3


def test_a_410_disables_the_subscription_and_a_retry_is_then_refused(
    testapp: TestApp, operator: dict, viewer: dict, db: Any, warehouse: Warehouse, subscribe: Callable[..., dict],
    receiver: FakeReceiver, sent: list[Sent],
) -> None:
    created = subscribe(warehouse.code, ["run.cancelled"])
    receiver.answers = [Answer(410, "the receiver answered 410", 4)]
    run_id = add_run(db, warehouse.id, RunStatus.PENDING)
    testapp.post(f"/api/runs/{run_id}/cancel", headers=operator, status=202)
    [gone] = wait_for_deliveries(testapp, viewer, created["id"], lambda listed: listed and listed[0]["status"] == "failed")

    shown = [each for each in testapp.get("/api/webhooks", headers=viewer).json["webhooks"] if each["id"] == created["id"]]
    assert shown[0]["enabled"] is False and "410" in shown[0]["disabled_reason"]
    sent.clear()
    with nothing_written_or_sent(db, sent):
        refused = testapp.post(f"/api/webhooks/{created['id']}/deliveries/{gone['id']}/retry", headers=operator, status=409)
    assert_error(refused, 409, "webhook_disabled", "id")


def test_retrying_a_delivery_that_is_not_the_webhooks_is_404(
    testapp: TestApp, operator: dict, db: Any, sent: list[Sent], warehouse: Warehouse, subscribe: Callable[..., dict]
) -> None:
    created = subscribe(warehouse.code)

    with nothing_written_or_sent(db, sent):
        missing = testapp.post(f"/api/webhooks/{created['id']}/deliveries/987654321/retry", headers=operator, status=404)
        no_webhook = testapp.post("/api/webhooks/987654321/deliveries/1/retry", headers=operator, status=404)

    assert_error(missing, 404, "delivery_not_found", "delivery_id")
    assert_error(no_webhook, 404, "webhook_not_found", "id")


def test_with_no_subscription_a_run_writes_no_event(
    testapp: TestApp, operator: dict, db: Any, warehouse: Warehouse
) -> None:
    from warehouse.models import WebhookEvent

    run_id = add_run(db, warehouse.id, RunStatus.PENDING)
    testapp.post(f"/api/runs/{run_id}/cancel", headers=operator, status=202)

    assert db.scalar(select(func.count()).select_from(WebhookEvent).where(WebhookEvent.run_id == run_id)) == 0


# --- roles ----------------------------------------------------------------------------------------

ROUTES = [
    ("POST", "/api/webhooks", "operator"),
    ("GET", "/api/webhooks", "viewer"),
    ("DELETE", "/api/webhooks/{id}", "operator"),
    ("GET", "/api/webhooks/{id}/deliveries", "viewer"),
    ("POST", "/api/webhooks/{id}/deliveries/1/retry", "operator"),
]


@pytest.mark.parametrize(("method", "path", "role"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_without_a_token_every_webhook_route_is_401_and_a_viewer_may_not_change_anything(
    method: str, path: str, role: str, testapp: TestApp, viewer: dict, db: Any, sent: list[Sent],
    warehouse: Warehouse, subscribe: Callable[..., dict],
) -> None:
    url = path.format(id=subscribe(warehouse.code)["id"])
    body = {"url": PUBLIC_URL, "events": ["run.failed"], "warehouse": warehouse.code}

    with nothing_written_or_sent(db, sent):
        anonymous = testapp.request(url, method=method, json=body if method == "POST" else None, expect_errors=True)
        as_viewer = testapp.request(url, method=method, json=body if method == "POST" else None, headers=viewer,
                                    expect_errors=True)

    assert_error(anonymous, 401, "unauthorized")
    if role == "operator":
        assert_error(as_viewer, 403, "forbidden")
    else:
        assert as_viewer.status_int == 200
