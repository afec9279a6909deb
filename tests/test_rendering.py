"""Rendering of therapist emails: salutations, subjects, HTML and plain text."""

import re
from datetime import datetime

import pytest

from webapp.models import EmailKind, PlacementRequest, Therapist
from webapp.rendering import RenderedEmail, render_email, salutation


def make_therapist(
    salutation: str | None = "Frau",
    title: str | None = "Dr.",
    first_name: str = "Anna",
    last_name: str = "Weiß",
    knows_platform: bool = False,
) -> Therapist:
    """Build an unsaved therapist."""
    return Therapist(
        external_id="t-1",
        salutation=salutation,
        title=title,
        first_name=first_name,
        last_name=last_name,
        federal_state="BE",
        knows_platform=knows_platform,
    )


def make_request(
    pseudonym: str = "P-7F3K",
    gender: str = "weiblich",
    age: int = 34,
    registered_at: datetime = datetime(2026, 12, 4, 9, 30),
) -> PlacementRequest:
    """Build an unsaved placement request."""
    return PlacementRequest(
        external_id=f"r-{pseudonym}",
        patient_pseudonym=pseudonym,
        patient_age=age,
        patient_gender=gender,
        diagnosis_code="F32.1",
        time_availability="Mo–Mi vormittags",
        patient_registered_at=registered_at,
    )


def make_requests(count: int) -> list[PlacementRequest]:
    """Build `count` requests with distinct pseudonyms and genders."""
    genders = ["weiblich", "männlich", "divers"]
    return [
        make_request(f"P-{index:04d}", genders[index % 3], 20 + index)
        for index in range(count)
    ]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"salutation": "Frau", "title": "Dr."}, "Sehr geehrte Frau Dr. Weiß,"),
        ({"salutation": "Frau", "title": None}, "Sehr geehrte Frau Weiß,"),
        (
            {"salutation": "Herr", "title": None, "last_name": "Öztürk"},
            "Sehr geehrter Herr Öztürk,",
        ),
        (
            {"salutation": "Herr", "title": "Prof. Dr.", "last_name": "Groß"},
            "Sehr geehrter Herr Prof. Dr. Groß,",
        ),
        (
            {
                "salutation": "Frau",
                "title": "Dipl.-Psych.",
                "last_name": "Müller-Lüdenscheidt",
            },
            "Sehr geehrte Frau Müller-Lüdenscheidt,",
        ),
        (
            {"salutation": "Herr", "title": "Dr. med.", "last_name": "Şahin"},
            "Sehr geehrter Herr Dr. Şahin,",
        ),
        (
            {"salutation": "Frau", "title": "Dr. Dipl.-Psych.", "last_name": "Roth"},
            "Sehr geehrte Frau Dr. Roth,",
        ),
        (
            {
                "salutation": None,
                "title": "Dipl.-Psych.",
                "first_name": "Jördis",
                "last_name": "Kusnezowa",
            },
            "Guten Tag Jördis Kusnezowa,",
        ),
        (
            {"salutation": "Herr", "title": "", "last_name": "von Weizsäcker"},
            "Sehr geehrter Herr von Weizsäcker,",
        ),
        (
            {"salutation": " frau ", "title": " Dr. ", "last_name": " Weiß "},
            "Sehr geehrte Frau Dr. Weiß,",
        ),
        (
            {
                "salutation": None,
                "title": None,
                "first_name": "Kim",
                "last_name": "Weber",
            },
            "Guten Tag Kim Weber,",
        ),
        (
            {
                "salutation": None,
                "title": "Dr.",
                "first_name": "Kim",
                "last_name": "Weber",
            },
            "Guten Tag Dr. Kim Weber,",
        ),
        (
            {
                "salutation": "divers",
                "title": None,
                "first_name": "Sascha",
                "last_name": "Groß",
            },
            "Guten Tag Sascha Groß,",
        ),
        (
            {
                "salutation": "",
                "title": None,
                "first_name": "Jördis",
                "last_name": "Öz",
            },
            "Guten Tag Jördis Öz,",
        ),
    ],
)
def test_salutation(fields, expected):
    assert salutation(make_therapist(**fields)) == expected


@pytest.mark.parametrize(
    ("kind", "count", "gender", "subject"),
    [
        ("initial_contact", 1, "weiblich", "Anfrage: Therapieplatz für eine Patientin"),
        (
            "initial_contact",
            1,
            "männlich",
            "Anfrage: Therapieplatz für einen Patienten",
        ),
        (
            "initial_contact",
            1,
            "divers",
            "Anfrage: Therapieplatz für eine:n Patient:in",
        ),
        ("batch_request", 4, None, "Anfrage: Therapieplätze für 4 Patient:innen"),
        ("batch_request", 6, None, "Anfrage: Therapieplätze für 6 Patient:innen"),
        ("follow_up", 1, "männlich", "Erinnerung: Therapieplatz für einen Patienten"),
        ("follow_up", 3, None, "Erinnerung: Therapieplätze für 3 Patient:innen"),
        (
            "confirmation",
            1,
            "weiblich",
            "Bestätigung: Therapieplatz für eine Patientin",
        ),
        ("confirmation", 2, None, "Bestätigung: Therapieplätze für 2 Patient:innen"),
    ],
)
def test_subject_names_kind_and_patients(app, kind, count, gender, subject):
    requests = [make_request(gender=gender)] if gender else make_requests(count)

    rendered = render_email(kind, make_therapist(), requests)

    assert rendered.subject == subject


def test_confirmation_and_batch_subjects_differ(app):
    requests = make_requests(3)

    batch = render_email(EmailKind.BATCH_REQUEST, make_therapist(), requests)
    confirmation = render_email(EmailKind.CONFIRMATION, make_therapist(), requests)

    assert batch.subject.startswith("Anfrage: ")
    assert confirmation.subject.startswith("Bestätigung: ")
    assert batch.subject != confirmation.subject


@pytest.mark.parametrize(
    ("kind", "count"),
    [
        (EmailKind.INITIAL_CONTACT, 1),
        (EmailKind.BATCH_REQUEST, 6),
        (EmailKind.FOLLOW_UP, 1),
        (EmailKind.FOLLOW_UP, 4),
        (EmailKind.CONFIRMATION, 1),
        (EmailKind.CONFIRMATION, 3),
    ],
)
def test_every_kind_renders_inlined_html_and_text(app, kind, count):
    requests = make_requests(count)

    rendered = render_email(kind, make_therapist(), requests)

    assert isinstance(rendered, RenderedEmail)
    assert rendered.html.startswith("<!DOCTYPE html>")
    assert 'style="' in rendered.html
    # Only the phone layout's @media rules may stay behind in a <style> block.
    for block in re.findall(r"<style[^>]*>(.*?)</style>", rendered.html, re.S):
        assert block.strip().startswith("@media")
    assert "max-width: 600px" in rendered.html
    assert 'name="viewport"' in rendered.html
    for text in (rendered.html, rendered.text):
        assert "Sehr geehrte Frau Dr. Weiß," in text
        assert "Therapieplatz-Vermittlung" in text
        assert "vermittlung@therapieplatz.example" in text
        for request in requests:
            assert request.patient_pseudonym in text
            assert f"{request.patient_age} Jahre" in text
    assert rendered.text.count("F32.1") == count
    assert rendered.text.count("Mo–Mi vormittags") == count
    assert rendered.text.count("04.12.2026") == count


@pytest.mark.parametrize("kind", list(EmailKind))
def test_plain_text_is_tidy(app, kind):
    rendered = render_email(kind, make_therapist(), make_requests(2))

    assert "\n\n\n" not in rendered.text
    assert all(line == line.strip() for line in rendered.text.splitlines())
    assert rendered.text.startswith("Therapieplatz-Vermittlung\n\nSehr geehrte")
    assert "<" not in rendered.text


def test_text_lists_each_patient_with_its_details(app):
    request = make_request("P-ABCD", "divers", 52)

    text = render_email("initial_contact", make_therapist(), [request]).text

    lines = text.splitlines()
    start = lines.index("Kennung: P-ABCD")
    details = [re.sub(r"\s{2,}", " | ", line) for line in lines[start + 1 : start + 6]]
    assert details == [
        "Alter | 52 Jahre",
        "Geschlecht | divers",
        "Diagnose (ICD-10) | F32.1",
        "Zeitliche Verfügbarkeit | Mo–Mi vormittags",
        "Wartet seit | 04.12.2026",
    ]


def test_waiting_since_is_the_berlin_date(app):
    # 23:30 UTC on 3 December is already 4 December in Berlin.
    request = make_request(registered_at=datetime(2026, 12, 3, 23, 30))

    text = render_email("follow_up", make_therapist(), [request]).text

    assert "04.12.2026" in text
    assert "03.12.2026" not in text


@pytest.mark.parametrize(
    ("kind", "knows_platform", "introduced"),
    [
        ("initial_contact", False, True),
        ("initial_contact", True, False),
        ("batch_request", False, True),
        ("batch_request", True, False),
        ("follow_up", False, False),
        ("confirmation", False, False),
    ],
)
def test_platform_is_introduced_only_to_newcomers(
    app, kind, knows_platform, introduced
):
    therapist = make_therapist(knows_platform=knows_platform)

    text = render_email(kind, therapist, make_requests(2)).text

    assert ("wir sind die Therapieplatz-Vermittlung" in text) is introduced


@pytest.mark.parametrize(
    ("kind", "phrase"),
    [
        ("initial_contact", "Erstgespräch"),
        ("batch_request", "psychotherapeutischen Sprechstunde"),
        ("follow_up", "freundlich an unsere Anfrage erinnern"),
        ("confirmation", "So geht es weiter"),
    ],
)
def test_each_kind_says_what_it_is_for(app, kind, phrase):
    assert phrase in render_email(kind, make_therapist(), make_requests(2)).text


def test_sender_name_comes_from_settings(app, monkeypatch):
    monkeypatch.setitem(app.config, "MAIL_SENDER_NAME", "Vermittlung Süd")

    rendered = render_email("confirmation", make_therapist(), make_requests(1))

    assert "Vermittlung Süd" in rendered.html
    assert rendered.text.startswith("Vermittlung Süd\n")


def test_pseudonym_with_markup_is_escaped(app):
    request = make_request(pseudonym="<script>alert(1)</script>")
    therapist = make_therapist(last_name="<b>Weiß</b>")

    rendered = render_email("initial_contact", therapist, [request])

    assert "<script" not in rendered.html
    assert "<b>" not in rendered.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered.html
    # The plain-text part shows the characters as they are; nothing interprets it.
    assert "Kennung: <script>alert(1)</script>" in rendered.text
    assert "Sehr geehrte Frau Dr. <b>Weiß</b>," in rendered.text


def test_patient_summary_carries_no_therapist_contact_data(app):
    therapist = make_therapist()
    therapist.email = "praxis@example.org"
    therapist.phone = "+49 30 1234567"

    rendered = render_email("batch_request", therapist, make_requests(2))

    for body in (rendered.html, rendered.text):
        assert "praxis@example.org" not in body
        assert "1234567" not in body


def test_missing_time_availability_says_so(app):
    request = make_request()
    request.time_availability = ""

    text = render_email("initial_contact", make_therapist(), [request]).text

    assert "keine Angabe" in text


def test_email_without_requests_is_refused(app):
    with pytest.raises(ValueError):
        render_email("batch_request", make_therapist(), [])


def test_unknown_kind_is_refused(app):
    with pytest.raises(ValueError):
        render_email("newsletter", make_therapist(), make_requests(1))


def test_text_part_has_no_space_before_closing_parenthesis(app):
    rendered = render_email(EmailKind.BATCH_REQUEST, make_therapist(), make_requests(2))

    assert " )" not in rendered.text
