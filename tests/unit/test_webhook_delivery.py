"""Webhooks below the API: signing (checked with standardwebhooks' own verify), which addresses may be
called, the outbox written in the ledger's transaction, claims and their lease, backoff and giving
up, a 410, and one real POST to a server on loopback (no redirect followed, 64 KiB read at most)."""

from __future__ import annotations

import datetime as dt
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from tests.functional.helpers import add_run
from warehouse import ledger
from warehouse.models import (
    DeliveryStatus, RunStatus, WebhookAttempt, WebhookDelivery, WebhookEvent, WebhookSubscription,
)
from warehouse.webhooks import delivering, sending, subscriptions
from warehouse.webhooks.addresses import AddressRefused, UrlMalformed, check_url
from warehouse.webhooks.outbox import record_run_event, take_unsent
from warehouse.webhooks.sending import Answer

SETTINGS = {
    "warehouse.webhook_timeout_seconds": "2",
    "warehouse.webhook_backoff_seconds": "10",
    "warehouse.webhook_backoff_max_seconds": "100",
    "warehouse.webhook_retry_hours": "1",
}


# --- signing --------------------------------------------------------------------------------------


def test_a_signed_delivery_verifies_with_the_standardwebhooks_library() -> None:
    secret = subscriptions.new_secret()
    body = sending.envelope("run.succeeded", "2030-01-01T00:00:00+00:00", {"id": 7, "status": "succeeded"})

    headers = sending.signed_headers(secret, "msg_abc", body)

    assert Webhook(secret).verify(body, headers) == {
        "type": "run.succeeded", "timestamp": "2030-01-01T00:00:00+00:00", "data": {"id": 7, "status": "succeeded"}
    }
    assert headers["webhook-id"] == "msg_abc" and headers["content-type"] == "application/json"
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace("succeeded", "failed"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(subscriptions.new_secret()).verify(body, headers)


def test_secrets_are_random_standard_webhooks_secrets() -> None:
    made = {subscriptions.new_secret() for _ in range(50)}

    assert len(made) == 50
    assert all(secret.startswith("whsec_") and len(secret) == 6 + 32 for secret in made)


# --- addresses ------------------------------------------------------------------------------------

REFUSED = {
    "http://10.0.0.5/": "private address (10.0.0.5)",
    "http://172.16.3.4/": "private",
    "http://192.168.1.1:8080/x": "private",
    "http://127.0.0.1/": "loopback",
    "http://127.8.9.10/": "loopback",
    "http://0.0.0.0/": "unspecified",
    "http://169.254.169.254/latest/meta-data": "link-local",
    "http://224.0.0.1/": "multicast",
    "http://240.0.0.1/": "reserved",
    "http://100.64.0.1/": "non-public",
    "http://192.0.2.10/": "private",  # documentation range
    "http://[::1]/": "loopback",
    "http://[::]/": "unspecified",
    "http://[fe80::1]/": "link-local",
    "http://[fc00::1]/": "private",
    "http://[ff02::1]/": "multicast",
    "http://[::ffff:10.0.0.1]/": "private",
    "http://[::ffff:127.0.0.1]/": "loopback",
    "http://[2002:7f00:1::]/": "loopback",  # 6to4 around 127.0.0.1
    "http://[2001:db8::1]/": "private",
}


@pytest.mark.parametrize(("url", "words"), REFUSED.items(), ids=list(REFUSED))
def test_addresses_that_are_not_public_are_refused(url: str, words: str) -> None:
    with pytest.raises(AddressRefused) as refused:
        check_url(url)

    assert words in str(refused.value)
    assert str(refused.value).endswith("webhooks may only go to public addresses")
    assert not isinstance(refused.value, UrlMalformed)
    check_url(url, allow_private=True)  # unless the settings allow them


MALFORMED = ["ftp://93.184.216.34/", "file:///etc/passwd", "gopher://1.1.1.1/", "javascript:alert(1)", "93.184.216.34",
             "http://", "http:///x", "http://a b/", "http://1.1.1.1/\u0000", "http://user:pw@1.1.1.1/",
             "http://1.1.1.1:99999/", "http://1.1.1.1/#frag", "http://ex\u0430mple.com/", "http://\u202eexample.com/",
             "http://<script>/", "http://1.1.1.1/a\"b", "http://exa_mple.com/", "http://" + "a" * 2001]


@pytest.mark.parametrize("url", MALFORMED)
def test_what_is_no_http_url_is_refused_as_malformed(url: str) -> None:
    with pytest.raises(UrlMalformed) as refused:
        check_url(url, allow_private=True)

    assert str(refused.value).startswith("url")


@pytest.mark.parametrize("url", ["https://93.184.216.34/hook", "http://[2606:4700:4700::1111]:8080/a?b=c", "HTTPS://1.1.1.1"])
def test_public_addresses_are_allowed(url: str) -> None:
    target = check_url(url)

    assert target.address in url.lower() or target.address == "1.1.1.1"


def test_a_name_is_refused_if_any_of_its_addresses_is_private_and_pinned_to_the_checked_one() -> None:
    def resolve(host: str, port: int) -> list[str]:
        return {"mixed.example": ["93.184.216.34", "10.1.2.3"], "fine.example": ["93.184.216.34", "1.1.1.1"]}[host]

    with pytest.raises(AddressRefused, match=r"private address \(10\.1\.2\.3\)"):
        check_url("https://mixed.example/", resolve=resolve)
    target = check_url("https://fine.example:8443/hook?x=1", resolve=resolve)
    assert (target.address, target.hostname, target.host_header, target.port, target.path) == (
        "93.184.216.34", "fine.example", "fine.example:8443", 8443, "/hook?x=1")


def test_a_name_that_does_not_resolve_is_refused() -> None:
    def resolve(host: str, port: int) -> list[str]:
        raise socket.gaierror(-2, "Name or service not known")

    with pytest.raises(AddressRefused, match="could not be resolved"):
        check_url("https://nowhere.example/", resolve=resolve)


# --- the outbox -----------------------------------------------------------------------------------


def _subscription(session: Session, warehouse_id: int | None, events: list[str], url: str = "https://93.184.216.34/h") -> WebhookSubscription:
    subscription = WebhookSubscription(url=url, events=events, warehouse_id=warehouse_id, secret=subscriptions.new_secret(),
                                       enabled=True, created_at=delivering.utcnow())
    session.add(subscription)
    session.flush()
    return subscription


def test_the_outbox_is_written_in_the_transaction_of_the_status_change(db: Any, dbsession: Session) -> None:
    warehouse, other = db.add_warehouse(), db.add_warehouse()  # before the session takes SQLite's write lock
    run_id = add_run(db, warehouse.id, RunStatus.PENDING)
    wanting = _subscription(dbsession, warehouse.id, ["run.cancelled"])
    _subscription(dbsession, warehouse.id, ["run.failed"])  # wants another event
    _subscription(dbsession, other.id, ["run.cancelled"])  # another warehouse's runs
    everywhere = _subscription(dbsession, None, ["run.cancelled", "run.succeeded"])

    ledger.cancel_run(dbsession, run_id)

    events = dbsession.scalars(select(WebhookEvent).where(WebhookEvent.run_id == run_id)).all()
    assert [(event.type, event.data["status"], event.data["warehouse"]) for event in events] == [
        ("run.cancelled", "cancelled", warehouse.code)]
    rows = dbsession.scalars(select(WebhookDelivery).where(WebhookDelivery.event_id == events[0].id)).all()
    assert sorted(row.subscription_id for row in rows) == sorted([wanting.id, everywhere.id])
    assert all(row.status == DeliveryStatus.PENDING and row.next_attempt_at is not None for row in rows)
    assert len({row.message_id for row in rows}) == 2
    assert sorted(take_unsent(dbsession)) == sorted(row.id for row in rows) and take_unsent(dbsession) == []

    dbsession.rollback()  # the status change rolled back: no event, no delivery

    assert db.scalar(select(func.count()).select_from(WebhookEvent).where(WebhookEvent.run_id == run_id)) == 0
    assert db.scalar(select(func.count()).select_from(WebhookSubscription).where(WebhookSubscription.id == wanting.id)) == 0


def test_with_no_subscription_wanting_it_nothing_is_written(db: Any, dbsession: Session) -> None:
    warehouse = db.add_warehouse()
    run_id = add_run(db, warehouse.id, RunStatus.PENDING)
    _subscription(dbsession, warehouse.id, ["run.succeeded"])

    assert record_run_event(dbsession, run_id, RunStatus.CANCELLED) == []
    assert record_run_event(dbsession, run_id, RunStatus.CANCELLING) == []  # no event type at all
    assert dbsession.scalar(select(func.count()).select_from(WebhookEvent).where(WebhookEvent.run_id == run_id)) == 0


def test_a_disabled_subscription_gets_no_delivery(db: Any, dbsession: Session) -> None:
    warehouse = db.add_warehouse()
    run_id = add_run(db, warehouse.id, RunStatus.PENDING)
    _subscription(dbsession, warehouse.id, ["run.cancelled"]).enabled = False
    dbsession.flush()

    assert record_run_event(dbsession, run_id, RunStatus.CANCELLED) == []


# --- claims, backoff, giving up, 410 --------------------------------------------------------------


second_run: list[int] = []


@pytest.fixture
def one_delivery(db: Any, dbsession: Session) -> Iterator[tuple[Session, int, int]]:
    """A committed subscription and pending delivery of a run's cancel: (session, subscription, delivery).
    The warehouse has a second pending run (``second_run``), made before the session locks SQLite."""
    warehouse = db.add_warehouse()
    run_id = add_run(db, warehouse.id, RunStatus.PENDING)
    # Another operation's run: one active run per operation and warehouse.
    second_run.append(add_run(db, warehouse.id, RunStatus.PENDING, operation="shipping_labels"))
    subscription = _subscription(dbsession, warehouse.id, ["run.cancelled"])
    ledger.cancel_run(dbsession, run_id)
    [delivery_id] = take_unsent(dbsession)
    dbsession.commit()
    yield dbsession, subscription.id, delivery_id
    dbsession.rollback()
    dbsession.execute(WebhookSubscription.__table__.delete().where(WebhookSubscription.id == subscription.id))
    dbsession.commit()


def test_a_claim_is_a_lease_and_a_late_outcome_is_fenced_out(one_delivery: tuple[Session, int, int]) -> None:
    session, _, delivery_id = one_delivery
    now = delivering.utcnow()

    first = delivering.claim_one(session, delivery_id, SETTINGS, now)
    assert first is not None and first.attempt == 1
    assert delivering.claim_one(session, delivery_id, SETTINGS, now + dt.timedelta(seconds=8)) is None  # leased
    assert delivering.claim_due(session, SETTINGS, 10, now + dt.timedelta(seconds=8)) == []
    second = delivering.claim_one(session, delivery_id, SETTINGS, now + dt.timedelta(seconds=10))  # 2 x 2 + 5 = 9 s
    assert second is not None and second.attempt == 2 and second.message_id == first.message_id

    assert delivering.record(session, first, Answer(200, None, 5), SETTINGS) is None  # the sender that came back late
    assert delivering.record(session, second, Answer(200, None, 5), SETTINGS) == DeliveryStatus.DELIVERED
    assert session.scalar(select(func.count()).select_from(WebhookAttempt).where(WebhookAttempt.delivery_id == delivery_id)) == 2


def test_a_failure_is_tried_again_after_a_growing_wait_until_its_time_is_up(one_delivery: tuple[Session, int, int]) -> None:
    session, _, delivery_id = one_delivery
    now = delivering.utcnow()
    waits = []
    for attempt in range(1, 4):
        claim = delivering.claim_one(session, delivery_id, SETTINGS, now)
        assert claim is not None and claim.attempt == attempt
        assert delivering.record(session, claim, Answer(503, "the receiver answered 503", 5), SETTINGS, now) == "pending"
        delivery = session.get_one(WebhookDelivery, delivery_id)
        next_at = delivering.aware(delivery.next_attempt_at)
        waits.append((next_at - now).total_seconds())
        now = next_at
    # Equal jitter over 10, 20, 40 s: between half and all of each step.
    assert 5 <= waits[0] <= 10 and 10 <= waits[1] <= 20 and 20 <= waits[2] <= 40

    give_up_at = delivering.aware(session.get_one(WebhookDelivery, delivery_id).give_up_at)
    late = give_up_at + dt.timedelta(seconds=1)
    claim = delivering.claim_one(session, delivery_id, SETTINGS, late)
    assert claim is not None
    assert delivering.record(session, claim, Answer(None, "no answer within 2 s", 2000), SETTINGS, late) == "failed"
    assert delivering.claim_one(session, delivery_id, SETTINGS, late + dt.timedelta(hours=1)) is None


def test_a_410_disables_the_subscription_and_fails_its_pending_deliveries(one_delivery: tuple[Session, int, int]) -> None:
    session, subscription_id, delivery_id = one_delivery
    ledger.cancel_run(session, second_run[-1])
    [other] = take_unsent(session)
    session.commit()

    claim = delivering.claim_one(session, delivery_id, SETTINGS)
    assert claim is not None
    assert delivering.record(session, claim, Answer(410, "the receiver answered 410", 3), SETTINGS) == "failed"

    subscription = session.get_one(WebhookSubscription, subscription_id)
    assert subscription.enabled is False and "410 Gone" in subscription.disabled_reason
    assert session.get_one(WebhookDelivery, other).status == DeliveryStatus.FAILED
    assert session.get_one(WebhookDelivery, delivery_id).last_status_code == 410


def test_an_address_that_resolves_elsewhere_at_send_time_is_refused_without_connecting(
    one_delivery: tuple[Session, int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    session, subscription_id, delivery_id = one_delivery
    answers = {"hooks.example.com": "93.184.216.34"}

    def getaddrinfo(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    assert check_url("https://hooks.example.com/h").address == "93.184.216.34"  # public when subscribing
    session.get_one(WebhookSubscription, subscription_id).url = "https://hooks.example.com/h"
    session.commit()
    answers["hooks.example.com"] = "127.0.0.1"  # and loopback when sending
    posted: list[Any] = []
    monkeypatch.setattr(delivering, "post", lambda *args: posted.append(args))

    claim = delivering.claim_one(session, delivery_id, SETTINGS)
    assert claim is not None
    answer = delivering.attempt(claim, SETTINGS)

    assert posted == []
    assert answer.status_code is None
    assert answer.error == "refused: url points at a loopback address (127.0.0.1); webhooks may only go to public addresses"


# --- one real POST ----------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[dict[str, Any]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append({"path": self.path, "headers": dict(self.headers), "body": body.decode()})
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        answer = b"x" * (1024 * 1024) if self.path == "/big" else b"{}"
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        try:
            self.wfile.write(answer)
        except OSError:
            pass


@pytest.fixture
def local_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Handler.seen = []
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_a_post_goes_to_the_checked_address_with_the_host_header_and_follows_no_redirect(local_server: int) -> None:
    secret = subscriptions.new_secret()
    body = sending.envelope("run.failed", "t", {"id": 1})
    headers = sending.signed_headers(secret, "msg_1", body)

    ok = sending.post(check_url(f"http://127.0.0.1:{local_server}/ok?x=1", allow_private=True), body, headers, 5)
    moved = sending.post(check_url(f"http://127.0.0.1:{local_server}/redirect", allow_private=True), body, headers, 5)
    big = sending.post(check_url(f"http://127.0.0.1:{local_server}/big", allow_private=True), body, headers, 5)

    assert (ok.status_code, ok.delivered, ok.error) == (200, True, None)
    assert (moved.status_code, moved.delivered, moved.error) == (302, False, "the receiver answered 302")
    assert big.delivered
    assert [seen["path"] for seen in _Handler.seen] == ["/ok?x=1", "/redirect", "/big"]  # nothing followed
    first = _Handler.seen[0]
    assert first["headers"]["host"] == f"127.0.0.1:{local_server}"
    assert Webhook(secret).verify(first["body"], first["headers"])["data"] == {"id": 1}


def test_no_answer_within_the_timeout_is_a_failed_attempt() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts the connection, never answers
    try:
        target = check_url(f"http://127.0.0.1:{listener.getsockname()[1]}/", allow_private=True)
        answer = sending.post(target, "{}", {"content-type": "application/json"}, 0.5)
    finally:
        listener.close()

    assert (answer.status_code, answer.error) == (None, "no answer within 0.5 s")
    assert 400 <= answer.duration_ms < 3000
