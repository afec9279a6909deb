"""Recording a therapist's email reply: follow-up calls, cooling, confirmations."""

from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import select

from tests.factories import make_request, make_sent_email, make_therapist
from webapp.call_planning import plan_follow_up_calls
from webapp.clock import FixedClock
from webapp.exceptions import InvalidTransition, ValidationFailed
from webapp.extensions import db
from webapp.models import (
    CallReason,
    CallStatus,
    Email,
    EmailKind,
    EmailReply,
    EmailStatus,
    PhoneCall,
    PlacementStatus,
    RequestAnswer,
)
from webapp.queueing import queue_for_kind
from webapp.replies import record_reply
from webapp.scheduling import plan_call

NOW = datetime(2026, 12, 7, 8, 0)  # Monday, 09:00 in Berlin
TODAY = date(2026, 12, 7)
SENT = datetime(2026, 11, 27, 10, 0)  # ten days ago
WINDOWS = [
    {"weekday": 0, "start": "09:00", "end": "09:50"},
    {"weekday": 2, "start": "09:00", "end": "09:50"},
]
HTMX = {"HX-Request": "true"}


@pytest.fixture
def clock(app, monkeypatch) -> FixedClock:
    """The app's clock, standing on a Monday at 09:00 in Berlin."""
    fixed = FixedClock(NOW)
    monkeypatch.setitem(app.config, "CLOCK", fixed)
    return fixed


def sent_email(requests: int = 2, **therapist_fields) -> Email:
    """Store a sent request email carrying new open placement requests."""
    therapist = make_therapist(phone_availability=WINDOWS, **therapist_fields)
    email = make_sent_email(therapist, SENT)
    email.placement_requests = [make_request(therapist) for _ in range(requests)]
    db.session.commit()
    return email


def follow_up_call(email: Email, clock: FixedClock) -> PhoneCall:
    """Plan the follow-up call of an email, as the planner would."""
    call = plan_call(
        db.session,
        email.therapist,
        email.placement_requests,
        CallReason.FOLLOW_UP,
        clock,
        source_email=email,
    )
    db.session.commit()
    return call


def test_a_reply_cancels_the_follow_up_call_of_that_email(app, clock, coordinator):
    email = sent_email()
    follow_up = follow_up_call(email, clock)
    other_email = make_sent_email(email.therapist, SENT)
    unrelated = plan_call(
        db.session,
        email.therapist,
        [make_request(email.therapist)],
        CallReason.FOLLOW_UP,
        clock,
        source_email=other_email,
    )
    db.session.commit()

    result = record_reply(
        db.session, clock, email, coordinator, TODAY, "Melde mich nächste Woche."
    )

    assert follow_up.status == CallStatus.CANCELLED
    assert follow_up.change_reason == "Antwort per E-Mail"
    assert result.cancelled_calls == [follow_up]
    assert unrelated.status == CallStatus.PLANNED
    [reply] = db.session.scalars(select(EmailReply)).all()
    assert reply.email_id == email.id
    assert reply.received_on == TODAY
    assert reply.content == "Melde mich nächste Woche."
    assert reply.answers == {}
    assert reply.recorded_by_id == coordinator.id
    # The planner sees the reply and plans no new follow-up for the email.
    assert plan_follow_up_calls(db.session, clock) == 0


def test_a_declining_reply_starts_the_cooling_period(app, clock, coordinator):
    email = sent_email()
    declined, untouched = email.placement_requests

    result = record_reply(
        db.session, clock, email, coordinator, TODAY, "", {declined.id: "abgelehnt"}
    )

    assert declined.status == PlacementStatus.DECLINED
    assert untouched.status == PlacementStatus.OPEN
    assert email.therapist.next_contact_after == date(2027, 1, 4)
    assert result.effects.cooling_until == date(2027, 1, 4)
    assert result.reply.answers == {str(declined.id): "abgelehnt"}


def test_an_accepting_reply_queues_one_confirmation(app, clock, coordinator):
    email = sent_email(requests=3)
    first, second, third = email.placement_requests

    result = record_reply(
        db.session,
        clock,
        email,
        coordinator,
        date(2026, 12, 4),
        "Gern, zwei Plätze frei.",
        {str(first.id): "angenommen", str(second.id): "angenommen", third.id: ""},
    )

    confirmation = result.effects.confirmation
    assert confirmation.kind == EmailKind.CONFIRMATION
    assert confirmation.status == EmailStatus.QUEUED
    assert confirmation.placement_requests == [first, second]
    assert first.status == second.status == PlacementStatus.ACCEPTED
    assert third.status == PlacementStatus.OPEN
    confirmations = db.session.scalars(
        select(Email).where(Email.kind == EmailKind.CONFIRMATION)
    ).all()
    assert confirmations == [confirmation]


def test_an_answer_about_a_decided_request_changes_nothing(app, clock, coordinator):
    email = sent_email(requests=1)
    [placement] = email.placement_requests
    placement.status = PlacementStatus.ACCEPTED
    db.session.commit()

    result = record_reply(
        db.session, clock, email, coordinator, TODAY, "", {placement.id: "abgelehnt"}
    )

    assert placement.status == PlacementStatus.ACCEPTED
    assert result.effects.ignored == [placement]
    assert email.therapist.next_contact_after is None


@pytest.mark.parametrize(
    ("received_on", "content", "answers", "field"),
    [
        (date(2026, 12, 8), "Text", {}, "received_on"),  # tomorrow
        (date(2026, 11, 26), "Text", {}, "received_on"),  # before it was sent
        (None, "Text", {}, "received_on"),
        (TODAY, "   ", {}, "content"),
        (TODAY, "", {"first": ""}, "content"),  # an empty answer is no answer
        (TODAY, "", {"first": "rueckruf"}, "answer_first"),
        (TODAY, "", {"foreign": "angenommen"}, "answer_foreign"),
    ],
)
def test_reply_refusals(app, clock, coordinator, received_on, content, answers, field):
    email = sent_email(requests=1)
    [placement] = email.placement_requests
    foreign = make_request(email.therapist)
    ids = {"first": placement.id, "foreign": foreign.id}
    answers = {ids[key]: value for key, value in answers.items()}

    with pytest.raises(ValidationFailed) as failure:
        record_reply(
            db.session, clock, email, coordinator, received_on, content, answers
        )

    expected = field
    for key, request_id in ids.items():
        expected = expected.replace(key, str(request_id))
    assert failure.value.field == expected
    assert db.session.scalars(select(EmailReply)).all() == []


def test_no_reply_to_an_email_that_was_not_sent(app, clock, coordinator):
    email = sent_email()
    email.status = EmailStatus.QUEUED
    email.sent_at = None
    db.session.commit()

    with pytest.raises(InvalidTransition):
        record_reply(db.session, clock, email, coordinator, TODAY, "Hallo")


# Views ----------------------------------------------------------------------


def test_the_reply_page_shows_a_german_date_and_the_follow_up(
    app, clock, logged_in_client
):
    email = sent_email()
    follow_up_call(email, clock)

    html = logged_in_client.get(f"/emails/{email.id}/antwort").get_data(as_text=True)

    assert "<h1>Antwort erfassen</h1>" in html
    assert 'value="07.12.2026"' in html
    assert 'placeholder="TT.MM.JJJJ"' in html
    assert "wird dieser geplante Nachfass-Anruf abgesagt" in html
    assert "Mo 07.12.2026 09:05" in html
    for placement in email.placement_requests:
        assert placement.patient_pseudonym in html


def test_recording_a_reply_in_the_view_queues_the_confirmation(
    app, clock, logged_in_client, redis_conn
):
    email = sent_email(requests=1)
    [placement] = email.placement_requests
    follow_up = follow_up_call(email, clock)

    response = logged_in_client.post(
        f"/emails/{email.id}/antwort",
        data={
            "received_on": "05.12.2026",
            "content": "Ich kann P-Termin anbieten.",
            f"answer_{placement.id}": "angenommen",
        },
        headers=HTMX,
    )

    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert html.lstrip().startswith('<section id="reply-panel"')
    assert "Antwort gespeichert." in html
    assert "1 geplanter Anruf abgesagt." in html
    assert "Bestätigung per E-Mail eingereiht." in html
    assert "05.12.2026" in html
    assert queue_for_kind(EmailKind.CONFIRMATION, redis_conn).count == 1
    db.session.expire_all()
    assert follow_up.status == CallStatus.CANCELLED


@pytest.mark.parametrize(
    ("received_on", "message"),
    [
        ("08.12.2026", "Das Datum darf nicht in der Zukunft liegen."),
        ("31.02.2026", "Bitte ein Datum wie 04.12.2026 eingeben."),
        ("", "Bitte das Eingangsdatum angeben."),
    ],
)
def test_reply_form_errors_stand_beside_the_fields(
    app, clock, logged_in_client, received_on, message
):
    email = sent_email(requests=1)

    response = logged_in_client.post(
        f"/emails/{email.id}/antwort",
        data={"received_on": received_on, "content": "Text"},
        headers=HTMX,
    )

    html = response.get_data(as_text=True)
    assert message in html
    assert 'id="received_on-error"' in html
    assert db.session.scalars(select(EmailReply)).all() == []


def test_reply_form_needs_content_or_an_answer(app, clock, logged_in_client):
    email = sent_email(requests=1)

    response = logged_in_client.post(
        f"/emails/{email.id}/antwort", data={"received_on": "07.12.2026"}
    )

    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert 'id="content-error"' in html
    assert "mindestens eine Zu- oder Absage" in html


def test_the_heute_card_links_the_reply_form(app, clock, logged_in_client):
    email = sent_email(requests=1)
    follow_up_call(email, clock)

    html = logged_in_client.get("/heute").get_data(as_text=True)

    assert f'href="/emails/{email.id}/antwort"' in html
    assert "Frühere Anfrage" in html


def test_a_decline_received_days_ago_cools_from_that_day(app, coordinator):
    clock = FixedClock(datetime(2026, 12, 4, 9, 0))
    therapist = make_therapist()
    request = make_request(therapist)
    email = make_sent_email(therapist, datetime(2026, 11, 20, 9, 0))
    email.placement_requests = [request]
    db.session.commit()

    record_reply(
        db.session,
        clock,
        email,
        coordinator,
        date(2026, 11, 30),
        "Leider keine Plätze.",
        {request.id: RequestAnswer.DECLINED},
    )

    assert therapist.next_contact_after == date(2026, 11, 30) + timedelta(days=28)
