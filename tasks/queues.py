"""How many messages wait in the broker's queues, for Redis and RabbitMQ alike."""

from __future__ import annotations

from celery import Celery
from kombu.exceptions import ChannelError


def queue_names(app: Celery) -> list[str]:
    """The queues this app's tasks go to: the default one, and any the configuration declares."""
    return sorted(set(app.amqp.queues) | {app.conf.task_default_queue})


def ready_messages(app: Celery) -> int:
    """Messages waiting in the app's queues, not yet handed to any worker (Redis's priority
    sub-queues included: kombu counts them in a passive declare).

    A queue that does not exist holds nothing: Redis drops an empty list's key, and RabbitMQ answers
    a passive declare of an unknown queue by closing the channel, hence a channel per queue.
    """
    total = 0
    with app.connection_for_read() as connection:
        for name in queue_names(app):
            channel = connection.channel()
            try:
                total += channel.queue_declare(queue=name, passive=True).message_count
            except ChannelError:
                pass
            finally:
                try:
                    channel.close()
                except Exception:  # noqa: BLE001 - a channel the broker closed already
                    pass
    return total
