"""Working the calls: outcomes, retries, cooling, moves, overdue calls, "Heute"."""

from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.factories import make_request, make_sent_email, make_therapist
from webapp.calls import (
    call_board,
    cancel_call,
    free_slots,
    is_overdue,
    move_call,
    overdue_calls,
    record_outcome,
)
from webapp.clock import FixedClock
from webapp.cooling import override_cooling, start_cooling
from webapp.exceptions import InvalidTransition, ValidationFailed
from webapp.extensions import db
from webapp.models import (
    Alert,
    AlertKind,
    AuditEntry,
    CallOutcome,
    CallReason,
    CallStatus,
    Email,
    EmailKind,
    EmailStatus,
    PhoneCall,
    PlacementStatus,
    RequestAnswer,
    phone_call_requests,
)
from webapp.queueing import queue_for_kind
from webapp.scheduling import plan_call

NOW = datetime(2026, 12, 7, 8, 0)  # Monday, 09:00 in Berlin
# Monday and Wednesday mornings, Berlin wall time.
WINDOWS = [
    {"weekday": 0, "start": "09:00", "end": "09:50"},
    {"weekday": 2, "start": "09:00", "end": "09:50"},
]
MONDAY_0905 = datetime(2026, 12, 7, 8, 5)
WEDNESDAY_0900 = datetime(2026, 12, 9, 8, 0)
COOLING_END = date(2027, 1, 4)  # 07.12.2026 + 28 days


@pytest.fixture
def clock(app, monkeypatch) -> FixedClock:
    """The app's clock, standing on a Monday at 09:00 in Berlin."""
    fixed = FixedClock(NOW)
    monkeypatch.setitem(app.config, "CLOCK", fixed)
    return fixed


def therapist_with_windows(**fields):
    """Store a therapist who takes calls on Monday and Wednesday mornings."""
    return make_therapist(phone_availability=WINDOWS, **fields)


def planned_call(clock, therapist=None, requests=1, **kwargs) -> PhoneCall:
    """Plan and commit a call with new open requests at the next free slot."""
    therapist = therapist or therapist_with_windows()
    placements = [make_request(therapist) for _ in range(requests)]
    call = plan_call(
        db.session, therapist, placements, CallReason.NO_EMAIL, clock, **kwargs
    )
    db.session.commit()
    return call


def calls_of(therapist_id: int) -> list[PhoneCall]:
    """Return the therapist's calls in the order they were made."""
    return list(
        db.session.scalars(
            select(PhoneCall)
            .where(PhoneCall.therapist_id == therapist_id)
            .order_by(PhoneCall.id)
        )
    )


def call_alerts() -> list[Alert]:
    """Return the stored call alerts."""
    return list(
        db.session.scalars(select(Alert).where(Alert.kind == AlertKind.CALL_FAILED))
    )


# Failed calls ---------------------------------------------------------------


@pytest.mark.parametrize(
    "outcome", [CallOutcome.NO_ANSWER, CallOutcome.BUSY, CallOutcome.VOICEMAIL]
)
def test_a_failed_try_plans_the_next_one_on_a_later_day(
    app, clock, coordinator, outcome
):
    call = planned_call(clock)
    assert call.planned_start == MONDAY_0905
    clock.advance(minutes=6)

    result = record_outcome(db.session, clock, call, coordinator, outcome, notes="  ")

    assert call.status == CallStatus.FAILED
    assert call.outcome == outcome
    assert call.recorded_by_id == coordinator.id
    assert call.recorded_at == NOW + timedelta(minutes=6)
    assert call.notes is None
    following = result.next_call
    # Monday's window still has free slots; the next try waits for Wednesday.
    assert following.planned_start == WEDNESDAY_0900
    assert following.status == CallStatus.PLANNED
    assert following.attempt == 2
    assert following.previous_call_id == call.id
    assert following.placement_requests == call.placement_requests
    assert call_alerts() == []


def test_a_call_recorded_days_late_is_retried_after_today(app, clock, coordinator):
    call = planned_call(clock)
    clock.advance(days=2, hours=2)  # Wednesday 11:00, after the window

    result = record_outcome(db.session, clock, call, coordinator, "keine_antwort")

    assert result.next_call.planned_start == datetime(2026, 12, 14, 8, 0)


def test_the_third_failed_try_alerts_once_and_plans_nothing(app, clock, coordinator):
    call = planned_call(clock)
    first_id = call.id
    for _ in range(2):
        call = record_outcome(db.session, clock, call, coordinator, "besetzt").next_call
    assert call.attempt == 3

    result = record_outcome(db.session, clock, call, coordinator, "mailbox")

    assert result.next_call is None
    assert call.status == CallStatus.FAILED
    assert [c.status for c in calls_of(call.therapist_id)] == [CallStatus.FAILED] * 3
    [alert] = call_alerts()
    assert alert.subject_key == f"call:{first_id}:attempts"
    assert "nach 3 Anrufversuchen nicht erreicht" in alert.message
    assert "F32" not in alert.message

    with pytest.raises(InvalidTransition):
        record_outcome(db.session, clock, call, coordinator, "mailbox")
    assert len(call_alerts()) == 1


def test_a_wrong_number_alerts_and_plans_nothing(app, clock, coordinator):
    call = planned_call(clock)

    result = record_outcome(db.session, clock, call, coordinator, "falsche_nummer")

    assert call.status == CallStatus.FAILED
    assert result.next_call is None
    assert len(calls_of(call.therapist_id)) == 1
    [alert] = call_alerts()
    assert alert.subject_key == f"call:{call.id}:wrong_number"


def test_no_free_slot_for_the_next_try_alerts(app, clock, coordinator):
    # Only two slots on Monday mornings, and every later one is booked.
    therapist = make_therapist(
        phone_availability=[{"weekday": 0, "start": "09:00", "end": "09:10"}]
    )
    call = planned_call(clock, therapist)
    blocker = make_therapist()
    for week in range(1, 10):  # beyond the 60-day horizon
        for minute in (0, 5):
            db.session.add(
                PhoneCall(
                    therapist_id=blocker.id,
                    planned_start=datetime(2026, 12, 7, 8, minute)
                    + timedelta(weeks=week),
                    status=CallStatus.PLANNED,
                )
            )
    db.session.commit()

    result = record_outcome(db.session, clock, call, coordinator, "besetzt")

    assert result.next_call is None
    assert result.no_slot
    [alert] = call_alerts()
    assert alert.subject_key == f"call:{call.id}:no_slot"


# Reached --------------------------------------------------------------------


def test_a_decline_starts_the_cooling_period_and_cancels_calls_inside_it(
    app, clock, coordinator
):
    therapist = therapist_with_windows()
    call = planned_call(clock, therapist)
    [declined] = call.placement_requests
    inside = planned_call(clock, therapist)  # Monday 09:10, same therapist
    after = PhoneCall(
        therapist_id=therapist.id,
        planned_start=datetime(2027, 1, 4, 8, 0),  # the first day allowed again
        status=CallStatus.PLANNED,
    )
    db.session.add(after)
    db.session.commit()

    result = record_outcome(
        db.session, clock, call, coordinator, "erreicht", {declined.id: "abgelehnt"}
    )

    assert call.status == CallStatus.COMPLETED
    assert declined.status == PlacementStatus.DECLINED
    assert therapist.next_contact_after == COOLING_END
    assert result.effects.cooling_until == COOLING_END
    assert inside.status == CallStatus.CANCELLED
    assert inside.change_reason == "Kontaktpause nach Absage"
    assert after.status == CallStatus.PLANNED
    stored = db.session.execute(
        select(phone_call_requests.c.answer).where(
            phone_call_requests.c.phone_call_id == call.id
        )
    ).scalar_one()
    assert stored == RequestAnswer.DECLINED


def test_cooling_days_is_a_setting(app, clock, monkeypatch):
    therapist = therapist_with_windows()
    monkeypatch.setitem(app.config, "COOLING_DAYS", 14)

    assert start_cooling(therapist, clock) == date(2026, 12, 21)
    # A longer period that already runs is kept.
    therapist.next_contact_after = date(2027, 3, 1)
    assert start_cooling(therapist, clock) == date(2027, 3, 1)


def test_an_acceptance_queues_one_confirmation_with_the_accepted_requests(
    app, clock, coordinator, redis_conn
):
    call = planned_call(clock, requests=3)
    first, second, third = call.placement_requests
    answers = {first.id: "angenommen", second.id: "angenommen", third.id: "rueckruf"}

    result = record_outcome(db.session, clock, call, coordinator, "erreicht", answers)

    [email] = db.session.scalars(select(Email)).all()
    assert email is result.effects.confirmation
    assert email.kind == EmailKind.CONFIRMATION
    assert email.status == EmailStatus.QUEUED
    assert email.mime_bytes
    assert email.placement_requests == [first, second]
    assert first.status == second.status == PlacementStatus.ACCEPTED
    assert third.status == PlacementStatus.OPEN
    # The service queues in the database; waking the worker is the view's job.
    assert queue_for_kind(EmailKind.CONFIRMATION, redis_conn).count == 0


def test_an_acceptance_without_email_address_sends_nothing(app, clock, coordinator):
    call = planned_call(clock, therapist_with_windows(email=None))
    [placement] = call.placement_requests

    result = record_outcome(
        db.session, clock, call, coordinator, "erreicht", {placement.id: "angenommen"}
    )

    assert placement.status == PlacementStatus.ACCEPTED
    assert result.effects.confirmation is None
    assert result.effects.confirmation_missing
    assert db.session.scalars(select(Email)).all() == []


def test_call_back_later_plans_a_new_call_with_those_requests(app, clock, coordinator):
    call = planned_call(clock, requests=2)
    back, accepted = call.placement_requests

    result = record_outcome(
        db.session,
        clock,
        call,
        coordinator,
        "erreicht",
        {back.id: "rueckruf", accepted.id: "angenommen"},
        notes="Bitte Mittwoch noch einmal versuchen.",
    )

    following = result.next_call
    assert following.reason == CallReason.CALL_BACK
    assert following.planned_start == WEDNESDAY_0900
    assert following.attempt == 1
    assert following.previous_call_id == call.id
    assert following.placement_requests == [back]
    assert call.notes == "Bitte Mittwoch noch einmal versuchen."


def test_a_call_back_after_a_decline_waits_for_the_cooling_period(
    app, clock, coordinator
):
    call = planned_call(clock, requests=2)
    declined, back = call.placement_requests

    result = record_outcome(
        db.session,
        clock,
        call,
        coordinator,
        "erreicht",
        {declined.id: "abgelehnt", back.id: "rueckruf"},
    )

    # 04.01.2027 is a Monday; contact is allowed again from that day.
    assert result.next_call.planned_start == datetime(2027, 1, 4, 8, 0)


def test_reached_needs_an_answer_for_every_open_request(app, clock, coordinator):
    call = planned_call(clock, requests=2)
    answered, missing = call.placement_requests

    with pytest.raises(ValidationFailed) as failure:
        record_outcome(
            db.session, clock, call, coordinator, "erreicht", {answered.id: "abgelehnt"}
        )

    assert failure.value.field == f"answer_{missing.id}"
    db.session.expire_all()
    assert call.status == CallStatus.PLANNED
    assert answered.status == PlacementStatus.OPEN
    assert call.therapist.next_contact_after is None


def test_a_second_coordinator_with_a_stale_view_cannot_record_again(
    app, clock, coordinator
):
    call = planned_call(clock)
    with Session(db.engine) as other:
        stale = other.get(PhoneCall, call.id)
        assert stale.status == CallStatus.PLANNED
        record_outcome(db.session, clock, call, coordinator, "besetzt")

        with pytest.raises(InvalidTransition):
            record_outcome(other, clock, stale, coordinator, "erreicht", {})

    assert len(calls_of(call.therapist_id)) == 2


def test_an_unknown_outcome_is_refused(app, clock, coordinator):
    call = planned_call(clock)

    with pytest.raises(ValidationFailed) as failure:
        record_outcome(db.session, clock, call, coordinator, "vielleicht")

    assert failure.value.field == "outcome"


# Moving and cancelling ------------------------------------------------------


def test_moving_to_the_next_free_slot_keeps_history_and_audits(app, clock, coordinator):
    call = planned_call(clock)

    moved = move_call(db.session, clock, call, coordinator, "Praxis ruft an: später")

    assert call.status == CallStatus.CANCELLED
    assert call.change_reason == "Verschoben: Praxis ruft an: später"
    assert moved.status == CallStatus.PLANNED
    assert moved.planned_start == datetime(2026, 12, 7, 8, 10)
    assert moved.previous_call_id == call.id
    assert moved.attempt == call.attempt
    assert moved.placement_requests == call.placement_requests
    [entry] = db.session.scalars(select(AuditEntry)).all()
    assert (entry.action, entry.object_id, entry.user_id) == (
        "call_moved",
        call.id,
        coordinator.id,
    )


def test_moving_to_a_chosen_slot(app, clock, coordinator):
    call = planned_call(clock)
    slot = datetime(2026, 12, 9, 8, 25)  # Wednesday 09:25
    assert slot in free_slots(db.session, clock, call.therapist)

    moved = move_call(db.session, clock, call, coordinator, "Wunsch", slot)

    assert moved.planned_start == slot


@pytest.mark.parametrize(
    "slot",
    [
        datetime(2026, 12, 8, 8, 0),  # Tuesday: no window
        datetime(2026, 12, 9, 8, 2),  # not on a 5-minute mark
        datetime(2026, 12, 7, 7, 55),  # in the past
        datetime(2026, 12, 7, 8, 5),  # the call's own slot
        datetime(2026, 12, 9, 8, 50),  # ends after the window
    ],
)
def test_moving_to_a_slot_the_scheduler_would_not_give_is_refused(
    app, clock, coordinator, slot
):
    call = planned_call(clock)

    with pytest.raises(ValidationFailed) as failure:
        move_call(db.session, clock, call, coordinator, "Wunsch", slot)

    assert failure.value.field == "slot"
    db.session.expire_all()
    assert call.status == CallStatus.PLANNED
    assert db.session.scalars(select(AuditEntry)).all() == []


def test_moving_into_a_full_slot_is_refused(app, clock, coordinator):
    call = planned_call(clock)
    other = planned_call(clock)  # another therapist, Monday 09:10 on line 1

    with pytest.raises(ValidationFailed):
        move_call(db.session, clock, call, coordinator, "x", other.planned_start)


@pytest.mark.parametrize("action", ["move", "cancel"])
def test_moving_and_cancelling_need_a_reason(app, clock, coordinator, action):
    call = planned_call(clock)

    with pytest.raises(ValidationFailed) as failure:
        if action == "move":
            move_call(db.session, clock, call, coordinator, "   ")
        else:
            cancel_call(db.session, clock, call, coordinator, "")

    assert failure.value.field == "reason"
    assert call.status == CallStatus.PLANNED


def test_cancelling_a_call_is_audited(app, clock, coordinator):
    call = planned_call(clock)

    cancel_call(db.session, clock, call, coordinator, "Therapeutin im Urlaub")

    assert call.status == CallStatus.CANCELLED
    assert call.change_reason == "Therapeutin im Urlaub"
    [entry] = db.session.scalars(select(AuditEntry)).all()
    assert (entry.action, entry.reason) == ("call_cancelled", "Therapeutin im Urlaub")
    with pytest.raises(InvalidTransition):
        cancel_call(db.session, clock, call, coordinator, "noch einmal")


def test_free_slots_respect_the_cooling_period(app, clock):
    therapist = therapist_with_windows(next_contact_after=date(2026, 12, 9))

    slots = free_slots(db.session, clock, therapist)

    assert slots[0] == WEDNESDAY_0900


# Cooling override -----------------------------------------------------------


def test_lifting_the_cooling_period_is_audited(app, clock, coordinator):
    therapist = therapist_with_windows(next_contact_after=COOLING_END)

    until = override_cooling(
        db.session, clock, coordinator, therapist, "Praxis hat neue Kapazität"
    )

    assert until is None
    assert therapist.next_contact_after is None
    [entry] = db.session.scalars(select(AuditEntry)).all()
    assert entry.action == "cooling_lifted"
    assert entry.object_type == "therapists"
    assert entry.object_id == therapist.id
    assert entry.reason == "Praxis hat neue Kapazität"
    assert entry.user_id == coordinator.id


def test_shortening_the_cooling_period(app, clock, coordinator):
    therapist = therapist_with_windows(next_contact_after=COOLING_END)

    override_cooling(
        db.session, clock, coordinator, therapist, "Rückmeldung", date(2026, 12, 21)
    )

    assert therapist.next_contact_after == date(2026, 12, 21)
    [entry] = db.session.scalars(select(AuditEntry)).all()
    assert entry.action == "cooling_shortened"


@pytest.mark.parametrize(
    ("cooling", "reason", "until", "field"),
    [
        (COOLING_END, "", None, "reason"),
        (None, "Grund", None, "therapist"),
        (date(2026, 12, 7), "Grund", None, "therapist"),  # ends today: over
        (COOLING_END, "Grund", date(2027, 2, 1), "until"),  # longer, not shorter
        (COOLING_END, "Grund", date(2026, 12, 7), "until"),  # today
    ],
)
def test_cooling_override_refusals(
    app, clock, coordinator, cooling, reason, until, field
):
    therapist = therapist_with_windows(next_contact_after=cooling)

    with pytest.raises(ValidationFailed) as failure:
        override_cooling(db.session, clock, coordinator, therapist, reason, until)

    assert failure.value.field == field
    db.session.rollback()
    assert therapist.next_contact_after == cooling
    assert db.session.scalars(select(AuditEntry)).all() == []


# Overdue and the day's list -------------------------------------------------


def test_a_call_left_unrecorded_past_its_day_is_overdue(app, clock, coordinator):
    call = planned_call(clock)
    recorded = planned_call(clock)
    record_outcome(db.session, clock, recorded, coordinator, "besetzt")
    assert not is_overdue(call, clock)

    clock.advance(hours=14)  # Monday 23:00 in Berlin: still its day
    assert not is_overdue(call, clock)
    assert overdue_calls(db.session, clock) == []

    clock.advance(hours=1)  # Tuesday 00:00
    assert is_overdue(call, clock)
    assert overdue_calls(db.session, clock) == [call]


def test_the_board_lists_overdue_then_today_in_time_order(app, clock, coordinator):
    first = planned_call(clock)  # 09:05
    second = planned_call(clock)  # 09:10
    done = planned_call(clock)  # 09:15
    record_outcome(db.session, clock, done, coordinator, "besetzt")
    yesterday = PhoneCall(
        therapist_id=first.therapist_id,
        planned_start=datetime(2026, 12, 4, 9, 0),
        status=CallStatus.PLANNED,
    )
    db.session.add(yesterday)
    db.session.commit()

    board = call_board(db.session, clock)

    assert [card.call for card in board.overdue] == [yesterday]
    assert board.overdue[0].overdue
    assert [card.call for card in board.planned] == [first, second]
    assert [card.call for card in board.done] == [done]
    assert board.open_count == 3
    assert board.done[0].next_call.planned_start == WEDNESDAY_0900


def test_the_board_keeps_every_call_handled_today_whatever_its_day(
    app, clock, coordinator
):
    therapist = therapist_with_windows()

    def stored(planned_start, status=CallStatus.PLANNED, **fields) -> PhoneCall:
        call = PhoneCall(
            therapist_id=therapist.id,
            planned_start=planned_start,
            status=status,
            **fields,
        )
        db.session.add(call)
        db.session.commit()
        return call

    friday = datetime(2026, 12, 4, 9, 0)
    overdue_recorded = stored(friday)
    overdue_cancelled = stored(friday + timedelta(minutes=5))
    # Handled before today: not part of today's work.
    stored(
        datetime(2026, 12, 3, 9, 0),
        CallStatus.FAILED,
        outcome=CallOutcome.BUSY,
        recorded_at=friday,
    )
    stored(datetime(2026, 12, 3, 9, 5), CallStatus.CANCELLED, updated_at=friday)
    # A later try, recorded early today from its own page.
    early = stored(WEDNESDAY_0900 + timedelta(minutes=30))
    today_recorded = planned_call(clock)  # 09:05
    today_moved = planned_call(clock)  # 09:10
    today_cancelled = planned_call(clock)  # 09:15
    still_open = planned_call(clock)  # 09:20

    record_outcome(db.session, clock, overdue_recorded, coordinator, "besetzt")
    cancel_call(db.session, clock, overdue_cancelled, coordinator, "Praxis zu")
    record_outcome(db.session, clock, early, coordinator, "mailbox")
    record_outcome(db.session, clock, today_recorded, coordinator, "besetzt")
    moved = move_call(db.session, clock, today_moved, coordinator, "Wunsch")
    cancel_call(db.session, clock, today_cancelled, coordinator, "Urlaub")

    board = call_board(db.session, clock)

    assert board.overdue == []
    # The move took the next free slot of the day, so it is still open today.
    assert {card.call for card in board.planned} == {still_open, moved}
    assert [card.call for card in board.done] == [
        overdue_recorded,
        today_recorded,
        early,
    ]
    assert [card.call for card in board.cancelled] == [
        overdue_cancelled,
        today_moved,
        today_cancelled,
    ]
    assert [card.moved for card in board.cancelled] == [False, True, False]
    assert board.open_count == 2
    assert (board.moved_count, board.cancelled_count) == (1, 2)


def test_an_overdue_call_recorded_today_stays_on_heute_as_done(
    app, clock, logged_in_client
):
    therapist = therapist_with_windows(last_name="Freitag")
    overdue = PhoneCall(
        therapist_id=therapist.id,
        planned_start=datetime(2026, 12, 4, 9, 0),
        status=CallStatus.PLANNED,
    )
    db.session.add(overdue)
    db.session.commit()
    logged_in_client.post(
        f"/anrufe/{overdue.id}/ergebnis",
        data={f"call{overdue.id}-outcome": "besetzt"},
        headers=HTMX,
    )

    html = logged_in_client.get("/heute").get_data(as_text=True)

    done_at = html.index('<h2 class="board-group">Erledigt</h2>')
    assert html.index(f'id="call-{overdue.id}"') > done_at
    assert "0 offen" in html and "1 erledigt" in html
    assert "überfällig</span>" not in html


def test_moved_and_cancelled_calls_have_their_own_group_and_counts(
    app, clock, logged_in_client, coordinator
):
    moved = planned_call(clock)
    cancelled = planned_call(clock)
    recorded = planned_call(clock)
    move_call(db.session, clock, moved, coordinator, "Wunsch", WEDNESDAY_0900)
    cancel_call(db.session, clock, cancelled, coordinator, "Urlaub")
    record_outcome(db.session, clock, recorded, coordinator, "besetzt")

    html = logged_in_client.get("/heute").get_data(as_text=True)

    assert "0 offen" in html
    assert "1 erledigt" in html
    assert "1 verschoben" in html
    assert "1 abgesagt" in html
    group = html.index('<h2 class="board-group">Verschoben und abgesagt</h2>')
    assert html.index('<h2 class="board-group">Erledigt</h2>') < group
    assert html.index(f'id="call-{recorded.id}"') < group
    assert html.index(f'id="call-{moved.id}"') > group
    assert html.index(f'id="call-{cancelled.id}"') > group
    assert 'state-verschoben">Verschoben</span>' in html
    assert 'state-abgebrochen">Abgesagt</span>' in html
    assert "Abgebrochen" not in html


# Views ----------------------------------------------------------------------

HTMX = {"HX-Request": "true"}


def test_heute_needs_a_login(client):
    response = client.get("/heute")

    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


def test_heute_shows_the_call_card(app, clock, logged_in_client):
    therapist = therapist_with_windows(phone="030 / 123 45-67")
    call = planned_call(clock, therapist)
    [placement] = call.placement_requests

    response = logged_in_client.get("/heute")

    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<title>Heute" in html
    assert 'id="call-board"' in html
    assert 'hx-trigger="every 30s"' in html
    assert f'id="call-{call.id}"' in html
    assert "09:05" in html
    assert "Dr. Johanna Weiß" in html
    assert 'href="tel:0301234567"' in html
    assert "Mo 09:00–09:50" in html and "Mi 09:00–09:50" in html
    assert placement.patient_pseudonym in html
    assert "F32.1" in html
    assert "1. Versuch" in html
    assert '<details class="call-history"' in html
    assert response.headers["Cache-Control"] == "no-store"


def test_heute_answers_htmx_with_the_list_alone(app, clock, logged_in_client):
    planned_call(clock)

    html = logged_in_client.get("/heute", headers=HTMX).get_data(as_text=True)

    assert html.lstrip().startswith('<section id="call-board"')
    assert "<html" not in html


def test_heute_marks_overdue_calls(app, clock, logged_in_client):
    therapist = therapist_with_windows()
    db.session.add(
        PhoneCall(
            therapist_id=therapist.id,
            planned_start=datetime(2026, 12, 4, 9, 0),
            status=CallStatus.PLANNED,
        )
    )
    db.session.commit()

    html = logged_in_client.get("/heute").get_data(as_text=True)

    assert "Überfällig" in html
    assert "04.12.2026" in html
    assert "1 überfällig" in html


def test_recording_no_answer_swaps_the_card_with_the_next_try(
    app, clock, logged_in_client
):
    call = planned_call(clock)

    response = logged_in_client.post(
        f"/anrufe/{call.id}/ergebnis",
        data={f"call{call.id}-outcome": "keine_antwort", f"call{call.id}-notes": ""},
        headers=HTMX,
    )

    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert html.lstrip().startswith(f'<article id="call-{call.id}"')
    assert "Keine Antwort" in html
    assert "Neuer Versuch geplant:" in html
    assert "Mi 09.12.2026 09:00" in html
    assert "Ergebnis erfassen" not in html


def test_reached_without_answers_shows_errors_beside_the_fields(
    app, clock, logged_in_client
):
    call = planned_call(clock, requests=2)
    first, second = call.placement_requests

    response = logged_in_client.post(
        f"/anrufe/{call.id}/ergebnis",
        data={
            f"call{call.id}-outcome": "erreicht",
            f"call{call.id}-answer_{first.id}": "angenommen",
        },
        headers=HTMX,
    )

    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert f'id="call{call.id}-answer_{second.id}-error"' in html
    assert html.count("Bitte Zusage, Absage oder Rückruf wählen.") == 1
    assert f'id="call-{call.id}-outcome" open' in html
    db.session.expire_all()
    assert call.status == CallStatus.PLANNED


def test_a_missing_outcome_without_htmx_renders_the_page_with_errors(
    app, clock, logged_in_client
):
    call = planned_call(clock)

    response = logged_in_client.post(f"/anrufe/{call.id}/ergebnis", data={})

    assert response.status_code == 422
    assert "Bitte ein Ergebnis wählen." in response.get_data(as_text=True)


def test_an_acceptance_in_the_view_wakes_the_confirmation_queue(
    app, clock, logged_in_client, redis_conn
):
    call = planned_call(clock)
    [placement] = call.placement_requests

    response = logged_in_client.post(
        f"/anrufe/{call.id}/ergebnis",
        data={
            f"call{call.id}-outcome": "erreicht",
            f"call{call.id}-answer_{placement.id}": "angenommen",
        },
    )

    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/heute#call-{call.id}")
    assert queue_for_kind(EmailKind.CONFIRMATION, redis_conn).count == 1
    page = logged_in_client.get("/heute").get_data(as_text=True)
    assert "Bestätigung per E-Mail eingereiht." in page


def test_a_decline_shows_the_cooling_period_on_the_card(app, clock, logged_in_client):
    call = planned_call(clock)
    [placement] = call.placement_requests

    html = logged_in_client.post(
        f"/anrufe/{call.id}/ergebnis",
        data={
            f"call{call.id}-outcome": "erreicht",
            f"call{call.id}-answer_{placement.id}": "abgelehnt",
        },
        headers=HTMX,
    ).get_data(as_text=True)

    assert "Kontakt wieder ab <strong>04.01.2027</strong>" in html
    assert "Kontaktpause aufheben oder verkürzen" in html
    assert "Abgesagt" in html


def test_recording_a_call_twice_says_it_is_no_longer_planned(
    app, clock, logged_in_client
):
    call = planned_call(clock)
    data = {f"call{call.id}-outcome": "besetzt"}
    logged_in_client.post(f"/anrufe/{call.id}/ergebnis", data=data, headers=HTMX)

    response = logged_in_client.post(
        f"/anrufe/{call.id}/ergebnis", data=data, headers=HTMX
    )

    assert "nicht mehr geplant" in response.get_data(as_text=True)
    # The view was stale, so the counters reload as well.
    assert response.headers["HX-Trigger"] == "calls-changed"
    assert len(calls_of(call.therapist_id)) == 2


def test_the_move_form_offers_free_slots_by_day(app, clock, logged_in_client):
    call = planned_call(clock)

    html = logged_in_client.get(
        f"/anrufe/{call.id}/verschieben", headers=HTMX
    ).get_data(as_text=True)

    assert "Nächster freier Termin (Mo 07.12.2026 09:10)" in html
    assert '<optgroup label="Mi 09.12.2026">' in html
    assert 'value="2026-12-09T08:00:00"' in html
    # The call's own slot is not offered.
    assert 'value="2026-12-07T08:05:00"' not in html


def test_moving_in_the_view_needs_a_reason_and_then_moves(app, clock, logged_in_client):
    call = planned_call(clock)
    url = f"/anrufe/{call.id}/verschieben"
    slot_field, reason_field = f"move{call.id}-slot", f"move{call.id}-reason"

    refused = logged_in_client.post(
        url, data={slot_field: "2026-12-09T08:00:00"}, headers=HTMX
    ).get_data(as_text=True)
    assert "Bitte einen Grund angeben." in refused

    moved = logged_in_client.post(
        url,
        data={slot_field: "2026-12-09T08:00:00", reason_field: "Praxis bittet darum"},
        headers=HTMX,
    ).get_data(as_text=True)
    assert "Verschoben auf Mi 09.12.2026 09:00." in moved
    assert "Neuer Termin:" in moved


def test_cancelling_in_the_view_asks_first_and_needs_a_reason(
    app, clock, logged_in_client
):
    call = planned_call(clock)
    page = logged_in_client.get("/heute").get_data(as_text=True)
    assert 'hx-confirm="Diesen Anruf wirklich absagen?"' in page

    html = logged_in_client.post(
        f"/anrufe/{call.id}/absagen",
        data={f"cancel{call.id}-reason": "Praxis geschlossen"},
        headers=HTMX,
    ).get_data(as_text=True)

    assert "Anruf abgesagt." in html
    assert "Praxis geschlossen" in html
    db.session.expire_all()
    assert call.status == CallStatus.CANCELLED


def test_cooling_override_page_lifts_the_period(app, clock, logged_in_client):
    therapist = therapist_with_windows(next_contact_after=COOLING_END)
    url = f"/therapeuten/{therapist.id}/kontaktpause"
    prefix = f"cooling{therapist.id}"

    page = logged_in_client.get(url).get_data(as_text=True)
    assert "Kontakt wieder ab <strong>04.01.2027</strong>" in page

    refused = logged_in_client.post(
        url, data={f"{prefix}-reason": ""}, headers=HTMX
    ).get_data(as_text=True)
    assert "Bitte einen Grund angeben." in refused

    lifted = logged_in_client.post(
        url, data={f"{prefix}-reason": "Telefonisch anders vereinbart"}, headers=HTMX
    ).get_data(as_text=True)
    assert "Kontaktpause aufgehoben." in lifted
    db.session.expire_all()
    assert therapist.next_contact_after is None
    assert db.session.scalars(select(AuditEntry.action)).all() == ["cooling_lifted"]


def test_forms_carry_the_csrf_token_and_posts_without_it_fail(
    app, clock, logged_in_client
):
    call = planned_call(clock)
    app.config["WTF_CSRF_ENABLED"] = True  # the fixture turned it off

    page = logged_in_client.get("/heute").get_data(as_text=True)
    assert page.count('name="csrf_token"') >= 3

    response = logged_in_client.post(
        f"/anrufe/{call.id}/ergebnis", data={f"call{call.id}-outcome": "besetzt"}
    )
    assert response.status_code == 400
    db.session.expire_all()
    assert call.status == CallStatus.PLANNED


def test_the_move_form_of_a_recorded_call_says_it_is_done(
    app, clock, logged_in_client, coordinator
):
    call = planned_call(clock)
    record_outcome(db.session, clock, call, coordinator, "besetzt")

    html = logged_in_client.get(
        f"/anrufe/{call.id}/verschieben", headers=HTMX
    ).get_data(as_text=True)

    assert html == '<p class="hint">Dieser Anruf ist nicht mehr geplant.</p>'


# Counters after card actions ------------------------------------------------


def test_the_counters_reload_on_calls_changed(app, clock, logged_in_client):
    planned_call(clock)

    html = logged_in_client.get("/heute").get_data(as_text=True)

    assert 'hx-get="/heute/stand" hx-trigger="calls-changed from:body"' in html


@pytest.mark.parametrize("action", ["outcome", "move", "cancel"])
def test_every_card_action_tells_the_counters_to_reload(
    app, clock, logged_in_client, action
):
    call = planned_call(clock)
    url, data, counter = {
        "outcome": (
            "ergebnis",
            {f"call{call.id}-outcome": "besetzt"},
            "1 erledigt",
        ),
        "move": (
            "verschieben",
            {
                f"move{call.id}-slot": "2026-12-09T08:00:00",
                f"move{call.id}-reason": "Wunsch",
            },
            "1 verschoben",
        ),
        "cancel": ("absagen", {f"cancel{call.id}-reason": "Urlaub"}, "1 abgesagt"),
    }[action]
    before = logged_in_client.get("/heute/stand", headers=HTMX).get_data(as_text=True)
    assert "1 offen" in before and counter not in before

    response = logged_in_client.post(
        f"/anrufe/{call.id}/{url}", data=data, headers=HTMX
    )

    assert response.headers["HX-Trigger"] == "calls-changed"
    after = logged_in_client.get("/heute/stand", headers=HTMX).get_data(as_text=True)
    assert after.lstrip().startswith('<p id="board-title"')
    assert "0 offen" in after and counter in after


def test_a_refused_card_action_changes_no_counter(app, clock, logged_in_client):
    call = planned_call(clock)

    response = logged_in_client.post(
        f"/anrufe/{call.id}/absagen", data={}, headers=HTMX
    )

    assert "Bitte einen Grund angeben." in response.get_data(as_text=True)
    assert "HX-Trigger" not in response.headers


def test_the_counters_need_a_login(client):
    response = client.get("/heute/stand")

    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


def test_the_counters_alone_are_no_page(app, clock, logged_in_client):
    response = logged_in_client.get("/heute/stand")

    assert response.status_code == 302
    assert response.headers["Location"].endswith("/heute")


# Wording --------------------------------------------------------------------


def test_a_cancelled_call_reads_abgesagt_in_the_calendar_too(
    app, clock, logged_in_client, coordinator
):
    call = planned_call(clock)
    cancel_call(db.session, clock, call, coordinator, "Urlaub")

    panel = logged_in_client.get(
        f"/anrufe/{call.id}/kalendereintrag", headers=HTMX
    ).get_data(as_text=True)
    month = logged_in_client.get(f"/therapeuten/{call.therapist_id}/kalender").get_data(
        as_text=True
    )

    assert 'state-abgebrochen">Abgesagt</span>' in panel
    assert "<dt>Status</dt><dd>Abgesagt</dd>" in panel
    assert "Anruf · Abgesagt" in month
    assert "Abgebrochen" not in panel + month


def test_the_history_keeps_planned_calls_apart_from_past_contact(
    app, clock, logged_in_client, coordinator
):
    therapist = therapist_with_windows()
    earlier = planned_call(clock, therapist)
    record_outcome(db.session, clock, earlier, coordinator, "besetzt")
    later_try = calls_of(therapist.id)[-1]  # Wednesday 09:00
    moved = planned_call(clock, therapist)
    move_call(db.session, clock, moved, coordinator, "Wunsch")
    today = planned_call(clock, therapist)

    html = logged_in_client.get(f"/anrufe/{today.id}").get_data(as_text=True)

    history = html[html.index('<details class="call-history"') :]
    upcoming_at = history.index("Weitere geplante Anrufe")
    past_at = history.index("Bisheriger Kontakt")
    assert upcoming_at < past_at
    assert "(2 bisher, 2 geplant)" in history
    assert "Noch kein früherer Kontakt" not in history
    assert upcoming_at < history.index("09.12.2026 09:00") < past_at
    assert upcoming_at < history.index(f"/anrufe/{later_try.id}") < past_at
    past = history[past_at:]
    assert "Anruf · Besetzt · 1. Versuch" in past
    assert "Anruf · Verschoben · 1. Versuch" in past
    assert "Wunsch" in past and "Verschoben: Wunsch" not in past


def test_a_first_call_has_no_past_contact_and_says_so(app, clock, logged_in_client):
    call = planned_call(clock)

    html = logged_in_client.get(f"/anrufe/{call.id}").get_data(as_text=True)

    assert 'Kontaktverlauf <span class="muted">(0 bisher)</span>' in html
    assert "Bisheriger Kontakt" in html
    assert "Noch kein früherer Kontakt." in html
    assert "Weitere geplante Anrufe" not in html


def test_a_decided_request_reads_bereits_zugesagt_on_the_reply_form(
    app, clock, logged_in_client
):
    therapist = therapist_with_windows()
    email = make_sent_email(therapist, datetime(2026, 11, 27, 10, 0))
    email.placement_requests = [
        make_request(therapist, status=PlacementStatus.ACCEPTED)
    ]
    db.session.commit()

    html = logged_in_client.get(f"/emails/{email.id}/antwort").get_data(as_text=True)

    assert "(bereits zugesagt)" in html
    assert "Zugesagt)" not in html
