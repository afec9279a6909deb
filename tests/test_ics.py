"""ICS feed of planned calls behind a personal secret link."""

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar
from sqlalchemy import select

from tests.conftest import create_user
from tests.factories import make_request, make_therapist
from webapp.calendars import planned_calls_for_feed
from webapp.clock import FixedClock
from webapp.extensions import db
from webapp.ics import calls_ics
from webapp.models import AuditEntry, CallOutcome, CallStatus, PhoneCall, User

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2027, 3, 20, 9, 0)  # Saturday before the spring change


@pytest.fixture
def clock(app, monkeypatch) -> FixedClock:
    """The app's clock, standing at NOW."""
    fixed = FixedClock(NOW)
    monkeypatch.setitem(app.config, "CLOCK", fixed)
    return fixed


def make_call(therapist, planned_start, status=CallStatus.PLANNED, **fields):
    """Store a call at `planned_start` (naive UTC)."""
    call = PhoneCall(
        therapist_id=therapist.id, planned_start=planned_start, status=status, **fields
    )
    db.session.add(call)
    db.session.commit()
    return call


def token_of(user: User) -> str:
    """Read the user's current feed token from the database."""
    return db.session.scalar(select(User.calendar_token).where(User.id == user.id))


def feed_token(client) -> str:
    """Open the subscription page and read the token from the shown link."""
    html = client.get("/kalender/abo").get_data(as_text=True)
    return re.search(r"/kalender/([\w-]+)\.ics", html).group(1)


def test_feed_has_the_planned_calls_in_berlin_time(client, clock):
    user = create_user()
    user.calendar_token = "geheim-token"
    db.session.commit()
    therapist = make_therapist(phone="030 1234567")
    alpha = make_request(therapist, patient_pseudonym="P-ALPHA")
    beta = make_request(therapist, patient_pseudonym="P-BETA", diagnosis_code="F41.0")
    before_change = make_call(
        therapist, datetime(2027, 3, 26, 8, 0), placement_requests=[alpha, beta]
    )
    after_change = make_call(therapist, datetime(2027, 3, 29, 7, 5))
    week_ago = make_call(therapist, NOW - timedelta(days=6, hours=23))
    make_call(therapist, NOW - timedelta(days=7, hours=1))  # too old
    make_call(therapist, NOW + timedelta(days=60, hours=1))  # too far ahead
    make_call(
        therapist,
        datetime(2027, 3, 22, 8, 0),
        CallStatus.COMPLETED,
        outcome=CallOutcome.REACHED,
    )
    make_call(therapist, datetime(2027, 3, 23, 8, 0), CallStatus.CANCELLED)

    response = client.get("/kalender/geheim-token.ics", base_url="https://calls.test")

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/calendar; charset=utf-8"
    calendar = Calendar.from_ical(response.data)
    events = calendar.events
    assert [event["UID"] for event in events] == [
        f"call-{week_ago.id}@calls.test",
        f"call-{before_change.id}@calls.test",
        f"call-{after_change.id}@calls.test",
    ]
    starts = [event.start for event in events]
    assert starts[1] == datetime(2027, 3, 26, 9, 0, tzinfo=BERLIN)
    assert starts[2] == datetime(2027, 3, 29, 9, 5, tzinfo=BERLIN)
    assert all(str(start.tzinfo) == "Europe/Berlin" for start in starts)
    assert events[1].end - events[1].start == timedelta(minutes=5)
    assert [tz.tz_name for tz in calendar.timezones] == ["Europe/Berlin"]

    event = events[1]
    assert event["SUMMARY"] == "Anruf: Dr. Johanna Weiß"
    assert (
        event["DESCRIPTION"] == "Telefon: 030 1234567\nPlatzanfragen: P-ALPHA, P-BETA"
    )
    assert event.last_modified is not None
    assert b"F41.0" not in response.data and b"F32.1" not in response.data


def test_the_uid_stays_the_same_when_a_call_moves(app):
    therapist = make_therapist()
    call = make_call(therapist, datetime(2027, 3, 22, 8, 0))
    first = Calendar.from_ical(calls_ics([call], "calls.test", NOW)).events[0]

    call.planned_start = datetime(2027, 3, 23, 8, 0)
    db.session.commit()
    moved = Calendar.from_ical(calls_ics([call], "calls.test", NOW)).events[0]

    assert moved["UID"] == first["UID"] == f"call-{call.id}@calls.test"
    assert moved.start.date().isoformat() == "2027-03-23"


def test_an_empty_feed_is_still_a_calendar(app):
    calendar = Calendar.from_ical(calls_ics([], "calls.test", NOW))

    assert calendar.events == []
    assert calendar["X-WR-CALNAME"] == "Geplante Anrufe"


def test_feed_window_is_seven_days_back_to_sixty_ahead(app):
    therapist = make_therapist()
    inside = [
        make_call(therapist, NOW - timedelta(days=7)),
        make_call(therapist, NOW + timedelta(days=60) - timedelta(minutes=5)),
    ]
    make_call(therapist, NOW + timedelta(days=60))

    assert planned_calls_for_feed(db.session, NOW) == inside


@pytest.mark.parametrize("token", ["unbekannt", "", "x" * 43])
def test_an_unknown_token_is_404(client, token):
    create_user().calendar_token = "richtig"
    db.session.commit()

    assert client.get(f"/kalender/{token}.ics").status_code == 404


def test_an_inactive_users_link_is_dead(client):
    user = create_user()
    user.calendar_token, user.active = "alt", False
    db.session.commit()

    assert client.get("/kalender/alt.ics").status_code == 404


def test_the_subscription_page_creates_the_link_once(logged_in_client, coordinator):
    assert token_of(coordinator) is None

    first = feed_token(logged_in_client)
    second = feed_token(logged_in_client)

    assert first == second == token_of(coordinator)
    assert len(first) >= 43
    assert logged_in_client.get(f"/kalender/{first}.ics").status_code == 200


def test_renewing_the_link_kills_the_old_one_and_is_audited(
    logged_in_client, coordinator, clock
):
    old = feed_token(logged_in_client)

    response = logged_in_client.post(
        "/kalender/abo/erneuern", headers={"HX-Request": "true"}
    )

    html = response.get_data(as_text=True)
    new = token_of(coordinator)
    assert new != old
    assert f"/kalender/{new}.ics" in html
    assert "funktioniert nicht mehr" in html
    assert logged_in_client.get(f"/kalender/{old}.ics").status_code == 404
    assert logged_in_client.get(f"/kalender/{new}.ics").status_code == 200
    entry = db.session.scalar(select(AuditEntry))
    assert (entry.action, entry.object_type, entry.object_id) == (
        "calendar_link_renewed",
        "users",
        coordinator.id,
    )
    assert (entry.reason, entry.user_id, entry.created_at) == (
        "Link erneuert",
        coordinator.id,
        NOW,
    )


def test_renewing_without_htmx_redirects_back(logged_in_client):
    response = logged_in_client.post("/kalender/abo/erneuern")

    assert response.status_code == 302
    assert response.headers["Location"].endswith("/kalender/abo")


def test_renewing_needs_the_csrf_token(app, client, coordinator, monkeypatch):
    # Sign in with CSRF checks off for a moment, then switch them back on.
    monkeypatch.setitem(app.config, "WTF_CSRF_ENABLED", False)
    client.post("/login", data={"email": coordinator.email, "password": "geheim-123"})
    monkeypatch.setitem(app.config, "WTF_CSRF_ENABLED", True)

    response = client.post("/kalender/abo/erneuern")

    assert response.status_code == 400
    assert db.session.scalar(select(AuditEntry)) is None
