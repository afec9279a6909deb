"""Intake services, the import command and the API token command."""

import hashlib
import json
from datetime import date, datetime

import pytest
from sqlalchemy import func, select

from webapp.api_tokens import create_api_token, verify_api_token
from webapp.exceptions import ValidationFailed
from webapp.extensions import db
from webapp.intake import (
    IntakeConflict,
    field_path,
    import_records,
    intake_placement_request,
    therapist_values,
    upsert_therapist,
)
from webapp.models import ApiToken, PlacementRequest, Therapist


def therapist_item(external_id: str = "th-1", **changes) -> dict:
    """A therapist as an import file holds it."""
    return {
        "external_id": external_id,
        "salutation": "Herr",
        "first_name": "Cem",
        "last_name": "Öztürk",
        "email": "cem.oeztuerk@example.org",
        "federal_state": "NW",
        "phone_availability": [{"weekday": 1, "start": "08:00", "end": "08:30"}],
        **changes,
    }


def request_item(external_id: str = "pr-1", therapist: str = "th-1", **changes) -> dict:
    """A placement request as an import file holds it."""
    return {
        "external_id": external_id,
        "therapist_external_id": therapist,
        "patient_pseudonym": f"P-{external_id}",
        "patient_age": 52,
        "patient_gender": "männlich",
        "diagnosis_code": "F43.1",
        "patient_registered_at": "2026-09-30T12:00:00+02:00",
        **changes,
    }


def count(model) -> int:
    """Number of stored rows of a model."""
    return db.session.scalar(select(func.count()).select_from(model))


@pytest.fixture
def runner(app):
    """A CLI runner for the app's `flask` commands."""
    return app.test_cli_runner()


@pytest.fixture
def import_file(tmp_path):
    """Write an import document to a file and return its path."""

    def write(document) -> str:
        path = tmp_path / "import.json"
        text = document if isinstance(document, str) else json.dumps(document)
        path.write_text(text, encoding="utf-8")
        return str(path)

    return write


# Services


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        ([], None),
        (["email"], "email"),
        (["phone_availability", 1, "start"], "phone_availability[1].start"),
        (["placement_request_ids", 0], "placement_request_ids[0]"),
    ],
)
def test_field_path(parts, expected):
    assert field_path(parts) == expected


def test_therapist_values_normalise_input():
    values = therapist_values(
        therapist_item(
            first_name=" Cem ",
            email="Cem@Example.ORG",
            phone_availability=[
                {"weekday": 4, "start": "10:00", "end": "10:30"},
                {"weekday": 1, "start": "14:00", "end": "14:30"},
                {"weekday": 1, "start": "08:00", "end": "08:30"},
            ],
            next_contact_after="2027-02-01",
        )
    )

    assert values["first_name"] == "Cem"
    assert values["email"] == "Cem@example.org"
    assert values["next_contact_after"] == date(2027, 2, 1)
    assert [(w["weekday"], w["start"]) for w in values["phone_availability"]] == [
        (1, "08:00"),
        (1, "14:00"),
        (4, "10:00"),
    ]


def test_adjacent_windows_do_not_overlap():
    windows = [
        {"weekday": 0, "start": "09:00", "end": "09:30"},
        {"weekday": 0, "start": "09:30", "end": "10:00"},
        {"weekday": 1, "start": "09:00", "end": "09:30"},
    ]

    values = therapist_values(therapist_item(phone_availability=windows))

    assert len(values["phone_availability"]) == 3


def test_upsert_therapist_does_not_commit(app):
    upsert_therapist(db.session, "th-1", therapist_item())
    db.session.rollback()

    assert count(Therapist) == 0


def test_placement_request_conflict_names_the_field(app):
    upsert_therapist(db.session, "th-1", therapist_item())
    intake_placement_request(db.session, request_item())

    with pytest.raises(IntakeConflict) as caught:
        intake_placement_request(db.session, request_item(patient_gender="divers"))

    assert caught.value.field == "patient_gender"


def test_registration_time_is_stored_as_naive_utc(app):
    upsert_therapist(db.session, "th-1", therapist_item())

    request, created = intake_placement_request(
        db.session, request_item(patient_registered_at="2026-03-29T03:30:00+02:00")
    )

    assert created
    assert request.patient_registered_at == datetime(2026, 3, 29, 1, 30)


def test_import_records_prefixes_the_item(app):
    with pytest.raises(ValidationFailed) as caught:
        import_records(
            db.session,
            {
                "therapists": [
                    therapist_item(),
                    therapist_item("th-2", federal_state="XY"),
                ]
            },
        )

    assert caught.value.field == "therapists[1].federal_state"


# The import command


def test_import_data_stores_everything_and_prints_counts(runner, import_file):
    path = import_file(
        {
            "therapists": [therapist_item("th-1"), therapist_item("th-2", email=None)],
            "placement_requests": [
                request_item("pr-1", "th-1"),
                request_item("pr-2", "th-1"),
                request_item("pr-3", "th-2"),
            ],
        }
    )

    result = runner.invoke(args=["import-data", path])

    assert result.exit_code == 0, result.output
    assert "Therapeut:innen: 2 neu, 0 aktualisiert" in result.output
    assert "Platzanfragen: 3 neu, 0 schon vorhanden" in result.output
    assert count(Therapist) == 2
    assert count(PlacementRequest) == 3


def test_import_data_twice_changes_nothing_new(runner, import_file):
    document = {
        "therapists": [therapist_item()],
        "placement_requests": [request_item()],
    }
    runner.invoke(args=["import-data", import_file(document)])

    result = runner.invoke(args=["import-data", import_file(document)])

    assert result.exit_code == 0, result.output
    assert "Therapeut:innen: 0 neu, 1 aktualisiert" in result.output
    assert "Platzanfragen: 0 neu, 1 schon vorhanden" in result.output
    assert count(PlacementRequest) == 1


@pytest.mark.parametrize(
    ("document", "where"),
    [
        (
            {"therapists": [therapist_item(), therapist_item("th-2", email="kaputt@")]},
            "therapists[1].email",
        ),
        (
            {
                "therapists": [
                    therapist_item(),
                    {"first_name": "Ohne", "last_name": "Id"},
                ]
            },
            "therapists[1].external_id",
        ),
        ({"therapists": [therapist_item(), "th-2"]}, "therapists[1]"),
        (
            {
                "therapists": [therapist_item()],
                "placement_requests": [
                    request_item(),
                    request_item("pr-2", patient_age=130),
                ],
            },
            "placement_requests[1].patient_age",
        ),
        (
            {
                "therapists": [therapist_item()],
                "placement_requests": [request_item("pr-1", "th-9")],
            },
            "placement_requests[0].therapist_external_id",
        ),
        (
            {
                "therapists": [therapist_item()],
                "placement_requests": [
                    request_item(),
                    request_item(diagnosis_code="F10.2"),
                ],
            },
            "placement_requests[1].diagnosis_code",
        ),
        ({"therapists": [therapist_item()], "patients": []}, "patients"),
        ({"therapists": {"th-1": therapist_item()}}, "therapists"),
        ([therapist_item()], "Datei"),
    ],
)
def test_import_data_is_all_or_nothing(runner, import_file, document, where):
    result = runner.invoke(args=["import-data", import_file(document)])

    assert result.exit_code == 1
    assert f"Error: {where}:" in result.output
    assert "Nichts wurde importiert" in result.output
    assert count(Therapist) == 0
    assert count(PlacementRequest) == 0


def test_import_data_reports_broken_json(runner, import_file):
    result = runner.invoke(args=["import-data", import_file('{"therapists": [\n')])

    assert result.exit_code == 1
    assert "kein gültiges JSON (Zeile 2" in result.output


def test_import_data_needs_an_existing_file(runner, tmp_path):
    result = runner.invoke(args=["import-data", str(tmp_path / "fehlt.json")])

    assert result.exit_code == 2


# API tokens


def test_create_api_token_prints_a_working_token_once(runner):
    result = runner.invoke(args=["create-api-token", "matching-service"])

    assert result.exit_code == 0, result.output
    secret = result.stdout.strip().splitlines()[-1]
    stored = db.session.scalars(select(ApiToken)).one()
    assert stored.name == "matching-service"
    assert stored.token_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert verify_api_token(db.session, secret).id == stored.id


@pytest.mark.parametrize("name", ["", "   ", "x" * 121])
def test_create_api_token_needs_a_name(runner, name):
    result = runner.invoke(args=["create-api-token", name])

    assert result.exit_code == 1
    assert count(ApiToken) == 0


def test_each_token_is_different(app):
    _, first = create_api_token(db.session, "a")
    _, second = create_api_token(db.session, "b")

    assert first != second
    assert verify_api_token(db.session, first + "x") is None
    assert verify_api_token(db.session, "") is None


@pytest.mark.parametrize("external_id", [None, 5, "", "th 1"])
def test_import_data_checks_therapist_external_ids(runner, import_file, external_id):
    document = {"therapists": [therapist_item(external_id=external_id)]}

    result = runner.invoke(args=["import-data", import_file(document)])

    assert result.exit_code == 1
    assert "Error: therapists[0].external_id:" in result.output


def test_identical_windows_are_reported_at_the_second():
    window = {"weekday": 2, "start": "09:00", "end": "09:30"}

    with pytest.raises(ValidationFailed) as caught:
        therapist_values(therapist_item(phone_availability=[window, dict(window)]))

    assert caught.value.field == "phone_availability[1]"


@pytest.mark.parametrize(
    ("stored", "given", "kept"),
    [
        ("2027-01-10", None, date(2027, 1, 10)),
        ("2027-01-10", "2026-12-20", date(2027, 1, 10)),
        ("2027-01-10", "2027-02-01", date(2027, 2, 1)),
        (None, "2027-02-01", date(2027, 2, 1)),
        (None, None, None),
    ],
)
def test_update_never_shortens_a_cooling_period(app, stored, given, kept):
    upsert_therapist(db.session, "th-1", therapist_item(next_contact_after=stored))

    therapist, created = upsert_therapist(
        db.session, "th-1", therapist_item(next_contact_after=given)
    )

    assert not created
    assert therapist.next_contact_after == kept
