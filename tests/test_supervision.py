"""Supervision services and pages: failure report, requeue, cancel, charts."""

import itertools
from datetime import datetime, timedelta
from email import message_from_bytes, policy

import pytest
from flask import url_for
from rq import Queue, Worker
from sqlalchemy import select

from tests.conftest import create_user
from tests.factories import make_sent_email, make_therapist
from webapp import supervision
from webapp.clock import FixedClock
from webapp.exceptions import InvalidTransition, ValidationFailed, WeeklyCapExceeded
from webapp.extensions import db
from webapp.message import build_mime
from webapp.models import (
    Alert,
    AlertKind,
    AttemptOutcome,
    AuditEntry,
    DeliveryAttempt,
    Email,
    EmailKind,
    EmailStatus,
    Role,
)
from webapp.sending import SendPolicy, SmtpSettings, send_due_emails
from webapp.supervision import (
    SPANS,
    ErrorClass,
    ReportFilters,
    ReportState,
    classify_attempt,
    error_class_counts,
    failure_report,
)

NOW = datetime(2026, 12, 4, 13, 35)  # 14:35 in Berlin
SENDER = "vermittlung@therapieplatz.example"
MESSAGE_ID = "<fehler-1@therapieplatz.example>"

# (outcome, smtp code, reply, expected class)
ATTEMPT_CASES = [
    (AttemptOutcome.TRANSIENT, None, "Verbindung fehlgeschlagen: refused", "unreach"),
    (AttemptOutcome.TRANSIENT, None, "Zeitüberschreitung beim Senden", "unreach"),
    (AttemptOutcome.TRANSIENT, 421, "4.3.2 Service shutting down", "temp"),
    (AttemptOutcome.TRANSIENT, 451, "Try again later", "temp"),
    (AttemptOutcome.PERMANENT, 550, "5.1.1 <x@example.org>: User unknown", "address"),
    (AttemptOutcome.PERMANENT, 550, "No such user here", "address"),
    (AttemptOutcome.PERMANENT, 553, "5.1.3 Bad recipient address syntax", "address"),
    (AttemptOutcome.PERMANENT, 554, "Rejected: 5.1.1 mailbox unknown", "address"),
    (AttemptOutcome.PERMANENT, 550, "5.7.1 Message rejected as spam", "rejected"),
    (AttemptOutcome.PERMANENT, 552, "5.3.4 Message too big", "rejected"),
    (AttemptOutcome.PERMANENT, 554, "Transaction failed", "rejected"),
    (AttemptOutcome.INTERRUPTED, None, "Zustellung unterbrochen", "worker"),
    (AttemptOutcome.TRANSIENT, 250, "odd", "other"),
]
CLASSES = {
    "unreach": ErrorClass.UNREACHABLE,
    "temp": ErrorClass.TEMPORARY,
    "address": ErrorClass.UNKNOWN_ADDRESS,
    "rejected": ErrorClass.REJECTED,
    "worker": ErrorClass.INTERRUPTED,
    "other": ErrorClass.OTHER,
}


def make_email(
    therapist=None,
    *,
    status: EmailStatus = EmailStatus.FAILED,
    kind: EmailKind = EmailKind.BATCH_REQUEST,
    retry_count: int = 0,
    attempts=(),
    message_id: str | None = None,
    recipient: str = "praxis@weiss.example",
    next_attempt_at: datetime | None = None,
) -> Email:
    """Store an approved email and its attempts: (outcome, code, reply, at)."""
    therapist = therapist or make_therapist()
    message_id = message_id or f"<mail-{therapist.id}-{kind}@therapieplatz.example>"
    fields = {
        "subject": "Anfrage zur Psychotherapie",
        "sender_name": "Therapieplatz-Vermittlung",
        "sender_email": SENDER,
        "recipient_name": therapist.full_name,
        "recipient_email": recipient,
        "message_id": message_id,
        "html": "<p>Sehr geehrte Frau Dr. Weiß</p>",
        "text": "Sehr geehrte Frau Dr. Weiß",
    }
    email = Email(
        therapist_id=therapist.id,
        kind=kind,
        priority=1 if kind == EmailKind.CONFIRMATION else 3,
        subject=fields["subject"],
        body_html=fields["html"],
        body_text=fields["text"],
        recipient_email=recipient,
        recipient_name=fields["recipient_name"],
        sender_email=SENDER,
        sender_name=fields["sender_name"],
        status=status,
        message_id=message_id,
        mime_bytes=build_mime(**fields),
        retry_count=retry_count,
        queued_at=NOW - timedelta(days=1),
        next_attempt_at=next_attempt_at,
        error_message=_error_message(attempts) if status != EmailStatus.SENT else None,
        created_at=NOW - timedelta(days=1),
        updated_at=NOW - timedelta(days=1),
    )
    db.session.add(email)
    db.session.flush()
    for outcome, code, reply, at in attempts:
        db.session.add(
            DeliveryAttempt(
                email_id=email.id,
                attempted_at=at,
                worker="host:1",
                smtp_code=code,
                smtp_reply=reply,
                outcome=outcome,
                duration_ms=12,
            )
        )
    db.session.commit()
    return email


def _error_message(attempts) -> str | None:
    """The error text the sender stores: code and reply of the last try."""
    if not attempts:
        return None
    _, code, reply, _ = attempts[-1]
    return f"{code} {reply}" if code else reply


def failed_550(therapist=None, **fields) -> Email:
    """A request email refused with 550 a few minutes ago."""
    attempt = (AttemptOutcome.PERMANENT, 550, "5.1.1 User unknown", NOW)
    return make_email(therapist, attempts=[attempt], **fields)


@pytest.fixture
def supervisor(app):
    """A stored supervisor with password geheim-123."""
    return create_user(
        "aufsicht@example.org", role=Role.SUPERVISOR, name="Sam Aufsicht"
    )


# Error classes ------------------------------------------------------------------


@pytest.mark.parametrize(("outcome", "code", "reply", "expected"), ATTEMPT_CASES)
def test_error_class_in_python_and_sql_agree(app, outcome, code, reply, expected):
    email = make_email(attempts=[(outcome, code, reply, NOW)])
    clock = FixedClock(NOW)
    wanted = CLASSES[expected]

    report = failure_report(db.session, clock, ReportFilters(error_class=wanted))

    assert classify_attempt(outcome, code, reply) == wanted
    assert [row.email.id for row in report.items] == [email.id]
    assert report.items[0].error_class == wanted
    assert error_class_counts(db.session, clock, ReportFilters()) == {wanted: 1}


def test_sent_attempt_has_no_error_class():
    assert classify_attempt(AttemptOutcome.SENT, 250, "OK") is None


@pytest.mark.parametrize(
    ("error_class", "label"),
    [
        (ErrorClass.UNREACHABLE, "Server nicht erreichbar"),
        (ErrorClass.TEMPORARY, "Vorübergehend abgelehnt (4xx)"),
        (ErrorClass.UNKNOWN_ADDRESS, "Adresse unbekannt"),
        (ErrorClass.REJECTED, "Dauerhaft abgelehnt (5xx)"),
        (ErrorClass.INTERRUPTED, "Worker ausgefallen"),
    ],
)
def test_error_classes_read_in_plain_german(error_class, label):
    assert supervision.ERROR_CLASS_LABELS[error_class] == label


# Failure report -----------------------------------------------------------------


def test_report_lists_failed_and_retrying_emails_with_attempt_summary(app):
    failed = make_email(
        attempts=[
            (AttemptOutcome.TRANSIENT, 421, "busy", NOW - timedelta(hours=3)),
            (AttemptOutcome.TRANSIENT, None, "refused", NOW - timedelta(hours=2)),
            (AttemptOutcome.PERMANENT, 550, "5.1.1 unknown", NOW - timedelta(hours=1)),
        ]
    )
    retrying = make_email(
        status=EmailStatus.QUEUED,
        retry_count=1,
        next_attempt_at=NOW + timedelta(minutes=5),
        attempts=[(AttemptOutcome.TRANSIENT, 451, "later", NOW - timedelta(minutes=1))],
    )
    make_email(status=EmailStatus.QUEUED, next_attempt_at=NOW)  # fresh, no trouble
    make_sent_email(make_therapist(), NOW - timedelta(hours=5))

    report = failure_report(db.session, FixedClock(NOW), ReportFilters())

    assert [row.email.id for row in report.items] == [retrying.id, failed.id]
    row = report.items[1]
    assert row.attempts == 3
    assert row.first_try == NOW - timedelta(hours=3)
    assert row.last_try == NOW - timedelta(hours=1)
    assert row.last_attempt.smtp_code == 550
    assert row.error_class == ErrorClass.UNKNOWN_ADDRESS
    assert report.items[0].error_class == ErrorClass.TEMPORARY


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (ReportFilters(), {"old", "recent", "confirmation", "retrying"}),
        (
            ReportFilters(since=NOW - timedelta(days=1)),
            {"recent", "confirmation", "retrying"},
        ),
        (ReportFilters(kind=EmailKind.CONFIRMATION), {"confirmation"}),
        (ReportFilters(state=ReportState.FAILED), {"old", "recent", "confirmation"}),
        (ReportFilters(state=ReportState.RETRYING), {"retrying"}),
        (ReportFilters(state=ReportState.SCHEDULED), {"scheduled"}),
        (ReportFilters(error_class=ErrorClass.UNREACHABLE), {"retrying"}),
        (
            ReportFilters(
                kind=EmailKind.BATCH_REQUEST, error_class=ErrorClass.UNKNOWN_ADDRESS
            ),
            {"old", "recent"},
        ),
    ],
)
def test_report_filters(app, filters, expected):
    emails = {
        "old": failed_550(),
        "recent": make_email(
            attempts=[(AttemptOutcome.PERMANENT, 550, "no such user", NOW)]
        ),
        "confirmation": make_email(
            kind=EmailKind.CONFIRMATION,
            attempts=[(AttemptOutcome.PERMANENT, 554, "denied", NOW)],
        ),
        "retrying": make_email(
            status=EmailStatus.QUEUED,
            retry_count=2,
            attempts=[(AttemptOutcome.TRANSIENT, None, "refused", NOW)],
        ),
        "scheduled": make_email(
            status=EmailStatus.QUEUED, next_attempt_at=NOW + timedelta(days=2)
        ),
    }
    old = emails["old"]
    db.session.execute(
        DeliveryAttempt.__table__.update()
        .where(DeliveryAttempt.email_id == old.id)
        .values(attempted_at=NOW - timedelta(days=3))
    )
    db.session.commit()
    names = {email.id: name for name, email in emails.items()}

    report = failure_report(db.session, FixedClock(NOW), filters)

    assert {names[row.email.id] for row in report.items} == expected


def test_report_pages(app):
    for _ in range(5):
        failed_550()

    first = failure_report(db.session, FixedClock(NOW), ReportFilters(), 1, per_page=2)
    last = failure_report(db.session, FixedClock(NOW), ReportFilters(), 9, per_page=2)

    assert (first.total, first.pages, len(first.items)) == (5, 3, 2)
    assert first.has_next and not first.has_prev
    assert (last.page, len(last.items)) == (3, 1)


def test_timeline_lists_attempts_in_order_and_interventions(app, supervisor):
    email = make_email(
        attempts=[
            (AttemptOutcome.TRANSIENT, None, "refused", NOW - timedelta(hours=2)),
            (AttemptOutcome.PERMANENT, 550, "5.1.1 unknown", NOW - timedelta(hours=1)),
        ]
    )
    supervision.requeue(db.session, FixedClock(NOW), supervisor, email, "Tippfehler")

    timeline = supervision.email_timeline(db.session, email)

    assert [entry.error_class for entry in timeline.attempts] == [
        ErrorClass.UNREACHABLE,
        ErrorClass.UNKNOWN_ADDRESS,
    ]
    [entry] = timeline.interventions
    assert (entry.action, entry.reason, entry.user.name) == (
        "email_requeued",
        "Tippfehler",
        "Sam Aufsicht",
    )


# Requeue and cancel --------------------------------------------------------------


def test_requeue_with_new_address_keeps_message_id_and_rebuilds_the_message(
    app, supervisor
):
    email = failed_550(message_id=MESSAGE_ID, retry_count=3)
    old_bytes = email.mime_bytes
    clock = FixedClock(NOW)

    supervision.requeue(
        db.session,
        clock,
        supervisor,
        email,
        "Adresse telefonisch bestätigt",
        new_address=" Praxis.Weiss@Example.org ",
    )

    db.session.expire_all()
    stored = db.session.get(Email, email.id)
    assert stored.status == EmailStatus.QUEUED
    assert stored.retry_count == 0
    assert stored.next_attempt_at == NOW
    assert stored.error_message is None
    assert stored.recipient_email == "Praxis.Weiss@example.org"
    assert stored.message_id == MESSAGE_ID
    assert stored.mime_bytes != old_bytes
    message = message_from_bytes(stored.mime_bytes, policy=policy.default)
    assert message["Message-ID"] == MESSAGE_ID
    assert message["To"].addresses[0].addr_spec == "Praxis.Weiss@example.org"
    assert "Sehr geehrte Frau Dr. Weiß" in message.get_body(("plain",)).get_content()
    entries = db.session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
    assert [(e.action, e.user_id, e.reason, e.object_id) for e in entries] == [
        ("email_requeued", supervisor.id, "Adresse telefonisch bestätigt", email.id),
        ("email_readdressed", supervisor.id, "Adresse telefonisch bestätigt", email.id),
    ]


def test_requeued_email_goes_out_with_the_same_message_id(
    app, supervisor, smtp_server, sink
):
    _, port = smtp_server
    email = failed_550(message_id=MESSAGE_ID)
    clock = FixedClock(NOW)
    supervision.requeue(
        db.session, clock, supervisor, email, "korrigiert", "neu@weiss.example"
    )

    report = send_due_emails(
        db.session, clock, SmtpSettings("127.0.0.1", port), "test:1", SendPolicy()
    )

    assert report.sent == 1
    sink.wait_for(1)
    [(_, recipients, raw)] = sink.messages
    assert recipients == ["neu@weiss.example"]
    assert message_from_bytes(raw, policy=policy.default)["Message-ID"] == MESSAGE_ID
    assert db.session.get(Email, email.id).status == EmailStatus.SENT


def test_requeue_of_a_retrying_email_sends_it_now(app, supervisor):
    email = make_email(
        status=EmailStatus.QUEUED,
        retry_count=2,
        next_attempt_at=NOW + timedelta(minutes=40),
        attempts=[(AttemptOutcome.TRANSIENT, None, "refused", NOW)],
    )

    supervision.requeue(db.session, FixedClock(NOW), supervisor, email, "Server läuft")

    assert (email.status, email.retry_count, email.next_attempt_at) == (
        EmailStatus.QUEUED,
        0,
        NOW,
    )


@pytest.mark.parametrize(
    ("reason", "address", "field"),
    [
        ("", None, "reason"),
        ("   ", "neu@weiss.example", "reason"),
        ("x" * 501, None, "reason"),
        ("Grund", "keine-adresse", "new_address"),
        ("Grund", "a@b@c.example", "new_address"),
        ("Grund", "neu@weiss.example\r\nBcc: x@y.example", "new_address"),
    ],
)
def test_requeue_refuses_bad_input_and_changes_nothing(
    app, supervisor, reason, address, field
):
    email = failed_550()

    with pytest.raises(ValidationFailed) as refused:
        supervision.requeue(
            db.session, FixedClock(NOW), supervisor, email, reason, address
        )

    assert refused.value.field == field
    db.session.expire_all()
    assert db.session.get(Email, email.id).status == EmailStatus.FAILED
    assert db.session.scalar(select(AuditEntry.id)) is None


@pytest.mark.parametrize(
    "status", [EmailStatus.SENT, EmailStatus.SENDING, EmailStatus.DRAFT]
)
def test_requeue_and_cancel_refuse_emails_not_in_trouble(app, supervisor, status):
    email = make_email(status=status)
    clock = FixedClock(NOW)

    with pytest.raises(InvalidTransition):
        supervision.requeue(db.session, clock, supervisor, email, "Grund")
    with pytest.raises(InvalidTransition):
        supervision.cancel(db.session, clock, supervisor, email, "Grund")


def test_requeue_waits_for_the_weekly_cap(app, supervisor):
    therapist = make_therapist()
    make_sent_email(therapist, NOW - timedelta(days=2))
    email = failed_550(therapist)

    supervision.requeue(db.session, FixedClock(NOW), supervisor, email, "erneut")

    assert email.status == EmailStatus.QUEUED
    assert email.next_attempt_at == NOW + timedelta(days=5)


def test_requeue_is_refused_while_another_request_is_pending(app, supervisor):
    therapist = make_therapist()
    make_email(therapist, status=EmailStatus.QUEUED, next_attempt_at=NOW)
    email = failed_550(therapist, message_id="<second@therapieplatz.example>")

    with pytest.raises(WeeklyCapExceeded):
        supervision.requeue(db.session, FixedClock(NOW), supervisor, email, "erneut")

    db.session.expire_all()
    assert db.session.get(Email, email.id).status == EmailStatus.FAILED


def test_confirmation_is_requeued_despite_the_cap(app, supervisor):
    therapist = make_therapist()
    make_sent_email(therapist, NOW - timedelta(days=2))
    email = failed_550(therapist, kind=EmailKind.CONFIRMATION)

    supervision.requeue(db.session, FixedClock(NOW), supervisor, email, "erneut")

    assert email.next_attempt_at == NOW


@pytest.mark.parametrize(
    ("status", "retry_count"),
    [(EmailStatus.QUEUED, 0), (EmailStatus.QUEUED, 2), (EmailStatus.FAILED, 4)],
)
def test_cancel_discards_the_email_with_its_reason(
    app, supervisor, status, retry_count
):
    email = make_email(
        status=status, retry_count=retry_count, next_attempt_at=NOW + timedelta(days=1)
    )

    supervision.cancel(
        db.session, FixedClock(NOW), supervisor, email, "Praxis geschlossen"
    )

    db.session.expire_all()
    stored = db.session.get(Email, email.id)
    assert stored.status == EmailStatus.DISCARDED
    assert stored.error_message == "Abgebrochen: Praxis geschlossen"
    assert stored.next_attempt_at is None
    entry = db.session.scalar(select(AuditEntry))
    assert (entry.action, entry.user_id, entry.object_type, entry.reason) == (
        "email_cancelled",
        supervisor.id,
        "emails",
        "Praxis geschlossen",
    )


def test_cancel_needs_a_reason(app, supervisor):
    email = failed_550()

    with pytest.raises(ValidationFailed):
        supervision.cancel(db.session, FixedClock(NOW), supervisor, email, " ")

    assert db.session.get(Email, email.id).status == EmailStatus.FAILED


def test_cancelled_email_is_never_claimed(app, supervisor):
    from webapp.sending import claim_due

    email = make_email(status=EmailStatus.QUEUED, next_attempt_at=NOW)
    supervision.cancel(db.session, FixedClock(NOW), supervisor, email, "doch nicht")

    assert claim_due(db.session, FixedClock(NOW), "test:1", 10) == []


# Charts ------------------------------------------------------------------------


def store_attempt(email: Email, outcome: AttemptOutcome, at: datetime) -> None:
    db.session.add(
        DeliveryAttempt(email_id=email.id, attempted_at=at, worker="w", outcome=outcome)
    )
    db.session.commit()


def test_hourly_series_counts_sent_retried_and_failed(app):
    clock = FixedClock(NOW)
    sent = make_email(status=EmailStatus.SENT)
    failed = make_email()
    retrying = make_email(status=EmailStatus.QUEUED, retry_count=1)
    # 13:35 UTC is in the bucket 13:00-14:00 UTC (14:00 in Berlin), the last one.
    store_attempt(sent, AttemptOutcome.TRANSIENT, NOW - timedelta(hours=2))
    store_attempt(sent, AttemptOutcome.SENT, NOW - timedelta(minutes=30))
    store_attempt(failed, AttemptOutcome.TRANSIENT, NOW - timedelta(hours=2))
    store_attempt(failed, AttemptOutcome.INTERRUPTED, NOW - timedelta(minutes=20))
    store_attempt(retrying, AttemptOutcome.TRANSIENT, NOW - timedelta(minutes=5))
    store_attempt(retrying, AttemptOutcome.SENT, NOW - timedelta(hours=30))  # too old
    store_attempt(retrying, AttemptOutcome.SENT, NOW + timedelta(hours=2))  # future

    series = supervision.delivery_series(db.session, clock, SPANS["24h"])

    assert len(series.buckets) == 24
    last, two_hours_ago = series.buckets[-1], series.buckets[-3]
    assert (last.label, last.title) == ("14:00", "04.12.2026 14:00–15:00")
    assert (last.sent, last.retried, last.failed) == (1, 1, 1)
    assert (two_hours_ago.sent, two_hours_ago.retried, two_hours_ago.failed) == (
        0,
        2,
        0,
    )
    assert last.failure_rate == pytest.approx(2 / 3)
    assert series.buckets[0].failure_rate is None
    totals = series.totals
    assert (totals.sent, totals.retried, totals.failed) == (1, 3, 1)
    data = series.as_dict()
    assert data["sent"][-1] == 1 and data["failure_rate"][-3] == 1.0
    assert data["starts"][-1] == "2026-12-04T13:00:00+00:00"


def test_daily_series_uses_local_days(app):
    clock = FixedClock(NOW)
    email = make_email(status=EmailStatus.SENT)
    # 23:30 UTC on 3 December is already 4 December in Berlin.
    store_attempt(email, AttemptOutcome.SENT, datetime(2026, 12, 3, 23, 30))
    store_attempt(email, AttemptOutcome.SENT, datetime(2026, 12, 3, 22, 30))
    store_attempt(email, AttemptOutcome.PERMANENT, datetime(2026, 11, 28, 8, 0))
    store_attempt(email, AttemptOutcome.SENT, datetime(2026, 11, 27, 8, 0))  # 8 days

    week = supervision.delivery_series(db.session, clock, SPANS["7d"])
    month = supervision.delivery_series(db.session, clock, SPANS["30d"])

    assert [bucket.label for bucket in week.buckets][-2:] == ["03.12.", "04.12."]
    assert [bucket.sent for bucket in week.buckets] == [0, 0, 0, 0, 0, 1, 1]
    assert week.buckets[0].title == "28.11.2026" and week.buckets[0].failed == 1
    assert len(month.buckets) == 30
    assert month.totals.sent == 3 and month.totals.failed == 1


def test_day_buckets_follow_daylight_saving_time(app):
    # 29 March 2026: clocks go forward in Berlin, the day has 23 hours.
    clock = FixedClock(datetime(2026, 3, 30, 12, 0))

    starts = supervision.bucket_starts(clock.now(), SPANS["7d"], supervision.BERLIN)

    lengths = [(b - a).total_seconds() / 3600 for a, b in itertools.pairwise(starts)]
    assert starts[-2] == datetime(2026, 3, 29, 22, 0)  # 30 March, 00:00 CEST
    assert lengths == [24, 24, 24, 24, 24, 23, 24]


# Pages ---------------------------------------------------------------------------


def sign_in(app, user):
    """Return a test client signed in as `user`, CSRF checks off.

    Writes the session directly instead of posting the login form: the form
    is throttled per address, and these tests sign in many times a minute.
    """
    app.config["WTF_CSRF_ENABLED"] = False
    client = app.test_client()
    with client.session_transaction() as session:
        session["_user_id"] = str(user.id)
        session["_fresh"] = True
    return client


@pytest.fixture
def coordinator_client(app, coordinator):
    """A test client signed in as a coordinator, CSRF checks off."""
    yield sign_in(app, coordinator)
    app.config["WTF_CSRF_ENABLED"] = True


@pytest.fixture
def supervisor_client(app, supervisor):
    """A test client signed in as the supervisor, CSRF checks off."""
    yield sign_in(app, supervisor)
    app.config["WTF_CSRF_ENABLED"] = True


HTMX = {"HX-Request": "true"}


def store_alert(kind=AlertKind.WORKER_SILENT, key="workers", at=NOW, message="Still"):
    alert = Alert(kind=kind, subject_key=key, message=message, created_at=at)
    db.session.add(alert)
    db.session.commit()
    return alert


def supervision_urls(app, email_id: int, alert_id: int) -> list[tuple[str, str]]:
    """Every supervision route but the Chart.js file, as (method, url)."""
    routes = []
    with app.test_request_context():
        for rule in app.url_map.iter_rules():
            if not rule.endpoint.startswith("supervision."):
                continue
            if rule.endpoint == "supervision.vendor_chartjs":
                continue
            values = {
                name: email_id if name == "email_id" else alert_id
                for name in rule.arguments
            }
            method = "POST" if "POST" in rule.methods else "GET"
            routes.append((method, url_for(rule.endpoint, **values)))
    return routes


def test_coordinators_get_403_from_every_supervision_route(app, coordinator_client):
    email = failed_550()
    alert = store_alert()
    routes = supervision_urls(app, email.id, alert.id)
    form = {"requeue-reason": "Grund", "cancel-reason": "Grund"}

    answers = {
        url: coordinator_client.open(url, method=method, data=form).status_code
        for method, url in routes
    }

    assert len(routes) >= 10
    assert set(answers.values()) == {403}, answers
    page = coordinator_client.get("/supervision/fehler").get_data(as_text=True)
    assert "Kein Zugriff" in page and "Koordination" in page
    db.session.expire_all()
    assert db.session.get(Email, email.id).status == EmailStatus.FAILED
    assert db.session.get(Alert, alert.id).acknowledged_at is None
    assert db.session.scalar(select(AuditEntry.id)) is None


@pytest.mark.parametrize("role", [Role.SUPERVISOR, Role.ADMIN])
def test_supervisors_and_admins_reach_every_supervision_page(app, role):
    email = failed_550()
    alert = store_alert()
    client = sign_in(app, create_user("leitung@example.org", role=role))

    for method, url in supervision_urls(app, email.id, alert.id):
        if method == "GET":
            assert client.get(url).status_code in {200, 302}, url


def test_anonymous_users_are_sent_to_the_login(client):
    page = client.get("/supervision/fehler")
    fragment = client.get("/supervision/warnungen/anzahl", headers=HTMX)

    assert page.status_code == 302 and "/login" in page.headers["Location"]
    assert fragment.status_code == 401 and "/login" in fragment.headers["HX-Redirect"]


@pytest.mark.parametrize(
    ("role", "shown"),
    [(Role.COORDINATOR, False), (Role.SUPERVISOR, True), (Role.ADMIN, True)],
)
def test_menu_shows_supervision_only_to_supervisors(app, role, shown):
    client = sign_in(app, create_user("team@example.org", role=role))

    page = client.get("/").get_data(as_text=True)

    assert ("/supervision/fehler" in page) is shown
    assert ("/supervision/warnungen/anzahl" in page) is shown


def test_failure_report_shows_the_german_error_and_the_raw_reply(supervisor_client):
    email = failed_550()

    page = supervisor_client.get("/supervision/fehler").get_data(as_text=True)

    assert "<html" in page
    assert f'id="failure-{email.id}"' in page
    assert "Adresse unbekannt" in page
    assert "<code>550</code> 5.1.1 User unknown" in page
    assert "04.12.2026 14:35" in page
    assert "Sammelanfrage" in page


def test_failure_report_filters_answer_htmx_with_the_fragment(supervisor_client):
    unknown = failed_550()
    refused = make_email(attempts=[(AttemptOutcome.TRANSIENT, None, "refused", NOW)])

    response = supervisor_client.get(
        "/supervision/fehler?error=adresse_unbekannt&kind=batch_request", headers=HTMX
    )
    page = response.get_data(as_text=True)

    assert page.lstrip().startswith("<section") or 'id="failure-results"' in page
    assert "<html" not in page
    assert f'id="failure-{unknown.id}"' in page
    assert f'id="failure-{refused.id}"' not in page


def test_failure_report_ignores_invalid_filters_and_says_so(supervisor_client):
    email = failed_550()

    page = supervisor_client.get("/supervision/fehler?error=kaputt&period=1y")

    text = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Ungültige Filter wurden ignoriert" in text
    assert f'id="failure-{email.id}"' in text


def test_timeline_page_and_panel(supervisor_client):
    email = make_email(
        attempts=[
            (AttemptOutcome.TRANSIENT, None, "Verbindung fehlgeschlagen", NOW),
            (AttemptOutcome.INTERRUPTED, None, "unterbrochen", NOW),
        ]
    )

    page = supervisor_client.get(f"/supervision/emails/{email.id}")
    panel = supervisor_client.get(f"/supervision/emails/{email.id}", headers=HTMX)

    assert "<html" in page.get_data(as_text=True)
    text = panel.get_data(as_text=True)
    assert "<html" not in text and 'id="email-timeline"' in text
    assert "Server nicht erreichbar" in text and "Worker ausgefallen" in text
    assert "host:1" in text and "12 ms" in text
    assert "Erneut senden" in text and "Abbrechen" in text


def test_requeue_through_the_panel_wakes_the_worker_and_is_audited(
    supervisor_client, supervisor, redis_conn
):
    email = failed_550(message_id=MESSAGE_ID)

    response = supervisor_client.post(
        f"/supervision/emails/{email.id}/erneut-senden",
        data={"requeue-reason": "Adresse korrigiert", "requeue-new_address": "a@b.de"},
        headers=HTMX,
    )

    assert response.status_code == 200
    assert response.headers["HX-Trigger"] == "failures-changed"
    assert "Erneut eingereiht" in response.get_data(as_text=True)
    db.session.expire_all()
    stored = db.session.get(Email, email.id)
    assert (stored.status, stored.recipient_email) == (EmailStatus.QUEUED, "a@b.de")
    assert Queue("emails-request", connection=redis_conn).count == 1
    entries = db.session.scalars(select(AuditEntry)).all()
    assert {entry.user_id for entry in entries} == {supervisor.id}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"requeue-reason": ""}, "Bitte einen Grund angeben."),
        (
            {"requeue-reason": "Grund", "requeue-new_address": "keine Adresse"},
            "Bitte eine gültige E-Mail-Adresse angeben.",
        ),
    ],
)
def test_requeue_form_errors_show_in_the_panel(supervisor_client, data, message):
    email = failed_550()
    url = f"/supervision/emails/{email.id}/erneut-senden"

    panel = supervisor_client.post(url, data=data, headers=HTMX)
    page = supervisor_client.post(url, data=data)

    assert panel.status_code == 200 and message in panel.get_data(as_text=True)
    assert page.status_code == 422 and message in page.get_data(as_text=True)
    assert db.session.get(Email, email.id).status == EmailStatus.FAILED


def test_requeue_refused_by_a_pending_request_says_why(supervisor_client):
    therapist = make_therapist()
    make_email(therapist, status=EmailStatus.QUEUED, next_attempt_at=NOW)
    email = failed_550(therapist, message_id="<second@therapieplatz.example>")

    panel = supervisor_client.post(
        f"/supervision/emails/{email.id}/erneut-senden",
        data={"requeue-reason": "nochmal"},
        headers=HTMX,
    )

    assert "bereits eine andere Anfrage" in panel.get_data(as_text=True)


def test_cancel_without_htmx_redirects_to_the_timeline(supervisor_client):
    email = make_email(status=EmailStatus.QUEUED, next_attempt_at=NOW + timedelta(1))
    url = f"/supervision/emails/{email.id}/abbrechen"

    response = supervisor_client.post(url, data={"cancel-reason": "Praxis zu"})
    again = supervisor_client.post(
        url, data={"cancel-reason": "Praxis zu"}, headers=HTMX
    )

    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/supervision/emails/{email.id}")
    assert db.session.get(Email, email.id).status == EmailStatus.DISCARDED
    assert "nicht mehr fehlgeschlagen oder eingereiht" in again.get_data(as_text=True)
    page = supervisor_client.get(response.headers["Location"]).get_data(as_text=True)
    assert "E-Mail abgebrochen" in page and "Praxis zu" in page


def test_actions_need_a_csrf_token(app, supervisor):
    client = sign_in(app, supervisor)
    app.config["WTF_CSRF_ENABLED"] = True
    email = failed_550()
    alert = store_alert()

    requeue = client.post(
        f"/supervision/emails/{email.id}/erneut-senden", data={"requeue-reason": "x"}
    )
    ack = client.post(f"/supervision/warnungen/{alert.id}/bestaetigen")

    assert (requeue.status_code, ack.status_code) == (400, 400)


# Charts and alerts pages ----------------------------------------------------------


def test_chart_data_is_json_per_span(app, supervisor_client):
    app.config["CLOCK"] = FixedClock(NOW)
    try:
        email = make_email(status=EmailStatus.SENT)
        store_attempt(email, AttemptOutcome.SENT, NOW - timedelta(days=2))

        day = supervisor_client.get("/supervision/diagramme/daten").get_json()
        week = supervisor_client.get("/supervision/diagramme/daten?zeitraum=7d")
        wrong = supervisor_client.get("/supervision/diagramme/daten?zeitraum=1y")
    finally:
        app.config.pop("CLOCK")

    assert day["unit"] == "hour" and len(day["labels"]) == 24
    assert sum(day["sent"]) == 0
    data = week.get_json()
    assert data["sent"] == [0, 0, 0, 0, 1, 0, 0]
    assert data["titles"][-1] == "04.12.2026"
    assert data["threshold"] == app.config["FAILURE_RATE_THRESHOLD"]
    assert wrong.status_code == 400
    assert wrong.get_json()["error"]["field"] == "zeitraum"


def test_charts_page_has_tables_with_the_numbers(app, supervisor_client):
    app.config["CLOCK"] = FixedClock(NOW)
    try:
        email = make_email()
        store_attempt(email, AttemptOutcome.PERMANENT, NOW - timedelta(minutes=5))
        page = supervisor_client.get("/supervision/diagramme?zeitraum=24h")
        fragment = supervisor_client.get(
            "/supervision/diagramme?zeitraum=30d", headers=HTMX
        )
    finally:
        app.config.pop("CLOCK")

    text = page.get_data(as_text=True)
    assert "chart.umd.min.js" in text and "supervision-charts.js" in text
    assert "04.12.2026 14:00–15:00" in text
    assert "100,0 %" in text
    assert 'data-chart-url="/supervision/diagramme/daten?zeitraum=24h"' in text
    assert "<html" not in fragment.get_data(as_text=True)
    assert "Zustellversuche je Tag" in fragment.get_data(as_text=True)


def test_alerts_page_lists_open_alerts_newest_first(supervisor_client):
    older = store_alert(
        AlertKind.EMAIL_FAILED, "email:7", NOW - timedelta(hours=2), "E-Mail 7"
    )
    newer = store_alert(AlertKind.FAILURE_RATE, "last_hour", NOW, "Fehlerquote 40%")

    text = supervisor_client.get("/supervision/warnungen").get_data(as_text=True)

    assert text.index(f'id="alert-{newer.id}"') < text.index(f'id="alert-{older.id}"')
    assert "E-Mail endgültig fehlgeschlagen" in text and "Hohe Fehlerquote" in text
    assert "/supervision/emails/7" in text


def test_acknowledging_an_alert_removes_it_from_the_open_list(
    supervisor_client, supervisor
):
    alert = store_alert()

    response = supervisor_client.post(
        f"/supervision/warnungen/{alert.id}/bestaetigen", headers=HTMX
    )

    text = response.get_data(as_text=True)
    assert response.headers["HX-Trigger"] == "alerts-changed"
    assert "Warnung bestätigt." in text
    assert f'id="alert-{alert.id}"' not in text
    assert "Zuletzt bestätigt" in text and "Sam Aufsicht" in text
    db.session.expire_all()
    assert db.session.get(Alert, alert.id).acknowledged_by_id == supervisor.id


def test_badge_counts_open_alerts_and_raises_a_silent_worker_alert(
    app, supervisor_client, sink
):
    store_alert(AlertKind.FAILURE_RATE, "last_hour")

    badge = supervisor_client.get("/supervision/warnungen/anzahl", headers=HTMX)

    # No worker ever registered: the watchdog raises its alert and mails it.
    assert '<span class="nav-badge">2<' in badge.get_data(as_text=True)
    kinds = set(db.session.scalars(select(Alert.kind)))
    assert kinds == {AlertKind.FAILURE_RATE, AlertKind.WORKER_SILENT}
    sink.wait_for(2)
    assert {message["To"].addresses[0].addr_spec for message in sink.parsed()} == {
        "aufsicht@example.org"
    }


def test_badge_stays_quiet_while_a_worker_beats(app, supervisor_client, redis_conn):
    worker = Worker([Queue("default", connection=redis_conn)], connection=redis_conn)
    worker.register_birth()
    try:
        badge = supervisor_client.get("/supervision/warnungen/anzahl", headers=HTMX)
    finally:
        worker.register_death()

    assert badge.get_data(as_text=True).strip() == ""
    assert db.session.scalar(select(Alert.id)) is None


def test_delivery_status_polls_until_the_email_settles(supervisor_client):
    email = make_email(status=EmailStatus.QUEUED, next_attempt_at=datetime(2020, 1, 1))
    url = f"/supervision/emails/{email.id}/status"

    waiting = supervisor_client.get(url, headers=HTMX)
    email.status = EmailStatus.SENT
    email.sent_at = NOW
    db.session.commit()
    settled = supervisor_client.get(url, headers=HTMX)

    assert 'hx-trigger="every 2s"' in waiting.get_data(as_text=True)
    assert "HX-Trigger" not in waiting.headers
    text = settled.get_data(as_text=True)
    assert "hx-trigger" not in text
    assert "Gesendet am 04.12.2026 14:35 an praxis@weiss.example" in text
    assert settled.headers["HX-Trigger"] == "email-settled, failures-changed"


def test_delivery_status_does_not_poll_for_emails_planned_later(supervisor_client):
    email = make_email(status=EmailStatus.QUEUED, next_attempt_at=datetime(2999, 1, 1))

    panel = supervisor_client.get(f"/supervision/emails/{email.id}", headers=HTMX)

    text = panel.get_data(as_text=True)
    assert "Eingeplant für 01.01.2999 01:00" in text
    assert 'hx-trigger="every 2s"' not in text
