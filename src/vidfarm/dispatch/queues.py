"""vidfarm's queues on a broker it may share with other applications (Esup-Pod's workers).

Two things go wrong on a shared broker: a worker consuming another application's queue, and a
queue that already exists with other arguments. RabbitMQ refuses to declare such a queue
(PRECONDITION_FAILED, by closing the channel), which used to kill workers with a traceback and
leave the control plane retrying forever. Declaring each queue on its own channel at start
turns that into one line: a queue that only lacks priorities is used as it is, any other
difference is refused with the remedy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from amqp.exceptions import PreconditionFailed
from kombu import Connection

from vidfarm.config import Settings
from vidfarm.errors import ConfigError

#: Job priorities are 0..MAX_PRIORITY; RabbitMQ queues are declared with one more level.
MAX_PRIORITY = 9
PRIORITY_ARGUMENT = "x-max-priority"
QUEUE_ARGUMENTS = {PRIORITY_ARGUMENT: MAX_PRIORITY + 1}
#: Esup-Pod's Celery queues (pod-celery.md): a vidfarm queue named so would mix both farms.
POD_QUEUES = frozenset({"encoding", "transcripting", "xapi", "importing"})

_INEQUIVALENT = re.compile(r"inequivalent arg '([^']+)'")


def is_redis(broker_url: str) -> bool:
    return broker_url.startswith(("redis://", "rediss://", "redis+socket://"))


def own_queues(settings: Settings) -> dict[str, str]:
    """vidfarm's queue names, each with the setting that names it."""
    return {
        settings.queue_encoding: "VIDFARM_QUEUE_ENCODING",
        settings.queue_transcription: "VIDFARM_QUEUE_TRANSCRIPTION",
        settings.queue_xapi: "VIDFARM_QUEUE_XAPI",
    }


def resolve_queues(settings: Settings, asked: str) -> list[str]:
    """`--queues encoding,xapi` (or the configured names) → vidfarm's queue names.

    Any other name is refused: a vidfarm worker on another application's queue would take
    that application's tasks.
    """
    logical = {
        "encoding": settings.queue_encoding,
        "transcription": settings.queue_transcription,
        "xapi": settings.queue_xapi,
    }
    names = [name.strip() for name in asked.split(",") if name.strip()]
    if not names:
        return list(logical.values())
    chosen: list[str] = []
    for name in names:
        queue = logical.get(name, name)
        if queue not in own_queues(settings):
            mine = ", ".join(own_queues(settings))
            raise ConfigError(
                f"--queues {name}: not one of vidfarm's queues ({mine}); use encoding, "
                "transcription or xapi, or name the queue in VIDFARM_QUEUE_ENCODING/"
                "_TRANSCRIPTION/_XAPI"
            )
        if queue not in chosen:
            chosen.append(queue)
    return chosen


def describe_broker(broker_url: str) -> str:
    """Which broker and which Redis database / RabbitMQ vhost, without the password."""
    parts = urlsplit(broker_url)
    port = parts.port or (6379 if is_redis(broker_url) else 5672)
    where = f"{parts.hostname or 'localhost'}:{port}"
    if is_redis(broker_url):
        return f"Redis {where} database {parts.path.strip('/') or '0'}"
    vhost = parts.path[1:] if len(parts.path) > 1 else "/"
    return f"RabbitMQ {where} vhost {vhost}"


@dataclass
class QueueCheck:
    """What the broker said about each queue: usable, usable without priorities, or refused."""

    without_priority: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def check_queues(broker_url: str, queues: dict[str, str], timeout: float = 5.0) -> QueueCheck:
    """Declare each queue as vidfarm would; raises OSError-like errors if the broker is down.

    Redis: kombu keeps priorities in lists of its own and ignores queue arguments, so only the
    connection is checked. RabbitMQ: a declare that fails with PRECONDITION_FAILED names the
    argument that differs (a passive declare would not tell).
    """
    check = QueueCheck()
    with Connection(broker_url, connect_timeout=timeout) as connection:
        connection.ensure_connection(max_retries=1, timeout=int(timeout))
        if is_redis(broker_url):
            return check
        for name, setting in queues.items():
            differs = _differs(connection, name, QUEUE_ARGUMENTS)
            if differs == PRIORITY_ARGUMENT:
                # RabbitMQ names one difference at a time: is priority the only one?
                differs = _differs(connection, name, {}) or PRIORITY_ARGUMENT
            if differs == PRIORITY_ARGUMENT:
                check.without_priority.append(name)
                check.warnings.append(
                    f"queue {name} already exists with another {PRIORITY_ARGUMENT} (or none): "
                    "used as it is, without job priorities; to get them back, delete it while "
                    f"empty (rabbitmqctl delete_queue {name})"
                )
            elif differs:
                check.refused[name] = (
                    f"queue {name} already exists on the broker with another {differs!r} "
                    "(made by another application or by hand): delete it while empty "
                    f"(rabbitmqctl delete_queue {name}) or set {setting} to another name"
                )
    return check


def _differs(connection: Connection, name: str, arguments: dict[str, int]) -> str | None:
    """Declare `name` durable with `arguments`: None if RabbitMQ agrees, else what differs."""
    channel: Any = connection.channel()
    try:
        channel.queue_declare(
            queue=name, durable=True, auto_delete=False, arguments=arguments or None
        )
        return None
    except PreconditionFailed as error:
        found = _INEQUIVALENT.search(str(error))
        return found.group(1) if found else "arguments"
    finally:
        if channel.is_open:
            channel.close()
