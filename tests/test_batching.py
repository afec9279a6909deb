"""Batching: one draft per therapist, oldest patients first, rules 1-2."""

from datetime import date, datetime, timedelta

from sqlalchemy import func, select

from tests.factories import make_request, make_sent_email, make_therapist
from webapp.batching import run_batching
from webapp.clock import FixedClock
from webapp.extensions import db
from webapp.models import Email, EmailKind, EmailStatus

NOW = datetime(2026, 12, 4, 9, 0)


def drafts() -> list[Email]:
    return list(db.session.scalars(select(Email).where(Email.status == "entwurf")))


def test_one_request_makes_an_initial_contact_draft(app):
    therapist = make_therapist()
    request = make_request(therapist)

    report = run_batching(db.session, FixedClock(NOW))

    [email] = drafts()
    assert report.drafts_created == 1
    assert email.kind == EmailKind.INITIAL_CONTACT
    assert email.placement_request_ids == [request.id]
    assert email.recipient_email == therapist.email
    assert "Weiß" in email.body_text


def test_batch_takes_the_six_longest_waiting_and_leaves_the_rest(app):
    therapist = make_therapist()
    waiting = [make_request(therapist, days_waiting=days) for days in range(1, 9)]

    report = run_batching(db.session, FixedClock(NOW))

    [email] = drafts()
    oldest_six = sorted(waiting, key=lambda r: r.patient_registered_at)[:6]
    assert email.kind == EmailKind.BATCH_REQUEST
    assert set(email.placement_request_ids) == {r.id for r in oldest_six}
    assert report.requests_waiting == 2


def test_running_twice_creates_nothing_new(app):
    therapist = make_therapist()
    make_request(therapist)
    make_request(therapist)

    first = run_batching(db.session, FixedClock(NOW))
    second = run_batching(db.session, FixedClock(NOW))

    assert (first.drafts_created, second.drafts_created) == (1, 0)
    assert db.session.scalar(select(func.count(Email.id))) == 1


def test_therapists_who_may_not_be_emailed_get_no_draft(app):
    cases = {
        "blocked": make_therapist(blocked=True, blocked_reason="Praxis aufgelöst"),
        "cooling": make_therapist(next_contact_after=date(2026, 12, 20)),
        "no address": make_therapist(email=None),
        "mailed 3 days ago": make_therapist(),
    }
    make_sent_email(cases["mailed 3 days ago"], NOW - timedelta(days=3))
    for therapist in cases.values():
        make_request(therapist)

    report = run_batching(db.session, FixedClock(NOW))

    assert report.drafts_created == 0
    assert drafts() == []


def test_cap_window_ends_after_seven_days(app):
    therapist = make_therapist()
    make_sent_email(therapist, NOW - timedelta(days=7, minutes=1))
    make_request(therapist)

    report = run_batching(db.session, FixedClock(NOW))

    assert report.drafts_created == 1


def test_confirmation_does_not_count_against_the_cap(app):
    therapist = make_therapist()
    make_sent_email(therapist, NOW - timedelta(days=1), kind=EmailKind.CONFIRMATION)
    make_request(therapist)

    assert run_batching(db.session, FixedClock(NOW)).drafts_created == 1


def test_cooling_period_ending_today_allows_a_draft(app):
    therapist = make_therapist(next_contact_after=date(2026, 12, 4))
    make_request(therapist)

    assert run_batching(db.session, FixedClock(NOW)).drafts_created == 1


def test_discarded_draft_frees_its_requests_for_the_next_run(app):
    from webapp.approval import discard_draft

    therapist = make_therapist()
    make_request(therapist)
    run_batching(db.session, FixedClock(NOW))
    [email] = drafts()

    discard_draft(db.session, email.id, None)
    report = run_batching(db.session, FixedClock(NOW))

    assert report.drafts_created == 1
    assert db.session.get(Email, email.id).status == EmailStatus.DISCARDED


def test_run_batching_command_reports_what_it_did(app):
    therapist = make_therapist()
    for days in range(1, 9):
        make_request(therapist, days_waiting=days)

    result = app.test_cli_runner().invoke(args=["run-batching"])

    assert result.exit_code == 0, result.output
    assert "1 drafts created with 6 placement requests; 2 wait" in result.output
