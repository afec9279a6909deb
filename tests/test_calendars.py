"""Contact calendars: entries by local day, cooling period, windows, call week."""

from datetime import date, datetime, time

import pytest

from tests.factories import make_request, make_sent_email, make_therapist
from webapp.calendars import (
    CoolingPeriod,
    cooling_period,
    coordinator_week,
    phone_windows,
    therapist_calendar,
    therapist_entries,
)
from webapp.clock import FixedClock
from webapp.extensions import db
from webapp.models import (
    CallOutcome,
    CallStatus,
    Email,
    EmailReply,
    EmailStatus,
    PhoneCall,
    phone_call_requests,
)

# Friday, 04.12.2026 10:00 in Berlin.
NOW = datetime(2026, 12, 4, 9, 0)
TODAY = date(2026, 12, 4)

WINDOWS = [
    {"weekday": 3, "start": "13:00", "end": "13:25"},
    {"weekday": 0, "start": "09:00", "end": "09:50"},
]


@pytest.fixture
def clock(app, monkeypatch) -> FixedClock:
    """The app's clock, standing at NOW."""
    fixed = FixedClock(NOW)
    monkeypatch.setitem(app.config, "CLOCK", fixed)
    return fixed


def make_call(
    therapist,
    planned_start: datetime,
    status: str = CallStatus.PLANNED,
    outcome: str | None = None,
    line: int = 1,
    requests=(),
    **fields,
) -> PhoneCall:
    """Store a call at `planned_start` (naive UTC)."""
    call = PhoneCall(
        therapist_id=therapist.id,
        planned_start=planned_start,
        status=status,
        outcome=outcome,
        line=line,
        placement_requests=list(requests),
        **fields,
    )
    db.session.add(call)
    db.session.commit()
    return call


def make_reply(email: Email, received_on: date, answers: dict) -> EmailReply:
    """Store a therapist's reply to the email."""
    reply = EmailReply(
        email_id=email.id, received_on=received_on, answers=answers, content="Danke."
    )
    db.session.add(reply)
    db.session.commit()
    return reply


# Entries --------------------------------------------------------------------


def test_entries_hold_emails_calls_and_replies_of_the_range(app):
    therapist = make_therapist()
    other = make_therapist(last_name="Öztürk")
    inside = make_sent_email(therapist, datetime(2026, 12, 1, 8, 0))
    make_sent_email(therapist, datetime(2026, 10, 1, 8, 0))  # before the range
    make_sent_email(other, datetime(2026, 12, 2, 8, 0))  # someone else
    draft = make_sent_email(therapist, datetime(2026, 12, 2, 8, 0))
    draft.status, draft.sent_at, draft.queued_at = EmailStatus.DRAFT, None, None
    queued = make_sent_email(therapist, datetime(2026, 12, 3, 8, 0))
    queued.status, queued.sent_at = EmailStatus.QUEUED, None
    db.session.commit()
    call = make_call(
        therapist,
        datetime(2026, 12, 7, 8, 0),
        CallStatus.COMPLETED,
        CallOutcome.REACHED,
    )
    reply = make_reply(inside, date(2026, 12, 3), {})

    entries = therapist_entries(
        db.session, therapist.id, date(2026, 11, 30), date(2027, 1, 3)
    )

    assert [(entry.kind, entry.object_id) for entry in entries] == [
        ("email", inside.id),
        ("reply", reply.id),
        ("email", queued.id),
        ("call", call.id),
    ]
    assert entries[0].start == datetime.fromisoformat("2026-12-01T09:00:00+01:00")
    assert entries[2].state == EmailStatus.QUEUED
    assert entries[3].state == CallOutcome.REACHED


@pytest.mark.parametrize(
    ("status", "outcome", "state"),
    [
        (CallStatus.PLANNED, None, "geplant"),
        (CallStatus.COMPLETED, CallOutcome.REACHED, "erreicht"),
        (CallStatus.FAILED, CallOutcome.NO_ANSWER, "keine_antwort"),
        (CallStatus.FAILED, CallOutcome.BUSY, "besetzt"),
        (CallStatus.FAILED, CallOutcome.VOICEMAIL, "mailbox"),
        (CallStatus.COMPLETED, CallOutcome.WRONG_NUMBER, "falsche_nummer"),
        (CallStatus.CANCELLED, None, "abgebrochen"),
    ],
)
def test_a_call_entry_shows_its_outcome_or_status(app, status, outcome, state):
    therapist = make_therapist()
    make_call(therapist, datetime(2026, 12, 7, 8, 0), status, outcome)

    [entry] = therapist_entries(
        db.session, therapist.id, date(2026, 12, 7), date(2026, 12, 13)
    )

    assert entry.state == state


def test_a_week_runs_from_local_monday_midnight_to_the_next(app):
    therapist = make_therapist()
    # Sunday 06.12. 23:59 and Monday 07.12. 00:00 in Berlin.
    sunday_night = make_sent_email(therapist, datetime(2026, 12, 6, 22, 59))
    monday_midnight = make_sent_email(therapist, datetime(2026, 12, 6, 23, 0))
    monday_midnight.kind = "confirmation"
    db.session.commit()

    entries = therapist_entries(
        db.session, therapist.id, date(2026, 12, 7), date(2026, 12, 13)
    )

    assert [entry.object_id for entry in entries] == [monday_midnight.id]
    assert entries[0].day == date(2026, 12, 7)
    assert sunday_night.id not in [entry.object_id for entry in entries]


@pytest.mark.parametrize(
    ("planned_utc", "local_day", "local_time", "week_monday"),
    [
        # Spring forward: Sunday 28.03.2027 jumps from 02:00 to 03:00.
        (datetime(2027, 3, 26, 8, 0), date(2027, 3, 26), time(9, 0), "2027-03-22"),
        (datetime(2027, 3, 29, 7, 0), date(2027, 3, 29), time(9, 0), "2027-03-29"),
        (datetime(2027, 3, 28, 21, 30), date(2027, 3, 28), time(23, 30), "2027-03-22"),
        (datetime(2027, 3, 28, 22, 30), date(2027, 3, 29), time(0, 30), "2027-03-29"),
        # Fall back: Sunday 25.10.2026 repeats 02:00 to 03:00.
        (datetime(2026, 10, 23, 7, 0), date(2026, 10, 23), time(9, 0), "2026-10-19"),
        (datetime(2026, 10, 26, 8, 0), date(2026, 10, 26), time(9, 0), "2026-10-26"),
        (
            datetime(2026, 10, 25, 22, 30),
            date(2026, 10, 25),
            time(23, 30),
            "2026-10-19",
        ),
        (datetime(2026, 10, 25, 23, 30), date(2026, 10, 26), time(0, 30), "2026-10-26"),
    ],
)
def test_daylight_saving_weeks_show_local_wall_clock_times(
    app, planned_utc, local_day, local_time, week_monday
):
    therapist = make_therapist()
    call = make_call(therapist, planned_utc)
    monday = date.fromisoformat(week_monday)

    calendar = therapist_calendar(db.session, therapist, "woche", monday, TODAY)

    [entry] = [e for entries in calendar.entries_by_day.values() for e in entries]
    assert entry.object_id == call.id
    assert entry.day == local_day
    assert entry.start.time() == local_time
    assert calendar.days[0] == monday


# Cooling period -------------------------------------------------------------


def test_cooling_period_starts_at_the_declining_reply(app):
    therapist = make_therapist(next_contact_after=date(2026, 12, 29))
    request = make_request(therapist)
    email = make_sent_email(therapist, datetime(2026, 11, 24, 8, 0))
    make_reply(email, date(2026, 12, 1), {str(request.id): "abgelehnt"})

    period = cooling_period(db.session, therapist, TODAY)

    assert period == CoolingPeriod(date(2026, 12, 1), date(2026, 12, 29))
    assert period.covers(date(2026, 12, 28))
    assert not period.covers(date(2026, 12, 29))
    assert not period.covers(date(2026, 11, 30))


def test_cooling_period_starts_at_a_decline_on_the_phone(app):
    therapist = make_therapist(next_contact_after=date(2027, 1, 1))
    request = make_request(therapist)
    call = make_call(
        therapist,
        datetime(2026, 12, 3, 8, 0),
        CallStatus.COMPLETED,
        CallOutcome.REACHED,
        requests=[request],
        recorded_at=datetime(2026, 12, 3, 23, 30),  # 04.12. 00:30 in Berlin
    )
    db.session.execute(
        phone_call_requests.update()
        .where(phone_call_requests.c.phone_call_id == call.id)
        .values(answer="abgelehnt")
    )
    db.session.commit()

    period = cooling_period(db.session, therapist, TODAY)

    assert period == CoolingPeriod(date(2026, 12, 4), date(2027, 1, 1))


@pytest.mark.parametrize(
    ("next_contact_after", "expected"),
    [
        (None, None),
        (date(2026, 12, 20), CoolingPeriod(TODAY, date(2026, 12, 20))),
        (date(2026, 12, 4), None),  # contact is allowed again today
        (date(2026, 11, 1), None),
    ],
)
def test_cooling_period_without_a_decline_runs_from_today(
    app, next_contact_after, expected
):
    therapist = make_therapist(next_contact_after=next_contact_after)

    assert cooling_period(db.session, therapist, TODAY) == expected


def test_month_view_shades_the_cooling_days(app):
    therapist = make_therapist(next_contact_after=date(2026, 12, 10))

    calendar = therapist_calendar(db.session, therapist, "monat", TODAY, TODAY)

    shaded = [day for day in calendar.days if calendar.cooling.covers(day)]
    assert shaded[0] == TODAY
    assert shaded[-1] == date(2026, 12, 9)
    assert calendar.cooling_shown
    # December 2026 starts on a Tuesday and ends on a Thursday.
    assert calendar.days[0] == date(2026, 11, 30)
    assert calendar.days[-1] == date(2027, 1, 3)


# Phone windows --------------------------------------------------------------


def test_windows_are_sorted_and_broken_ones_skipped():
    windows = phone_windows(
        [
            *WINDOWS,
            {"weekday": 9, "start": "10:00", "end": "11:00"},
            {"weekday": 1, "start": "11:00", "end": "10:00"},
            {"weekday": 2, "start": "nine", "end": "10:00"},
            {"start": "10:00"},
        ]
    )

    assert [(w.weekday, w.start, w.end) for w in windows] == [
        (0, time(9, 0), time(9, 50)),
        (3, time(13, 0), time(13, 25)),
    ]


def test_week_view_spans_the_windows_and_entries(app):
    therapist = make_therapist(
        phone_availability=[{"weekday": 1, "start": "07:30", "end": "08:00"}]
    )
    make_call(therapist, datetime(2026, 12, 3, 18, 30))  # Thursday 19:30

    calendar = therapist_calendar(db.session, therapist, "woche", TODAY, TODAY)

    assert (calendar.first_hour, calendar.last_hour) == (7, 20)
    assert [w.start for w in calendar.windows_on(date(2026, 12, 1))] == [time(7, 30)]
    assert calendar.windows_on(date(2026, 12, 2)) == []


# Coordinator week -----------------------------------------------------------


def test_coordinator_week_puts_planned_calls_in_their_slots(app):
    weiss = make_therapist(phone_availability=WINDOWS)
    oeztuerk = make_therapist(last_name="Öztürk", phone_availability=[])
    first = make_call(weiss, datetime(2026, 12, 7, 8, 0))  # Mon 09:00
    second = make_call(oeztuerk, datetime(2026, 12, 7, 8, 0), line=2)
    make_call(weiss, datetime(2026, 12, 7, 8, 5), CallStatus.CANCELLED)
    make_call(weiss, datetime(2026, 12, 14, 8, 0))  # next week

    week = coordinator_week(db.session, date(2026, 12, 9), TODAY, lines=2)

    nine = week.cell(date(2026, 12, 7), time(9, 0))
    assert [call.id for call in nine.calls] == [first.id, second.id]
    assert nine.state(2) == "full"
    assert nine.state(3) == "partial"
    assert week.cell(date(2026, 12, 7), time(9, 5)).state(2) == "free"
    assert week.call_count == 2
    assert [day.weekday() for day in week.days] == [0, 1, 2, 3, 4]
    assert (week.slots[0], week.slots[-1]) == (time(8, 0), time(17, 55))


def test_coordinator_week_shows_weekend_days_only_when_booked(app):
    therapist = make_therapist(
        phone_availability=[{"weekday": 5, "start": "19:00", "end": "19:30"}]
    )
    make_call(therapist, datetime(2026, 12, 12, 18, 10))  # Saturday 19:10

    week = coordinator_week(db.session, date(2026, 12, 7), TODAY, lines=1)

    assert [day.weekday() for day in week.days] == [0, 1, 2, 3, 4, 5]
    assert week.slots[-1] == time(19, 55)
    assert week.cell(date(2026, 12, 12), time(19, 10)).state(1) == "full"


def test_coordinator_week_names_national_holidays(app):
    week = coordinator_week(db.session, date(2026, 12, 23), TODAY, lines=1)

    assert week.holidays == {date(2026, 12, 25): "Erster Weihnachtstag"}


# Views ----------------------------------------------------------------------


def test_calendar_pages_need_a_login(client):
    for url in ("/therapeuten/1/kalender", "/kalender/woche", "/kalender/abo"):
        response = client.get(url)
        assert response.status_code == 302
        assert "/login" in response.headers["Location"]


def test_an_expired_session_sends_htmx_to_the_login(client):
    response = client.get(
        "/kalender/woche?datum=2026-12-07",
        headers={"HX-Request": "true", "HX-Current-URL": "http://x/kalender/woche"},
    )

    assert response.status_code == 401
    assert response.headers["HX-Redirect"].startswith("/login")


def test_month_page_shows_title_windows_cooling_and_entries(logged_in_client, clock):
    therapist = make_therapist(
        phone_availability=WINDOWS, next_contact_after=date(2026, 12, 18)
    )
    email = make_sent_email(therapist, datetime(2026, 12, 1, 13, 35))
    call = make_call(therapist, datetime(2026, 12, 2, 8, 5))

    response = logged_in_client.get(f"/therapeuten/{therapist.id}/kalender")

    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<html" in html
    assert "Dezember 2026" in html
    assert "Mo 09:00–09:50, Do 13:00–13:25" in html
    assert "Kontaktpause bis 17.12.2026" in html
    assert "Kontakt ab 18.12.2026" in html
    assert f'href="/emails/{email.id}"' in html
    assert "14:35" in html
    assert f'href="/anrufe/{call.id}/kalendereintrag"' in html
    assert "Anruf · Geplant" in html
    assert 'data-date="2026-12-04"' in html
    assert response.headers["Cache-Control"] == "no-store"


def test_htmx_navigation_gets_only_the_calendar_fragment(logged_in_client, clock):
    therapist = make_therapist()
    url = f"/therapeuten/{therapist.id}/kalender?ansicht=monat&datum=2027-01-01"

    full = logged_in_client.get(url).get_data(as_text=True)
    fragment = logged_in_client.get(url, headers={"HX-Request": "true"})

    html = fragment.get_data(as_text=True)
    assert "<html" in full and "<html" not in html
    assert html.lstrip().startswith('<section id="calendar"')
    assert "Januar 2027" in html
    # Back and forward point at the neighbouring months and push the URL.
    assert "datum=2026-12-01" in html and "datum=2027-02-01" in html
    assert 'hx-push-url="true"' in html


def test_a_history_restore_gets_the_whole_page(logged_in_client, clock):
    therapist = make_therapist()

    response = logged_in_client.get(
        f"/therapeuten/{therapist.id}/kalender",
        headers={"HX-Request": "true", "HX-History-Restore-Request": "true"},
    )

    assert "<html" in response.get_data(as_text=True)


def test_week_view_shows_bands_and_local_times(logged_in_client, clock):
    therapist = make_therapist(phone_availability=WINDOWS)
    make_call(therapist, datetime(2027, 3, 29, 7, 5))  # after spring forward

    response = logged_in_client.get(
        f"/therapeuten/{therapist.id}/kalender?ansicht=woche&datum=2027-03-31",
        headers={"HX-Request": "true"},
    )

    html = response.get_data(as_text=True)
    assert "KW 13 · 29.03.–04.04.2027" in html
    assert 'class="window-band"' in html
    assert "Telefonisch erreichbar 09:00–09:50" in html
    assert '<time datetime="2027-03-29T09:05:00+02:00">09:05</time>' in html


def test_a_broken_date_shows_today(logged_in_client, clock):
    therapist = make_therapist()

    response = logged_in_client.get(
        f"/therapeuten/{therapist.id}/kalender?datum=gestern&ansicht=jahr"
    )

    assert response.status_code == 200
    assert "Dezember 2026" in response.get_data(as_text=True)


def test_call_entry_shows_time_outcome_notes_and_pseudonyms(logged_in_client, clock):
    therapist = make_therapist()
    request = make_request(therapist, patient_pseudonym="P-ALPHA")
    call = make_call(
        therapist,
        datetime(2026, 12, 3, 13, 35),
        CallStatus.FAILED,
        CallOutcome.VOICEMAIL,
        requests=[request],
        notes="Auf Band gesprochen.",
        attempt=2,
    )

    response = logged_in_client.get(
        f"/anrufe/{call.id}/kalendereintrag", headers={"HX-Request": "true"}
    )

    html = response.get_data(as_text=True)
    assert html.lstrip().startswith('<article id="call-entry"')
    assert "03.12.2026, 14:35–14:40 Uhr" in html
    assert "Mailbox" in html
    assert "Auf Band gesprochen." in html
    assert "P-ALPHA" in html
    assert "2. Versuch" in html
    assert request.diagnosis_code not in html


def test_reply_entry_shows_the_answers(logged_in_client, clock):
    therapist = make_therapist()
    request = make_request(therapist, patient_pseudonym="P-BETA")
    email = make_sent_email(therapist, datetime(2026, 11, 24, 8, 0))
    reply = make_reply(email, date(2026, 12, 1), {str(request.id): "abgelehnt"})

    response = logged_in_client.get(f"/antworten/{reply.id}/kalendereintrag")

    html = response.get_data(as_text=True)
    assert "01.12.2026" in html
    assert "P-BETA" in html and "Abgelehnt" in html


def test_unknown_therapist_or_call_is_404(logged_in_client):
    assert logged_in_client.get("/therapeuten/999/kalender").status_code == 404
    assert logged_in_client.get("/anrufe/999/kalendereintrag").status_code == 404


def test_coordinator_week_page_marks_full_and_free_slots(logged_in_client, clock):
    therapist = make_therapist()
    make_call(therapist, datetime(2026, 12, 8, 9, 0))  # Tuesday 10:00

    response = logged_in_client.get("/kalender/woche?datum=2026-12-08")

    html = response.get_data(as_text=True)
    assert "KW 50 · 07.12.–13.12.2026" in html
    assert 'data-slot="2026-12-08T10:00"' in html
    full = html.split('data-slot="2026-12-08T10:00"')[0].rsplit("<td", 1)[1]
    assert 'data-state="full"' in full
    free = html.split('data-slot="2026-12-08T10:05"')[0].rsplit("<td", 1)[1]
    assert 'data-state="free"' in free
    assert "Dr. Johanna Weiß" in html
    assert "1 geplanter Anruf" in html


@pytest.mark.parametrize("datum", ["9999-12-31", "0001-01-01"])
@pytest.mark.parametrize("path", ["/kalender/woche", "/therapeuten/{id}/kalender"])
def test_absurd_dates_fall_back_to_today(logged_in_client, datum, path):
    therapist = make_therapist()

    url = path.format(id=therapist.id) + f"?datum={datum}"
    response = logged_in_client.get(url)
    week = logged_in_client.get(url + "&ansicht=woche")

    assert response.status_code == 200
    assert week.status_code == 200
