"""The carrier limit shared through a real Redis (warehouse.carrier.limits.RedisGate): one cap across
gates with clients of their own, one pause for all of them, slots of a process killed with SIGKILL
coming back by themselves, and a Redis nobody answers on reported as LimiterUnavailable.

Every gate is named with a fresh token, so its keys are its own in the session's Redis DB."""

from __future__ import annotations

import contextlib
import os
import secrets
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from tests.concurrency import InFlight
from warehouse.carrier.limits import PAUSE_CHECK_SECONDS, LimiterUnavailable, RedisGate, make_gate, slots_held

pytestmark = pytest.mark.timeout(120)

REPO_ROOT = Path(__file__).resolve().parents[2]


def unique_name() -> str:
    return f"test-carrier-{secrets.token_hex(8)}"


@pytest.fixture
def new_client(redis_url: str) -> Iterator[Callable[[], redis.Redis]]:
    """``new_client()``: a Redis client of its own on the session's DB (as each worker process has),
    with make_gate's timeouts; all closed when the test ends."""
    clients: list[redis.Redis] = []

    def make() -> redis.Redis:
        client = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=5)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def slot_is_free(client: redis.Redis, gate: RedisGate) -> bool:
    """Whether one of ``gate``'s slots is free right now (its token is in the free list)."""
    return gate._slots.free() > 0


def test_two_gates_with_clients_of_their_own_share_one_cap(new_client: Callable[[], redis.Redis]) -> None:
    name = unique_name()
    gates = [RedisGate(new_client(), name, max_in_flight=2, lease_seconds=30) for _ in range(2)]
    threads_per_gate, calls_per_thread = 4, 3
    calls = InFlight()
    errors: list[BaseException] = []
    start = threading.Barrier(threads_per_gate * len(gates))

    def work(gate: RedisGate) -> None:
        try:
            start.wait()
            for _ in range(calls_per_thread):
                with gate.slot(), calls:
                    time.sleep(0.05)
        except BaseException as error:  # noqa: BLE001 - reported by the test
            errors.append(error)

    threads = [threading.Thread(target=work, args=(gate,), daemon=True) for gate in gates for _ in range(threads_per_gate)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not any(thread.is_alive() for thread in threads), "some calls never got a slot within 60 s"
    assert errors == []
    assert calls.finished == threads_per_gate * len(gates) * calls_per_thread
    assert calls.peak == 2
    # Every slot was given back.
    assert slot_is_free(new_client(), gates[0])


def test_a_pause_on_one_gate_holds_the_other(new_client: Callable[[], redis.Redis]) -> None:
    name = unique_name()
    pausing = RedisGate(new_client(), name, max_in_flight=2, lease_seconds=30)
    waiting = RedisGate(new_client(), name, max_in_flight=2, lease_seconds=30)
    stranger = RedisGate(new_client(), unique_name(), max_in_flight=2, lease_seconds=30)

    started = time.monotonic()
    waiting.wait_while_paused()
    assert time.monotonic() - started < 0.5, "no pause was asked for, yet the gate waited"
    # A gate looks at the shared pause at most every PAUSE_CHECK_SECONDS: let its view go stale.
    time.sleep(PAUSE_CHECK_SECONDS)

    pausing.pause(0.6)
    started = time.monotonic()
    stranger.wait_while_paused()  # another carrier's pause is not this one's
    assert time.monotonic() - started < 0.3
    waiting.wait_while_paused()
    took = time.monotonic() - started
    assert 0.5 <= took < 5, took


def test_a_pause_is_never_shortened_only_lengthened(new_client: Callable[[], redis.Redis]) -> None:
    client = new_client()
    name = unique_name()
    first = RedisGate(new_client(), name, max_in_flight=2, lease_seconds=30)
    second = RedisGate(new_client(), name, max_in_flight=2, lease_seconds=30)
    pause_key = first._pause_key

    first.pause(30)
    second.pause(1)
    assert client.pttl(pause_key) > 28_000

    other_key = RedisGate(client, unique_name(), 2, 30)
    other_key.pause(1)
    assert 0 < client.pttl(other_key._pause_key) <= 1_000
    second_of_other = RedisGate(new_client(), other_key.name, 2, 30)
    second_of_other.pause(20)
    assert client.pttl(other_key._pause_key) > 18_000


HOLDER = """
import sys, time
import redis
from warehouse.carrier.limits import RedisGate

url, name = sys.argv[1], sys.argv[2]
gate = RedisGate(redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5), name, 1, lease_seconds=2)
with gate.slot():
    print("held", flush=True)
    time.sleep(600)
"""


def test_the_slot_of_a_process_killed_with_sigkill_comes_back_by_itself(
    redis_url: str, new_client: Callable[[], redis.Redis]
) -> None:
    name = unique_name()
    gate = RedisGate(new_client(), name, max_in_flight=1, lease_seconds=2)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, redis_url, name],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready, _, _ = select.select([holder.stdout], [], [], 30)
        line = holder.stdout.readline() if ready else ""  # type: ignore[union-attr]
        if line.strip() != "held":
            holder.kill()
            _, stderr = holder.communicate(timeout=10)
            pytest.fail(f"the holder never took the slot (said {line!r}); its stderr:\n{stderr}")

        # Alive past its 2 s lease, the holder keeps the slot: its heartbeat renews the lease.
        time.sleep(3)
        assert holder.poll() is None
        assert not slot_is_free(new_client(), gate), "the live holder's slot expired: the lease is not renewed"

        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
        # Just killed: its lease still runs, so the one slot is still taken...
        assert not slot_is_free(new_client(), gate), "the slot was free right after the kill, while its lease still ran"

        # ...until the lease runs out, when a caller waiting for the slot gets it, with nobody releasing it.
        acquired = threading.Event()
        release = threading.Event()
        failures: list[BaseException] = []

        def take() -> None:
            try:
                with gate.slot():
                    acquired.set()
                    release.wait(timeout=30)
            except BaseException as error:  # noqa: BLE001 - reported by the test
                failures.append(error)
                acquired.set()

        started = time.monotonic()
        taker = threading.Thread(target=take, daemon=True)
        taker.start()
        got_it = acquired.wait(timeout=10)
        took = time.monotonic() - started
        release.set()
        taker.join(timeout=10)

        assert failures == []
        assert got_it, "the dead holder's slot did not come back within 10 s"
        # Within the rest of its 2 s lease and one wait for a token (1 s), plus some slack.
        assert took < 2 + 1 + 1.5, took
        assert gate._slots.tokens() == 1
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait(timeout=10)
        if holder.stdout:
            holder.stdout.close()
        if holder.stderr:
            holder.stderr.close()


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_redis_nobody_answers_on_is_limiter_unavailable_at_once() -> None:
    # Through make_gate, as the buyer builds it: the settings name a Redis that is not there.
    settings = {"warehouse.carrier_limiter_url": f"redis://127.0.0.1:{unused_port()}/0", "celery.broker_url": "memory://"}
    gate = make_gate(settings, "http://carrier.test", max_in_flight=2, call_timeout=10)
    assert isinstance(gate, RedisGate)

    def entered_slot() -> None:
        with gate.slot():
            pytest.fail("got a slot from a Redis that is not there")

    for attempt in (entered_slot, gate.wait_while_paused, lambda: gate.pause(1)):
        started = time.monotonic()
        with pytest.raises(LimiterUnavailable, match="carrier limiter"):
            attempt()
        assert time.monotonic() - started < 5


def test_a_gate_asks_redis_about_the_pause_at_most_once_per_check_interval(new_client: Callable[[], redis.Redis]) -> None:
    client = new_client()
    asked = []
    real_pttl = client.pttl
    client.pttl = lambda key: asked.append(key) or real_pttl(key)  # type: ignore[method-assign]
    gate = RedisGate(client, unique_name(), max_in_flight=2, lease_seconds=30)

    started = time.monotonic()
    for _ in range(200):
        gate.wait_while_paused()
    elapsed = time.monotonic() - started

    assert 1 <= len(asked) <= 1 + elapsed / PAUSE_CHECK_SECONDS


def test_more_threads_than_redis_py_s_default_pool_all_get_their_slots(redis_url: str) -> None:
    """150 threads of one process on one gate (redis-py's default pool stops at 100 connections and
    then fails with "Too many connections"): every call gets its slot, none fails."""
    threads = 150
    gate = make_gate({"warehouse.carrier_limiter_url": redis_url}, f"http://carrier.test/{unique_name()}", 40, 10, threads)
    calls = InFlight()
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def call() -> None:
        try:
            start.wait()
            with gate.slot(), calls:
                time.sleep(0.02)
        except BaseException as error:  # noqa: BLE001 - reported by the test
            errors.append(error)

    workers = [threading.Thread(target=call, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)

    assert errors == []
    assert calls.finished == threads
    assert calls.peak <= 40


# --- the token list: what a dead, frozen or unanswered holder leaves, a flushed Redis, a changed limit ---


def test_a_frozen_holder_s_slot_comes_back_after_its_lease_and_its_late_release_adds_none(
    redis_url: str, new_client: Callable[[], redis.Redis]
) -> None:
    name = unique_name()
    gate = RedisGate(new_client(), name, max_in_flight=1, lease_seconds=1)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER_BRIEFLY, redis_url, name],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        ready, _, _ = select.select([holder.stdout], [], [], 30)
        assert ready and holder.stdout.readline().strip() == "held"  # type: ignore[union-attr]
        os.kill(holder.pid, signal.SIGSTOP)
        # Frozen past its 1 s lease (heartbeat included): a caller that waits gets the slot.
        with gate.slot():
            assert gate._slots.tokens() == 1
            os.kill(holder.pid, signal.SIGCONT)
            # Thawed, the holder gives back the token it held before: it is no longer its, so
            # nothing moves, and the one slot stays with the caller that holds it now.
            out, err = holder.communicate(timeout=30)
            assert "released" in out, err
            assert gate._slots.free() == 0
            assert gate._slots.tokens() == 1
        assert gate._slots.free() == 1 and gate._slots.tokens() == 1
    finally:
        if holder.poll() is None:
            os.kill(holder.pid, signal.SIGCONT)
            holder.kill()
        holder.communicate(timeout=10)


HOLDER_BRIEFLY = """
import sys, time
import redis
from warehouse.carrier.limits import RedisGate

url, name = sys.argv[1], sys.argv[2]
gate = RedisGate(redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5), name, 1, lease_seconds=1)
with gate.slot():
    print("held", flush=True)
    time.sleep(0.5)  # frozen here by the test, then thawed
print("released", flush=True)
"""


def test_a_token_whose_taking_was_never_answered_is_given_back_by_the_heartbeat(new_client: Callable[[], redis.Redis]) -> None:
    client = new_client()
    gate = RedisGate(client, unique_name(), max_in_flight=2, lease_seconds=0.6)
    with gate.slot():
        pass
    slots = gate._slots
    # As if a BLMOVE had run in Redis and its reply been lost: a token in this process's list that
    # the process does not know it holds.
    assert client.lmove(f"{slots.prefix}:free", f"{slots.prefix}:held:{slots._holder}", "LEFT", "RIGHT") is not None
    assert slots.free() == 1

    deadline = time.monotonic() + 10
    while slots.free() < 2 and time.monotonic() < deadline:
        time.sleep(0.05)

    assert slots.free() == 2, "the unanswered token was never given back"
    assert slots.tokens() == 2


def test_the_tokens_are_made_again_when_redis_loses_them_and_the_cap_still_holds(new_client: Callable[[], redis.Redis]) -> None:
    client = new_client()
    name = unique_name()
    gate = RedisGate(client, name, max_in_flight=2, lease_seconds=30)
    with gate.slot():
        # Redis restarts with nothing kept on disk, while a call holds a slot.
        client.delete(*client.keys(f"warehouse:carrier-slots:{name}:*"))
        with gate.slot(), gate.slot():  # waits about a second, finds the list gone, makes it again
            assert gate._slots.free() == 0
        # The slot taken before the loss is given back to nothing: the new list keeps its two tokens.
    assert gate._slots.free() == 2 and gate._slots.tokens() == 2


def test_a_lowered_limit_takes_tokens_away_and_a_raised_one_adds_them(new_client: Callable[[], redis.Redis]) -> None:
    name = unique_name()
    three = RedisGate(new_client(), name, max_in_flight=3, lease_seconds=30)
    held = [contextlib.ExitStack() for _ in range(2)]
    for stack in held:
        stack.enter_context(three.slot())
    # Workers restarted with a limit of 1 while two calls of the old ones still run.
    one = RedisGate(new_client(), name, max_in_flight=1, lease_seconds=30)
    one._slots._ensure_tokens()
    assert one._slots.free() == 0 and one._slots.tokens() == 1
    held[0].close()  # pays the debt: no slot frees
    assert one._slots.free() == 0 and one._slots.tokens() == 1
    held[1].close()  # now one frees
    assert one._slots.free() == 1 and one._slots.tokens() == 1

    five = RedisGate(new_client(), name, max_in_flight=5, lease_seconds=30)
    five._slots._ensure_tokens()
    assert five._slots.free() == 5 and five._slots.tokens() == 5


def test_a_token_given_back_twice_frees_one_slot_only(new_client: Callable[[], redis.Redis]) -> None:
    gate = RedisGate(new_client(), unique_name(), max_in_flight=2, lease_seconds=30)
    token = gate._slots.acquire()
    gate._slots.release(token)
    gate._slots.release(token)

    assert gate._slots.free() == 2 and gate._slots.tokens() == 2


def test_a_slot_costs_two_round_trips(new_client: Callable[[], redis.Redis]) -> None:
    client = new_client()
    gate = RedisGate(client, unique_name(), max_in_flight=2, lease_seconds=30)
    with gate.slot():  # the first use registers the process and makes the list
        pass
    # Counted on this client (Redis's own commandstats would count everyone else's commands too);
    # the heartbeat, every 10 s, does not beat in between.
    sent: list[str] = []
    real = client.execute_command

    def counting(*args: object, **options: object) -> object:
        sent.append(str(args[0]).upper())
        return real(*args, **options)

    client.execute_command = counting  # type: ignore[method-assign]
    with gate.slot():
        pass

    assert sent == ["BLMOVE", "EVALSHA"]


def test_a_forked_child_holds_its_slots_as_a_holder_of_its_own(new_client: Callable[[], redis.Redis]) -> None:
    import multiprocessing

    gate = RedisGate(new_client(), unique_name(), max_in_flight=2, lease_seconds=30)
    with gate.slot():
        parent_holder = gate._slots._holder
        # As a Celery pool child is forked: the child's first slot registers a holder of its own,
        # so its tokens are never mixed with (nor given back as) its parent's.
        context = multiprocessing.get_context("fork")
        said = context.Queue()

        def child() -> None:
            with gate.slot():
                said.put(gate._slots._holder)

        process = context.Process(target=child)
        process.start()
        child_holder = said.get(timeout=30)
        process.join(timeout=30)

        assert process.exitcode == 0
        assert child_holder != parent_holder
        assert child_holder.split(":")[1] == str(process.pid)
        assert gate._slots.free() == 1 and gate._slots.tokens() == 2


def test_slots_held_counts_the_tokens_held_across_every_gate(new_client: Callable[[], redis.Redis]) -> None:
    client = new_client()
    before = slots_held(client)
    first = RedisGate(new_client(), unique_name(), max_in_flight=3, lease_seconds=30)
    second = RedisGate(new_client(), unique_name(), max_in_flight=3, lease_seconds=30)
    with first.slot(), first.slot(), second.slot():
        assert slots_held(client) == before + 3
    assert slots_held(client) == before
