"""Calendars in Chromium: navigation without reload, side panel, call week, ICS link.

Set SCREENSHOT_DIR to keep screenshots of the calendars.
"""

import re
from datetime import date, datetime

import pytest
from playwright.sync_api import Page, expect

from tests.browser_helpers import log_in, screenshot
from tests.factories import make_request, make_sent_email, make_therapist
from webapp.clock import FixedClock
from webapp.extensions import db
from webapp.models import CallOutcome, CallStatus, EmailReply, PhoneCall

pytestmark = pytest.mark.browser

NOW = datetime(2026, 12, 4, 9, 0)  # Friday 10:00 in Berlin
MARKER = "window.__calendarMarker"


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    """A browser set up like the staff's: German locale, Berlin time."""
    return {
        **browser_context_args,
        "locale": "de-DE",
        "timezone_id": "Europe/Berlin",
        "viewport": {"width": 1440, "height": 1000},
    }


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


def set_marker(page: Page) -> None:
    """Put a value on window that only survives while the page is not reloaded."""
    page.evaluate(f"{MARKER} = 'kept'")


def expect_no_reload(page: Page) -> None:
    """Check the window marker is still there: no full navigation happened."""
    assert page.evaluate(MARKER) == "kept"


def test_therapist_month_navigates_without_reload_and_opens_a_call(
    page: Page, live_server, coordinator, clock
):
    therapist = make_therapist(
        phone_availability=[
            {"weekday": 0, "start": "09:00", "end": "09:50"},
            {"weekday": 3, "start": "13:00", "end": "13:25"},
        ],
        next_contact_after=date(2026, 12, 18),
    )
    request = make_request(therapist, patient_pseudonym="P-ALPHA")
    email = make_sent_email(therapist, datetime(2026, 12, 1, 13, 35))
    db.session.add(
        EmailReply(
            email_id=email.id,
            received_on=date(2026, 12, 2),
            answers={str(request.id): "rueckruf"},
        )
    )
    db.session.commit()
    make_call(
        therapist,
        datetime(2026, 12, 3, 12, 5),
        CallStatus.COMPLETED,
        outcome=CallOutcome.REACHED,
        notes="Absage, Praxis voll bis Januar.",
        placement_requests=[request],
    )
    make_call(therapist, datetime(2027, 1, 4, 8, 0), placement_requests=[request])
    log_in(page, live_server, coordinator.email)

    page.goto(f"{live_server}/therapeuten/{therapist.id}/kalender")
    calendar = page.locator("#calendar")
    expect(calendar.get_by_role("heading", name="Dezember 2026")).to_be_visible()
    expect(calendar.locator(".cooling-note")).to_contain_text(
        "Kontaktpause bis 17.12.2026"
    )
    expect(calendar.locator(".phone-windows")).to_contain_text(
        "Telefonisch erreichbar: Mo 09:00–09:50, Do 13:00–13:25"
    )
    expect(calendar.locator("a.entry-email")).to_contain_text("14:35 E-Mail gesendet")
    expect(calendar.locator("a.entry-reply")).to_contain_text("Antwort erhalten")
    expect(calendar.locator('td[data-date="2026-12-17"]')).to_have_class(
        re.compile("is-cooling")
    )
    expect(calendar.locator('td[data-date="2026-12-18"]')).not_to_have_class(
        re.compile("is-cooling")
    )
    screenshot(page, "kalender-therapeut-monat")
    set_marker(page)

    # Forward one month: only the calendar is swapped, the URL follows.
    page.get_by_role("link", name="Monat vor").click()
    expect(calendar.get_by_role("heading", name="Januar 2027")).to_be_visible()
    assert "datum=2027-01-01" in page.url
    expect_no_reload(page)
    planned = calendar.locator("a.entry-call", has_text="Geplant")
    expect(planned).to_contain_text("09:00")

    # Back to today and open the reached call in the side panel.
    calendar.get_by_role("link", name="Heute").click()
    expect(calendar.get_by_role("heading", name="Dezember 2026")).to_be_visible()
    assert "datum=2026-12-04" in page.url
    calendar.locator("a.entry-call", has_text="Erreicht").click()
    panel = page.locator("#entry-slot #call-entry")
    expect(panel).to_contain_text("Anruf bei Dr. Johanna Weiß")
    expect(panel).to_contain_text("03.12.2026, 13:05–13:10 Uhr")
    expect(panel).to_contain_text("Absage, Praxis voll bis Januar.")
    expect(panel).to_contain_text("P-ALPHA")
    expect_no_reload(page)
    screenshot(page, "kalender-therapeut-anruf")

    # An email opens its preview in the same panel.
    calendar.locator("a.entry-email").click()
    expect(page.locator("#entry-slot #email-preview")).to_contain_text(
        "Frühere Anfrage"
    )
    expect(page.locator("#entry-slot #call-entry")).to_have_count(0)

    # The week view shows the phone windows as bands.
    page.get_by_role("link", name="Woche", exact=True).click()
    expect(calendar.get_by_role("heading")).to_contain_text("KW 49")
    expect(calendar.locator(".window-band").first).to_be_visible()
    assert "ansicht=woche" in page.url
    expect_no_reload(page)
    screenshot(page, "kalender-therapeut-woche")


def test_coordinator_week_shows_booked_and_free_slots(
    page: Page, live_server, coordinator, clock
):
    weiss = make_therapist()
    oeztuerk = make_therapist(
        salutation="Herr", title=None, first_name="Mehmet", last_name="Öztürk"
    )
    make_call(weiss, datetime(2026, 12, 8, 9, 0))  # Tuesday 10:00
    make_call(oeztuerk, datetime(2026, 12, 9, 13, 30))  # Wednesday 14:30
    make_call(oeztuerk, datetime(2026, 12, 15, 8, 0))  # next Tuesday 09:00
    log_in(page, live_server, coordinator.email)

    page.get_by_role("navigation").get_by_role("link", name="Kalender").click()
    expect(page.get_by_role("heading", name="Anrufwoche", exact=True)).to_be_visible()
    page.goto(f"{live_server}/kalender/woche?datum=2026-12-08")
    calendar = page.locator("#calendar")
    expect(calendar.get_by_role("heading")).to_have_text("KW 50 · 07.12.–13.12.2026")
    booked = calendar.locator('td[data-slot="2026-12-08T10:00"]')
    expect(booked).to_have_attribute("data-state", "full")
    expect(booked).to_contain_text("Dr. Johanna Weiß")
    free = calendar.locator('td[data-slot="2026-12-08T10:05"]')
    expect(free).to_have_attribute("data-state", "free")
    expect(calendar).to_contain_text("2 geplante Anrufe")
    screenshot(page, "kalender-anrufwoche")
    set_marker(page)

    page.get_by_role("link", name="Woche vor").click()
    expect(calendar.get_by_role("heading")).to_have_text("KW 51 · 14.12.–20.12.2026")
    assert "datum=2026-12-15" in page.url
    next_week = calendar.locator('td[data-slot="2026-12-15T09:00"]')
    expect(next_week).to_contain_text("Mehmet Öztürk")
    next_week.get_by_role("link").click()
    expect(page.locator("#entry-slot #call-entry")).to_contain_text(
        "15.12.2026, 09:00–09:05 Uhr"
    )
    expect_no_reload(page)


def test_renewing_the_calendar_link_asks_first(page: Page, live_server, coordinator):
    log_in(page, live_server, coordinator.email)
    page.goto(f"{live_server}/kalender/abo")
    link = page.get_by_label("Link zum Abonnieren")
    old = link.input_value()
    assert re.fullmatch(rf"{live_server}/kalender/[\w-]{{43}}\.ics", old)
    screenshot(page, "kalender-abo")

    messages = []

    def answer(dialog) -> None:
        messages.append(dialog.message)
        dialog.accept()

    page.once("dialog", answer)
    page.get_by_role("button", name="Link erneuern").click()

    expect(page.locator("#subscription-link .notice")).to_contain_text(
        "Der bisherige Link funktioniert nicht mehr."
    )
    assert "bisherige Link" in messages[0]
    screenshot(page, "kalender-abo-erneuert")
    assert link.input_value() != old
    assert page.request.get(old).status == 404
    assert page.request.get(link.input_value()).status == 200
