"""The coordinators' morning digest of calls, sent over real SMTP."""

from datetime import datetime

import pytest

from tests.conftest import create_user, free_port
from tests.factories import make_request, make_therapist
from webapp import jobs
from webapp.clock import FixedClock
from webapp.extensions import db
from webapp.models import CallStatus, PhoneCall, Role
from webapp.reminders import send_call_digests
from webapp.sending import SmtpSettings

NOW = datetime(2026, 12, 7, 5, 0)  # Monday, 06:00 in Berlin


@pytest.fixture
def clock(app, monkeypatch) -> FixedClock:
    """The app's clock, standing on a Monday at 06:00 in Berlin."""
    fixed = FixedClock(NOW)
    monkeypatch.setitem(app.config, "CLOCK", fixed)
    return fixed


def make_call(planned_start, requests=1, status=CallStatus.PLANNED, **therapist):
    """Store a call at `planned_start` (naive UTC) with new open requests."""
    doctor = make_therapist(**therapist)
    call = PhoneCall(therapist_id=doctor.id, planned_start=planned_start, status=status)
    call.placement_requests = [make_request(doctor) for _ in range(requests)]
    db.session.add(call)
    db.session.commit()
    return call


def send(app, clock):
    """Run the digest service against the test SMTP server."""
    return send_call_digests(
        db.session,
        clock,
        SmtpSettings.from_config(app.config),
        app.config["MAIL_SENDER_EMAIL"],
        app.config["MAIL_SENDER_NAME"],
    )


@pytest.fixture
def day_of_calls(app):
    """Two calls today, one overdue, and calls the digest must leave out."""
    today = [
        make_call(datetime(2026, 12, 7, 13, 35), requests=2, last_name="Öztürk"),
        make_call(datetime(2026, 12, 7, 8, 5), title=None, last_name="Bauer"),
    ]
    overdue = make_call(datetime(2026, 12, 4, 9, 0), last_name="Vogel")
    make_call(datetime(2026, 12, 8, 8, 0), last_name="Morgen")
    make_call(datetime(2026, 12, 7, 9, 0), status=CallStatus.CANCELLED, last_name="Ab")
    make_call(datetime(2026, 12, 3, 9, 0), status=CallStatus.FAILED, last_name="Alt")
    return today, overdue


def test_every_active_coordinator_gets_the_days_calls(app, clock, sink, day_of_calls):
    create_user("kim@example.org", name="Kim Koordination")
    create_user("lea@example.org", name="Lea Lange")
    create_user("ina@example.org", name="Ina Inaktiv").active = False
    create_user("sam@example.org", role=Role.SUPERVISOR, name="Sam Super")
    db.session.commit()

    report = send(app, clock)

    assert report.as_dict() == {
        "calls": 2,
        "overdue": 1,
        "recipients": 2,
        "sent": 2,
        "refused": 0,
    }
    messages = sink.parsed()
    assert sorted(m["To"].addresses[0].addr_spec for m in messages) == [
        "kim@example.org",
        "lea@example.org",
    ]
    message = next(m for m in messages if "kim@" in m["To"])
    assert message["Subject"] == "Ihre Anrufe am 07.12.2026"
    assert message["From"].addresses[0].addr_spec == app.config["MAIL_SENDER_EMAIL"]
    assert message["Date"] is not None
    text = message.get_body(("plain",)).get_content()
    assert text.startswith("Guten Tag Kim Koordination,")
    assert "heute, am 07.12.2026, sind 2 Anrufe geplant:" in text
    lines = [line for line in text.splitlines() if "Tel." in line]
    assert lines == [
        "09:05  Johanna Bauer, Tel. 030 1234567, 1 Platzanfrage",
        "14:35  Dr. Johanna Öztürk, Tel. 030 1234567, 2 Platzanfragen",
        "04.12.2026 10:00  Dr. Johanna Vogel, Tel. 030 1234567, 1 Platzanfrage",
    ]
    assert "Überfällig, noch nicht erfasst (1):" in text
    html = message.get_body(("html",)).get_content()
    assert "Dr. Johanna Öztürk" in html


def test_the_digest_carries_no_patient_details(app, clock, sink, coordinator):
    call = make_call(datetime(2026, 12, 7, 8, 5))
    [placement] = call.placement_requests

    send(app, clock)

    [message] = sink.parsed()
    raw = message.as_string()
    for detail in (placement.patient_pseudonym, placement.diagnosis_code, "weiblich"):
        assert detail not in raw


def test_a_day_without_calls_sends_nothing(app, clock, sink, coordinator):
    make_call(datetime(2026, 12, 8, 8, 0))

    report = send(app, clock)

    assert (report.calls, report.overdue, report.sent) == (0, 0, 0)
    assert sink.messages == []


def test_only_overdue_calls_still_make_a_digest(app, clock, sink, coordinator):
    make_call(datetime(2026, 12, 6, 22, 55))  # Sunday 23:55 in Berlin

    send(app, clock)

    [message] = sink.parsed()
    text = message.get_body(("plain",)).get_content()
    assert "heute, am 07.12.2026, sind keine Anrufe geplant." in text
    assert "06.12.2026 23:55  Dr. Johanna Weiß" in text


def test_the_job_sends_once_a_day_unless_forced(app, clock, sink, coordinator):
    make_call(datetime(2026, 12, 7, 8, 5))

    assert jobs.send_call_digests()["sent"] == 1
    assert jobs.send_call_digests() == {"skipped": True}
    assert len(sink.messages) == 1

    assert jobs.send_call_digests(force=True)["sent"] == 1
    clock.advance(days=1)
    make_call(datetime(2026, 12, 8, 8, 5))
    assert jobs.send_call_digests()["sent"] == 1
    assert len(sink.messages) == 3


def test_a_failed_run_frees_the_day_for_the_next(app, clock, sink, coordinator):
    make_call(datetime(2026, 12, 7, 8, 5))
    # A port just freed on loopback: nothing listens, the connection fails.
    app.config["SMTP_PORT"], port = free_port(), app.config["SMTP_PORT"]
    try:
        with pytest.raises(Exception, match="Verbindung fehlgeschlagen"):
            jobs.send_call_digests()
    finally:
        app.config["SMTP_PORT"] = port

    assert jobs.send_call_digests()["sent"] == 1


def test_the_cli_command_reports_what_it_sent(app, clock, sink, coordinator):
    make_call(datetime(2026, 12, 7, 8, 5))
    runner = app.test_cli_runner()

    first = runner.invoke(args=["send-call-digests"])
    second = runner.invoke(args=["send-call-digests"])

    assert first.exit_code == 0, first.output
    assert "1 calls today, 0 overdue; sent to 1 of 1 coordinators" in first.output
    assert "already sent" in second.output
    assert len(sink.messages) == 1


def test_morning_digest_waits_for_the_local_hour(app, clock, sink, coordinator):
    make_call(datetime(2026, 12, 7, 8, 5))

    early = jobs.send_morning_digest()  # 06:00 in Berlin
    clock.advance(hours=1)  # 07:00 in Berlin
    on_time = jobs.send_morning_digest()

    assert early == {"skipped": True}
    assert on_time["sent"] == 1
    assert len(sink.messages) == 1


def test_the_day_guard_survives_a_flushed_redis(
    app, clock, sink, coordinator, redis_conn
):
    make_call(datetime(2026, 12, 7, 8, 5))

    assert jobs.send_call_digests()["sent"] == 1
    redis_conn.flushdb()

    assert jobs.send_call_digests() == {"skipped": True}
    assert len(sink.messages) == 1
