"""A worker that meets a message that is not vidfarm's puts it back or moves it aside.

Celery's own consumer logs "Received unregistered task ... discarded" and drops the message:
on a broker shared with Esup-Pod that destroyed Pod's encodes. This consumer (set as
`worker_consumer` in celery_app.py) never drops one:

- on a queue that is not vidfarm's (e.g. `celery -A vidfarm.dispatch.celery_app worker -Q
  encoding`), the message is put back for its owner and the worker stops consuming that queue,
  so it cannot take the message again and again;
- on vidfarm's own queues, putting it back would hand it to vidfarm forever: it is moved to
  the dead-letter queue (VIDFARM_QUEUE_DEAD) instead, to be looked at and moved back by hand.

Each case is logged once per queue and task name, as an error, with the fix.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.worker.consumer.consumer import Consumer as CeleryConsumer
from kombu import Exchange, Queue
from kombu.message import Message

log = logging.getLogger(__name__)

#: Header added to a dead-lettered message: the queue it was found on.
FOUND_ON_HEADER = "x-vidfarm-found-on"
_PUBLISH_RETRY = {"max_retries": 3, "interval_start": 0, "interval_step": 1, "interval_max": 2}


class Consumer(CeleryConsumer):
    """Celery's consumer, except for messages naming a task this worker does not have."""

    # Set by Celery's consumer (untyped there).
    task_consumer: Any
    connection_errors: tuple[type[BaseException], ...]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._told: set[tuple[str, str]] = set()

    def on_unknown_message(self, body: Any, message: Message) -> None:
        self._not_ours(message, "a message that is not a Celery task")

    def on_unknown_task(self, body: Any, message: Message, exc: Exception) -> None:
        headers = message.headers or {}
        self._not_ours(message, f"task {headers.get('task', '?')!r}")

    def _not_ours(self, message: Message, what: str) -> None:
        own = list(self.app.conf.vidfarm_own_queues)
        queue = self._queue_of(message)
        if queue is None or queue in own:
            self._dead_letter(message, queue or "?", what, own)
        else:
            self._put_back(message, queue, what, own)

    def _queue_of(self, message: Message) -> str | None:
        """The queue a message came from: its routing key, or the only queue consumed."""
        consumed = [queue.name for queue in self.task_consumer.queues]
        routing_key = (message.delivery_info or {}).get("routing_key")
        if routing_key in consumed:
            return str(routing_key)
        return consumed[0] if len(consumed) == 1 else None

    def _put_back(self, message: Message, queue: str, what: str, own: list[str]) -> None:
        message.reject_log_error(log, self.connection_errors, requeue=True)
        if self.task_consumer.consuming_from(queue):
            self.cancel_task_queue(queue)
        self._tell(
            queue,
            what,
            f"queue {queue} carries {what} of another application: vidfarm put it back for "
            f"that application's workers and stopped consuming {queue}; vidfarm's queues are "
            f"{', '.join(own)}: do not give another application's queue to a vidfarm worker",
        )

    def _dead_letter(self, message: Message, queue: str, what: str, own: list[str]) -> None:
        dead = str(self.app.conf.vidfarm_dead_queue)
        try:
            with self.app.producer_or_acquire() as producer:
                producer.publish(
                    message.body,
                    exchange="",
                    routing_key=dead,
                    declare=[Queue(dead, Exchange(""), routing_key=dead)],
                    content_type=message.content_type,
                    content_encoding=message.content_encoding,
                    headers={**(message.headers or {}), FOUND_ON_HEADER: queue},
                    retry=True,
                    retry_policy=_PUBLISH_RETRY,
                )
        except Exception as error:
            log.error("cannot move %s to %s (%s): put back on %s", what, dead, error, queue)
            message.reject_log_error(log, self.connection_errors, requeue=True)
            return
        message.ack_log_error(log, self.connection_errors)
        self._tell(
            queue,
            what,
            f"queue {queue} is vidfarm's but carried {what}: moved to queue {dead} (not "
            "run, not lost); another application publishes on vidfarm's queue: give it its "
            f"own queue names, or give vidfarm its own broker database/vhost ({', '.join(own)} "
            "are vidfarm's)",
        )

    def _tell(self, queue: str, what: str, line: str) -> None:
        """Once per queue and task name: loud the first time, quiet after."""
        if (queue, what) in self._told:
            log.info("queue %s: %s again, handled as before", queue, what)
            return
        self._told.add((queue, what))
        log.error("%s", line)
