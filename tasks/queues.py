"""How many messages wait in the broker's queues, for Redis and RabbitMQ alike."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass

from celery import Celery
from kombu.exceptions import ChannelError


@dataclass(frozen=True)
class QueueDepth:
    queue: str
    ready: int  # waiting, not yet handed to any worker
    unacked: int | None  # handed to a worker, not yet acknowledged; None where the broker does not say


def queue_names(app: Celery) -> list[str]:
    """The queues this app's tasks go to: the default one, and any the configuration declares."""
    return sorted(set(app.amqp.queues) | {app.conf.task_default_queue})


def _ready(connection, name: str) -> int:  # type: ignore[no-untyped-def]
    """A passive declare's message count (Redis's priority sub-queues included: kombu adds them up).

    A queue that does not exist holds nothing: Redis drops an empty list's key, and RabbitMQ answers
    a passive declare of an unknown queue by closing the channel, hence a channel per queue.
    """
    channel = connection.channel()
    try:
        return channel.queue_declare(queue=name, passive=True).message_count
    except ChannelError:
        return 0
    finally:
        try:
            channel.close()
        except Exception:  # noqa: BLE001 - a channel the broker closed already
            pass


def _redis_unacked(connection, names: list[str]) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Redis keeps every unacknowledged message in one hash, as [message, exchange, routing key];
    our queues are bound by their own name, so the routing key names the queue."""
    channel = connection.default_channel
    by_key: Counter[str] = Counter()
    for value in channel.client.hvals(channel.unacked_key):
        try:
            by_key[json.loads(value)[2]] += 1
        except (ValueError, IndexError, TypeError):
            continue
    return {name: by_key.get(name, 0) for name in names}


def queue_depths(app: Celery) -> list[QueueDepth]:
    """Each of the app's queues: ready messages, and unacknowledged ones on Redis (RabbitMQ tells
    those only through its management API)."""
    names = queue_names(app)
    with app.connection_for_read() as connection:
        ready = {name: _ready(connection, name) for name in names}
        unacked = _redis_unacked(connection, names) if connection.transport.driver_type == "redis" else {}
    return [QueueDepth(name, ready[name], unacked.get(name)) for name in names]


def ready_messages(app: Celery) -> int:
    """Messages waiting in the app's queues, not yet handed to any worker."""
    names = queue_names(app)
    with app.connection_for_read() as connection:
        return sum(_ready(connection, name) for name in names)
