"""Alerts from delivery and workers reach supervisors once."""

from datetime import datetime, timedelta

from sqlalchemy import insert, select

from tests.conftest import create_user, free_port
from tests.factories import make_sent_email, make_therapist
from webapp.clock import FixedClock
from webapp.extensions import db
from webapp.models import Alert, AlertKind, AttemptOutcome, DeliveryAttempt, Role
from webapp.monitoring import check_failure_rate, check_workers, mail_new_alerts
from webapp.sending import SmtpSettings

NOW = datetime(2026, 12, 4, 9, 0)


def store_attempts(sent: int, failed: int, at: datetime) -> None:
    email = make_sent_email(make_therapist(), at)
    rows = [
        {
            "email_id": email.id,
            "attempted_at": at,
            "worker": "w",
            "outcome": AttemptOutcome.SENT if n < sent else AttemptOutcome.TRANSIENT,
        }
        for n in range(sent + failed)
    ]
    db.session.execute(insert(DeliveryAttempt), rows)
    db.session.commit()


def alerts() -> list[Alert]:
    return list(db.session.scalars(select(Alert)))


def test_high_failure_rate_in_the_last_hour_alerts_once(app):
    clock = FixedClock(NOW)
    store_attempts(sent=15, failed=10, at=NOW - timedelta(minutes=20))

    first = check_failure_rate(db.session, clock, threshold=0.2, min_attempts=20)
    second = check_failure_rate(db.session, clock, threshold=0.2, min_attempts=20)
    db.session.commit()

    assert first is not None and second is None
    assert "40%" in first.message


def test_old_failures_and_few_attempts_do_not_alert(app):
    clock = FixedClock(NOW)
    store_attempts(sent=0, failed=30, at=NOW - timedelta(hours=2))
    store_attempts(sent=1, failed=5, at=NOW - timedelta(minutes=5))

    assert check_failure_rate(db.session, clock, 0.2, 20) is None


def test_silent_workers_alert(app):
    clock = FixedClock(NOW)
    silent_after = timedelta(minutes=5)

    recent = check_workers(db.session, clock, NOW - timedelta(minutes=1), silent_after)
    none_seen = check_workers(db.session, clock, None, silent_after)
    db.session.commit()

    assert recent is None
    assert none_seen.kind == AlertKind.WORKER_SILENT


def test_new_alerts_are_mailed_to_supervisors_once(app, smtp_server, sink):
    _, port = smtp_server
    create_user("aufsicht@example.org", role=Role.SUPERVISOR, name="Sam Aufsicht")
    create_user("koordination@example.org", role=Role.COORDINATOR)
    clock = FixedClock(NOW)
    check_workers(db.session, clock, None, timedelta(minutes=5))
    db.session.commit()
    smtp = SmtpSettings(host="127.0.0.1", port=port)
    sender = ("Therapieplatz-Vermittlung", "vermittlung@therapieplatz.example")

    first = mail_new_alerts(db.session, clock, smtp, sender)
    second = mail_new_alerts(db.session, clock, smtp, sender)

    [message] = sink.parsed()
    assert (first, second) == (1, 0)
    assert message["To"].addresses[0].addr_spec == "aufsicht@example.org"
    assert message["Subject"].startswith("Warnung: Seit mehr als 5 Minuten")
    assert alerts()[0].mailed_at == NOW


def test_unreachable_smtp_keeps_alerts_for_the_next_pass(app):
    create_user("aufsicht@example.org", role=Role.SUPERVISOR, name="Sam Aufsicht")
    clock = FixedClock(NOW)
    check_workers(db.session, clock, None, timedelta(minutes=5))
    db.session.commit()
    dead = SmtpSettings(host="127.0.0.1", port=free_port(), timeout=2)
    mailed = mail_new_alerts(db.session, clock, dead, ("V", "v@example.org"))

    assert mailed == 0
    assert alerts()[0].mailed_at is None


def test_two_racing_passes_mail_an_alert_once(app, smtp_server, sink):
    import threading

    _, port = smtp_server
    create_user("aufsicht@example.org", role=Role.SUPERVISOR, name="Sam Aufsicht")
    clock = FixedClock(NOW)
    check_workers(db.session, clock, None, timedelta(minutes=5))
    db.session.commit()
    smtp = SmtpSettings(host="127.0.0.1", port=port)
    barrier = threading.Barrier(2)

    def mail() -> None:
        with app.app_context():
            barrier.wait()
            mail_new_alerts(db.session, clock, smtp, ("V", "v@example.org"))
            db.session.remove()

    threads = [threading.Thread(target=mail) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert len(sink.messages) == 1
