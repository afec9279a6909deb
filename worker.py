"""Start the RQ worker with its scheduler on the priority queues."""

import logging

from rq import Queue, SimpleWorker

from webapp import create_app
from webapp.jobs import worker_name
from webapp.queueing import WORKER_QUEUES, redis_connection

log = logging.getLogger("worker")


def main() -> None:
    """Drain confirmation, follow-up and request queues, in that order."""
    app = create_app()
    with app.app_context():
        connection = redis_connection()
        queues = [Queue(name, connection=connection) for name in WORKER_QUEUES]
        # No fork per job: sending claims whole chunks, forking would only
        # cost time (see DESIGN.md, "Speed").
        worker = SimpleWorker(queues, connection=connection, name=worker_name())
        log.info("worker %s listening on %s", worker.name, ", ".join(WORKER_QUEUES))
        worker.work(with_scheduler=True, logging_level="INFO")


if __name__ == "__main__":
    main()
