"""Sending: chunked delivery over SMTP, attempts, retries, the cap again."""

import threading
from datetime import datetime, timedelta
from email import message_from_bytes, policy

import pytest
from aiosmtpd.controller import Controller
from rq import SimpleWorker
from sqlalchemy import select

from tests.conftest import free_port
from tests.factories import make_request, make_sent_email, make_therapist
from webapp.approval import approve_email
from webapp.clock import FixedClock, system_clock
from webapp.drafting import create_draft
from webapp.extensions import db
from webapp.jobs import enqueue_sending
from webapp.models import (
    Alert,
    AlertKind,
    AttemptOutcome,
    DeliveryAttempt,
    Email,
    EmailKind,
    EmailStatus,
)
from webapp.queueing import WORKER_QUEUES, redis_connection
from webapp.sending import SendPolicy, SmtpSettings, send_due_emails

NOW = datetime(2026, 12, 4, 9, 0)


class ScriptedServer:
    """An aiosmtpd handler that answers DATA from a script, then with 250."""

    def __init__(self) -> None:
        self.replies: list[str] = []
        self.received: list[bytes] = []
        self.sessions = 0
        self.lock = threading.Lock()

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        with self.lock:
            self.sessions += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(self, server, session, envelope, address, options):
        if address.startswith("unbekannt@"):
            return "550 5.1.1 Mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            if self.replies:
                return self.replies.pop(0)
            self.received.append(envelope.original_content)
        return "250 Message accepted"

    def parsed(self):
        return [message_from_bytes(raw, policy=policy.default) for raw in self.received]


@pytest.fixture
def server():
    """A scripted SMTP server on 127.0.0.1 for one test."""
    handler = ScriptedServer()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    handler.port = controller.port
    yield handler
    controller.stop()


def queued_email(clock, kind=EmailKind.INITIAL_CONTACT, **therapist_fields) -> Email:
    therapist = make_therapist(**therapist_fields)
    request = make_request(therapist)
    email = create_draft(db.session, therapist, kind, [request], clock)
    db.session.commit()
    approve_email(db.session, email.id, None, clock)
    return email


def send(server, clock, **policy) -> object:
    settings = SmtpSettings(host="127.0.0.1", port=server.port, timeout=5)
    return send_due_emails(
        db.session, clock, settings, "test-worker", SendPolicy(**policy)
    )


def test_queued_emails_go_out_over_one_connection(app, server):
    clock = FixedClock(NOW)
    emails = [
        queued_email(clock, last_name=name)
        for name in ("Weiß", "Öztürk", "Müller-Lüdenscheidt")
    ]

    report = send(server, clock, chunk_size=2)

    assert report.sent == 3
    assert server.sessions == 1
    for email in emails:
        db.session.refresh(email)
        assert email.status == EmailStatus.SENT
        assert email.sent_at == NOW
        [attempt] = email.attempts
        assert attempt.outcome == AttemptOutcome.SENT
        assert attempt.worker == "test-worker"


def test_sent_message_is_multipart_utf8_with_date_and_message_id(app, server):
    clock = FixedClock(NOW)
    email = queued_email(clock, salutation="Herr", title=None, last_name="Öztürk")

    send(server, clock)

    [message] = server.parsed()
    assert message["Subject"] == email.subject
    assert "ü" in message["Subject"] or "ä" in message["Subject"]
    assert message["Message-ID"] == email.message_id
    assert message["Date"].datetime.year == 2026
    assert message.get_content_type() == "multipart/alternative"
    assert "Öztürk" in str(message["To"])
    assert "Sehr geehrter Herr Öztürk" in message.get_body(("plain",)).get_content()
    assert "<html" in message.get_body(("html",)).get_content()


def test_temporary_refusal_is_retried_with_backoff_and_same_message_id(app, server):
    clock = FixedClock(NOW)
    email = queued_email(clock)
    server.replies = ["451 4.3.0 Bitte später erneut versuchen"]

    first = send(server, clock, retry_intervals=[60, 300])
    db.session.refresh(email)

    assert first.retrying == 1
    assert email.status == EmailStatus.QUEUED
    assert email.retry_count == 1
    assert NOW + timedelta(seconds=47) < email.next_attempt_at
    assert email.next_attempt_at < NOW + timedelta(seconds=73)
    assert "451" in email.error_message

    clock.advance(seconds=80)
    second = send(server, clock, retry_intervals=[60, 300])
    db.session.refresh(email)

    assert second.sent == 1
    assert email.status == EmailStatus.SENT
    assert [a.outcome for a in email.attempts] == ["voruebergehend", "gesendet"]
    assert server.parsed()[0]["Message-ID"] == email.message_id


def test_not_yet_due_retry_is_left_alone(app, server):
    clock = FixedClock(NOW)
    email = queued_email(clock)
    server.replies = ["421 4.7.0 Zu viele Verbindungen"]
    send(server, clock)

    clock.advance(seconds=10)
    report = send(server, clock)

    assert report.sent == 0
    assert db.session.get(Email, email.id).status == EmailStatus.QUEUED


def test_rejected_address_fails_at_once_with_the_reply_kept(app, server):
    clock = FixedClock(NOW)
    bad = queued_email(clock, email="unbekannt@praxis.example")
    good = queued_email(clock)

    report = send(server, clock)

    db.session.refresh(bad)
    assert (report.sent, report.failed) == (1, 1)
    assert bad.status == EmailStatus.FAILED
    assert bad.error_message.startswith("550")
    [attempt] = bad.attempts
    assert attempt.outcome == AttemptOutcome.PERMANENT
    assert attempt.smtp_code == 550
    assert db.session.get(Email, good.id).status == EmailStatus.SENT


def test_unreachable_server_counts_as_a_transient_try(app):
    clock = FixedClock(NOW)
    email = queued_email(clock)
    settings = SmtpSettings(host="127.0.0.1", port=free_port(), timeout=2)

    report = send_due_emails(
        db.session, clock, settings, "test-worker", SendPolicy(retry_intervals=[60])
    )

    db.session.refresh(email)
    assert report.retrying == 1
    assert email.status == EmailStatus.QUEUED
    assert "Verbindung" in email.error_message


def test_last_transient_try_ends_failed(app, server):
    clock = FixedClock(NOW)
    email = queued_email(clock)
    server.replies = ["451 eins", "451 zwei"]

    send(server, clock, retry_intervals=[60])
    clock.advance(seconds=120)
    report = send(server, clock, retry_intervals=[60])

    db.session.refresh(email)
    assert report.failed == 1
    assert email.status == EmailStatus.FAILED
    assert email.error_message == "451 zwei"
    assert len(email.attempts) == 2


def test_worker_defers_an_email_that_would_break_the_cap(app, server):
    clock = FixedClock(NOW)
    email = queued_email(clock)
    # Another service sent a request around the approval; the worker sees it.
    make_sent_email(email.therapist, NOW - timedelta(hours=1))

    report = send(server, clock)

    db.session.refresh(email)
    assert report.deferred == 1
    assert server.received == []
    assert email.status == EmailStatus.QUEUED
    assert email.next_attempt_at == NOW - timedelta(hours=1) + timedelta(days=7)


def test_confirmations_are_sent_before_requests(app, server):
    clock = FixedClock(NOW)
    request = queued_email(clock)
    confirmation = queued_email(clock, kind=EmailKind.CONFIRMATION)

    send(server, clock)

    ids = [m["Message-ID"] for m in server.parsed()]
    db.session.refresh(request)
    db.session.refresh(confirmation)
    assert ids == [confirmation.message_id, request.message_id]


def test_enqueued_job_is_run_by_an_rq_worker(app, sink):
    email = queued_email(system_clock)
    email_id, recipient = email.id, email.recipient_email

    enqueue_sending([email])
    connection = redis_connection()
    worker = SimpleWorker(WORKER_QUEUES, connection=connection)
    worker.work(burst=True)

    db.session.expire_all()
    assert db.session.get(Email, email_id).status == EmailStatus.SENT
    [(_, rcpt_tos, _)] = sink.messages
    assert rcpt_tos == [recipient]
    attempts = db.session.scalars(select(DeliveryAttempt)).all()
    assert len(attempts) == 1


def test_final_failure_raises_one_alert(app, server):
    clock = FixedClock(NOW)
    bad = queued_email(clock, email="unbekannt@praxis.example")

    send(server, clock)

    [alert] = db.session.scalars(select(Alert)).all()
    assert alert.kind == AlertKind.EMAIL_FAILED
    assert alert.subject_key == f"email:{bad.id}"
