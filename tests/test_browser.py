"""End to end in Chromium: batching, preview, approval, sending and the cap.

Set SCREENSHOT_DIR to keep screenshots of the drafts page and the preview.
"""

import os
import signal
from datetime import timedelta

import pytest
from playwright.sync_api import Page, expect
from redis import Redis
from rq import Queue
from rq.job import Job
from rq.registry import FinishedJobRegistry, StartedJobRegistry

from tests.browser_helpers import log_in, screenshot
from tests.factories import make_request, make_sent_email, make_therapist
from webapp.batching import run_batching
from webapp.clock import system_clock
from webapp.extensions import db
from webapp.queueing import DEFAULT_QUEUE

pytestmark = pytest.mark.browser

RECIPIENT = "praxis.weiss@example.org"


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    """A browser set up like the staff's: German locale, Berlin time."""
    return {**browser_context_args, "locale": "de-DE", "timezone_id": "Europe/Berlin"}


def test_draft_goes_from_batching_through_preview_and_approval_to_the_inbox(
    page: Page, live_server, worker_process, coordinator, sink
):
    therapist = make_therapist(
        salutation="Frau",
        title="Dr.",
        first_name="Anna",
        last_name="Weiß",
        email=RECIPIENT,
        federal_state="BY",
    )
    make_request(therapist, days_waiting=20, patient_pseudonym="P-ALPHA")
    make_request(therapist, days_waiting=5, patient_pseudonym="P-BETA")
    log_in(page, live_server, coordinator.email)

    # Batching runs in the worker; the status fragment polls until it is done.
    page.get_by_role("button", name="Entwürfe erstellen").click()
    expect(page.locator("#batching-status")).to_contain_text(
        "1 Entwurf mit 2 Anfragen erstellt.", timeout=20_000
    )
    row = page.locator("#drafts tr.draft-row", has_text="Weiß")
    expect(row).to_contain_text("Sammelanfrage")
    expect(row).to_contain_text("Bayern")
    expect(row).to_contain_text("seit heute")
    screenshot(page, "entwuerfe")

    # The preview opens beside the list, the HTML part in a sandboxed frame.
    row.get_by_role("link", name="Vorschau").click()
    preview = page.locator("#preview-slot #email-preview")
    expect(preview).to_contain_text(f"Dr. Anna Weiß <{RECIPIENT}>")
    expect(preview).to_contain_text("P-ALPHA")
    expect(preview).to_contain_text("P-BETA")
    frame = preview.frame_locator("iframe.email-frame")
    expect(frame.locator("body")).to_contain_text("Sehr geehrte Frau Dr. Weiß")
    expect(frame.locator("body")).to_contain_text("P-ALPHA")
    expect(preview.locator("pre.email-text")).to_contain_text(
        "Sehr geehrte Frau Dr. Weiß"
    )
    assert preview.locator("iframe.email-frame").get_attribute("sandbox") == ""
    subject = preview.locator("h2").inner_text()
    screenshot(page, "vorschau")

    # Hold the worker so the email list shows it queued before it goes out.
    os.kill(worker_process.pid, signal.SIGSTOP)
    try:
        preview.get_by_role("button", name="Freigeben").click()
        expect(preview.locator(".badge").first).to_have_text("In Warteschlange")
        expect(page.locator("#drafts")).to_contain_text("Keine Entwürfe")

        page.get_by_role("link", name="E-Mails", exact=True).click()
        sent_row = page.locator("#email-results tr", has_text="Weiß")
        expect(sent_row.locator(".badge")).to_have_text("In Warteschlange")
        page.evaluate("window.stillTheSamePage = true")
    finally:
        os.kill(worker_process.pid, signal.SIGCONT)

    expect(sent_row.locator(".badge")).to_have_text("Gesendet", timeout=20_000)
    assert page.evaluate("window.stillTheSamePage === true")
    expect(page.locator(".count-gesendet .count-number")).to_have_text("1")
    screenshot(page, "emails")

    sink.wait_for(1)
    [message] = sink.parsed()
    assert message["To"].addresses[0].addr_spec == RECIPIENT
    assert message["Subject"] == subject
    assert "ä" in message["Subject"]
    plain = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "Sehr geehrte Frau Dr. Weiß" in plain
    assert "Sehr geehrte Frau Dr. Weiß" in html
    assert message.get_content_type() == "multipart/alternative"


def test_selection_approval_keeps_a_capped_draft_and_says_why(
    page: Page, live_server, coordinator
):
    fresh = make_therapist(last_name="Frisch")
    capped = make_therapist(last_name="Begrenzt")
    make_request(fresh)
    make_request(capped)
    run_batching(db.session, system_clock)
    make_sent_email(capped, system_clock.now() - timedelta(days=2))
    log_in(page, live_server, coordinator.email)

    for name in ("Frisch", "Begrenzt"):
        page.locator("tr.draft-row", has_text=name).get_by_role("checkbox").check()
    page.get_by_role("button", name="Ausgewählte freigeben").click()

    refusal = page.locator("tr.refusal")
    expect(refusal).to_contain_text("Wochenlimit erreicht")
    expect(page.locator("tr.draft-row", has_text="Frisch")).to_have_count(0)
    expect(page.locator("tr.draft-row", has_text="Begrenzt")).to_be_visible()
    expect(page.locator("#drafts .notice")).to_contain_text("1 E-Mail freigegeben")
    screenshot(page, "entwuerfe-wochenlimit")


def test_discarding_asks_first(page: Page, live_server, coordinator):
    make_request(make_therapist(last_name="Verworfen"))
    run_batching(db.session, system_clock)
    log_in(page, live_server, coordinator.email)
    questions: list[str] = []

    def answer(dialog) -> None:
        questions.append(dialog.message)
        dialog.accept()

    page.on("dialog", answer)
    row = page.locator("tr.draft-row", has_text="Verworfen")
    row.get_by_role("button", name="Verwerfen").click()

    expect(page.locator("#drafts")).to_contain_text("1 Entwurf verworfen")
    expect(row).to_have_count(0)
    assert questions and "verwerfen?" in questions[0]


def batching_jobs(redis_url: str) -> list[str]:
    """Return the ids of every batching job queued, running or finished."""
    connection = Redis.from_url(redis_url)
    queue = Queue(DEFAULT_QUEUE, connection=connection)
    ids = [
        *queue.job_ids,
        *StartedJobRegistry(queue=queue).get_job_ids(),
        *FinishedJobRegistry(queue=queue).get_job_ids(),
    ]
    jobs = Job.fetch_many(ids, connection=connection)
    return [job.id for job in jobs if job and job.func_name.endswith("run_batching")]


def test_double_click_on_batching_runs_once_and_shows_its_result(
    page: Page, live_server, worker_process, coordinator, redis_url
):
    for name in ("Erste", "Zweite"):
        therapist = make_therapist(last_name=name)
        make_request(therapist)
    make_request(therapist)
    log_in(page, live_server, coordinator.email)

    # A hand's double-click: the second click comes after the first request
    # has already returned and the button is enabled again.
    button = page.get_by_role("button", name="Entwürfe erstellen")
    button.click()
    page.wait_for_timeout(250)
    button.click()

    status = page.locator("#batching-status")
    expect(status).to_contain_text(
        "2 Entwürfe mit 3 Anfragen erstellt.", timeout=20_000
    )
    expect(page.locator("tr.draft-row")).to_have_count(2)
    assert len(batching_jobs(redis_url)) == 1


def test_approving_in_a_second_tab_explains_it_was_already_approved(
    page: Page, live_server, coordinator
):
    make_request(make_therapist(last_name="Zweifach"))
    run_batching(db.session, system_clock)
    log_in(page, live_server, coordinator.email)
    other_tab = page.context.new_page()
    other_tab.goto(live_server)

    page.locator("tr.draft-row", has_text="Zweifach").get_by_role(
        "button", name="Freigeben"
    ).click()
    expect(page.locator("#drafts .notice")).to_contain_text("1 E-Mail freigegeben")
    other_tab.locator("tr.draft-row", has_text="Zweifach").get_by_role(
        "button", name="Freigeben"
    ).click()

    notice = other_tab.locator("#drafts .notice")
    expect(notice).to_have_text("1 E-Mail war bereits freigegeben.")
    expect(other_tab.get_by_text("Auswahl aufheben")).to_have_count(0)
    expect(other_tab.locator("tr.draft-row")).to_have_count(0)


def test_preview_status_follows_the_email_until_it_is_sent(
    page: Page, live_server, worker_process, coordinator, sink
):
    therapist = make_therapist(last_name="Verfolgt", email=RECIPIENT)
    make_request(therapist)
    run_batching(db.session, system_clock)
    log_in(page, live_server, coordinator.email)
    status_polls: list[str] = []
    page.on(
        "request",
        lambda request: (
            status_polls.append(request.url)
            if request.url.endswith("/status")
            else None
        ),
    )

    page.locator("tr.draft-row", has_text="Verfolgt").get_by_role(
        "link", name="Vorschau"
    ).click()
    preview = page.locator("#preview-slot #email-preview")
    preview.get_by_role("button", name="Freigeben").click()

    status = preview.locator("#email-status")
    expect(status.locator(".badge")).to_have_text("Gesendet", timeout=20_000)
    expect(status.get_by_role("link", name="Antwort erfassen")).to_be_visible()
    expect(preview.locator("#email-attempts")).to_contain_text("Angenommen")
    screenshot(page, "polish-vorschau-gesendet")
    assert status_polls, "the status never polled"
    polls_when_sent = len(status_polls)
    page.wait_for_timeout(2_500)
    assert len(status_polls) == polls_when_sent

    calendar = status.get_by_role("link", name="Kontaktkalender")
    assert calendar.get_attribute("href") == f"/therapeuten/{therapist.id}/kalender"


@pytest.mark.parametrize(("width", "height"), [(1440, 900), (1024, 768)])
def test_drafts_keep_one_line_of_actions_beside_the_open_preview(
    page: Page, live_server, coordinator, width, height
):
    names = ["Weiß", "Öztürk", "Müller-Lüdenscheidt", "Berg", "Schmidt"]
    for number, name in enumerate(names):
        therapist = make_therapist(last_name=name, federal_state="NW")
        for _ in range(number % 3 + 1):
            make_request(therapist, days_waiting=10 + number)
    run_batching(db.session, system_clock)
    page.set_viewport_size({"width": width, "height": height})
    log_in(page, live_server, coordinator.email)

    rows = page.locator("tr.draft-row")
    rows.first.get_by_role("link", name="Vorschau").click()
    expect(page.locator("#preview-slot #email-preview")).to_be_visible()
    screenshot(page, f"polish-entwuerfe-vorschau-{width}x{height}")

    for index in range(rows.count()):
        row = rows.nth(index)
        assert row.bounding_box()["height"] < 80
        tops = {
            round(row.locator(f".row-actions {tag}").nth(n).bounding_box()["y"])
            for tag, count in (("a", 1), ("button", 2))
            for n in range(count)
        }
        assert len(tops) == 1, f"actions of row {index} wrap"
    wrap = page.locator("#drafts .table-wrap")
    assert wrap.evaluate("element => element.scrollWidth <= element.clientWidth")


def test_a_start_date_after_the_end_shows_a_hint_beside_it(
    page: Page, live_server, coordinator
):
    make_sent_email(make_therapist(), system_clock.now() - timedelta(days=1))
    log_in(page, live_server, coordinator.email)
    page.get_by_role("link", name="E-Mails", exact=True).click()

    page.get_by_label("Bis").fill("2026-12-02")
    page.get_by_label("Von").fill("2026-12-03")

    expect(page.locator("#date_from-hint")).to_have_text("Liegt nach „Bis“.")
    expect(page.locator("#email-results")).to_contain_text(
        "Ungültige Filter wurden ignoriert"
    )
    screenshot(page, "polish-emails-datumshinweis")

    page.get_by_label("Von").fill("2026-12-01")
    expect(page.locator("#date_from-hint")).to_be_empty()
