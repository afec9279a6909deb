"""The JSON API: tokens, intake, email orders, listing, errors, OpenAPI."""

import re
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from rq import Queue
from sqlalchemy import func, select

from webapp.api_tokens import create_api_token, revoke_api_token
from webapp.clock import local_today, system_clock
from webapp.extensions import db
from webapp.models import (
    KIND_PRIORITY,
    ApiToken,
    Email,
    EmailKind,
    EmailStatus,
    PlacementRequest,
    PlacementStatus,
    Therapist,
    email_placement_requests,
)
from webapp.openapi import OPENAPI

MISSING = object()


@pytest.fixture
def api_token(app) -> str:
    """The secret of a live API token."""
    _, secret = create_api_token(db.session, "matching-service")
    db.session.commit()
    return secret


@pytest.fixture
def api(client, api_token):
    """A test client that sends the bearer token with every request."""
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {api_token}"
    return client


def therapist_payload(**changes) -> dict:
    """A valid therapist body, with fields changed or (MISSING) removed."""
    payload = {
        "salutation": "Frau",
        "title": "Dr.",
        "first_name": "Anna",
        "last_name": "Weiß",
        "email": "anna.weiss@example.org",
        "phone": "+49 30 1234567",
        "federal_state": "BE",
        "phone_availability": [
            {"weekday": 3, "start": "13:00", "end": "13:25"},
            {"weekday": 0, "start": "09:00", "end": "09:50"},
        ],
        "potentially_available": True,
        "knows_platform": False,
        "next_contact_after": None,
        "blocked": False,
        "blocked_reason": None,
    }
    return _changed(payload, changes)


def request_payload(**changes) -> dict:
    """A valid placement request body for therapist th-1."""
    payload = {
        "external_id": "pr-1",
        "therapist_external_id": "th-1",
        "patient_pseudonym": "P-7F3K",
        "patient_age": 34,
        "patient_gender": "weiblich",
        "diagnosis_code": "F32.1",
        "time_availability": "Mo und Do vormittags",
        "patient_registered_at": "2026-11-02T08:15:00+01:00",
    }
    return _changed(payload, changes)


def _changed(payload: dict, changes: dict) -> dict:
    for name, value in changes.items():
        if value is MISSING:
            payload.pop(name, None)
        else:
            payload[name] = value
    return payload


def _validator(component: str) -> Draft202012Validator:
    registry = Registry().with_resource(
        "urn:doc", Resource(contents=OPENAPI, specification=DRAFT202012)
    )
    return Draft202012Validator(
        {"$ref": f"urn:doc#/components/schemas/{component}"}, registry=registry
    )


def assert_matches(component: str, body) -> None:
    """Fail unless the body fits the OpenAPI document's schema."""
    _validator(component).validate(body)


def assert_error(response, status: int, code: str, field: str | None = None):
    """Fail unless the response is the API's error shape with these values."""
    assert response.status_code == status, response.get_json()
    body = response.get_json()
    assert_matches("Error", body)
    assert body["error"]["code"] == code
    assert body["error"]["field"] == field
    assert body["error"]["message"]


def count(model) -> int:
    """Number of stored rows of a model."""
    return db.session.scalar(select(func.count()).select_from(model))


def put_therapist(api, external_id: str = "th-1", **changes) -> dict:
    """Store a therapist through the API and return its JSON."""
    response = api.put(
        f"/api/therapists/{external_id}", json=therapist_payload(**changes)
    )
    assert response.status_code in (200, 201), response.get_json()
    return response.get_json()


def post_request(api, **changes) -> dict:
    """Store a placement request through the API and return its JSON."""
    response = api.post("/api/placement-requests", json=request_payload(**changes))
    assert response.status_code in (200, 201), response.get_json()
    return response.get_json()


def store_email(
    therapist: Therapist,
    *,
    status: EmailStatus = EmailStatus.SENT,
    kind: EmailKind = EmailKind.BATCH_REQUEST,
    created_at: datetime | None = None,
    sent_at: datetime | None = None,
    requests: list[PlacementRequest] = (),
) -> Email:
    """Store an email row directly, for listing and cap tests."""
    created_at = created_at or system_clock.now()
    email = Email(
        therapist=therapist,
        kind=kind,
        priority=KIND_PRIORITY[kind],
        subject="Anfrage",
        body_html="<p>Anfrage</p>",
        body_text="Anfrage",
        recipient_email=therapist.email or "ohne@example.org",
        recipient_name=therapist.full_name,
        sender_email="vermittlung@example.org",
        sender_name="Vermittlung",
        status=status,
        created_at=created_at,
        updated_at=created_at,
        sent_at=sent_at,
    )
    email.placement_requests = list(requests)
    db.session.add(email)
    db.session.commit()
    return email


# Authentication

ROUTES = [
    ("get", "/api/therapists/th-1"),
    ("put", "/api/therapists/th-1"),
    ("post", "/api/placement-requests"),
    ("get", "/api/emails"),
    ("post", "/api/emails"),
    ("get", "/api/emails/1"),
    ("get", "/api/no-such-route"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer wrong-token", "Basic dXNlcjpwYXNz", "Token abc"],
)
def test_every_route_refuses_missing_or_wrong_tokens(
    client, api_token, method, path, authorization
):
    headers = {"Authorization": authorization} if authorization is not None else {}
    response = getattr(client, method)(path, headers=headers, json={})

    assert_error(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_revoked_token_is_refused(client, app):
    token, secret = create_api_token(db.session, "old-service")
    db.session.commit()
    headers = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/emails", headers=headers).status_code == 200

    revoke_api_token(db.session, token.id)
    db.session.commit()

    assert_error(client.get("/api/emails", headers=headers), 401, "unauthorized")


def test_token_is_stored_only_as_hash(app, api_token):
    stored = db.session.scalars(select(ApiToken)).one()

    assert stored.token_hash != api_token
    assert re.fullmatch(r"[0-9a-f]{64}", stored.token_hash)
    assert len(api_token) >= 40


# Therapists


def test_put_therapist_creates_then_replaces(api):
    created = api.put("/api/therapists/th-1", json=therapist_payload())

    assert created.status_code == 201
    body = created.get_json()
    assert_matches("Therapist", body)
    assert body["external_id"] == "th-1"
    assert body["email"] == "anna.weiss@example.org"
    # Windows come back sorted by weekday.
    assert [w["weekday"] for w in body["phone_availability"]] == [0, 3]
    assert body["created_at"].endswith("Z")

    updated = api.put(
        "/api/therapists/th-1",
        json={"first_name": "Anna", "last_name": "Weiß-Berg", "federal_state": "HH"},
    )

    assert updated.status_code == 200
    body = updated.get_json()
    assert body["id"] == created.get_json()["id"]
    assert body["last_name"] == "Weiß-Berg"
    # PUT replaces: omitted fields fall back to their defaults.
    assert body["email"] is None
    assert body["phone_availability"] == []
    assert body["potentially_available"] is False
    assert count(Therapist) == 1


def test_get_therapist(api):
    put_therapist(
        api, next_contact_after="2027-01-15", blocked=True, blocked_reason="Urlaub"
    )

    response = api.get("/api/therapists/th-1")

    assert response.status_code == 200
    body = response.get_json()
    assert_matches("Therapist", body)
    assert body["next_contact_after"] == "2027-01-15"
    assert body["blocked"] is True


def test_unknown_therapist_is_404(api):
    assert_error(api.get("/api/therapists/th-404"), 404, "not_found")


def test_therapist_input_is_normalised(api):
    body = put_therapist(
        api,
        first_name="  Anna ",
        email="  Anna.Weiss@EXAMPLE.org ",
        title="",
        phone="",
    )

    assert body["first_name"] == "Anna"
    assert body["email"] == "Anna.Weiss@example.org"
    assert body["title"] is None
    assert body["phone"] is None


def test_therapist_email_may_be_null(api):
    assert put_therapist(api, email=None)["email"] is None
    assert put_therapist(api, email="")["email"] is None


def _window(**changes) -> list[dict]:
    return [_changed({"weekday": 0, "start": "09:00", "end": "09:50"}, changes)]


THERAPIST_ERRORS = [
    ("salutation", "Divers", "salutation"),
    ("salutation", "frau", "salutation"),
    ("salutation", 1, "salutation"),
    ("title", "Dr.\nBcc: x@example.org", "title"),
    ("title", "x" * 41, "title"),
    ("first_name", MISSING, "first_name"),
    ("first_name", "", "first_name"),
    ("first_name", "   ", "first_name"),
    ("first_name", None, "first_name"),
    ("last_name", "x" * 101, "last_name"),
    ("last_name", "Weiß\r\nBcc: x@example.org", "last_name"),
    ("email", "keine-adresse", "email"),
    ("email", "anna@", "email"),
    ("email", "anna weiss@example.org", "email"),
    ("email", 42, "email"),
    ("phone", "bitte mailen", "phone"),
    ("phone", "0" * 41, "phone"),
    ("federal_state", MISSING, "federal_state"),
    ("federal_state", "XX", "federal_state"),
    ("federal_state", "be", "federal_state"),
    ("federal_state", "Berlin", "federal_state"),
    ("phone_availability", "Mo 9-10", "phone_availability"),
    ("phone_availability", [[0, "09:00", "10:00"]], "phone_availability[0]"),
    ("phone_availability", _window(weekday=7), "phone_availability[0].weekday"),
    ("phone_availability", _window(weekday=-1), "phone_availability[0].weekday"),
    ("phone_availability", _window(weekday="Mo"), "phone_availability[0].weekday"),
    ("phone_availability", _window(start="9:00"), "phone_availability[0].start"),
    ("phone_availability", _window(start="09:03"), "phone_availability[0].start"),
    ("phone_availability", _window(start="25:00"), "phone_availability[0].start"),
    ("phone_availability", _window(end="24:00"), "phone_availability[0].end"),
    ("phone_availability", _window(end="09:00"), "phone_availability[0].end"),
    ("phone_availability", _window(end="08:00"), "phone_availability[0].end"),
    ("phone_availability", _window(end=MISSING), "phone_availability[0].end"),
    ("phone_availability", _window(note="x"), "phone_availability[0].note"),
    (
        "phone_availability",
        [
            {"weekday": 0, "start": "09:00", "end": "10:00"},
            {"weekday": 0, "start": "09:30", "end": "10:30"},
        ],
        "phone_availability[1]",
    ),
    ("potentially_available", "ja", "potentially_available"),
    ("knows_platform", 1, "knows_platform"),
    ("next_contact_after", "04.12.2026", "next_contact_after"),
    ("next_contact_after", "2026-02-30", "next_contact_after"),
    ("next_contact_after", "2026-12-04T10:00:00Z", "next_contact_after"),
    ("blocked", None, "blocked"),
    ("blocked_reason", 5, "blocked_reason"),
    ("blocked_reason", "Umzug\x00", "blocked_reason"),
    ("external_id", "th-2", "external_id"),
    ("nickname", "Anni", "nickname"),
]


@pytest.mark.parametrize(("field", "value", "error_field"), THERAPIST_ERRORS)
def test_put_therapist_rejects_invalid_field(api, field, value, error_field):
    response = api.put("/api/therapists/th-1", json=therapist_payload(**{field: value}))

    assert_error(response, 422, "validation_error", error_field)
    assert count(Therapist) == 0


def test_failed_update_leaves_therapist_unchanged(api):
    put_therapist(api)

    response = api.put(
        "/api/therapists/th-1", json=therapist_payload(last_name="Neu", email="x@")
    )

    assert_error(response, 422, "validation_error", "email")
    db.session.expire_all()
    assert db.session.scalars(select(Therapist)).one().last_name == "Weiß"


@pytest.mark.parametrize("external_id", ["th 1", "-th", "x" * 65, "th%2F1"])
def test_put_therapist_rejects_bad_external_id(api, external_id):
    response = api.put(f"/api/therapists/{external_id}", json=therapist_payload())

    assert response.status_code in (404, 422)
    assert_matches("Error", response.get_json())
    assert count(Therapist) == 0


def test_put_therapist_external_id_field_is_checked(api):
    response = api.put("/api/therapists/th%20eins", json=therapist_payload())

    assert_error(response, 422, "validation_error", "external_id")


@pytest.mark.parametrize(
    "body",
    ["kein json", "[1, 2]", '"text"', "null", "{", "", '{"first_name": "\\ud800"}'],
    ids=repr,
)
def test_body_that_is_not_a_json_object_is_400(api, body):
    response = api.put(
        "/api/therapists/th-1", data=body, content_type="application/json"
    )

    assert_error(response, 400, "invalid_json")


# Placement requests


def test_post_placement_request_stores_utc(api):
    put_therapist(api)

    response = api.post("/api/placement-requests", json=request_payload())

    assert response.status_code == 201
    body = response.get_json()
    assert_matches("PlacementRequest", body)
    assert body["patient_registered_at"] == "2026-11-02T07:15:00Z"
    assert body["status"] == PlacementStatus.OPEN
    assert body["therapist_external_id"] == "th-1"
    stored = db.session.scalars(select(PlacementRequest)).one()
    assert stored.patient_registered_at == datetime(2026, 11, 2, 7, 15)
    assert stored.patient_registered_at.tzinfo is None


def test_same_placement_request_twice_returns_the_stored_row(api):
    put_therapist(api)
    first = post_request(api)

    again = api.post("/api/placement-requests", json=request_payload())
    # The same instant written with another offset is the same payload.
    same_instant = api.post(
        "/api/placement-requests",
        json=request_payload(patient_registered_at="2026-11-02T07:15:00Z"),
    )

    assert again.status_code == 200
    assert again.get_json() == first
    assert same_instant.status_code == 200
    assert count(PlacementRequest) == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("patient_age", 35),
        ("diagnosis_code", "F41.1"),
        ("patient_registered_at", "2026-11-03T08:15:00+01:00"),
        ("time_availability", "abends"),
        ("therapist_external_id", "th-2"),
    ],
)
def test_conflicting_placement_request_is_409(api, field, value):
    put_therapist(api)
    put_therapist(api, "th-2")
    post_request(api)

    response = api.post(
        "/api/placement-requests", json=request_payload(**{field: value})
    )

    assert_error(response, 409, "conflict", field)
    stored = db.session.scalars(select(PlacementRequest)).one()
    assert stored.patient_age == 34


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("patient_age", 0),
        ("patient_age", 120),
        ("patient_gender", "männlich"),
        ("patient_gender", "divers"),
        ("diagnosis_code", "F41"),
        ("diagnosis_code", "F45.40"),
        ("patient_registered_at", "2026-11-02T07:15:00Z"),
        ("patient_registered_at", "2026-11-02T07:15:00.123456-05:00"),
        ("time_availability", MISSING),
    ],
)
def test_placement_request_accepts_edge_values(api, field, value):
    put_therapist(api)

    response = api.post(
        "/api/placement-requests", json=request_payload(**{field: value})
    )

    assert response.status_code == 201, response.get_json()


PLACEMENT_ERRORS = [
    ("external_id", MISSING, "external_id"),
    ("external_id", "", "external_id"),
    ("external_id", "pr 1", "external_id"),
    ("external_id", "x" * 65, "external_id"),
    ("external_id", 17, "external_id"),
    ("therapist_external_id", MISSING, "therapist_external_id"),
    ("therapist_external_id", "th-unbekannt", "therapist_external_id"),
    ("patient_pseudonym", MISSING, "patient_pseudonym"),
    ("patient_pseudonym", "", "patient_pseudonym"),
    ("patient_pseudonym", "x" * 65, "patient_pseudonym"),
    ("patient_age", MISSING, "patient_age"),
    ("patient_age", -1, "patient_age"),
    ("patient_age", 121, "patient_age"),
    ("patient_age", "34", "patient_age"),
    ("patient_age", 34.5, "patient_age"),
    ("patient_age", True, "patient_age"),
    ("patient_gender", MISSING, "patient_gender"),
    ("patient_gender", "female", "patient_gender"),
    ("patient_gender", "Weiblich", "patient_gender"),
    ("diagnosis_code", MISSING, "diagnosis_code"),
    ("diagnosis_code", "G43.1", "diagnosis_code"),
    ("diagnosis_code", "f32.1", "diagnosis_code"),
    ("diagnosis_code", "F3", "diagnosis_code"),
    ("diagnosis_code", "F32.", "diagnosis_code"),
    ("diagnosis_code", "F32.123", "diagnosis_code"),
    ("diagnosis_code", "F32.1 ", "diagnosis_code"),
    ("time_availability", 5, "time_availability"),
    ("time_availability", "x" * 2001, "time_availability"),
    ("time_availability", "abends\x00", "time_availability"),
    ("patient_registered_at", MISSING, "patient_registered_at"),
    ("patient_registered_at", "2026-11-02T08:15:00", "patient_registered_at"),
    ("patient_registered_at", "2026-11-02", "patient_registered_at"),
    ("patient_registered_at", "gestern", "patient_registered_at"),
    ("patient_registered_at", "0001-01-01T00:00:00+01:00", "patient_registered_at"),
    ("patient_registered_at", 1_700_000_000, "patient_registered_at"),
    ("patient_name", "Erika Mustermann", "patient_name"),
]


@pytest.mark.parametrize(("field", "value", "error_field"), PLACEMENT_ERRORS)
def test_post_placement_request_rejects_invalid_field(api, field, value, error_field):
    put_therapist(api)

    response = api.post(
        "/api/placement-requests", json=request_payload(**{field: value})
    )

    assert_error(response, 422, "validation_error", error_field)
    assert count(PlacementRequest) == 0


# Email orders


@pytest.fixture
def world(api):
    """Therapists in every state an email order cares about, with requests."""

    def therapist(external_id: str, **changes) -> Therapist:
        put_therapist(api, external_id, **changes)
        return db.session.scalars(
            select(Therapist).filter_by(external_id=external_id)
        ).one()

    def requests(owner: str, how_many: int) -> list[int]:
        return [
            post_request(
                api,
                external_id=f"{owner}-pr-{index}",
                therapist_external_id=owner,
                patient_registered_at=f"2026-10-{10 + index:02d}T09:00:00+02:00",
            )["id"]
            for index in range(how_many)
        ]

    today = local_today(system_clock)
    world = {
        "anna": therapist("anna"),
        "bernd": therapist("bernd", salutation="Herr", first_name="Bernd", email=None),
        "clara": therapist("clara", blocked=True, blocked_reason="Praxis aufgegeben"),
        "dora": therapist(
            "dora", next_contact_after=(today + timedelta(days=10)).isoformat()
        ),
    }
    world["anna_requests"] = requests("anna", 7)
    world["bernd_requests"] = requests("bernd", 1)
    world["clara_requests"] = requests("clara", 1)
    world["dora_requests"] = requests("dora", 1)
    return world


def _order(world, **changes) -> dict:
    payload = {
        "therapist_id": world["anna"].id,
        "kind": "batch_request",
        "placement_request_ids": world["anna_requests"][:2],
    }
    return _changed(payload, changes)


def test_post_email_creates_a_draft(api, world):
    ids = world["anna_requests"][:3]

    response = api.post("/api/emails", json=_order(world, placement_request_ids=ids))

    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert_matches("Email", body)
    assert body["status"] == EmailStatus.DRAFT
    assert body["kind"] == EmailKind.BATCH_REQUEST
    assert sorted(body["placement_request_ids"]) == sorted(ids)
    assert body["recipient_email"] == "anna.weiss@example.org"
    assert body["therapist_id"] == world["anna"].id
    assert "mime_bytes" not in body
    assert count(Email) == 1


def test_post_email_can_queue_at_once(api, world, redis_conn):
    response = api.post("/api/emails", json=_order(world, status="in_warteschlange"))

    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["status"] == EmailStatus.QUEUED
    assert body["message_id"]
    assert body["queued_at"].endswith("Z")
    assert body["approved_by_id"] is None
    stored = db.session.get(Email, body["id"])
    assert stored.mime_bytes
    # The worker is woken on the request queue.
    assert Queue("emails-request", connection=redis_conn).count == 1


def test_post_email_can_be_planned_for_later(app, api, world, redis_conn):
    from webapp.clock import FixedClock
    from webapp.sending import claim_due

    response = api.post(
        "/api/emails",
        json=_order(
            world, status="in_warteschlange", not_before="2030-01-02T09:00:00+01:00"
        ),
    )

    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert_matches("Email", body)
    assert body["status"] == EmailStatus.QUEUED
    assert body["next_attempt_at"] == "2030-01-02T08:00:00Z"
    # Nothing to wake now: the reconciler enqueues it when it falls due.
    assert Queue("emails-request", connection=redis_conn).count == 0
    early = FixedClock(datetime(2030, 1, 2, 7, 59))
    assert claim_due(db.session, early, "test:1", 10) == []
    due = FixedClock(datetime(2030, 1, 2, 8, 0))
    assert [email.id for email in claim_due(db.session, due, "test:1", 10)] == [
        body["id"]
    ]


def test_post_email_planned_in_the_past_goes_out_at_once(api, world, redis_conn):
    before = system_clock.now()

    response = api.post(
        "/api/emails",
        json=_order(
            world, status="in_warteschlange", not_before="2020-01-01T00:00:00Z"
        ),
    )

    assert response.status_code == 201, response.get_json()
    stored = db.session.get(Email, response.get_json()["id"])
    assert before <= stored.next_attempt_at <= system_clock.now()
    assert Queue("emails-request", connection=redis_conn).count == 1


def test_post_email_refused_by_weekly_cap_stores_nothing(api, world):
    anna = world["anna"]
    store_email(anna, sent_at=system_clock.now() - timedelta(days=2))

    response = api.post("/api/emails", json=_order(world, status="in_warteschlange"))

    assert_error(response, 409, "weekly_cap_exceeded", "therapist_id")
    assert count(Email) == 1


def test_cap_refusal_after_drafting_removes_the_draft(api, world, monkeypatch):
    # Let the early check miss, as a concurrent approval would make it.
    monkeypatch.setattr("webapp.intake.cap_blocks", lambda *args, **kwargs: None)
    store_email(world["anna"], sent_at=system_clock.now() - timedelta(days=2))

    response = api.post("/api/emails", json=_order(world, status="in_warteschlange"))

    assert_error(response, 409, "weekly_cap_exceeded", "therapist_id")
    assert count(Email) == 1
    db.session.expire_all()
    assert db.session.scalar(select(Email.status)) == EmailStatus.SENT


def test_confirmation_is_for_accepted_requests_and_ignores_the_cap(api, world):
    anna = world["anna"]
    store_email(anna, sent_at=system_clock.now() - timedelta(days=2))
    accepted = db.session.get(PlacementRequest, world["anna_requests"][0])
    accepted.status = PlacementStatus.ACCEPTED
    db.session.commit()

    response = api.post(
        "/api/emails",
        json=_order(
            world,
            kind="confirmation",
            placement_request_ids=[accepted.id],
            status="in_warteschlange",
        ),
    )

    assert response.status_code == 201, response.get_json()
    assert response.get_json()["status"] == EmailStatus.QUEUED


EMAIL_ORDER_ERRORS = [
    ("unknown therapist", lambda w: {"therapist_id": 999_999}, "therapist_id"),
    (
        "therapist as text",
        lambda w: {"therapist_id": str(w["anna"].id)},
        "therapist_id",
    ),
    ("therapist missing", lambda w: {"therapist_id": MISSING}, "therapist_id"),
    ("therapist id too large", lambda w: {"therapist_id": 2**31}, "therapist_id"),
    (
        "no email address",
        lambda w: {
            "therapist_id": w["bernd"].id,
            "placement_request_ids": w["bernd_requests"],
        },
        "therapist_id",
    ),
    (
        "blocked",
        lambda w: {
            "therapist_id": w["clara"].id,
            "placement_request_ids": w["clara_requests"],
        },
        "therapist_id",
    ),
    (
        "cooling period",
        lambda w: {
            "therapist_id": w["dora"].id,
            "placement_request_ids": w["dora_requests"],
        },
        "therapist_id",
    ),
    ("unknown kind", lambda w: {"kind": "newsletter"}, "kind"),
    ("kind missing", lambda w: {"kind": MISSING}, "kind"),
    ("no ids", lambda w: {"placement_request_ids": []}, "placement_request_ids"),
    (
        "ids missing",
        lambda w: {"placement_request_ids": MISSING},
        "placement_request_ids",
    ),
    (
        "duplicate ids",
        lambda w: {"placement_request_ids": [w["anna_requests"][0]] * 2},
        "placement_request_ids",
    ),
    (
        "ids as text",
        lambda w: {"placement_request_ids": str(w["anna_requests"][0])},
        "placement_request_ids",
    ),
    (
        "more than BATCH_MAX_REQUESTS",
        lambda w: {"placement_request_ids": w["anna_requests"]},
        "placement_request_ids",
    ),
    (
        "initial contact with two requests",
        lambda w: {"kind": "initial_contact"},
        "placement_request_ids",
    ),
    (
        "unknown request",
        lambda w: {"placement_request_ids": [999_999]},
        "placement_request_ids[0]",
    ),
    (
        "request of another therapist",
        lambda w: {
            "placement_request_ids": [w["anna_requests"][0], w["clara_requests"][0]]
        },
        "placement_request_ids[1]",
    ),
    (
        "confirmation of an open request",
        lambda w: {"kind": "confirmation"},
        "placement_request_ids[0]",
    ),
    ("status not allowed", lambda w: {"status": "gesendet"}, "status"),
    (
        "draft with a sending time",
        lambda w: {"not_before": "2030-01-02T09:00:00+01:00"},
        "not_before",
    ),
    (
        "sending time without offset",
        lambda w: {"status": "in_warteschlange", "not_before": "2030-01-02T09:00:00"},
        "not_before",
    ),
    (
        "sending time not a time",
        lambda w: {"status": "in_warteschlange", "not_before": "morgen früh"},
        "not_before",
    ),
    (
        "sending time as number",
        lambda w: {"status": "in_warteschlange", "not_before": 1_800_000_000},
        "not_before",
    ),
    ("unknown field", lambda w: {"subject": "Hallo"}, "subject"),
]


@pytest.mark.parametrize(
    ("case", "changes", "error_field"),
    EMAIL_ORDER_ERRORS,
    ids=[case for case, _, _ in EMAIL_ORDER_ERRORS],
)
def test_post_email_rejects_invalid_order(api, world, case, changes, error_field):
    response = api.post("/api/emails", json=_order(world, **changes(world)))

    assert_error(response, 422, "validation_error", error_field)
    assert count(Email) == 0


def test_post_email_refuses_a_second_draft(api, world):
    first = api.post("/api/emails", json=_order(world))
    assert first.status_code == 201

    response = api.post(
        "/api/emails",
        json=_order(world, placement_request_ids=world["anna_requests"][2:4]),
    )

    assert_error(response, 409, "conflict", "therapist_id")
    assert count(Email) == 1


def test_post_email_refuses_requests_of_a_pending_email(api, world):
    anna = world["anna"]
    held = db.session.get(PlacementRequest, world["anna_requests"][1])
    store_email(
        anna, status=EmailStatus.QUEUED, kind=EmailKind.FOLLOW_UP, requests=[held]
    )

    response = api.post("/api/emails", json=_order(world, kind="follow_up"))

    assert_error(response, 409, "conflict", "placement_request_ids[1]")
    assert count(Email) == 1


# Reading emails


def test_get_email_returns_every_field_but_the_mime_bytes(api, world):
    created = api.post("/api/emails", json=_order(world)).get_json()

    response = api.get(f"/api/emails/{created['id']}")

    assert response.status_code == 200
    body = response.get_json()
    assert_matches("Email", body)
    columns = {column.key for column in Email.__table__.columns}
    assert set(body) == columns - {"mime_bytes"} | {"placement_request_ids"}
    assert set(OPENAPI["components"]["schemas"]["Email"]["properties"]) == set(body)
    assert body == created


def test_unknown_email_is_404(api):
    assert_error(api.get("/api/emails/424242"), 404, "not_found")
    assert_error(api.get("/api/emails/abc"), 404, "not_found")
    assert_error(api.get(f"/api/emails/{2**31}"), 404, "not_found")


@pytest.fixture
def listed(world):
    """Emails of three therapists, kinds and days, for list queries."""
    anna, bernd, clara = world["anna"], world["bernd"], world["clara"]
    start = datetime(2026, 11, 1, 10, 0)
    emails = []
    for index in range(25):
        emails.append(
            store_email(
                anna if index % 2 else clara,
                status=EmailStatus.FAILED if index % 5 == 0 else EmailStatus.SENT,
                kind=EmailKind.FOLLOW_UP if index % 3 == 0 else EmailKind.BATCH_REQUEST,
                created_at=start + timedelta(days=index),
            )
        )
    # 23:30 UTC on 3 December is already 4 December in Berlin.
    emails.append(
        store_email(
            bernd,
            kind=EmailKind.CONFIRMATION,
            created_at=datetime(2026, 12, 3, 23, 30),
        )
    )
    return emails


def test_email_list_pages(api, listed):
    first = api.get("/api/emails?per_page=10").get_json()
    last = api.get("/api/emails?per_page=10&page=3").get_json()
    beyond = api.get("/api/emails?per_page=10&page=9").get_json()

    assert_matches("EmailPage", first)
    assert (first["page"], first["per_page"], first["total"]) == (1, 10, 26)
    assert len(first["items"]) == 10
    assert len(last["items"]) == 6
    assert beyond["items"] == [] and beyond["total"] == 26
    # Newest first, and no email on two pages.
    created = [item["created_at"] for item in first["items"]]
    assert created == sorted(created, reverse=True)
    seen = [
        item["id"]
        for page in (1, 2, 3)
        for item in api.get(f"/api/emails?per_page=10&page={page}").get_json()["items"]
    ]
    assert sorted(seen) == sorted(email.id for email in listed)


def test_email_list_defaults_to_twenty(api, listed):
    body = api.get("/api/emails").get_json()

    assert (body["page"], body["per_page"], len(body["items"])) == (1, 20, 20)


def _expected(listed, predicate) -> list[int]:
    return sorted(email.id for email in listed if predicate(email))


@pytest.mark.parametrize(
    ("query", "predicate"),
    [
        ("status=fehlgeschlagen", lambda e: e.status == EmailStatus.FAILED),
        ("status=entwurf", lambda e: False),
        ("kind=follow_up", lambda e: e.kind == EmailKind.FOLLOW_UP),
        (
            "kind=batch_request&status=gesendet",
            lambda e: (
                e.kind == EmailKind.BATCH_REQUEST and e.status == EmailStatus.SENT
            ),
        ),
        ("created_from=2026-11-20", lambda e: e.created_at >= datetime(2026, 11, 20)),
        ("created_to=2026-11-03", lambda e: e.created_at < datetime(2026, 11, 4)),
        (
            "created_from=2026-11-10&created_to=2026-11-12",
            lambda e: datetime(2026, 11, 10) <= e.created_at < datetime(2026, 11, 13),
        ),
        (
            "created_from=2026-12-04&created_to=2026-12-04",
            lambda e: e.kind == EmailKind.CONFIRMATION,
        ),
    ],
)
def test_email_list_filters(api, listed, query, predicate):
    body = api.get(f"/api/emails?per_page=100&{query}").get_json()

    assert sorted(item["id"] for item in body["items"]) == _expected(listed, predicate)
    assert body["total"] == len(body["items"])


def test_email_list_filters_by_therapist(api, world, listed):
    anna = world["anna"]

    body = api.get(f"/api/emails?per_page=100&therapist_id={anna.id}").get_json()

    assert {item["therapist_id"] for item in body["items"]} == {anna.id}
    assert body["total"] == 12


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("page=0", "page"),
        ("page=eins", "page"),
        ("per_page=0", "per_page"),
        ("per_page=101", "per_page"),
        ("status=sent", "status"),
        ("kind=brief", "kind"),
        ("therapist_id=abc", "therapist_id"),
        ("therapist_id=0", "therapist_id"),
        ("therapist_id=99999999999", "therapist_id"),
        ("created_from=04.12.2026", "created_from"),
        ("created_from=2026-13-01", "created_from"),
        ("created_to=2026-12-04T10:00", "created_to"),
        ("created_from=2026-12-05&created_to=2026-12-04", "created_to"),
        ("created_from=0001-01-01", "created_from"),
        ("created_to=9999-12-31", "created_to"),
    ],
)
def test_email_list_rejects_bad_query(api, query, field):
    assert_error(api.get(f"/api/emails?{query}"), 400, "validation_error", field)


# Routing errors and the document


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("delete", "/api/therapists/th-1", "GET, PUT"),
        ("post", "/api/therapists/th-1", "GET, PUT"),
        ("put", "/api/emails", "GET, POST"),
        ("delete", "/api/emails/1", "GET"),
        ("get", "/api/placement-requests", "POST"),
    ],
)
def test_wrong_method_is_405_in_the_error_shape(api, method, path, allow):
    response = getattr(api, method)(path)

    assert_error(response, 405, "method_not_allowed")
    assert response.headers["Allow"] == allow


@pytest.mark.parametrize("path", ["/api/", "/api/nothing", "/api/emails/1/send"])
def test_unknown_path_is_404_in_the_error_shape(api, path):
    assert_error(api.get(path), 404, "not_found")


def test_openapi_document_needs_no_token(client):
    response = client.get("/api/openapi.json")

    assert response.status_code == 200
    body = response.get_json()
    assert body["openapi"].startswith("3.1")
    assert body["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def test_openapi_document_names_every_route(app, client):
    document = client.get("/api/openapi.json").get_json()
    documented = {
        (path, method.upper())
        for path, item in document["paths"].items()
        for method in item
        if method in {"get", "put", "post", "patch", "delete"}
    }

    served = set()
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("api.") or rule.endpoint == "api.unknown_route":
            continue
        path = re.sub(r"<(?:[^:>]+:)?(\w+)>", r"{\1}", rule.rule)
        served |= {(path, method) for method in rule.methods - {"HEAD", "OPTIONS"}}

    assert documented == served


def test_openapi_schemas_are_valid_json_schema():
    for name, schema in OPENAPI["components"]["schemas"].items():
        Draft202012Validator.check_schema(schema)
        assert "type" in schema, name


def test_openapi_input_schemas_accept_the_documented_examples():
    assert_matches("TherapistInput", therapist_payload())
    assert_matches("PlacementRequestInput", request_payload())


# Any JSON at all: never a crash, always a documented answer

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=6,
)
fuzz_settings = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def assert_documented(response, component: str, statuses: set[int]) -> None:
    """Fail unless the answer is an expected status with a documented body."""
    assert response.status_code in statuses, response.get_json()
    ok = response.status_code < 300
    assert_matches(component if ok else "Error", response.get_json())


@fuzz_settings
@given(
    changes=st.dictionaries(
        st.sampled_from([*therapist_payload(), "external_id", "extra"]),
        json_values,
        max_size=3,
    )
)
def test_put_therapist_answers_any_json(api, changes):
    response = api.put("/api/therapists/th-fuzz", json=therapist_payload(**changes))

    assert_documented(response, "Therapist", {200, 201, 422})


@fuzz_settings
@given(
    changes=st.dictionaries(
        st.sampled_from([*request_payload(), "extra"]), json_values, max_size=3
    )
)
def test_post_placement_request_answers_any_json(api, world, changes):
    payload = request_payload(**{"therapist_external_id": "anna", **changes})

    response = api.post("/api/placement-requests", json=payload)

    assert_documented(response, "PlacementRequest", {200, 201, 409, 422})


@fuzz_settings
@given(
    changes=st.dictionaries(
        st.sampled_from(
            ["therapist_id", "kind", "placement_request_ids", "status", "not_before"]
        ),
        json_values | st.lists(st.integers(), max_size=8),
        max_size=3,
    )
)
def test_post_email_answers_any_json(api, world, changes):
    before = count(Email)

    response = api.post("/api/emails", json=_order(world, **changes))

    assert_documented(response, "Email", {201, 409, 422})
    assert count(Email) == before + (response.status_code == 201)
    # Free the therapist again for the next example.
    db.session.execute(email_placement_requests.delete())
    db.session.execute(Email.__table__.delete())
    db.session.commit()


@fuzz_settings
@given(
    query=st.dictionaries(
        st.sampled_from(
            ["status", "kind", "therapist_id", "created_from", "created_to", "page"]
            + ["per_page"]
        ),
        st.text(max_size=12) | st.integers().map(str),
        max_size=3,
    )
)
def test_email_list_answers_any_query(api, query):
    response = api.get("/api/emails", query_string=query)

    assert_documented(response, "EmailPage", {200, 400})
