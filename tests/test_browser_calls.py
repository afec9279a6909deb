"""Working the calls in Chromium: "Heute", outcomes, the cooling period.

Set SCREENSHOT_DIR to keep screenshots of the pages.
"""

import re
from datetime import datetime

import pytest
from playwright.sync_api import Page, expect

from tests.browser_helpers import log_in, screenshot
from tests.factories import make_request, make_sent_email, make_therapist
from webapp.clock import FixedClock
from webapp.extensions import db
from webapp.models import CallReason, CallStatus, PhoneCall
from webapp.scheduling import plan_call

pytestmark = pytest.mark.browser

NOW = datetime(2026, 12, 7, 8, 0)  # Monday, 09:00 in Berlin
WINDOWS = [
    {"weekday": 0, "start": "09:00", "end": "09:50"},
    {"weekday": 2, "start": "09:00", "end": "09:50"},
]


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    """A browser set up like the staff's: German locale, Berlin time."""
    return {
        **browser_context_args,
        "locale": "de-DE",
        "timezone_id": "Europe/Berlin",
        "viewport": {"width": 1280, "height": 900},
    }


@pytest.fixture
def clock(app, monkeypatch) -> FixedClock:
    """The app's clock, standing on a Monday at 09:00 in Berlin."""
    fixed = FixedClock(NOW)
    monkeypatch.setitem(app.config, "CLOCK", fixed)
    return fixed


def seed_call(clock, last_name: str = "Weiß", requests: int = 2, **fields):
    """Store a therapist with windows today and plan a call for her requests."""
    therapist = make_therapist(
        last_name=last_name, phone_availability=WINDOWS, **fields
    )
    placements = [
        make_request(therapist, days_waiting=12 - index) for index in range(requests)
    ]
    call = plan_call(db.session, therapist, placements, CallReason.NO_EMAIL, clock)
    db.session.commit()
    return call


def board_groups(page: Page) -> dict[str, list[str]]:
    """Map each heading of the list to the ids of the cards below it."""
    return page.evaluate(
        """() => {
          const groups = {};
          let current = null;
          for (const node of document.querySelectorAll(
            "#call-board h2.board-group, #call-board .call-card"
          )) {
            if (node.matches("h2")) {
              current = node.textContent.trim();
              groups[current] = [];
            } else {
              groups[current].push(node.id);
            }
          }
          return groups;
        }"""
    )


def open_heute(page: Page, base_url: str) -> None:
    """Go to "Heute" through the main navigation."""
    page.get_by_role("link", name="Heute", exact=True).click()
    expect(page.get_by_role("heading", name="Heute", exact=True)).to_be_visible()


def test_no_answer_moves_the_call_to_a_later_day(
    page: Page, live_server, coordinator, clock
):
    call = seed_call(clock)
    [first, _] = call.placement_requests
    log_in(page, live_server, coordinator.email)
    open_heute(page, live_server)

    card = page.locator(f"#call-{call.id}")
    expect(card.locator(".call-time")).to_have_text("09:05")
    expect(card.get_by_role("heading")).to_have_text("Dr. Johanna Weiß")
    expect(card.get_by_role("link", name="030 1234567")).to_have_attribute(
        "href", "tel:0301234567"
    )
    expect(card.locator(".call-windows")).to_contain_text("Mo 09:00–09:50")
    expect(card).to_contain_text(first.patient_pseudonym)
    expect(card).to_contain_text("1. Versuch")
    history = card.locator("details.call-history")
    expect(history).not_to_have_attribute("open", "")
    screenshot(page, "heute")

    card.get_by_text("Ergebnis erfassen").click()
    form = card.locator("form.outcome-form")
    # Answers per request only show once "Erreicht" is chosen.
    expect(form.locator("fieldset.answers")).to_be_hidden()
    form.get_by_label("Keine Antwort").check()
    form.get_by_label("Notizen").fill("Mailbox voll, kein Freizeichen.")
    screenshot(page, "heute-ergebnis-formular")
    form.get_by_role("button", name="Ergebnis speichern").click()

    card = page.locator(f"#call-{call.id}")
    expect(card).to_contain_text("Neuer Versuch geplant: Mi 09.12.2026 09:00")
    expect(card.locator(".call-badge")).to_have_text("Keine Antwort")
    expect(card.get_by_text("Ergebnis erfassen")).to_have_count(0)
    # The counters follow at once, long before the next poll.
    expect(page.locator("#board-title")).to_contain_text("0 offen")
    expect(page.locator("#board-title")).to_contain_text("1 erledigt")
    expect(card.locator(".notice")).to_contain_text("Ergebnis gespeichert.")
    screenshot(page, "heute-neuer-versuch")

    card.get_by_role("link", name="Mi 09.12.2026 09:00").click()
    expect(page.locator(".call-card")).to_contain_text("2. Versuch")
    expect(page.locator(".call-card .call-date")).to_have_count(0)


def test_a_decline_shows_the_cooling_period_in_the_calendar(
    page: Page, live_server, coordinator, clock
):
    call = seed_call(clock, requests=1, last_name="Öztürk", salutation="Herr")
    log_in(page, live_server, coordinator.email)
    open_heute(page, live_server)

    card = page.locator(f"#call-{call.id}")
    card.get_by_text("Ergebnis erfassen").click()
    form = card.locator("form.outcome-form")
    form.get_by_label("Erreicht").check()
    answers = form.locator("fieldset.answers")
    expect(answers).to_be_visible()
    # Saving without an answer keeps the form open with the error beside it.
    form.get_by_role("button", name="Ergebnis speichern").click()
    card = page.locator(f"#call-{call.id}")
    expect(card.locator(".choice-group.has-error .error")).to_have_text(
        "Bitte Zusage, Absage oder Rückruf wählen."
    )
    form = card.locator("form.outcome-form")
    expect(form.get_by_label("Erreicht")).to_be_checked()
    form.get_by_label("Abgesagt").check()
    form.get_by_role("button", name="Ergebnis speichern").click()

    card = page.locator(f"#call-{call.id}")
    expect(card.locator(".cooling-state")).to_contain_text(
        "Kontakt wieder ab 04.01.2027"
    )
    expect(card.locator(".call-requests")).to_contain_text("Abgesagt")
    screenshot(page, "heute-absage")

    card.get_by_role("link", name="Kontaktkalender").click()
    expect(page).to_have_url(re.compile(rf"/therapeuten/{call.therapist_id}/kalender"))
    expect(page.locator(".cooling-note")).to_contain_text("Kontaktpause bis 03.01.2027")
    screenshot(page, "kalender-kontaktpause")


def test_the_list_refreshes_itself_but_not_under_an_open_form(
    page: Page, live_server, coordinator, clock
):
    call = seed_call(clock)
    page.clock.install(time=datetime(2026, 12, 7, 9, 0))
    log_in(page, live_server, coordinator.email)
    open_heute(page, live_server)
    page.evaluate("window.stillTheSamePage = true")

    # While the outcome form is open, a new call does not replace the list.
    card = page.locator(f"#call-{call.id}")
    card.get_by_text("Ergebnis erfassen").click()
    card.get_by_label("Besetzt").check()
    card.get_by_label("Notizen").fill("Halb getippt")
    late = seed_call(clock, last_name="Neumann")
    page.clock.run_for("00:35")
    page.wait_for_timeout(300)
    expect(page.locator(f"#call-{late.id}")).to_have_count(0)
    expect(card.get_by_label("Notizen")).to_have_value("Halb getippt")
    expect(card.get_by_label("Besetzt")).to_be_checked()

    # Folded again, the next poll brings the new call; open histories stay open.
    card.get_by_text("Ergebnis erfassen").click()
    page.evaluate("document.activeElement.blur()")
    card.locator("details.call-history > summary").click()
    page.clock.run_for("00:35")
    expect(page.locator(f"#call-{late.id}")).to_be_visible()
    expect(page.locator(f"#call-{call.id}-history")).to_have_attribute("open", "")
    assert page.evaluate("window.stillTheSamePage === true")


def test_moving_a_call_needs_a_reason(page: Page, live_server, coordinator, clock):
    call = seed_call(clock)
    log_in(page, live_server, coordinator.email)
    open_heute(page, live_server)

    card = page.locator(f"#call-{call.id}")
    card.get_by_text("Verschieben", exact=True).click()
    select = card.get_by_label("Neuer Termin")
    expect(select).to_contain_text("Nächster freier Termin (Mo 07.12.2026 09:10)")
    select.select_option("2026-12-09T08:25:00")
    card.get_by_role("button", name="Anruf verschieben").click()
    card = page.locator(f"#call-{call.id}")
    expect(card.locator(".error")).to_have_text("Bitte einen Grund angeben.")

    card.get_by_label("Grund", exact=True).fill("Praxis bittet um Mittwoch")
    card.get_by_role("button", name="Anruf verschieben").click()
    card = page.locator(f"#call-{call.id}")
    expect(card).to_contain_text("Verschoben auf Mi 09.12.2026 09:25.")
    expect(card).to_contain_text("Neuer Termin: Mi 09.12.2026 09:25")
    expect(page.locator("#board-title")).to_contain_text("0 offen")
    expect(page.locator("#board-title")).to_contain_text("1 verschoben")
    screenshot(page, "heute-verschoben")
    moved = db.session.query(PhoneCall).filter_by(previous_call_id=call.id).one()
    assert moved.planned_start == datetime(2026, 12, 9, 8, 25)


def test_cancelling_asks_first(page: Page, live_server, coordinator, clock):
    call = seed_call(clock)
    log_in(page, live_server, coordinator.email)
    open_heute(page, live_server)
    card = page.locator(f"#call-{call.id}")
    card.get_by_text("Absagen", exact=True).click()
    card.get_by_label("Grund der Absage").fill("Praxis vorübergehend geschlossen")

    dialogs = []
    page.once(
        "dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss())
    )
    card.get_by_role("button", name="Anruf absagen").click()
    expect(card.get_by_role("button", name="Anruf absagen")).to_be_visible()
    assert dialogs == ["Diesen Anruf wirklich absagen?"]

    page.once("dialog", lambda dialog: dialog.accept())
    card.get_by_role("button", name="Anruf absagen").click()
    expect(page.locator(f"#call-{call.id}")).to_contain_text(
        "Abgesagt: Praxis vorübergehend geschlossen"
    )
    expect(card.locator(".call-badge")).to_have_text("Abgesagt")
    expect(page.locator("#board-title")).to_contain_text("0 offen")
    expect(page.locator("#board-title")).to_contain_text("1 abgesagt")


def test_a_reply_recorded_from_the_history_cancels_the_follow_up(
    page: Page, live_server, coordinator, clock
):
    therapist = make_therapist(phone_availability=WINDOWS, last_name="Brandt")
    email = make_sent_email(therapist, datetime(2026, 11, 27, 10, 0))
    accepted, declined = (make_request(therapist) for _ in range(2))
    email.placement_requests = [accepted, declined]
    db.session.add(
        PhoneCall(
            therapist_id=therapist.id,
            planned_start=datetime(2026, 12, 4, 9, 0),  # Friday, never recorded
            status=CallStatus.PLANNED,
            attempt=2,
        )
    )
    follow_up = plan_call(
        db.session,
        therapist,
        [accepted, declined],
        CallReason.FOLLOW_UP,
        clock,
        source_email=email,
    )
    db.session.commit()
    log_in(page, live_server, coordinator.email)
    open_heute(page, live_server)

    overdue = page.locator(".call-card.is-overdue")
    expect(overdue.locator(".badge-overdue")).to_have_text("Überfällig")
    expect(overdue.locator(".call-date")).to_have_text("04.12.2026")
    card = page.locator(f"#call-{follow_up.id}")
    card.locator("details.call-history > summary").click()
    expect(card.locator(".history-email")).to_contain_text("Frühere Anfrage")
    screenshot(page, "heute-ueberfaellig-verlauf")

    card.locator(".history-email").get_by_role("link", name="Antwort erfassen").click()
    expect(page.get_by_role("heading", name="Antwort erfassen")).to_be_visible()
    expect(page.get_by_label("Eingegangen am")).to_have_value("07.12.2026")
    page.get_by_label("Eingegangen am").fill("05.12.2026")
    answers = page.locator("fieldset.answers")
    answers.locator(".choice-group", has_text=accepted.patient_pseudonym).get_by_label(
        "Zugesagt"
    ).check()
    answers.locator(".choice-group", has_text=declined.patient_pseudonym).get_by_label(
        "Abgesagt"
    ).check()
    page.get_by_label("Inhalt der Antwort").fill("Eine Person kann ich nehmen.")
    screenshot(page, "antwort-formular")
    page.get_by_role("button", name="Antwort speichern").click()

    panel = page.locator("#reply-panel")
    # The follow-up call and, for the cooling period, the overdue one.
    expect(panel.locator(".notice")).to_contain_text("2 geplante Anrufe abgesagt.")
    expect(panel.locator(".notice")).to_contain_text("Bestätigung")
    expect(panel.locator(".notice")).to_contain_text("Kontakt wieder ab 02.01.2027")
    expect(panel.locator(".reply-side .history-reply")).to_contain_text("05.12.2026")
    expect(panel.locator(".cooling-state")).to_contain_text("02.01.2027")
    screenshot(page, "antwort-gespeichert")

    # The coordinator lifts the cooling period again, with a reason.
    panel.get_by_text("Kontaktpause aufheben oder verkürzen").click()
    panel.get_by_label("Grund", exact=True).fill("Absage galt nur für eine Person")
    panel.get_by_role("button", name="Kontaktpause ändern").click()
    expect(panel.locator(".cooling-box .notice")).to_have_text(
        "Kontaktpause aufgehoben."
    )


def test_an_overdue_call_recorded_today_stays_under_erledigt(
    page: Page, live_server, coordinator, clock
):
    therapist = make_therapist(phone_availability=WINDOWS, last_name="Freitag")
    overdue = PhoneCall(
        therapist_id=therapist.id,
        planned_start=datetime(2026, 12, 4, 9, 0),  # Friday, never recorded
        status=CallStatus.PLANNED,
    )
    db.session.add(overdue)
    db.session.commit()
    today = seed_call(clock, requests=1)
    problems = []
    page.on(
        "console",
        lambda message: (
            problems.append(message.text) if message.type == "error" else None
        ),
    )
    log_in(page, live_server, coordinator.email)
    open_heute(page, live_server)
    summary = page.locator("#board-title")
    expect(summary).to_contain_text("2 offen")
    expect(summary).to_contain_text("1 überfällig")

    card = page.locator(f"#call-{overdue.id}")
    card.get_by_text("Ergebnis erfassen").click()
    card.get_by_label("Besetzt").check()
    card.get_by_role("button", name="Ergebnis speichern").click()
    expect(page.locator(f"#call-{overdue.id} .call-badge")).to_have_text("Besetzt")
    expect(summary).to_contain_text("1 offen")
    expect(summary).not_to_contain_text("überfällig")
    expect(summary).to_contain_text("1 erledigt")

    page.reload()
    expect(page.locator("#board-title")).to_contain_text("1 erledigt")
    assert board_groups(page) == {
        "Geplant": [f"call-{today.id}"],
        "Erledigt": [f"call-{overdue.id}"],
    }
    expect(page.locator(f"#call-{overdue.id} .call-date")).to_have_text("04.12.2026")
    screenshot(page, "heute-erledigt-ueberfaellig")
    assert problems == []
