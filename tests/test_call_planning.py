"""Automatic call planning: follow-ups after 7 days and therapists without email."""

import threading
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select

from tests.factories import make_request, make_sent_email, make_therapist
from webapp.call_planning import (
    plan_calls,
    plan_calls_without_email,
    plan_follow_up_calls,
)
from webapp.clock import BERLIN, FixedClock
from webapp.extensions import db
from webapp.jobs import plan_calls as plan_calls_job
from webapp.models import (
    CallReason,
    CallStatus,
    EmailKind,
    EmailReply,
    EmailStatus,
    PhoneCall,
    PlacementStatus,
)
from webapp.scheduling import candidate_slots


def berlin(*parts: int) -> datetime:
    """Return naive UTC for a Berlin wall time."""
    return datetime(*parts, tzinfo=BERLIN).astimezone(UTC).replace(tzinfo=None)


NOW = berlin(2026, 12, 4, 10, 0)  # Friday; the factory window is Monday 09:00
ONE_SLOT = [{"weekday": 0, "start": "09:00", "end": "09:05"}]


def request_email(therapist, requests, days_ago=7, kind=EmailKind.BATCH_REQUEST):
    """Store a request email sent `days_ago` days before NOW with its requests."""
    email = make_sent_email(therapist, NOW - timedelta(days=days_ago), kind=kind)
    email.placement_requests = list(requests)
    db.session.commit()
    return email


def calls() -> list[PhoneCall]:
    return list(db.session.scalars(select(PhoneCall).order_by(PhoneCall.id)))


def request_ids(call: PhoneCall) -> list[int]:
    return [request.id for request in call.placement_requests]


# Follow-up calls ------------------------------------------------------------


def test_follow_up_call_is_planned_seven_days_after_sending(app):
    therapist = make_therapist()
    requests = [make_request(therapist), make_request(therapist)]
    email = request_email(therapist, requests, days_ago=7)

    planned = plan_follow_up_calls(db.session, FixedClock(NOW))

    [call] = calls()
    assert planned == 1
    assert call.reason == CallReason.FOLLOW_UP
    assert call.source_email_id == email.id
    assert call.status == CallStatus.PLANNED
    assert call.planned_start == berlin(2026, 12, 7, 9, 0)
    assert request_ids(call) == [r.id for r in requests]


def test_no_follow_up_call_at_six_days(app):
    therapist = make_therapist()
    request_email(therapist, [make_request(therapist)], days_ago=6)
    clock = FixedClock(NOW + timedelta(hours=23, minutes=59))

    assert plan_follow_up_calls(db.session, clock) == 0

    clock.advance(minutes=1)
    assert plan_follow_up_calls(db.session, clock) == 1


def test_follow_up_delay_is_a_setting(app, monkeypatch):
    monkeypatch.setitem(app.config, "FOLLOW_UP_AFTER_DAYS", 3)
    therapist = make_therapist()
    request_email(therapist, [make_request(therapist)], days_ago=3)

    assert plan_follow_up_calls(db.session, FixedClock(NOW)) == 1


def test_recorded_reply_prevents_the_follow_up_call(app):
    therapist = make_therapist()
    email = request_email(therapist, [make_request(therapist)], days_ago=8)
    db.session.add(
        EmailReply(email_id=email.id, received_on=date(2026, 11, 30), content="")
    )
    db.session.commit()

    assert plan_follow_up_calls(db.session, FixedClock(NOW)) == 0
    assert calls() == []


def test_follow_up_call_carries_only_the_requests_still_open(app):
    therapist = make_therapist()
    still_open = make_request(therapist)
    accepted = make_request(therapist, status=PlacementStatus.ACCEPTED)
    withdrawn = make_request(therapist, status=PlacementStatus.WITHDRAWN)
    request_email(therapist, [still_open, accepted, withdrawn])

    plan_follow_up_calls(db.session, FixedClock(NOW))

    [call] = calls()
    assert request_ids(call) == [still_open.id]


def test_email_without_open_requests_gets_no_call(app):
    therapist = make_therapist()
    request_email(therapist, [make_request(therapist, status=PlacementStatus.DECLINED)])

    assert plan_follow_up_calls(db.session, FixedClock(NOW)) == 0


@pytest.mark.parametrize(
    ("kind", "status", "planned"),
    [
        (EmailKind.INITIAL_CONTACT, EmailStatus.SENT, 1),
        (EmailKind.BATCH_REQUEST, EmailStatus.SENT, 1),
        (EmailKind.FOLLOW_UP, EmailStatus.SENT, 1),
        (EmailKind.CONFIRMATION, EmailStatus.SENT, 0),
        (EmailKind.BATCH_REQUEST, EmailStatus.FAILED, 0),
        (EmailKind.BATCH_REQUEST, EmailStatus.QUEUED, 0),
    ],
)
def test_only_sent_request_emails_are_followed_up(app, kind, status, planned):
    therapist = make_therapist()
    email = request_email(therapist, [make_request(therapist)], kind=kind)
    email.status = status
    db.session.commit()

    assert plan_follow_up_calls(db.session, FixedClock(NOW)) == planned


def test_blocked_therapist_gets_no_follow_up_call(app):
    therapist = make_therapist(blocked=True, blocked_reason="Praxis aufgelöst")
    request_email(therapist, [make_request(therapist)])

    assert plan_follow_up_calls(db.session, FixedClock(NOW)) == 0


def test_follow_up_waits_for_the_end_of_the_cooling_period(app):
    therapist = make_therapist(next_contact_after=date(2026, 12, 20))
    request_email(therapist, [make_request(therapist)])

    plan_follow_up_calls(db.session, FixedClock(NOW))

    [call] = calls()
    assert call.planned_start == berlin(2026, 12, 21, 9, 0)


@pytest.mark.parametrize(
    ("earlier_status", "planned"),
    [
        (CallStatus.PLANNED, 0),
        (CallStatus.COMPLETED, 0),
        (CallStatus.FAILED, 0),
        (CallStatus.CANCELLED, 1),
    ],
)
def test_an_existing_call_for_the_email_prevents_a_second(app, earlier_status, planned):
    therapist = make_therapist()
    request_email(therapist, [make_request(therapist)])
    clock = FixedClock(NOW)
    plan_follow_up_calls(db.session, clock)
    [earlier] = calls()
    earlier.status = earlier_status
    db.session.commit()

    assert plan_follow_up_calls(db.session, clock) == planned


def test_therapist_with_a_planned_call_gets_no_second_automatic_call(app):
    therapist = make_therapist()
    first = request_email(therapist, [make_request(therapist)], days_ago=14)
    second = request_email(therapist, [make_request(therapist)], days_ago=7)
    clock = FixedClock(NOW)

    assert plan_follow_up_calls(db.session, clock) == 1
    [call] = calls()
    assert call.source_email_id == first.id

    call.status = CallStatus.COMPLETED
    db.session.commit()
    assert plan_follow_up_calls(db.session, clock) == 1
    assert calls()[-1].source_email_id == second.id


# Therapists without an email address ------------------------------------------


def test_therapist_without_email_gets_a_call_with_the_oldest_requests(app):
    therapist = make_therapist(email=None)
    waiting = [make_request(therapist, days_waiting=days) for days in range(1, 9)]

    planned = plan_calls_without_email(db.session, FixedClock(NOW))

    [call] = calls()
    oldest_six = sorted(waiting, key=lambda r: r.patient_registered_at)[:6]
    assert planned == 1
    assert call.reason == CallReason.NO_EMAIL
    assert call.source_email_id is None
    assert set(request_ids(call)) == {r.id for r in oldest_six}


def test_remaining_requests_get_a_call_once_the_first_is_done(app):
    therapist = make_therapist(email="")
    waiting = [make_request(therapist, days_waiting=days) for days in range(1, 9)]
    clock = FixedClock(NOW)
    plan_calls_without_email(db.session, clock)

    assert plan_calls_without_email(db.session, clock) == 0

    [first] = calls()
    first.status = CallStatus.COMPLETED
    db.session.commit()
    assert plan_calls_without_email(db.session, clock) == 1
    newest_two = sorted(waiting, key=lambda r: r.patient_registered_at)[6:]
    assert set(request_ids(calls()[-1])) == {r.id for r in newest_two}


def test_requests_of_a_failed_call_chain_are_planned_again(app):
    therapist = make_therapist(email=None)
    make_request(therapist)
    clock = FixedClock(NOW)
    plan_calls_without_email(db.session, clock)
    [failed] = calls()
    failed.status = CallStatus.FAILED
    db.session.commit()

    assert plan_calls_without_email(db.session, clock) == 1


def test_therapists_with_email_or_blocked_get_no_no_email_call(app):
    make_request(make_therapist())
    make_request(make_therapist(email=None, blocked=True, blocked_reason="Ruhestand"))

    assert plan_calls_without_email(db.session, FixedClock(NOW)) == 0


# Both kinds together ----------------------------------------------------------


def test_running_twice_plans_nothing_twice(app):
    with_email = make_therapist()
    request_email(with_email, [make_request(with_email)])
    without_email = make_therapist(email=None)
    make_request(without_email)
    clock = FixedClock(NOW)

    first = plan_calls(db.session, clock)
    second = plan_calls(db.session, clock)

    assert (first.follow_up, first.no_email) == (1, 1)
    assert second.planned == 0
    assert len(calls()) == 2


def test_concurrent_runs_plan_each_call_once(app):
    therapists = [make_therapist(email=None) for _ in range(4)]
    for therapist in therapists:
        make_request(therapist)
    clock = FixedClock(NOW)
    reports, errors = [], []

    def run() -> None:
        with app.app_context():
            try:
                reports.append(plan_calls(db.session, clock))
            except Exception as exc:  # surfaced by the assertion below
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert sum(report.planned for report in reports) == 4
    assert sorted(call.therapist_id for call in calls()) == [t.id for t in therapists]
    slots = [(call.planned_start, call.line) for call in calls()]
    assert len(set(slots)) == len(slots)


def test_potentially_available_therapist_gets_the_last_free_slot(app):
    # Only the first Monday slot in the horizon is still free.
    waiting_longer = make_therapist(phone_availability=ONE_SLOT)
    request_email(waiting_longer, [make_request(waiting_longer)], days_ago=20)
    available = make_therapist(
        email=None, phone_availability=ONE_SLOT, potentially_available=True
    )
    make_request(available, days_waiting=1)
    filler = make_therapist(phone_availability=[])
    slots = list(candidate_slots(ONE_SLOT, "BE", NOW))
    for slot in slots[1:]:
        db.session.add(
            PhoneCall(therapist_id=filler.id, planned_start=slot, reason="manual")
        )
    db.session.commit()

    report = plan_calls(db.session, FixedClock(NOW))

    assert (report.no_email, report.follow_up, report.without_slot) == (1, 0, 1)
    planned = db.session.scalar(
        select(PhoneCall).where(PhoneCall.therapist_id == available.id)
    )
    assert planned.planned_start == slots[0]


def test_potentially_available_therapists_get_the_earlier_slots(app):
    others = [make_therapist(email=None) for _ in range(2)]
    available = make_therapist(email=None, potentially_available=True)
    for therapist in others:
        make_request(therapist, days_waiting=30)
    make_request(available, days_waiting=1)

    plan_calls(db.session, FixedClock(NOW))

    first = calls()[0]
    assert first.therapist_id == available.id
    assert first.planned_start == berlin(2026, 12, 7, 9, 0)
    assert min(call.planned_start for call in calls()) == first.planned_start


def test_invalid_therapist_data_does_not_stop_the_others(app):
    broken = make_therapist(email=None, federal_state="XX")
    make_request(broken)
    fine = make_therapist(email=None)
    make_request(fine)

    report = plan_calls(db.session, FixedClock(NOW))

    assert (report.no_email, report.invalid) == (1, 1)
    assert [call.therapist_id for call in calls()] == [fine.id]


def test_plan_calls_job_uses_the_app_clock(app, monkeypatch):
    monkeypatch.setitem(app.config, "CLOCK", FixedClock(NOW))
    therapist = make_therapist(email=None)
    make_request(therapist)

    result = plan_calls_job()

    assert result == {"follow_up": 0, "no_email": 1, "without_slot": 0, "invalid": 0}
    assert len(calls()) == 1


def test_plan_calls_command_reports_what_it_did(app, monkeypatch):
    monkeypatch.setitem(app.config, "CLOCK", FixedClock(NOW))
    therapist = make_therapist()
    request_email(therapist, [make_request(therapist)])

    result = app.test_cli_runner().invoke(args=["plan-calls"])

    assert result.exit_code == 0, result.output
    assert "1 follow-up calls and 0 calls to therapists without email" in result.output


# Calls a coordinator cancelled ------------------------------------------------


@pytest.mark.parametrize("with_email", [True, False])
def test_a_call_cancelled_by_a_coordinator_is_not_planned_again(
    app, coordinator, with_email
):
    from webapp.calls import cancel_call

    therapist = make_therapist(email=None) if not with_email else make_therapist()
    requests = [make_request(therapist)]
    if with_email:
        request_email(therapist, requests)
    clock = FixedClock(NOW)
    plan_calls(db.session, clock)
    [call] = calls()

    cancel_call(db.session, clock, call, coordinator, "Praxis nimmt niemanden auf.")
    again = plan_calls(db.session, clock)

    assert again.planned == 0
    assert [c.status for c in calls()] == [CallStatus.CANCELLED]


def test_a_call_cancelled_by_the_system_frees_its_requests(app):
    therapist = make_therapist(email=None)
    make_request(therapist)
    clock = FixedClock(NOW)
    plan_calls(db.session, clock)
    [call] = calls()
    # As a reply or a cooling period does: no audit entry, no coordinator.
    call.status = CallStatus.CANCELLED
    db.session.commit()

    assert plan_calls(db.session, clock).planned == 1
