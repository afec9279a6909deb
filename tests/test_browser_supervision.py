"""Supervision end to end in Chromium: failure report, requeue, alerts, roles.

Set SCREENSHOT_DIR to keep screenshots of the supervision pages.
"""

import re
from datetime import timedelta
from email import message_from_bytes, policy

import pytest
from playwright.sync_api import Page, expect
from rq import Queue, Worker

from tests.browser_helpers import log_in, screenshot
from tests.conftest import create_user
from tests.factories import make_therapist
from tests.test_supervision import make_email, store_alert, store_attempt
from webapp.clock import system_clock
from webapp.extensions import db
from webapp.models import AlertKind, AttemptOutcome, Email, EmailStatus, Role

pytestmark = pytest.mark.browser

MESSAGE_ID = "<anfrage-550@therapieplatz.example>"


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    """A browser set up like the staff's: German locale, Berlin time."""
    return {**browser_context_args, "locale": "de-DE", "timezone_id": "Europe/Berlin"}


@pytest.fixture
def supervisor(app):
    """A stored supervisor with password geheim-123."""
    return create_user(
        "aufsicht@example.org", role=Role.SUPERVISOR, name="Sam Aufsicht"
    )


@pytest.fixture
def beating_worker(redis_conn):
    """A registered RQ worker with a fresh heartbeat, so no silence alert."""
    worker = Worker([Queue("default", connection=redis_conn)], connection=redis_conn)
    worker.register_birth()
    yield worker
    worker.register_death()


def failed_with_550() -> Email:
    """A request email the server refused with 550 an hour ago."""
    therapist = make_therapist(
        first_name="Anna", last_name="Weiß", email="praxis.weis@example.org"
    )
    at = system_clock.now() - timedelta(hours=1)
    return make_email(
        therapist,
        recipient="praxis.weis@example.org",
        message_id=MESSAGE_ID,
        attempts=[
            (
                AttemptOutcome.PERMANENT,
                550,
                "5.1.1 <praxis.weis@example.org>: Recipient address rejected",
                at,
            )
        ],
    )


def test_supervisor_requeues_a_failed_email_to_a_corrected_address(
    page: Page, live_server, worker_process, beating_worker, supervisor, sink
):
    email = failed_with_550()
    retrying = make_email(
        status=EmailStatus.QUEUED,
        retry_count=1,
        next_attempt_at=system_clock.now() + timedelta(minutes=10),
        attempts=[
            (
                AttemptOutcome.TRANSIENT,
                None,
                "Verbindung fehlgeschlagen",
                system_clock.now(),
            )
        ],
    )
    log_in(page, live_server, supervisor.email)

    page.get_by_role("link", name="Supervision").click()
    expect(page.get_by_role("heading", name="Fehlerbericht")).to_be_visible()
    row = page.locator(f"#failure-{email.id}")
    expect(row).to_contain_text("Adresse unbekannt")
    expect(row).to_contain_text("550")
    expect(row).to_contain_text("Recipient address rejected")
    expect(page.locator(f"#failure-{retrying.id}")).to_contain_text(
        "Server nicht erreichbar"
    )
    screenshot(page, "supervision-fehlerbericht")

    # The error-class filter narrows the list without leaving the page.
    page.get_by_label("Fehlerart", exact=True).select_option(label="Adresse unbekannt")
    expect(page.locator(f"#failure-{retrying.id}")).to_have_count(0)
    expect(page).to_have_url(
        re.compile(r"/supervision/fehler\?.*error=adresse_unbekannt")
    )

    row.get_by_role("link", name="Verlauf").click()
    panel = page.locator("#timeline-slot #email-timeline")
    expect(panel).to_contain_text("Dauerhafter Fehler")
    expect(panel).to_contain_text("Recipient address rejected")
    panel.get_by_label("Grund für das erneute Senden").fill(
        "Adresse telefonisch in der Praxis erfragt"
    )
    panel.get_by_label("Korrigierte Adresse").fill("praxis.weiss@example.org")
    screenshot(page, "supervision-verlauf")
    panel.get_by_role("button", name="Erneut senden").click()

    expect(panel.locator(".notice")).to_contain_text("Erneut eingereiht")
    expect(page.locator(f"#failure-{email.id}")).to_have_count(0)
    # The status line polls until the worker has sent it; the panel reloads.
    expect(panel.locator("#delivery-status")).to_contain_text(
        "Gesendet am", timeout=20_000
    )
    expect(panel.locator("#delivery-status")).to_contain_text(
        "praxis.weiss@example.org"
    )
    expect(panel.locator(".attempts-table")).to_contain_text("Angenommen")
    expect(panel.locator(".interventions")).to_contain_text("Adresse korrigiert")
    screenshot(page, "supervision-erneut-gesendet")

    sink.wait_for(1)
    [(_, recipients, raw)] = sink.messages
    assert recipients == ["praxis.weiss@example.org"]
    message = message_from_bytes(raw, policy=policy.default)
    assert message["Message-ID"] == MESSAGE_ID
    assert message["To"].addresses[0].addr_spec == "praxis.weiss@example.org"
    db.session.expire_all()
    assert db.session.get(Email, email.id).status == EmailStatus.SENT


def test_cancel_asks_first_and_needs_a_reason(page: Page, live_server, supervisor):
    email = failed_with_550()
    log_in(page, live_server, supervisor.email)
    questions: list[str] = []

    def answer(dialog) -> None:
        questions.append(dialog.message)
        dialog.accept()

    page.on("dialog", answer)
    page.goto(f"{live_server}/supervision/emails/{email.id}")
    page.get_by_label("Grund für den Abbruch").fill("Praxis hat geschlossen")
    page.get_by_role("button", name="Abbrechen").click()

    expect(page.locator("#email-timeline .notice[role=status]")).to_contain_text(
        "E-Mail abgebrochen"
    )
    expect(page.locator("#email-timeline .badge").first).to_have_text("Verworfen")
    assert questions and "abbrechen?" in questions[0]


def test_supervisor_acknowledges_an_alert_and_sees_it_gone(
    page: Page, live_server, supervisor, beating_worker
):
    failed = store_alert(
        AlertKind.EMAIL_FAILED,
        "email:41",
        system_clock.now() - timedelta(minutes=30),
        "E-Mail 41 ist endgültig fehlgeschlagen.",
    )
    rate = store_alert(
        AlertKind.FAILURE_RATE,
        "last_hour",
        system_clock.now(),
        "Fehlerquote der letzten Stunde: 40% von 25 Zustellversuchen (Schwelle 20%).",
    )
    log_in(page, live_server, supervisor.email)
    badge = page.locator(".mainnav .nav-badge")
    expect(badge).to_contain_text("2")

    page.get_by_role("link", name="Supervision").click()
    page.get_by_role("link", name="Warnungen", exact=True).click()
    items = page.locator(".alert-list .alert-item")
    expect(items).to_have_count(2)
    expect(items.first).to_contain_text("Hohe Fehlerquote")
    expect(page.locator(f"#alert-{failed.id}")).to_contain_text(
        "E-Mail endgültig fehlgeschlagen"
    )
    screenshot(page, "supervision-warnungen")

    page.locator(f"#alert-{rate.id}").get_by_role("button", name="Bestätigen").click()

    expect(page.locator("#alerts .notice")).to_contain_text("Warnung bestätigt.")
    expect(page.locator(f"#alert-{rate.id}")).to_have_count(0)
    expect(page.locator(f"#alert-{failed.id}")).to_be_visible()
    expect(page.locator("#alerts table")).to_contain_text("Sam Aufsicht")
    expect(badge).to_contain_text("1")
    page.reload()
    expect(page.locator(f"#alert-{rate.id}")).to_have_count(0)


def test_charts_are_drawn_from_the_json_endpoint(
    page: Page, live_server, supervisor, beating_worker
):
    now = system_clock.now()
    sent = make_email(status=EmailStatus.SENT)
    failed = make_email()
    for hours in range(0, 20, 2):
        for _ in range(hours % 5 + 2):
            store_attempt(sent, AttemptOutcome.SENT, now - timedelta(hours=hours))
        store_attempt(failed, AttemptOutcome.TRANSIENT, now - timedelta(hours=hours))
    for days in range(1, 7):
        store_attempt(sent, AttemptOutcome.SENT, now - timedelta(days=days))
    store_attempt(failed, AttemptOutcome.PERMANENT, now - timedelta(minutes=5))
    log_in(page, live_server, supervisor.email)

    page.goto(f"{live_server}/supervision/diagramme")
    charts = page.locator("#charts")
    expect(charts).to_have_attribute("data-charts-ready", "true")
    assert page.evaluate(
        "[...document.querySelectorAll('canvas[data-chart]')]"
        ".every((canvas) => Chart.getChart(canvas) !== undefined)"
    )
    expect(charts.locator(".chart-table").first).to_contain_text("Gesendet")
    page.wait_for_timeout(500)  # let the bars finish growing for the picture
    screenshot(page, "supervision-diagramme")

    page.get_by_role("link", name="Letzte 7 Tage").click()
    expect(page).to_have_url(f"{live_server}/supervision/diagramme?zeitraum=7d")
    expect(page.locator("#charts h2").first).to_have_text("Zustellversuche je Tag")
    expect(page.locator("#charts")).to_have_attribute("data-charts-ready", "true")
    labels = page.evaluate(
        "Chart.getChart(document.querySelector('canvas[data-chart=counts]'))"
        ".data.labels.length"
    )
    assert labels == 7


def test_coordinator_cannot_reach_supervision_pages(
    page: Page, live_server, coordinator
):
    log_in(page, live_server, coordinator.email)

    expect(page.locator(".mainnav")).not_to_contain_text("Supervision")
    for path in (
        "/supervision/fehler",
        "/supervision/warnungen",
        "/supervision/diagramme",
    ):
        response = page.goto(f"{live_server}{path}")
        assert response.status == 403
        expect(page.get_by_role("heading", name="Kein Zugriff")).to_be_visible()
        expect(page.locator("main")).to_contain_text("Koordination")
    screenshot(page, "supervision-kein-zugriff")
