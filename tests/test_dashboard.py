"""Dashboard pages: drafts, preview, approval, email list, with and without htmx."""

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from flask import render_template
from rq import Queue, SimpleWorker
from sqlalchemy import select

from tests.factories import make_request, make_sent_email, make_therapist
from webapp.batching import run_batching
from webapp.clock import FixedClock, system_clock
from webapp.email_lists import EmailFilters, count_by_status, email_page, statuses_of
from webapp.extensions import db
from webapp.models import (
    AttemptOutcome,
    DeliveryAttempt,
    Email,
    EmailKind,
    EmailStatus,
)
from webapp.queueing import DEFAULT_QUEUE, PRIORITY_QUEUES
from webapp.web import dashboard as dashboard_views

HTMX = {"HX-Request": "true"}


def text_of(response) -> str:
    return response.get_data(as_text=True)


def draft_for(therapist, requests: int = 1, clock=system_clock) -> Email:
    """Give the therapist open requests and batch them into one draft."""
    for _ in range(requests):
        make_request(therapist)
    run_batching(db.session, clock)
    return db.session.scalar(
        select(Email).filter_by(therapist_id=therapist.id, status=EmailStatus.DRAFT)
    )


def stored_email(therapist, status: EmailStatus, when: datetime, **fields) -> Email:
    """Store an approved email in the given status at `when`."""
    values = {
        "therapist_id": therapist.id,
        "kind": EmailKind.BATCH_REQUEST,
        "subject": f"Anfrage an {therapist.last_name}",
        "body_html": "<p>Anfrage</p>",
        "body_text": "Anfrage",
        "recipient_email": therapist.email,
        "recipient_name": therapist.full_name,
        "sender_email": "vermittlung@therapieplatz.example",
        "sender_name": "Therapieplatz-Vermittlung",
        "status": status,
        "queued_at": when,
        "created_at": when,
    }
    if status == EmailStatus.SENT:
        values["sent_at"] = when
    values.update(fields)
    email = Email(**values)
    db.session.add(email)
    db.session.commit()
    return email


def status_of(email_id: int) -> str:
    db.session.expire_all()
    return db.session.get(Email, email_id).status


def run_worker(app, redis_conn) -> None:
    """Run the queued housekeeping jobs, such as batching, to the end."""
    worker = SimpleWorker(
        [Queue(DEFAULT_QUEUE, connection=redis_conn)], connection=redis_conn
    )
    # A fresh app context, so the job's session cleanup leaves ours alone.
    with app.app_context():
        worker.work(burst=True)


def notice_in(html: str) -> tuple[str, str]:
    """Return the level and text of the notice above the list or preview."""
    match = re.search(r'<p class="notice notice-(\w+)" role="status">(.*?)</p>', html)
    assert match, "no notice in the answer"
    return match.group(1), match.group(2)


# Pages and fragments ---------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "fragment_marker"),
    [
        ("/", 'id="drafts"'),
        ("/emails", 'id="email-results"'),
    ],
)
def test_page_is_whole_for_browsers_and_a_fragment_for_htmx(
    logged_in_client, path, fragment_marker
):
    page = text_of(logged_in_client.get(path))
    fragment = text_of(logged_in_client.get(path, headers=HTMX))

    assert "<html" in page and fragment_marker in page
    assert "<html" not in fragment and fragment.lstrip().startswith("<section")
    assert fragment_marker in fragment


def test_history_restore_gets_the_whole_page(logged_in_client):
    response = logged_in_client.get(
        "/", headers={**HTMX, "HX-History-Restore-Request": "true"}
    )

    assert "<html" in text_of(response)


def test_drafts_page_lists_drafts_with_german_kind_state_and_age(app, logged_in_client):
    therapist = make_therapist(federal_state="BY")
    two_days_ago = system_clock.now() - timedelta(days=2)
    draft_for(therapist, requests=2, clock=FixedClock(two_days_ago))

    html = text_of(logged_in_client.get("/"))

    assert "Dr. Johanna Weiß" in html
    assert "Bayern" in html
    assert "Sammelanfrage" in html
    assert "seit 2 Tagen" in html
    assert two_days_ago.strftime("%d.%m.") in html
    assert "Priorität 3" in html and "Anfragen" in html
    assert 'hx-confirm="Entwurf an Dr. Johanna Weiß verwerfen?' in html


def test_drafts_are_grouped_by_priority_confirmation_first(app, logged_in_client):
    from webapp.drafting import create_draft

    request_draft = draft_for(make_therapist(last_name="Anfang"))
    confirmed = make_therapist(last_name="Bestätigt")
    create_draft(
        db.session,
        confirmed,
        EmailKind.CONFIRMATION,
        [make_request(confirmed)],
        system_clock,
    )
    db.session.commit()

    html = text_of(logged_in_client.get("/"))

    assert html.index("Bestätigungen") < html.index("Priorität 3")
    assert html.index("Bestätigt") < html.index(f'id="draft-{request_draft.id}"')


def test_drafts_are_paginated(app, logged_in_client):
    for number in range(55):
        make_request(make_therapist(last_name=f"Nummer{number:02d}"))
    run_batching(db.session, system_clock)

    first = text_of(logged_in_client.get("/"))
    second = text_of(logged_in_client.get("/?page=2", headers=HTMX))

    assert first.count('class="draft-row') == 50
    assert "Seite 1 von 2" in first and "55 Entwürfe" in first
    assert second.count('class="draft-row') == 5


def test_select_all_checks_every_draft_on_the_page(app, logged_in_client):
    first = draft_for(make_therapist())
    second = draft_for(make_therapist())

    html = text_of(logged_in_client.get("/?auswahl=alle", headers=HTMX))

    for email in (first, second):
        assert re.search(
            rf'value="{email.id}" form="draft-selection"[^>]*checked', html
        )


# Preview ---------------------------------------------------------------------


def test_preview_shows_the_exact_email_as_page_and_fragment(app, logged_in_client):
    therapist = make_therapist(email="weiss@praxis.example")
    email = draft_for(therapist, requests=2)
    url = f"/emails/{email.id}"

    page = text_of(logged_in_client.get(url))
    fragment = text_of(logged_in_client.get(url, headers=HTMX))

    assert "<html" in page and "<html" not in fragment
    for html in (page, fragment):
        assert "Dr. Johanna Weiß &lt;weiss@praxis.example&gt;" in html
        assert "Therapieplatz-Vermittlung &lt;vermittlung@" in html
        assert email.subject in html
        assert re.search(r"<iframe[^>]* sandbox[ >]", html)
        assert "allow-scripts" not in html
        assert "<pre" in html and "Sehr geehrte Frau Dr. Weiß" in html
        for request in email.placement_requests:
            assert request.patient_pseudonym in html
        assert "Noch keine Zustellversuche." in html
        assert "Freigeben" in html and "Verwerfen" in html


def test_preview_frame_serves_the_html_part_sandboxed(app, logged_in_client):
    email = draft_for(make_therapist())

    response = logged_in_client.get(f"/emails/{email.id}/body")

    assert response.mimetype == "text/html"
    assert text_of(response) == email.body_html
    policy = response.headers["Content-Security-Policy"]
    assert policy.startswith("sandbox;") and "script-src" not in policy
    assert response.headers["Cache-Control"] == "no-store"


def test_preview_of_a_sent_email_shows_attempts_and_no_actions(app, logged_in_client):
    therapist = make_therapist()
    email = stored_email(therapist, EmailStatus.SENT, datetime(2026, 12, 4, 13, 35))
    db.session.add(
        DeliveryAttempt(
            email_id=email.id,
            attempted_at=datetime(2026, 12, 4, 13, 35),
            worker="host:42",
            smtp_code=250,
            smtp_reply="Message accepted for delivery",
            outcome=AttemptOutcome.SENT,
            duration_ms=12,
        )
    )
    db.session.commit()

    html = text_of(logged_in_client.get(f"/emails/{email.id}"))

    assert "04.12.2026 14:35" in html
    assert "Message accepted for delivery" in html and "Angenommen" in html
    assert "approve" not in html and "discard" not in html


def test_preview_lists_placement_requests_longest_waiting_first(app, logged_in_client):
    therapist = make_therapist()
    for days, pseudonym in [(5, "P-KURZ"), (30, "P-LANG"), (12, "P-MITTEL")]:
        make_request(therapist, days_waiting=days, patient_pseudonym=pseudonym)
    run_batching(db.session, system_clock)
    email = db.session.scalar(select(Email).filter_by(therapist_id=therapist.id))

    html = text_of(logged_in_client.get(f"/emails/{email.id}", headers=HTMX))

    table = html[html.index("placement-requests") :]
    positions = [table.index(name) for name in ("P-LANG", "P-MITTEL", "P-KURZ")]
    assert positions == sorted(positions)


STATUS_POLL = 'hx-trigger="every 2s"'


def test_preview_status_polls_while_queued_and_stops_once_sent(app, logged_in_client):
    email = stored_email(make_therapist(), EmailStatus.QUEUED, system_clock.now())
    preview = text_of(logged_in_client.get(f"/emails/{email.id}", headers=HTMX))
    queued = text_of(logged_in_client.get(f"/emails/{email.id}/status", headers=HTMX))

    email.status = EmailStatus.SENT
    email.sent_at = datetime(2026, 12, 4, 13, 35)
    db.session.add(
        DeliveryAttempt(
            email_id=email.id,
            attempted_at=email.sent_at,
            worker="host:42",
            smtp_code=250,
            smtp_reply="Message accepted for delivery",
            outcome=AttemptOutcome.SENT,
        )
    )
    db.session.commit()
    sent = text_of(logged_in_client.get(f"/emails/{email.id}/status", headers=HTMX))

    assert f'hx-get="/emails/{email.id}/status" {STATUS_POLL}' in preview
    assert queued.lstrip().startswith('<section id="email-status"')
    assert STATUS_POLL in queued and "In Warteschlange" in queued
    assert STATUS_POLL not in sent and "hx-get" not in sent
    assert "Gesendet</span>" in sent and "am 04.12.2026 14:35" in sent
    attempts = re.search(r'<section id="email-attempts"[^>]*>', sent).group(0)
    assert 'hx-swap-oob="true"' in attempts and "Angenommen" in sent


@pytest.mark.parametrize(
    "status", [EmailStatus.DRAFT, EmailStatus.SENT, EmailStatus.FAILED]
)
def test_preview_status_does_not_poll_when_nothing_moves(app, logged_in_client, status):
    email = stored_email(make_therapist(), status, system_clock.now())

    html = text_of(logged_in_client.get(f"/emails/{email.id}", headers=HTMX))

    assert STATUS_POLL not in html


def test_preview_status_without_htmx_goes_to_the_preview(app, logged_in_client):
    email = stored_email(make_therapist(), EmailStatus.QUEUED, system_clock.now())

    response = logged_in_client.get(f"/emails/{email.id}/status")

    assert response.status_code == 302
    assert response.headers["Location"] == f"/emails/{email.id}"


@pytest.mark.parametrize(
    ("status", "kind", "reply_link"),
    [
        (EmailStatus.SENT, EmailKind.BATCH_REQUEST, True),
        (EmailStatus.SENT, EmailKind.FOLLOW_UP, True),
        (EmailStatus.SENT, EmailKind.CONFIRMATION, False),
        (EmailStatus.QUEUED, EmailKind.BATCH_REQUEST, False),
        (EmailStatus.DRAFT, EmailKind.INITIAL_CONTACT, False),
    ],
)
def test_preview_links_the_contact_calendar_and_reply_recording(
    app, logged_in_client, status, kind, reply_link
):
    therapist = make_therapist()
    email = stored_email(therapist, status, system_clock.now(), kind=kind)

    html = text_of(logged_in_client.get(f"/emails/{email.id}"))

    assert f'href="/therapeuten/{therapist.id}/kalender">Kontaktkalender</a>' in html
    reply = f'href="/emails/{email.id}/antwort">Antwort erfassen</a>'
    assert (reply in html) is reply_link


def test_preview_of_a_missing_email_is_not_found(app, logged_in_client):
    assert logged_in_client.get("/emails/999999").status_code == 404


# Approval and discarding ------------------------------------------------------


def test_approving_one_draft_queues_it_and_wakes_the_sender(
    app, logged_in_client, redis_conn
):
    email = draft_for(make_therapist())

    response = logged_in_client.post(
        "/drafts/approve", data={"email_ids": email.id}, headers=HTMX
    )

    html = text_of(response)
    assert status_of(email.id) == EmailStatus.QUEUED
    assert f'id="draft-{email.id}"' not in html
    assert "1 E-Mail freigegeben" in html
    assert Queue(PRIORITY_QUEUES[3], connection=redis_conn).count == 1


def test_selection_with_a_capped_therapist_approves_the_rest_and_explains(
    app, logged_in_client
):
    fresh = make_therapist(last_name="Frisch")
    capped = make_therapist(last_name="Begrenzt")
    fresh_draft = draft_for(fresh)
    capped_draft = draft_for(capped)
    # Sent after batching drafted it: the cap now forbids the second email.
    make_sent_email(capped, system_clock.now() - timedelta(days=2))

    response = logged_in_client.post(
        "/drafts/approve",
        data={"email_ids": [fresh_draft.id, capped_draft.id]},
        headers=HTMX,
    )

    html = text_of(response)
    assert status_of(fresh_draft.id) == EmailStatus.QUEUED
    assert status_of(capped_draft.id) == EmailStatus.DRAFT
    assert f'id="draft-{fresh_draft.id}"' not in html
    refusal = re.search(
        rf'id="draft-{capped_draft.id}-refusal".*?</tr>', html, re.DOTALL
    ).group(0)
    assert "Wochenlimit erreicht" in refusal
    assert "1 E-Mail freigegeben" in html and "1 Entwurf nicht freigegeben" in html


def test_approval_without_htmx_redirects_with_the_messages(app, logged_in_client):
    capped = make_therapist()
    draft = draft_for(capped)
    make_sent_email(capped, system_clock.now() - timedelta(days=2))

    response = logged_in_client.post(
        "/drafts/approve", data={"email_ids": draft.id}, follow_redirects=True
    )

    assert response.request.path == "/"
    assert "Wochenlimit erreicht" in text_of(response)
    assert status_of(draft.id) == EmailStatus.DRAFT


def test_approving_from_the_preview_updates_it_and_tells_the_list(
    app, logged_in_client
):
    email = draft_for(make_therapist())

    response = logged_in_client.post(f"/emails/{email.id}/approve", headers=HTMX)

    html = text_of(response)
    assert status_of(email.id) == EmailStatus.QUEUED
    assert "In Warteschlange" in html and "Freigegeben und zum Versand" in html
    assert response.headers["HX-Trigger"] == "drafts-changed"


def test_discarding_a_draft_frees_its_requests(app, logged_in_client):
    therapist = make_therapist()
    email = draft_for(therapist)

    html = text_of(
        logged_in_client.post(
            "/drafts/discard", data={"email_ids": email.id}, headers=HTMX
        )
    )

    assert status_of(email.id) == EmailStatus.DISCARDED
    assert f'id="draft-{email.id}"' not in html and "1 Entwurf verworfen" in html
    assert run_batching(db.session, system_clock).drafts_created == 1


def test_discarding_from_the_preview(app, logged_in_client):
    email = draft_for(make_therapist())

    html = text_of(logged_in_client.post(f"/emails/{email.id}/discard", headers=HTMX))

    assert status_of(email.id) == EmailStatus.DISCARDED
    assert "Verworfen" in html and "Entwurf verworfen" in html


def test_a_sent_email_cannot_be_approved_or_discarded_again(app, logged_in_client):
    email = stored_email(make_therapist(), EmailStatus.SENT, system_clock.now())

    approve = text_of(
        logged_in_client.post(f"/emails/{email.id}/approve", headers=HTMX)
    )
    discard = text_of(
        logged_in_client.post(f"/emails/{email.id}/discard", headers=HTMX)
    )

    assert "Diese E-Mail wurde bereits freigegeben." in approve
    assert "bereits freigegeben und kann nicht mehr verworfen werden" in discard
    assert status_of(email.id) == EmailStatus.SENT


@pytest.mark.parametrize(
    ("first_action", "expected"),
    [
        ("/drafts/approve", "1 E-Mail war bereits freigegeben."),
        ("/drafts/discard", "1 Entwurf war bereits verworfen."),
    ],
)
def test_approving_what_another_tab_handled_says_why_in_the_summary(
    app, logged_in_client, first_action, expected
):
    handled = draft_for(make_therapist(last_name="Erledigt"))
    waiting = draft_for(make_therapist(last_name="Offen"))
    logged_in_client.post(first_action, data={"email_ids": handled.id}, headers=HTMX)

    html = text_of(
        logged_in_client.post(
            "/drafts/approve", data={"email_ids": handled.id}, headers=HTMX
        )
    )

    level, text = notice_in(html)
    assert (level, text) == ("warning", expected)
    assert "steht beim Entwurf" not in html
    assert "Auswahl aufheben" not in html
    assert f'id="draft-{waiting.id}"' in html and "checked" not in html


def test_approving_a_draft_twice_without_htmx_flashes_why(app, logged_in_client):
    email = draft_for(make_therapist())
    logged_in_client.post("/drafts/approve", data={"email_ids": email.id})

    response = logged_in_client.post(
        "/drafts/approve", data={"email_ids": email.id}, follow_redirects=True
    )

    assert "1 E-Mail war bereits freigegeben." in text_of(response)


def test_a_refused_draft_off_the_shown_page_is_explained_in_the_summary(
    app, logged_in_client
):
    capped = make_therapist(last_name="Begrenzt")
    capped_draft = draft_for(capped)
    for number in range(52):
        make_request(make_therapist(last_name=f"Nummer{number:02d}"))
    run_batching(db.session, system_clock)
    make_sent_email(capped, system_clock.now() - timedelta(days=2))

    html = text_of(
        logged_in_client.post(
            "/drafts/approve",
            data={"email_ids": capped_draft.id, "page": 2},
            headers=HTMX,
        )
    )

    level, text = notice_in(html)
    assert f'id="draft-{capped_draft.id}"' not in html and "Seite 2 von 2" in html
    assert level == "warning"
    assert text.startswith("1 Entwurf nicht freigegeben: Wochenlimit erreicht")


@pytest.mark.parametrize(
    ("first_action", "count", "expected"),
    [
        (
            "/drafts/approve",
            1,
            "1 E-Mail war bereits freigegeben und kann nicht mehr verworfen werden.",
        ),
        (
            "/drafts/approve",
            2,
            "2 E-Mails waren bereits freigegeben und können nicht mehr verworfen "
            "werden.",
        ),
        ("/drafts/discard", 1, "1 Entwurf war bereits verworfen."),
    ],
)
def test_discarding_what_another_tab_handled_says_why(
    app, logged_in_client, first_action, count, expected
):
    ids = [draft_for(make_therapist()).id for _ in range(count)]
    logged_in_client.post(first_action, data={"email_ids": ids}, headers=HTMX)

    html = text_of(
        logged_in_client.post("/drafts/discard", data={"email_ids": ids}, headers=HTMX)
    )

    assert notice_in(html) == ("warning", expected)
    assert "0 Entwürfe verworfen" not in html
    assert "Auswahl aufheben" not in html


def test_discarding_a_mix_counts_the_discarded_and_explains_the_rest(
    app, logged_in_client
):
    approved = draft_for(make_therapist())
    fresh = draft_for(make_therapist())
    logged_in_client.post("/drafts/approve", data={"email_ids": approved.id})

    html = text_of(
        logged_in_client.post(
            "/drafts/discard",
            data={"email_ids": [approved.id, fresh.id]},
            headers=HTMX,
        )
    )

    assert notice_in(html)[1] == (
        "1 Entwurf verworfen. 1 E-Mail war bereits freigegeben und kann nicht "
        "mehr verworfen werden."
    )
    assert status_of(fresh.id) == EmailStatus.DISCARDED


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        ("approve", "Dieser Entwurf wurde bereits verworfen."),
        ("discard", "Dieser Entwurf wurde bereits verworfen."),
    ],
)
def test_preview_actions_on_a_discarded_draft_say_so(
    app, logged_in_client, action, expected
):
    email = draft_for(make_therapist())
    logged_in_client.post(f"/emails/{email.id}/discard", headers=HTMX)

    html = text_of(logged_in_client.post(f"/emails/{email.id}/{action}", headers=HTMX))

    assert notice_in(html) == ("error", expected)


@pytest.fixture
def queue_unreachable(app, tmp_path):
    """Point the app at a Redis socket that does not exist."""
    configured = app.config["REDIS_URL"]
    app.config["REDIS_URL"] = f"unix://{tmp_path}/missing.sock"
    yield
    app.config["REDIS_URL"] = configured


def test_approval_holds_when_the_queue_is_unreachable(
    app, logged_in_client, queue_unreachable
):
    email = draft_for(make_therapist())

    html = text_of(
        logged_in_client.post(
            "/drafts/approve", data={"email_ids": email.id}, headers=HTMX
        )
    )

    assert status_of(email.id) == EmailStatus.QUEUED
    assert "sobald die Warteschlange erreichbar ist" in html


def test_batching_says_so_when_the_queue_is_unreachable(
    app, logged_in_client, queue_unreachable
):
    html = text_of(logged_in_client.post("/batching", headers=HTMX))

    assert "Warteschlange ist nicht erreichbar" in html
    assert "hx-trigger" not in html


# Batching progress ------------------------------------------------------------


def test_batching_progress_polls_until_done_then_reports_and_refreshes(
    app, logged_in_client, redis_conn
):
    therapist = make_therapist()
    for _ in range(8):
        make_request(therapist)

    started = text_of(logged_in_client.post("/batching", headers=HTMX))
    job_id = re.search(r"/batching/([\w-]+)", started).group(1)
    assert 'hx-trigger="every 1s"' in started

    waiting = logged_in_client.get(f"/batching/{job_id}", headers=HTMX)
    assert 'hx-trigger="every 1s"' in text_of(waiting)
    assert "HX-Trigger" not in waiting.headers

    worker = SimpleWorker(
        [Queue(DEFAULT_QUEUE, connection=redis_conn)], connection=redis_conn
    )
    # A fresh app context, so the job's session cleanup leaves ours alone.
    with app.app_context():
        worker.work(burst=True)

    done = logged_in_client.get(f"/batching/{job_id}", headers=HTMX)
    assert "hx-trigger" not in text_of(done)
    assert "1 Entwurf mit 6 Anfragen erstellt." in text_of(done)
    assert "2 weitere Anfragen warten auf die nächste Woche" in text_of(done)
    assert done.headers["HX-Trigger"] == "drafts-changed"


def job_id_in(html: str) -> str:
    return re.search(r"/batching/([\w-]+)", html).group(1)


def test_starting_batching_again_while_a_run_waits_shows_that_run(
    app, logged_in_client, redis_conn
):
    make_request(make_therapist())

    first = text_of(logged_in_client.post("/batching", headers=HTMX))
    second = text_of(logged_in_client.post("/batching", headers=HTMX))

    assert job_id_in(second) == job_id_in(first)
    assert Queue(DEFAULT_QUEUE, connection=redis_conn).count == 1


def test_a_second_start_right_after_a_run_ended_shows_that_run(
    app, logged_in_client, redis_conn
):
    for _ in range(2):
        make_request(make_therapist())
    logged_in_client.post("/batching", headers=HTMX)
    run_worker(app, redis_conn)

    second = logged_in_client.post("/batching", headers=HTMX)

    assert "2 Entwürfe mit 2 Anfragen erstellt." in text_of(second)
    assert second.headers["HX-Trigger"] == "drafts-changed"
    assert Queue(DEFAULT_QUEUE, connection=redis_conn).count == 0


def test_starting_batching_after_the_last_run_ended_starts_a_new_one(
    app, logged_in_client, redis_conn, monkeypatch
):
    monkeypatch.setattr(dashboard_views, "BATCHING_REPEAT_GUARD", timedelta(0))
    first = text_of(logged_in_client.post("/batching", headers=HTMX))
    run_worker(app, redis_conn)

    second = text_of(logged_in_client.post("/batching", headers=HTMX))

    assert job_id_in(second) != job_id_in(first)
    assert 'hx-trigger="every 1s"' in second


def test_batching_button_is_disabled_while_its_request_runs(logged_in_client):
    html = text_of(logged_in_client.get("/"))

    form = re.search(r'<form[^>]*action="/batching"[^>]*>', html).group(0)
    assert 'hx-disabled-elt="find button"' in form
    assert 'hx-sync="this:drop"' in form


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (
            {"drafts_created": 0, "requests_drafted": 0, "requests_waiting": 0},
            "Keine neuen Entwürfe – alle offenen Anfragen sind bereits in Entwürfen"
            " oder warten auf die nächste Woche.",
        ),
        (
            {"drafts_created": 1, "requests_drafted": 1, "requests_waiting": 0},
            "1 Entwurf mit 1 Anfrage erstellt.",
        ),
        (
            {"drafts_created": 3, "requests_drafted": 8, "requests_waiting": 1},
            "3 Entwürfe mit 8 Anfragen erstellt. 1 weitere Anfrage wartet auf die"
            " nächste Woche (höchstens 6 je E-Mail).",
        ),
    ],
)
def test_batching_result_is_phrased_so_nothing_seems_lost(app, result, expected):
    progress = dashboard_views.BatchingProgress("job", "done", result)

    with app.test_request_context():
        html = render_template("dashboard/_batching_status.html", batching=progress)

    assert " ".join(re.sub(r"<[^>]+>", " ", html).split()) == f"✓ {expected}"


def test_batching_status_of_another_job_is_not_revealed(
    app, logged_in_client, redis_conn
):
    job = Queue(DEFAULT_QUEUE, connection=redis_conn).enqueue("builtins.len", "abc")

    html = text_of(logged_in_client.get(f"/batching/{job.id}", headers=HTMX))

    assert "nicht mehr bekannt" in html and "hx-trigger" not in html


def test_batching_without_htmx_redirects_to_the_drafts_page(app, logged_in_client):
    response = logged_in_client.post("/batching")

    assert response.status_code == 302
    assert "/?job=" in response.headers["Location"]
    html = text_of(logged_in_client.get(response.headers["Location"]))
    assert "Entwürfe werden erstellt" in html


# Email list --------------------------------------------------------------------


@pytest.fixture
def mixed_emails(app):
    """Emails of four therapists in every listed status, and one draft."""
    weiss = make_therapist(last_name="Weiß")
    oeztuerk = make_therapist(
        salutation="Herr", first_name="Emre", last_name="Öztürk", title=None
    )
    mueller = make_therapist(last_name="Müller")
    berg = make_therapist(last_name="Berg")
    return {
        "sent": stored_email(weiss, EmailStatus.SENT, datetime(2026, 11, 20, 9)),
        "failed": stored_email(
            oeztuerk,
            EmailStatus.FAILED,
            datetime(2026, 12, 2, 9),
            kind=EmailKind.FOLLOW_UP,
            error_message="550 Postfach unbekannt",
        ),
        "queued": stored_email(mueller, EmailStatus.QUEUED, datetime(2026, 12, 3, 9)),
        "draft": draft_for(berg),
    }


def rows_in(html: str) -> set[int]:
    return {int(number) for number in re.findall(r'<tr id="email-(\d+)"', html)}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", {"sent", "failed", "queued"}),
        ("?status=fehlgeschlagen", {"failed"}),
        ("?status=gesendet", {"sent"}),
        ("?kind=follow_up", {"failed"}),
        ("?q=m%C3%BCller", {"queued"}),
        ("?q=%C3%96zt", {"failed"}),
        ("?date_from=2026-12-01", {"failed", "queued"}),
        ("?date_to=2026-12-02", {"sent", "failed"}),
        ("?date_from=2026-12-02&date_to=2026-12-02", {"failed"}),
        ("?q=%25", set()),
    ],
)
def test_email_list_filters(logged_in_client, mixed_emails, query, expected):
    html = text_of(logged_in_client.get(f"/emails{query}", headers=HTMX))

    assert rows_in(html) == {mixed_emails[name].id for name in expected}


def test_email_list_shows_german_badges_kinds_and_errors(
    logged_in_client, mixed_emails
):
    html = text_of(logged_in_client.get("/emails"))

    for label in ("In Warteschlange", "Gesendet", "Fehlgeschlagen", "Wird gesendet"):
        assert f">{label}</span>" in html
    assert "550 Postfach unbekannt" in html
    assert "Nachfass-E-Mail" in html
    assert "03.12.2026 10:00" in html


def test_email_counts_per_status(logged_in_client, mixed_emails):
    html = text_of(logged_in_client.get("/emails", headers=HTMX))

    pairs = re.findall(
        r'<span class="count-number">(\d+)</span>\s*'
        r'<span class="badge badge-(\w+)">',
        html,
    )
    assert dict((status, int(n)) for n, status in pairs) == {
        "in_warteschlange": 1,
        "wird_gesendet": 0,
        "gesendet": 1,
        "fehlgeschlagen": 1,
    }


def test_email_list_polls_only_while_mail_is_in_flight(logged_in_client, mixed_emails):
    polling = text_of(logged_in_client.get("/emails?kind=batch_request", headers=HTMX))

    mixed_emails["queued"].status = EmailStatus.SENT
    mixed_emails["queued"].sent_at = datetime(2026, 12, 3, 9, 1)
    db.session.commit()
    settled = text_of(logged_in_client.get("/emails?kind=batch_request", headers=HTMX))

    assert 'hx-trigger="every 2s"' in polling
    assert 'hx-get="/emails?kind=batch_request"' in polling
    assert "hx-trigger" not in settled


def test_email_filter_form_pushes_the_url_and_keeps_its_values(
    logged_in_client, mixed_emails
):
    html = text_of(logged_in_client.get("/emails?status=gesendet&q=Wei"))

    assert 'hx-push-url="true"' in html
    assert '<option selected value="gesendet">' in html
    assert 'value="Wei"' in html


def test_invalid_filters_are_ignored_with_a_german_message(
    logged_in_client, mixed_emails
):
    html = text_of(logged_in_client.get("/emails?date_from=gestern&status=kaputt"))

    assert "Ungültige Filter wurden ignoriert" in html
    assert "Not a valid" not in html
    assert len(rows_in(html)) == 3


@pytest.mark.parametrize("query", ["date_from=0001-01-01", "date_to=9999-12-31"])
def test_dates_beyond_any_calendar_are_refused_not_crashing(
    logged_in_client, mixed_emails, query
):
    response = logged_in_client.get(f"/emails?{query}")

    assert response.status_code == 200
    assert "Kein gültiges Datum." in text_of(response)


def test_email_list_past_the_last_page_shows_the_last_page(
    logged_in_client, mixed_emails, monkeypatch
):
    monkeypatch.setattr(dashboard_views, "EMAILS_PER_PAGE", 2)

    html = text_of(logged_in_client.get("/emails?page=999999"))

    assert rows_in(html) == {mixed_emails["sent"].id}
    assert "Seite 2 von 2" in html and "Keine E-Mails" not in html


def test_a_start_after_the_end_is_ignored_with_a_hint_beside_it(
    logged_in_client, mixed_emails
):
    query = "/emails?date_from=2026-12-03&date_to=2026-12-02"

    html = text_of(logged_in_client.get(query))

    hint = re.search(
        r'<span class="error filter-hint" id="date_from-hint">(.*?)<', html
    )
    assert hint.group(1) == "Liegt nach „Bis“."
    assert 'aria-describedby="date_from-hint"' in html
    assert rows_in(html) == {mixed_emails[name].id for name in ("sent", "failed")}


def test_filter_form_requests_bring_the_date_hints_along(
    logged_in_client, mixed_emails
):
    query = "/emails?date_from=2026-12-03&date_to=2026-12-02"

    from_form = text_of(
        logged_in_client.get(query, headers={**HTMX, "HX-Trigger": "email-filters"})
    )
    corrected = text_of(
        logged_in_client.get(
            "/emails?date_to=2026-12-02",
            headers={**HTMX, "HX-Trigger": "email-filters"},
        )
    )
    poll = text_of(logged_in_client.get(query, headers=HTMX))

    assert re.search(
        r'id="date_from-hint" hx-swap-oob="true">Liegt nach „Bis“.<', from_form
    )
    assert 'id="date_from-hint" hx-swap-oob="true"></span>' in corrected
    assert "hx-swap-oob" not in poll


def test_discarded_drafts_are_listed_on_request_as_the_subtitle_says(
    logged_in_client, mixed_emails
):
    draft = mixed_emails["draft"]
    logged_in_client.post(f"/emails/{draft.id}/discard")

    default = text_of(logged_in_client.get("/emails"))
    discarded = text_of(logged_in_client.get("/emails?status=verworfen"))

    assert "über den Status auch verworfene Entwürfe" in default
    assert '<option value="verworfen">Verworfene Entwürfe</option>' in default
    assert draft.id not in rows_in(default)
    assert rows_in(discarded) == {draft.id}


def test_email_lists_need_no_request(app, mixed_emails):
    zone = ZoneInfo("Europe/Berlin")
    filters = EmailFilters(kind=EmailKind.FOLLOW_UP)

    page = email_page(db.session, filters, zone, page=1, per_page=50)
    counts = count_by_status(db.session, EmailFilters(), zone)
    statuses = statuses_of(db.session, [mixed_emails["queued"].id, 999999])

    assert [email.id for email in page.items] == [mixed_emails["failed"].id]
    assert counts == {
        "gesendet": 1,
        "fehlgeschlagen": 1,
        "in_warteschlange": 1,
        "entwurf": 1,
    }
    assert statuses == {mixed_emails["queued"].id: EmailStatus.QUEUED}


# Security ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/"),
        ("get", "/emails"),
        ("get", "/emails/1"),
        ("get", "/emails/1/body"),
        ("get", "/emails/1/status"),
        ("get", "/batching/abc"),
        ("post", "/batching"),
        ("post", "/drafts/approve"),
        ("post", "/drafts/discard"),
        ("post", "/emails/1/approve"),
        ("post", "/emails/1/discard"),
    ],
)
def test_every_page_and_action_needs_a_login(app, client, method, path):
    app.config["WTF_CSRF_ENABLED"] = False
    response = getattr(client, method)(path)
    app.config["WTF_CSRF_ENABLED"] = True

    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


def test_expired_htmx_session_is_sent_to_the_login_page(client):
    response = client.get(
        "/emails",
        headers={**HTMX, "HX-Current-URL": "http://127.0.0.1/emails?status=gesendet"},
    )

    assert response.status_code == 401
    assert response.headers["HX-Redirect"].startswith("/login?next=")
    assert "status%3Dgesendet" in response.headers["HX-Redirect"]


def test_htmx_post_without_csrf_token_is_refused(app, logged_in_client):
    email = draft_for(make_therapist())
    app.config["WTF_CSRF_ENABLED"] = True

    refused = logged_in_client.post(
        "/drafts/approve", data={"email_ids": email.id}, headers=HTMX
    )

    assert refused.status_code == 400
    assert status_of(email.id) == EmailStatus.DRAFT


def test_htmx_post_with_the_page_csrf_header_is_accepted(app, logged_in_client):
    email = draft_for(make_therapist())
    app.config["WTF_CSRF_ENABLED"] = True
    page = text_of(logged_in_client.get("/"))
    token = re.search(r'"X-CSRFToken": "([^"]+)"', page).group(1)

    accepted = logged_in_client.post(
        "/drafts/approve",
        data={"email_ids": email.id},
        headers={**HTMX, "X-CSRFToken": token},
    )

    assert accepted.status_code == 200
    assert status_of(email.id) == EmailStatus.QUEUED


def test_htmx_is_served_without_login(client):
    response = client.get("/vendor/htmx.min.js")

    assert response.status_code == 200
    assert "no-store" not in response.headers.get("Cache-Control", "")
