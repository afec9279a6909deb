"""Fault injection: every approved email ends sent or visibly failed, none lost.

A real SMTP server under test control, real Redis and the test database;
workers are real `worker.py` processes where a crash is part of the story.
"""

import asyncio
import os
import signal
import threading
import time
from collections import Counter
from datetime import datetime, timedelta
from email import message_from_bytes

import pytest
from aiosmtpd.controller import Controller
from rq import Queue, SimpleWorker
from sqlalchemy import func, select, update

from tests.conftest import free_port, start_worker, stop_worker
from tests.factories import make_request, make_therapist
from webapp import jobs
from webapp.approval import approve_email
from webapp.clock import FixedClock, system_clock
from webapp.drafting import create_draft
from webapp.extensions import db
from webapp.models import (
    AttemptOutcome,
    DeliveryAttempt,
    Email,
    EmailKind,
    EmailStatus,
)
from webapp.queueing import WORKER_QUEUES, redis_connection
from webapp.reconcile import ReconcileReport, recover_stuck_emails
from webapp.sending import SendPolicy, SmtpSettings, send_due_emails

NOW = datetime(2026, 12, 4, 9, 0)


class FaultyServer:
    """SMTP handler with switchable faults; keeps what it accepted."""

    def __init__(self) -> None:
        self.accepted: list[bytes] = []
        self.replies: list[str] = []
        self.close_after: int | None = None
        self.delay = 0.0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        with self.lock:
            if self.close_after is not None and len(self.accepted) >= self.close_after:
                self.close_after = None
                server.transport.close()
                return "421 closing"
            if self.replies:
                return self.replies.pop(0)
            self.accepted.append(envelope.original_content)
        return "250 OK"

    def message_ids(self) -> Counter:
        with self.lock:
            raws = list(self.accepted)
        return Counter(message_from_bytes(raw)["Message-ID"] for raw in raws)


class ServerControl:
    """Start and stop the faulty server on a fixed port."""

    def __init__(self) -> None:
        self.handler = FaultyServer()
        self.port = free_port()
        self.controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp():
    """A controllable SMTP server, running."""
    control = ServerControl()
    control.start()
    yield control
    control.stop()


def approved_emails(count: int, clock=system_clock) -> list[int]:
    ids = []
    for number in range(count):
        therapist = make_therapist(last_name=f"Weiß {number}")
        request = make_request(therapist)
        email = create_draft(
            db.session, therapist, EmailKind.INITIAL_CONTACT, [request], clock
        )
        db.session.commit()
        approve_email(db.session, email.id, None, clock)
        ids.append(email.id)
    return ids


def statuses(ids: list[int]) -> Counter:
    db.session.expire_all()
    rows = db.session.scalars(select(Email.status).where(Email.id.in_(ids)))
    return Counter(rows)


def send(smtp: ServerControl, clock, **policy):
    settings = SmtpSettings(host="127.0.0.1", port=smtp.port, timeout=5)
    return send_due_emails(
        db.session, clock, settings, "test-worker", SendPolicy(**policy)
    )


def wait_until(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_server_down_then_back_delivers_after_the_retry(app, smtp):
    clock = FixedClock(NOW)
    ids = approved_emails(3, clock)
    smtp.stop()

    first = send(smtp, clock, retry_intervals=[60, 300])
    smtp.start()
    clock.advance(seconds=90)
    second = send(smtp, clock, retry_intervals=[60, 300])

    assert (first.retrying, second.sent) == (3, 3)
    assert statuses(ids) == {EmailStatus.SENT: 3}
    assert sum(smtp.handler.message_ids().values()) == 3


def test_421_then_success(app, smtp):
    clock = FixedClock(NOW)
    [email_id] = approved_emails(1, clock)
    smtp.handler.replies = ["421 4.3.2 Service not available"]

    send(smtp, clock)
    clock.advance(minutes=2)
    send(smtp, clock)

    email = db.session.get(Email, email_id)
    assert email.status == EmailStatus.SENT
    assert [a.smtp_code for a in email.attempts] == [421, 250]


def test_550_fails_at_once_and_is_never_tried_again(app, smtp):
    clock = FixedClock(NOW)
    [email_id] = approved_emails(1, clock)
    smtp.handler.replies = ["550 5.7.1 Abgelehnt"]

    send(smtp, clock)
    clock.advance(days=1)
    later = send(smtp, clock)

    email = db.session.get(Email, email_id)
    assert email.status == EmailStatus.FAILED
    assert email.error_message == "550 5.7.1 Abgelehnt"
    assert later.sent == 0
    assert len(email.attempts) == 1


def test_connection_closed_midway_costs_only_the_unaccepted(app, smtp):
    clock = FixedClock(NOW)
    ids = approved_emails(6, clock)
    smtp.handler.close_after = 2

    report = send(smtp, clock)

    # Two accepted, one cut off (retried later), three over a new connection.
    assert (report.sent, report.retrying) == (5, 1)
    clock.advance(minutes=2)
    send(smtp, clock)
    assert statuses(ids) == {EmailStatus.SENT: 6}
    assert set(smtp.handler.message_ids().values()) == {1}


def test_stuck_email_of_a_dead_worker_is_resent_with_its_message_id(app, smtp):
    clock = FixedClock(NOW)
    [email_id] = approved_emails(1, clock)
    db.session.execute(
        update(Email)
        .where(Email.id == email_id)
        .values(
            status=EmailStatus.SENDING,
            claimed_by="ghost:1",
            claimed_at=NOW - timedelta(minutes=20),
        )
    )
    db.session.commit()
    report = ReconcileReport()

    recover_stuck_emails(
        db.session, clock, timedelta(minutes=10), {"alive:2"}, 4, report
    )
    send(smtp, clock)

    email = db.session.get(Email, email_id)
    assert report.recovered == [email_id]
    assert email.status == EmailStatus.SENT
    assert [a.outcome for a in email.attempts] == [
        AttemptOutcome.INTERRUPTED,
        AttemptOutcome.SENT,
    ]
    assert smtp.handler.message_ids() == {email.message_id: 1}


def test_email_of_a_live_or_recent_worker_is_left_alone(app):
    clock = FixedClock(NOW)
    ids = approved_emails(2, clock)
    for email_id, (worker, minutes) in zip(
        ids, [("alive:2", 20), ("ghost:1", 5)], strict=True
    ):
        db.session.execute(
            update(Email)
            .where(Email.id == email_id)
            .values(
                status=EmailStatus.SENDING,
                claimed_by=worker,
                claimed_at=NOW - timedelta(minutes=minutes),
            )
        )
    db.session.commit()
    report = ReconcileReport()

    recover_stuck_emails(
        db.session, clock, timedelta(minutes=10), {"alive:2"}, 4, report
    )

    assert report.recovered == []
    assert statuses(ids) == {EmailStatus.SENDING: 2}


def test_redis_flushed_while_queued_the_reconciler_brings_the_jobs_back(
    app, sink, redis_conn
):
    ids = approved_emails(3)
    jobs.enqueue_sending([db.session.get(Email, ids[0])])
    redis_conn.flushdb()

    jobs.reconcile()
    SimpleWorker(WORKER_QUEUES, connection=redis_connection()).work(burst=True)

    assert statuses(ids) == {EmailStatus.SENT: 3}
    assert len(sink.messages) == 3


def test_killed_worker_costs_at_most_a_duplicate_never_an_email(
    app, smtp, database_url, redis_url
):
    ids = approved_emails(12)
    smtp.handler.delay = 0.25
    worker = start_worker(database_url, redis_url, smtp.port, "--no-cron")
    try:
        jobs.enqueue_sending([db.session.get(Email, ids[0])])
        wait_until(lambda: len(smtp.handler.accepted) >= 3)
        # Like a crashed container: the worker and its children die at once.
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        stop_worker(worker)
    accepted_before_kill = set(smtp.handler.message_ids())
    assert statuses(ids)[EmailStatus.SENDING] > 0

    # The reconciler finds the dead worker's emails once the timeout passed.
    report = ReconcileReport()
    recover_stuck_emails(db.session, system_clock, timedelta(0), set(), 4, report)
    smtp.handler.delay = 0
    send(smtp, system_clock)

    received = smtp.handler.message_ids()
    message_ids = set(
        db.session.scalars(select(Email.message_id).where(Email.id.in_(ids)))
    )
    duplicates = {mid for mid, count in received.items() if count > 1}
    assert statuses(ids) == {EmailStatus.SENT: 12}
    assert set(received) == message_ids
    assert duplicates <= accepted_before_kill
    assert max(received.values()) <= 2


def test_four_workers_on_one_queue_send_each_email_exactly_once(
    app, smtp, database_url, redis_url
):
    ids = approved_emails(120)
    workers = [
        start_worker(
            database_url, redis_url, smtp.port, "--no-cron", SEND_CHUNK_SIZE="10"
        )
        for _ in range(4)
    ]
    try:
        queue = Queue("emails-request", connection=redis_connection())
        for _ in range(8):
            queue.enqueue(jobs.send_due_emails, 3)
        wait_until(lambda: statuses(ids).get(EmailStatus.SENT) == 120, timeout=60)
    finally:
        for worker in workers:
            stop_worker(worker)

    received = smtp.handler.message_ids()
    claimed_by = set(
        db.session.scalars(select(Email.claimed_by).where(Email.id.in_(ids)))
    )
    assert len(received) == 120
    assert set(received.values()) == {1}
    assert db.session.scalar(select(func.count(DeliveryAttempt.id))) == 120
    assert len(claimed_by) >= 2
