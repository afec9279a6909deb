"""RQ jobs: thin wrappers that load settings and call a service."""

import logging
import os
import socket
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from flask import Flask, current_app, has_app_context

from webapp.clock import app_clock
from webapp.extensions import db
from webapp.models import Email
from webapp.queueing import default_queue, queue_for_priority, redis_connection

log = logging.getLogger(__name__)

_app: Flask | None = None


@contextmanager
def app_context() -> Iterator[Flask]:
    """Run inside the current app, or one created once per worker process."""
    global _app
    if has_app_context():
        app = current_app._get_current_object()
        try:
            yield app
        finally:
            db.session.remove()
        return

    if _app is None:
        from webapp import create_app

        _app = create_app()
    with _app.app_context():
        try:
            yield _app
        finally:
            db.session.remove()


def worker_name() -> str:
    """Name this process in attempts and claims: host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def send_due_emails(priority: int) -> dict:
    """Send every due email of one priority; schedule the retries."""
    from webapp.sending import SendPolicy, SmtpSettings
    from webapp.sending import send_due_emails as send

    with app_context() as app:
        config = app.config
        policy = SendPolicy(
            chunk_size=config["SEND_CHUNK_SIZE"],
            retry_intervals=config["RETRY_INTERVALS"],
        )
        report = send(
            db.session,
            app_clock(),
            SmtpSettings.from_config(config),
            worker_name(),
            policy,
            priority=priority,
        )
        if report.retry_times:
            _schedule_send(priority, min(report.retry_times))
        return report.as_dict()


def run_batching() -> dict:
    """Create drafts from open placement requests."""
    from webapp.batching import run_batching as batch

    with app_context():
        return batch(db.session, app_clock()).as_dict()


def enqueue_sending(emails: Iterable[Email]) -> None:
    """Wake the worker for each priority among these approved emails."""
    for priority in sorted({email.priority for email in emails}):
        job = queue_for_priority(priority).enqueue(
            send_due_emails, priority, job_timeout=600, result_ttl=3600
        )
        log.info("send job %s enqueued for priority %s", job.id, priority)


def enqueue_batching() -> str:
    """Queue a batching run; return the job id for progress polling."""
    job = default_queue().enqueue(run_batching, job_timeout=600, result_ttl=3600)
    log.info("batching job %s enqueued", job.id)
    return job.id


def reconcile() -> dict:
    """Recover emails of dead workers and wake sending for due emails."""
    from rq import Worker

    from webapp.reconcile import (
        ReconcileReport,
        due_priorities,
        recover_stuck_emails,
    )

    with app_context() as app:
        connection = redis_connection()
        live_workers = {worker.name for worker in Worker.all(connection=connection)}
        report = ReconcileReport()
        recover_stuck_emails(
            db.session,
            app_clock(),
            timedelta(seconds=app.config["SENDING_TIMEOUT"]),
            live_workers,
            max_tries=len(app.config["RETRY_INTERVALS"]),
            report=report,
        )
        report.due_priorities = due_priorities(db.session, app_clock())
        _watch_delivery(app, report)

        # A job per priority is enough: it drains every due email of it.
        for priority in report.due_priorities:
            queue = queue_for_priority(priority, connection)
            if queue.count == 0:
                queue.enqueue(send_due_emails, priority, job_timeout=600)
                log.info("reconciler woke sending for priority %s", priority)
        return report.as_dict()


def _watch_delivery(app: Flask, report) -> None:
    from webapp.alerts import alert_failed_emails
    from webapp.monitoring import check_failure_rate, mail_new_alerts
    from webapp.sending import SmtpSettings

    config = app.config
    clock = app_clock()
    alert_failed_emails(db.session, clock, report.failed)
    check_failure_rate(
        db.session,
        clock,
        config["FAILURE_RATE_THRESHOLD"],
        config["FAILURE_RATE_MIN_ATTEMPTS"],
    )
    db.session.commit()
    mail_new_alerts(
        db.session,
        clock,
        SmtpSettings.from_config(config),
        (config["MAIL_SENDER_NAME"], config["MAIL_SENDER_EMAIL"]),
    )


def _schedule_send(priority: int, when: datetime) -> None:
    job = queue_for_priority(priority).enqueue_at(
        when.replace(tzinfo=UTC), send_due_emails, priority, job_timeout=600
    )
    log.info("retry job %s scheduled for %s", job.id, when)


def plan_calls() -> dict:
    """Plan follow-up calls and calls to therapists without email."""
    from webapp.call_planning import plan_calls as plan

    with app_context():
        return plan(db.session, app_clock()).as_dict()


def enqueue_call_planning() -> str:
    """Queue a call planning run; return the job id."""
    job = default_queue().enqueue(plan_calls, job_timeout=600, result_ttl=3600)
    log.info("call planning job %s enqueued", job.id)
    return job.id


# Call digests ---------------------------------------------------------------


# Long enough to cover one local day whatever the hour of the run.
def send_call_digests(force: bool = False) -> dict:
    """Mail every coordinator today's calls, once per local day unless forced.

    Meant to run each morning (see webapp/reminders.py). A row per day in
    the database keeps a second run from mailing twice, also after a
    restart; a failed run frees the day again.
    """
    from webapp.clock import local_today
    from webapp.reminders import claim_digest_day, release_digest_day
    from webapp.reminders import send_call_digests as send
    from webapp.sending import SmtpSettings

    with app_context() as app:
        clock = app_clock()
        day = local_today(clock)
        if not claim_digest_day(db.session, clock, day) and not force:
            log.info("call digest for %s already sent", day)
            return {"skipped": True}

        try:
            report = send(
                db.session,
                clock,
                SmtpSettings.from_config(app.config),
                app.config["MAIL_SENDER_EMAIL"],
                app.config["MAIL_SENDER_NAME"],
            )
        except Exception:
            release_digest_day(db.session, day)
            raise
        return report.as_dict()


def send_morning_digest() -> dict:
    """Send the call digest once the local morning hour has come.

    RQ's cron counts in UTC; this job runs every few minutes and waits for
    DIGEST_HOUR in Europe/Berlin, so summer time moves nothing.
    """
    from webapp.web.filters import to_local

    with app_context() as app:
        local_now = to_local(app_clock().now())
        if local_now.hour < app.config["DIGEST_HOUR"]:
            return {"skipped": True}
    return send_call_digests()
