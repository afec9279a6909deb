"""Start the RQ worker with its scheduler on the priority queues.

A child process runs RQ's cron scheduler for the periodic jobs: the
reconciler every minute, call planning every ten minutes, and the check
for the morning call digest every ten minutes.
"""

import argparse
import logging
import multiprocessing
import os
import threading
import time

from rq import Queue, SimpleWorker
from rq.cron import CronScheduler

from webapp import create_app, jobs
from webapp.queueing import DEFAULT_QUEUE, WORKER_QUEUES, redis_connection

log = logging.getLogger("worker")

RECONCILE_EVERY = 60
PLAN_CALLS_EVERY = 600
DIGEST_CHECK_EVERY = 600


def run_cron(parent_pid: int) -> None:
    """Enqueue the periodic jobs until the worker process goes away."""
    _exit_with_parent(parent_pid)
    app = create_app()
    with app.app_context():
        cron = CronScheduler(connection=redis_connection())
        cron.register(jobs.reconcile, DEFAULT_QUEUE, interval=RECONCILE_EVERY)
        cron.register(jobs.plan_calls, DEFAULT_QUEUE, interval=PLAN_CALLS_EVERY)
        cron.register(
            jobs.send_morning_digest, DEFAULT_QUEUE, interval=DIGEST_CHECK_EVERY
        )
        cron.start()


def _exit_with_parent(parent_pid: int) -> None:
    # A SIGKILLed worker cannot stop its cron child; the child notices.
    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def main() -> None:
    """Drain confirmation, follow-up and request queues, in that order."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--no-cron", action="store_true", help="do not run the periodic jobs"
    )
    args = parser.parse_args()

    app = create_app()
    cron = None
    if not args.no_cron:
        context = multiprocessing.get_context("spawn")
        cron = context.Process(target=run_cron, args=(os.getpid(),), daemon=True)
        cron.start()

    try:
        with app.app_context():
            connection = redis_connection()
            queues = [Queue(name, connection=connection) for name in WORKER_QUEUES]
            # No fork per job: sending claims whole chunks, forking would only
            # cost time (see DESIGN.md, "Speed").
            worker = SimpleWorker(
                queues, connection=connection, name=jobs.worker_name()
            )
            log.info("worker %s on %s", worker.name, ", ".join(WORKER_QUEUES))
            worker.work(with_scheduler=True, logging_level="INFO")
    finally:
        if cron is not None:
            cron.terminate()
            cron.join(timeout=10)


if __name__ == "__main__":
    main()
