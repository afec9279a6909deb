"""Redis connection and the priority queues the worker drains."""

from flask import current_app
from redis import Redis
from rq import Queue

from webapp.models import KIND_PRIORITY, EmailKind

# Queue names by priority; the worker listens in this order (rule 4).
PRIORITY_QUEUES = {
    1: "emails-confirmation",
    2: "emails-follow-up",
    3: "emails-request",
}
DEFAULT_QUEUE = "default"
WORKER_QUEUES = [*PRIORITY_QUEUES.values(), DEFAULT_QUEUE]


def redis_connection() -> Redis:
    """Return a Redis connection for the configured URL."""
    url = current_app.config.get("REDIS_URL")
    if not url:
        raise RuntimeError("REDIS_URL is not set")
    return Redis.from_url(url)


def queue_for_priority(priority: int, connection: Redis | None = None) -> Queue:
    """Return the RQ queue that carries emails of this priority."""
    name = PRIORITY_QUEUES.get(priority, PRIORITY_QUEUES[3])
    return Queue(name, connection=connection or redis_connection())


def queue_for_kind(kind: EmailKind, connection: Redis | None = None) -> Queue:
    """Return the RQ queue that carries emails of this kind."""
    return queue_for_priority(KIND_PRIORITY[EmailKind(kind)], connection)


def default_queue(connection: Redis | None = None) -> Queue:
    """Return the queue for housekeeping jobs such as batching."""
    return Queue(DEFAULT_QUEUE, connection=connection or redis_connection())
