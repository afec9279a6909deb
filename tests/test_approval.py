"""Approval: drafts become queued with their message built, under the cap."""

import threading
from datetime import datetime, timedelta
from email import message_from_bytes, policy

import pytest
from sqlalchemy import select

from tests.factories import make_request, make_sent_email, make_therapist
from webapp.approval import approve_email, approve_selection
from webapp.batching import run_batching
from webapp.clock import FixedClock
from webapp.drafting import create_draft
from webapp.exceptions import InvalidTransition, WeeklyCapExceeded
from webapp.extensions import db
from webapp.models import Email, EmailKind, EmailStatus

NOW = datetime(2026, 12, 4, 9, 0)


def draft_for(therapist, kind=EmailKind.INITIAL_CONTACT) -> Email:
    request = make_request(therapist)
    email = create_draft(db.session, therapist, kind, [request], FixedClock(NOW))
    db.session.commit()
    return email


def test_approval_queues_and_serialises_the_message(app, coordinator):
    therapist = make_therapist(first_name="Jürgen", last_name="Groß", salutation="Herr")
    email = draft_for(therapist)

    approve_email(db.session, email.id, coordinator, FixedClock(NOW))

    stored = db.session.get(Email, email.id)
    parsed = message_from_bytes(stored.mime_bytes, policy=policy.default)
    assert stored.status == EmailStatus.QUEUED
    assert stored.approved_by_id == coordinator.id
    assert stored.queued_at == NOW
    assert parsed["Message-ID"] == stored.message_id
    assert parsed["Subject"] == stored.subject
    assert "Groß" in str(parsed["To"])
    plain = parsed.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert plain.strip() == stored.body_text.strip()


def test_approval_refused_when_therapist_was_mailed_this_week(app, coordinator):
    therapist = make_therapist()
    make_sent_email(therapist, NOW - timedelta(days=2))
    email = draft_for(therapist)

    with pytest.raises(WeeklyCapExceeded):
        approve_email(db.session, email.id, coordinator, FixedClock(NOW))

    assert db.session.get(Email, email.id).status == EmailStatus.DRAFT


def test_confirmation_is_approved_despite_a_recent_request(app, coordinator):
    therapist = make_therapist()
    make_sent_email(therapist, NOW - timedelta(days=2))
    email = draft_for(therapist, kind=EmailKind.CONFIRMATION)

    approve_email(db.session, email.id, coordinator, FixedClock(NOW))

    assert db.session.get(Email, email.id).status == EmailStatus.QUEUED


def test_approving_twice_is_refused(app, coordinator):
    email = draft_for(make_therapist())
    approve_email(db.session, email.id, coordinator, FixedClock(NOW))

    with pytest.raises(InvalidTransition):
        approve_email(db.session, email.id, coordinator, FixedClock(NOW))


def test_selection_approves_what_it_may_and_explains_the_rest(app, coordinator):
    fresh = make_therapist()
    capped = make_therapist()
    make_sent_email(capped, NOW - timedelta(days=1))
    make_request(fresh)
    make_request(capped)
    # Batching skips the capped therapist, so draft that one by hand.
    run_batching(db.session, FixedClock(NOW))
    capped_draft = draft_for(capped)
    fresh_draft = db.session.scalar(select(Email).filter_by(therapist_id=fresh.id))

    outcome = approve_selection(
        db.session, [fresh_draft.id, capped_draft.id], coordinator, FixedClock(NOW)
    )

    assert [email.id for email in outcome.approved] == [fresh_draft.id]
    assert "Wochenlimit" in outcome.refused[capped_draft.id]


def test_two_simultaneous_approvals_for_one_therapist_let_one_through(app, coordinator):
    therapist = make_therapist()
    first = draft_for(therapist, kind=EmailKind.INITIAL_CONTACT)
    second = draft_for(therapist, kind=EmailKind.FOLLOW_UP)
    barrier = threading.Barrier(2)
    results: dict[int, str] = {}

    def approve(email_id: int) -> None:
        with app.app_context():
            barrier.wait()
            try:
                approve_email(db.session, email_id, None, FixedClock(NOW))
                results[email_id] = "approved"
            except WeeklyCapExceeded:
                results[email_id] = "refused"
            finally:
                db.session.remove()

    threads = [threading.Thread(target=approve, args=(e.id,)) for e in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(results.values()) == ["approved", "refused"]
    queued = db.session.scalars(
        select(Email).where(Email.status == EmailStatus.QUEUED)
    ).all()
    assert len(queued) == 1
