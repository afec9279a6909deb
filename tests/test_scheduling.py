"""Scheduler: slots in weekly windows, holidays, DST days, lines (rule 6)."""

import threading
from datetime import UTC, date, datetime, time, timedelta

import pytest
from sqlalchemy import select

from tests.factories import make_request, make_sent_email, make_therapist
from webapp import scheduling
from webapp.clock import BERLIN, FixedClock
from webapp.exceptions import ValidationFailed
from webapp.extensions import db
from webapp.models import CallReason, CallStatus, PhoneCall
from webapp.scheduling import (
    Window,
    candidate_slots,
    later_day,
    next_free_slot,
    parse_windows,
    plan_call,
    wall_slots,
    wall_time_to_utc,
)

MONDAY_MORNING = [{"weekday": 0, "start": "09:00", "end": "09:50"}]


def berlin(*parts: int) -> datetime:
    """Return naive UTC for a Berlin wall time (first occurrence)."""
    local = datetime(*parts, tzinfo=BERLIN)
    return local.astimezone(UTC).replace(tzinfo=None)


# Windows and slot boundaries ------------------------------------------------


def test_window_holds_slots_that_end_inside_it():
    [window] = parse_windows(MONDAY_MORNING)

    slots = wall_slots([window], date(2026, 12, 7))

    assert slots[0] == time(9, 0)
    assert slots[-1] == time(9, 45)
    assert len(slots) == 10


def test_unaligned_window_uses_the_five_minute_marks_inside_it():
    windows = parse_windows([{"weekday": 0, "start": "09:03", "end": "09:21"}])

    assert wall_slots(windows, date(2026, 12, 7)) == [
        time(9, 5),
        time(9, 10),
        time(9, 15),
    ]


def test_overlapping_windows_count_each_slot_once():
    windows = parse_windows(
        [
            {"weekday": 0, "start": "09:00", "end": "09:20"},
            {"weekday": 0, "start": "09:10", "end": "09:30"},
        ]
    )

    assert len(wall_slots(windows, date(2026, 12, 7))) == 6


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (berlin(2026, 12, 4, 9, 0), berlin(2026, 12, 7, 9, 0)),  # Friday
        (berlin(2026, 12, 7, 8, 59), berlin(2026, 12, 7, 9, 0)),
        (berlin(2026, 12, 7, 9, 0), berlin(2026, 12, 7, 9, 5)),  # strictly after
        (berlin(2026, 12, 7, 9, 12, 30), berlin(2026, 12, 7, 9, 15)),
        (berlin(2026, 12, 7, 9, 44), berlin(2026, 12, 7, 9, 45)),
        (berlin(2026, 12, 7, 9, 45), berlin(2026, 12, 14, 9, 0)),  # past the last
    ],
)
def test_next_slot_lies_strictly_after_now(now, expected):
    assert next_free_slot(MONDAY_MORNING, "BE", {}, now, lines=1) == expected


def test_weekend_windows_are_used():
    sunday = [{"weekday": 6, "start": "18:00", "end": "18:30"}]

    slot = next_free_slot(sunday, "HH", {}, berlin(2026, 12, 7, 12, 0), lines=1)

    assert slot == berlin(2026, 12, 13, 18, 0)


def test_no_windows_means_no_slot():
    assert next_free_slot([], "BE", {}, berlin(2026, 12, 7, 12, 0), lines=1) is None


def test_slot_beyond_the_horizon_is_not_offered():
    now = berlin(2026, 12, 8, 12, 0)  # Tuesday: the next Monday is 6 days away

    assert next_free_slot(MONDAY_MORNING, "BE", {}, now, 1, horizon_days=6) is None
    assert next_free_slot(MONDAY_MORNING, "BE", {}, now, 1, horizon_days=7) == berlin(
        2026, 12, 14, 9, 0
    )


FIRST = "phone_availability[0]"


@pytest.mark.parametrize(
    ("window", "field"),
    [
        ({"weekday": 7, "start": "09:00", "end": "10:00"}, f"{FIRST}.weekday"),
        ({"weekday": True, "start": "09:00", "end": "10:00"}, f"{FIRST}.weekday"),
        ({"weekday": 1, "start": "9:00", "end": "10:00"}, f"{FIRST}.start"),
        ({"weekday": 1, "start": "09:00", "end": "24:00"}, f"{FIRST}.end"),
        ({"weekday": 1, "start": "10:00", "end": "10:00"}, f"{FIRST}.end"),
        ({"weekday": 1, "start": "09:00"}, FIRST),
    ],
)
def test_malformed_windows_are_refused(window, field):
    with pytest.raises(ValidationFailed) as caught:
        parse_windows([window])

    assert caught.value.field == field


# Holidays of the therapist's federal state ----------------------------------

TUESDAY = [{"weekday": 1, "start": "10:00", "end": "10:30"}]
THURSDAY = [{"weekday": 3, "start": "10:00", "end": "10:30"}]
SATURDAY = [{"weekday": 5, "start": "10:00", "end": "10:30"}]


@pytest.mark.parametrize(
    ("windows", "state", "now", "expected"),
    [
        # Heilige Drei Könige, Tuesday 06.01.2026: BY yes, BE no.
        (TUESDAY, "BY", berlin(2026, 1, 5, 12), berlin(2026, 1, 13, 10)),
        (TUESDAY, "BE", berlin(2026, 1, 5, 12), berlin(2026, 1, 6, 10)),
        # Fronleichnam, Thursday 04.06.2026: NW yes, BE no.
        (THURSDAY, "NW", berlin(2026, 6, 1, 12), berlin(2026, 6, 11, 10)),
        (THURSDAY, "BE", berlin(2026, 6, 1, 12), berlin(2026, 6, 4, 10)),
        # Reformationstag, Saturday 31.10.2026: SN yes, BY no.
        (SATURDAY, "SN", berlin(2026, 10, 28, 12), berlin(2026, 11, 7, 10)),
        (SATURDAY, "BY", berlin(2026, 10, 28, 12), berlin(2026, 10, 31, 10)),
        # Christmas everywhere: Friday 25.12.2026.
        (
            [{"weekday": 4, "start": "10:00", "end": "10:30"}],
            "HB",
            berlin(2026, 12, 21, 12),
            berlin(2027, 1, 8, 10),  # 01.01.2027 is Neujahr
        ),
    ],
)
def test_public_holidays_of_the_state_are_skipped(windows, state, now, expected):
    assert next_free_slot(windows, state, {}, now, lines=1) == expected


@pytest.mark.parametrize("state", ["XX", "", None, "by", "Augsburg", "DE"])
def test_unknown_state_is_an_input_error(state):
    with pytest.raises(ValidationFailed) as caught:
        next_free_slot(MONDAY_MORNING, state, {}, berlin(2026, 12, 4, 9), lines=1)

    assert caught.value.field == "federal_state"


# Daylight-saving days ---------------------------------------------------------

NIGHT_WINDOW = [{"weekday": 6, "start": "02:00", "end": "03:30"}]


def test_spring_forward_skips_wall_times_that_do_not_exist():
    # 29.03.2026: clocks jump from 02:00 to 03:00.
    slots = list(
        candidate_slots(NIGHT_WINDOW, "BE", berlin(2026, 3, 28, 12), horizon_days=2)
    )

    assert slots == [datetime(2026, 3, 29, 1, minute) for minute in range(0, 30, 5)]
    assert wall_time_to_utc(date(2026, 3, 29), time(2, 30)) is None
    local = [s.replace(tzinfo=UTC).astimezone(BERLIN) for s in slots]
    assert [t.strftime("%H:%M %Z") for t in local][:2] == ["03:00 CEST", "03:05 CEST"]


def test_fall_back_uses_the_first_of_the_repeated_wall_times():
    # 25.10.2026: 02:00-02:59 happens twice; 03:00 CET follows 02:59 CET.
    slots = list(
        candidate_slots(NIGHT_WINDOW, "BE", berlin(2026, 10, 24, 12), horizon_days=2)
    )

    first_pass = [datetime(2026, 10, 25, 0, minute) for minute in range(0, 60, 5)]
    after = [datetime(2026, 10, 25, 2, minute) for minute in range(0, 30, 5)]
    assert slots == first_pass + after
    assert len(set(slots)) == len(slots)
    assert wall_time_to_utc(date(2026, 10, 25), time(2, 30)) == datetime(
        2026, 10, 25, 0, 30
    )


def test_fall_back_day_with_now_in_the_repeated_hour():
    # 01:30 UTC is the second 02:30 (CET); the first 02:30 is already past.
    slot = next_free_slot(NIGHT_WINDOW, "BE", {}, datetime(2026, 10, 25, 1, 30), 1)

    assert slot == datetime(2026, 10, 25, 2, 0)  # 03:00 CET


def test_ordinary_slots_keep_their_wall_time_across_the_switch():
    saturday = next_free_slot(MONDAY_MORNING, "BE", {}, berlin(2026, 3, 28, 12), 1)
    week_later = next_free_slot(MONDAY_MORNING, "BE", {}, berlin(2026, 10, 24, 12), 1)

    assert saturday == datetime(2026, 3, 30, 7, 0)  # 09:00 CEST
    assert week_later == datetime(2026, 10, 26, 8, 0)  # 09:00 CET


# Lines, full slots and later days ---------------------------------------------


def test_full_slot_with_one_line_moves_to_the_next():
    first = berlin(2026, 12, 7, 9, 0)

    slot = next_free_slot(MONDAY_MORNING, "BE", {first: 1}, berlin(2026, 12, 4, 9), 1)

    assert slot == berlin(2026, 12, 7, 9, 5)


def test_two_lines_share_a_slot_until_both_are_booked():
    first = berlin(2026, 12, 7, 9, 0)
    now = berlin(2026, 12, 4, 9)

    assert next_free_slot(MONDAY_MORNING, "BE", {first: 1}, now, 2) == first
    assert next_free_slot(MONDAY_MORNING, "BE", {first: 2}, now, 2) == berlin(
        2026, 12, 7, 9, 5
    )


def test_not_before_date_moves_to_a_later_day():
    windows = MONDAY_MORNING + [{"weekday": 1, "start": "14:00", "end": "14:30"}]
    now = berlin(2026, 12, 7, 8, 0)

    slot = next_free_slot(
        windows, "BE", {}, now, 1, not_before_date=later_day(now, berlin(2026, 12, 7))
    )

    assert slot == berlin(2026, 12, 8, 14, 0)


def test_later_day_is_after_today_and_after_the_calls_own_day():
    now = berlin(2026, 12, 7, 23, 30)  # 22:30 UTC, still Monday in Berlin

    assert later_day(now) == date(2026, 12, 8)
    assert later_day(now, berlin(2026, 12, 9, 9, 0)) == date(2026, 12, 10)


def test_windows_may_be_given_as_window_objects():
    window = Window(0, time(9, 0), time(9, 10))

    slot = next_free_slot([window], "BE", {}, berlin(2026, 12, 4, 9), 1)

    assert slot == berlin(2026, 12, 7, 9, 0)


# plan_call against the database -----------------------------------------------

NOW = berlin(2026, 12, 4, 10, 0)  # Friday


def calls() -> list[PhoneCall]:
    return list(db.session.scalars(select(PhoneCall).order_by(PhoneCall.id)))


def test_plan_call_takes_the_first_free_slot_and_line(app):
    therapist = make_therapist()
    requests = [make_request(therapist), make_request(therapist)]

    call = plan_call(
        db.session, therapist, requests, CallReason.NO_EMAIL, FixedClock(NOW)
    )
    db.session.commit()

    [stored] = calls()
    assert stored.id == call.id
    assert stored.planned_start == berlin(2026, 12, 7, 9, 0)
    assert (stored.line, stored.duration_minutes) == (1, 5)
    assert stored.status == CallStatus.PLANNED
    assert stored.reason == CallReason.NO_EMAIL
    assert stored.attempt == 1
    assert [r.id for r in stored.placement_requests] == [r.id for r in requests]


def test_plan_call_leaves_the_commit_to_the_caller(app):
    therapist = make_therapist()

    plan_call(db.session, therapist, [], CallReason.MANUAL, FixedClock(NOW))
    db.session.rollback()

    assert calls() == []


def test_full_slot_with_one_line_goes_to_the_next_slot(app):
    clock = FixedClock(NOW)
    first, second = make_therapist(), make_therapist()

    a = plan_call(db.session, first, [], CallReason.MANUAL, clock)
    b = plan_call(db.session, second, [], CallReason.MANUAL, clock)
    db.session.commit()

    assert a.planned_start == berlin(2026, 12, 7, 9, 0)
    assert b.planned_start == berlin(2026, 12, 7, 9, 5)
    assert (a.line, b.line) == (1, 1)


def test_two_lines_put_two_therapists_into_one_slot(app, monkeypatch):
    monkeypatch.setitem(app.config, "CALL_LINES", 2)
    clock = FixedClock(NOW)
    therapists = [make_therapist() for _ in range(3)]

    planned = [
        plan_call(db.session, t, [], CallReason.MANUAL, clock) for t in therapists
    ]
    db.session.commit()

    assert [(c.planned_start, c.line) for c in planned] == [
        (berlin(2026, 12, 7, 9, 0), 1),
        (berlin(2026, 12, 7, 9, 0), 2),
        (berlin(2026, 12, 7, 9, 5), 1),
    ]


def test_one_therapist_never_gets_two_calls_in_one_slot(app, monkeypatch):
    monkeypatch.setitem(app.config, "CALL_LINES", 2)
    clock = FixedClock(NOW)
    therapist = make_therapist()

    a = plan_call(db.session, therapist, [], CallReason.MANUAL, clock)
    b = plan_call(db.session, therapist, [], CallReason.MANUAL, clock)

    assert b.planned_start == a.planned_start + timedelta(minutes=5)


def test_finished_calls_free_their_slot(app):
    clock = FixedClock(NOW)
    call = plan_call(db.session, make_therapist(), [], CallReason.MANUAL, clock)
    call.status = CallStatus.CANCELLED
    db.session.commit()

    again = plan_call(db.session, make_therapist(), [], CallReason.MANUAL, clock)

    assert (again.planned_start, again.line) == (call.planned_start, 1)


def test_cooling_period_is_honoured(app):
    # Cooling until Wednesday 16.12.: the Monday 14.12. is still too early.
    therapist = make_therapist(next_contact_after=date(2026, 12, 16))

    call = plan_call(db.session, therapist, [], CallReason.MANUAL, FixedClock(NOW))

    assert call.planned_start == berlin(2026, 12, 21, 9, 0)


def test_cooling_period_day_itself_is_allowed(app):
    therapist = make_therapist(next_contact_after=date(2026, 12, 14))

    call = plan_call(db.session, therapist, [], CallReason.MANUAL, FixedClock(NOW))

    assert call.planned_start == berlin(2026, 12, 14, 9, 0)


def test_blocked_therapist_gets_no_call(app):
    therapist = make_therapist(blocked=True, blocked_reason="Praxis geschlossen")

    assert (
        plan_call(db.session, therapist, [], CallReason.MANUAL, FixedClock(NOW)) is None
    )
    assert calls() == []


def test_no_slot_within_the_horizon_returns_none(app):
    therapist = make_therapist(phone_availability=[])

    assert (
        plan_call(db.session, therapist, [], CallReason.MANUAL, FixedClock(NOW)) is None
    )


def test_unknown_state_refuses_to_plan(app):
    therapist = make_therapist(federal_state="XX")

    with pytest.raises(ValidationFailed) as caught:
        plan_call(db.session, therapist, [], CallReason.MANUAL, FixedClock(NOW))

    assert caught.value.field == "federal_state"


def test_rescheduling_moves_the_call_to_a_later_day(app):
    windows = [
        {"weekday": 0, "start": "09:00", "end": "09:50"},
        {"weekday": 0, "start": "15:00", "end": "15:30"},
        {"weekday": 2, "start": "11:00", "end": "11:30"},
    ]
    therapist = make_therapist(phone_availability=windows)
    email = make_sent_email(therapist, NOW - timedelta(days=7))
    request = make_request(therapist)
    clock = FixedClock(NOW)
    first = plan_call(
        db.session,
        therapist,
        [request],
        CallReason.FOLLOW_UP,
        clock,
        source_email=email,
    )
    db.session.commit()

    # Monday 09:00: no answer. The afternoon window the same day is not taken.
    clock.current = first.planned_start + timedelta(minutes=3)
    first.status = CallStatus.FAILED
    retry = plan_call(
        db.session,
        therapist,
        first.placement_requests,
        CallReason.FOLLOW_UP,
        clock,
        not_before_date=later_day(clock.now(), first.planned_start),
        previous_call=first,
        attempt=2,
    )
    db.session.commit()

    assert retry.planned_start == berlin(2026, 12, 9, 11, 0)
    assert retry.previous_call_id == first.id
    assert retry.source_email_id == email.id
    assert retry.attempt == 2
    assert [r.id for r in retry.placement_requests] == [request.id]


def test_lost_race_for_a_slot_retries_with_the_next_one(app, monkeypatch):
    rival, therapist = make_therapist(), make_therapist()
    realtaken_lines = scheduling.taken_lines
    raced = threading.Event()

    rival_call = PhoneCall.__table__.insert().values(
        therapist_id=rival.id,
        planned_start=berlin(2026, 12, 7, 9, 0),
        duration_minutes=5,
        line=1,
        status=CallStatus.PLANNED,
        reason=CallReason.MANUAL,
        attempt=1,
        created_at=NOW,
        updated_at=NOW,
    )

    def taken_lines_then_lose_the_race(*args):
        # Another planner commits the same slot right after our read. On
        # SQLite plan_call holds the write lock, so planners are serialised
        # anyway; there the rival row lands in our own transaction.
        taken = realtaken_lines(*args)
        if not raced.is_set():
            raced.set()
            if db.engine.dialect.name == "sqlite":
                db.session.execute(rival_call)
            else:
                with db.engine.begin() as other:
                    other.execute(rival_call)
        return taken

    monkeypatch.setattr(scheduling, "taken_lines", taken_lines_then_lose_the_race)

    call = plan_call(db.session, therapist, [], CallReason.MANUAL, FixedClock(NOW))
    db.session.commit()

    assert raced.is_set()
    assert call.planned_start == berlin(2026, 12, 7, 9, 5)
    assert len(calls()) == 2
