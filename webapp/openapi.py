"""OpenAPI 3.1 document of the JSON API, written by hand as data.

The schemas under `components` are also what `webapp.intake` validates
request bodies against, so the document cannot drift from the behaviour.
Keys starting with `x-` are extensions: `x-pattern-message` is the German
error text shown when a string does not match its `pattern`.
"""

from typing import Any

FEDERAL_STATES = [
    "BW",
    "BY",
    "BE",
    "BB",
    "HB",
    "HH",
    "HE",
    "MV",
    "NI",
    "NW",
    "RP",
    "SL",
    "SN",
    "ST",
    "SH",
    "TH",
]
SALUTATIONS = ["Frau", "Herr"]
GENDERS = ["weiblich", "männlich", "divers"]
EMAIL_KINDS = ["initial_contact", "batch_request", "follow_up", "confirmation"]
EMAIL_STATUSES = [
    "entwurf",
    "in_warteschlange",
    "wird_gesendet",
    "gesendet",
    "fehlgeschlagen",
    "verworfen",
]
PLACEMENT_STATUSES = ["offen", "angenommen", "abgelehnt", "zurueckgezogen"]

# One line of printable text: no control characters (CR/LF would break
# email headers), at least one non-space character.
SINGLE_LINE = r"^(?=.*\S)[^\x00-\x1f\x7f]+$"
SINGLE_LINE_MESSAGE = "darf nicht leer sein und keine Zeilenumbrüche enthalten"
# Optional one-line text: may be empty (stored as null).
NO_LINE_BREAK = r"^[^\x00-\x1f\x7f]*$"
NO_LINE_BREAK_MESSAGE = "darf keine Zeilenumbrüche enthalten"
EXTERNAL_ID = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
EXTERNAL_ID_MESSAGE = "muss 1 bis 64 Zeichen aus Buchstaben, Ziffern und . _ : - haben"
# Five-minute boundaries, because calls sit in five-minute slots.
CLOCK_TIME = r"^([01][0-9]|2[0-3]):[0-5][05]$"
CLOCK_TIME_MESSAGE = "muss eine Uhrzeit HH:MM in 5-Minuten-Schritten sein"
DIAGNOSIS_CODE = r"^F[0-9]{2}(\.[0-9]{1,2})?$"
PHONE = r"^([+(]?[0-9][0-9 ()/.-]*)?$"
ISO_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
# Free text may span lines but holds no other control characters
# (PostgreSQL refuses NUL in text).
FREE_TEXT = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"
FREE_TEXT_MESSAGE = "enthält unzulässige Steuerzeichen"
# Ids are 32-bit database integers.
ROW_ID = {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable_text(max_length: int, description: str) -> dict[str, Any]:
    return {
        "type": ["string", "null"],
        "maxLength": max_length,
        "pattern": NO_LINE_BREAK,
        "x-pattern-message": NO_LINE_BREAK_MESSAGE,
        "description": f"{description} An empty string counts as null.",
    }


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": _json(_ref("Error"))}


TIMESTAMP = {
    "type": "string",
    "format": "date-time",
    "description": "UTC, ISO 8601 with Z",
    "examples": ["2026-12-04T13:35:00Z"],
}
NULLABLE_TIMESTAMP = {**TIMESTAMP, "type": ["string", "null"]}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "description": "Every error of the API has this shape.",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "field"],
                "properties": {
                    "code": {
                        "type": "string",
                        "description": "Machine-readable reason.",
                        "enum": [
                            "validation_error",
                            "invalid_json",
                            "unauthorized",
                            "not_found",
                            "method_not_allowed",
                            "conflict",
                            "weekly_cap_exceeded",
                            "bad_request",
                            "internal_error",
                        ],
                    },
                    "message": {
                        "type": "string",
                        "description": "What is wrong, in German.",
                    },
                    "field": {
                        "type": ["string", "null"],
                        "description": (
                            "The offending field as a path, e.g."
                            " `phone_availability[1].start`; null if the"
                            " error concerns no single field."
                        ),
                    },
                },
            }
        },
        "examples": [
            {
                "error": {
                    "code": "validation_error",
                    "message": "darf höchstens 120 sein",
                    "field": "patient_age",
                }
            }
        ],
    },
    "ExternalId": {
        "type": "string",
        "pattern": EXTERNAL_ID,
        "x-pattern-message": EXTERNAL_ID_MESSAGE,
        "description": "The id the sending service uses for the record.",
        "examples": ["th-4711"],
    },
    "PhoneWindow": {
        "type": "object",
        "description": (
            "A weekly window in Europe/Berlin local time in which the"
            " therapist takes calls. `start` must be before `end`; windows of"
            " one weekday must not overlap."
        ),
        "required": ["weekday", "start", "end"],
        "additionalProperties": False,
        "properties": {
            "weekday": {
                "type": "integer",
                "minimum": 0,
                "maximum": 6,
                "description": "0 is Monday, 6 is Sunday.",
            },
            "start": {
                "type": "string",
                "pattern": CLOCK_TIME,
                "x-pattern-message": CLOCK_TIME_MESSAGE,
                "examples": ["09:00"],
            },
            "end": {
                "type": "string",
                "pattern": CLOCK_TIME,
                "x-pattern-message": CLOCK_TIME_MESSAGE,
                "examples": ["09:50"],
            },
        },
    },
    "TherapistInput": {
        "type": "object",
        "description": (
            "A therapist as the matching service knows them. PUT replaces the"
            " whole record: omitted optional fields fall back to their"
            " defaults."
        ),
        "required": ["first_name", "last_name", "federal_state"],
        "additionalProperties": False,
        "properties": {
            "external_id": {
                **_ref("ExternalId"),
                "description": (
                    "Optional in the PUT body; if given it must equal the id in"
                    " the path. Required in import files."
                ),
            },
            "salutation": {
                "type": ["string", "null"],
                "enum": [*SALUTATIONS, None],
                "default": None,
            },
            "title": _nullable_text(40, "Academic title, e.g. `Dr.`"),
            "first_name": {
                "type": "string",
                "maxLength": 100,
                "pattern": SINGLE_LINE,
                "x-pattern-message": SINGLE_LINE_MESSAGE,
            },
            "last_name": {
                "type": "string",
                "maxLength": 100,
                "pattern": SINGLE_LINE,
                "x-pattern-message": SINGLE_LINE_MESSAGE,
            },
            "email": {
                "type": ["string", "null"],
                "format": "email",
                "maxLength": 254,
                "default": None,
                "description": (
                    "May be null (the therapist is then only called); an empty"
                    " string counts as null. Stored normalised."
                ),
            },
            "phone": {
                "type": ["string", "null"],
                "maxLength": 40,
                "pattern": PHONE,
                "x-pattern-message": "ist keine Telefonnummer",
                "default": None,
                "description": "An empty string counts as null.",
                "examples": ["+49 30 1234567"],
            },
            "federal_state": {
                "type": "string",
                "enum": FEDERAL_STATES,
                "description": "German federal state; decides public holidays.",
            },
            "phone_availability": {
                "type": "array",
                "maxItems": 50,
                "items": _ref("PhoneWindow"),
                "default": [],
            },
            "potentially_available": {"type": "boolean", "default": False},
            "knows_platform": {"type": "boolean", "default": False},
            "next_contact_after": {
                "type": ["string", "null"],
                "format": "date",
                "pattern": ISO_DATE,
                "x-pattern-message": "muss ein Datum JJJJ-MM-TT sein",
                "default": None,
                "description": (
                    "No email or call before this date. An update can move it"
                    " later but never earlier or to null: cooling periods set"
                    " in this service after a decline stay in force."
                ),
            },
            "blocked": {"type": "boolean", "default": False},
            "blocked_reason": {
                "type": ["string", "null"],
                "maxLength": 2000,
                "pattern": FREE_TEXT,
                "x-pattern-message": FREE_TEXT_MESSAGE,
                "default": None,
            },
        },
    },
    "Therapist": {
        "type": "object",
        "required": [
            "id",
            "external_id",
            "salutation",
            "title",
            "first_name",
            "last_name",
            "email",
            "phone",
            "federal_state",
            "phone_availability",
            "potentially_available",
            "knows_platform",
            "next_contact_after",
            "blocked",
            "blocked_reason",
            "created_at",
            "updated_at",
        ],
        "properties": {
            "id": {"type": "integer", "description": "Id in this service."},
            "external_id": _ref("ExternalId"),
            "salutation": {"type": ["string", "null"], "enum": [*SALUTATIONS, None]},
            "title": {"type": ["string", "null"]},
            "first_name": {"type": "string"},
            "last_name": {"type": "string"},
            "email": {"type": ["string", "null"], "format": "email"},
            "phone": {"type": ["string", "null"]},
            "federal_state": {"type": "string", "enum": FEDERAL_STATES},
            "phone_availability": {"type": "array", "items": _ref("PhoneWindow")},
            "potentially_available": {"type": "boolean"},
            "knows_platform": {"type": "boolean"},
            "next_contact_after": {"type": ["string", "null"], "format": "date"},
            "blocked": {"type": "boolean"},
            "blocked_reason": {"type": ["string", "null"]},
            "created_at": TIMESTAMP,
            "updated_at": TIMESTAMP,
        },
    },
    "PlacementRequestInput": {
        "type": "object",
        "description": (
            "One patient proposed to one therapist. Sending the same payload"
            " again is harmless; a different payload under a known"
            " `external_id` is refused."
        ),
        "required": [
            "external_id",
            "therapist_external_id",
            "patient_pseudonym",
            "patient_age",
            "patient_gender",
            "diagnosis_code",
            "patient_registered_at",
        ],
        "additionalProperties": False,
        "properties": {
            "external_id": _ref("ExternalId"),
            "therapist_external_id": _ref("ExternalId"),
            "patient_pseudonym": {
                "type": "string",
                "maxLength": 64,
                "pattern": SINGLE_LINE,
                "x-pattern-message": SINGLE_LINE_MESSAGE,
            },
            "patient_age": {"type": "integer", "minimum": 0, "maximum": 120},
            "patient_gender": {"type": "string", "enum": GENDERS},
            "diagnosis_code": {
                "type": "string",
                "pattern": DIAGNOSIS_CODE,
                "x-pattern-message": (
                    "muss ein ICD-10-Code aus Kapitel F sein, z. B. F32.1"
                ),
                "examples": ["F32.1", "F41"],
            },
            "time_availability": {
                "type": "string",
                "maxLength": 2000,
                "pattern": FREE_TEXT,
                "x-pattern-message": FREE_TEXT_MESSAGE,
                "default": "",
                "description": "When the patient could attend, free text.",
            },
            "patient_registered_at": {
                "type": "string",
                "format": "date-time",
                "description": (
                    "ISO 8601 with a UTC offset; stored as UTC. Orders the"
                    " patients: the longest-waiting come first."
                ),
                "examples": ["2026-11-02T08:15:00+01:00"],
            },
        },
    },
    "PlacementRequest": {
        "type": "object",
        "required": [
            "id",
            "external_id",
            "therapist_id",
            "therapist_external_id",
            "patient_pseudonym",
            "patient_age",
            "patient_gender",
            "diagnosis_code",
            "time_availability",
            "patient_registered_at",
            "status",
            "created_at",
            "updated_at",
        ],
        "properties": {
            "id": {"type": "integer"},
            "external_id": _ref("ExternalId"),
            "therapist_id": {"type": "integer"},
            "therapist_external_id": _ref("ExternalId"),
            "patient_pseudonym": {"type": "string"},
            "patient_age": {"type": "integer"},
            "patient_gender": {"type": "string", "enum": GENDERS},
            "diagnosis_code": {"type": "string"},
            "time_availability": {"type": "string"},
            "patient_registered_at": TIMESTAMP,
            "status": {"type": "string", "enum": PLACEMENT_STATUSES},
            "created_at": TIMESTAMP,
            "updated_at": TIMESTAMP,
        },
    },
    "EmailCreate": {
        "type": "object",
        "description": (
            "Order an email to a therapist about some of their placement"
            " requests. The therapist must have an email address and must"
            " be neither blocked nor, for request kinds, in a cooling period;"
            " every request must belong to them (open ones for request"
            " kinds, accepted ones for `confirmation`) and must not sit in"
            " another email that is still a draft, queued or sending. At"
            " most BATCH_MAX_REQUESTS (default 6) requests; `initial_contact`"
            " carries exactly one."
        ),
        "required": ["therapist_id", "kind", "placement_request_ids"],
        "additionalProperties": False,
        "properties": {
            "therapist_id": ROW_ID,
            "kind": {"type": "string", "enum": EMAIL_KINDS},
            "placement_request_ids": {
                "type": "array",
                "minItems": 1,
                "uniqueItems": True,
                "items": ROW_ID,
            },
            "status": {
                "type": "string",
                "enum": ["entwurf", "in_warteschlange"],
                "default": "entwurf",
                "description": (
                    "`entwurf` leaves the draft for a coordinator to review;"
                    " `in_warteschlange` approves it at once, subject to the"
                    " weekly cap."
                ),
            },
            "not_before": {
                "type": "string",
                "format": "date-time",
                "description": (
                    "Send no earlier than this time (ISO 8601 with offset, e.g."
                    " `2026-12-07T08:00:00+01:00`); only with `status`"
                    " `in_warteschlange`. The email counts against the weekly"
                    " cap from now on and goes out within about a minute after"
                    " this time. A time in the past means at once. A supervisor"
                    " can cancel it while it waits."
                ),
            },
        },
    },
    "Email": {
        "type": "object",
        "required": [
            "id",
            "therapist_id",
            "kind",
            "priority",
            "subject",
            "body_html",
            "body_text",
            "recipient_email",
            "recipient_name",
            "sender_email",
            "sender_name",
            "status",
            "message_id",
            "approved_by_id",
            "approved_at",
            "queued_at",
            "next_attempt_at",
            "claimed_by",
            "claimed_at",
            "sent_at",
            "error_message",
            "retry_count",
            "created_at",
            "updated_at",
            "placement_request_ids",
        ],
        "properties": {
            "id": {"type": "integer"},
            "therapist_id": {"type": "integer"},
            "kind": {"type": "string", "enum": EMAIL_KINDS},
            "priority": {
                "type": "integer",
                "description": "Lower drains first: confirmation 1, follow-up 2.",
            },
            "subject": {"type": "string"},
            "body_html": {"type": "string"},
            "body_text": {"type": "string"},
            "recipient_email": {"type": "string", "format": "email"},
            "recipient_name": {"type": "string"},
            "sender_email": {"type": "string", "format": "email"},
            "sender_name": {"type": "string"},
            "status": {"type": "string", "enum": EMAIL_STATUSES},
            "message_id": {
                "type": ["string", "null"],
                "description": "Set when the email is approved.",
            },
            "approved_by_id": {
                "type": ["integer", "null"],
                "description": "Staff user who approved; null if via the API.",
            },
            "approved_at": NULLABLE_TIMESTAMP,
            "queued_at": NULLABLE_TIMESTAMP,
            "next_attempt_at": NULLABLE_TIMESTAMP,
            "claimed_by": {
                "type": ["string", "null"],
                "description": "Worker sending the email right now.",
            },
            "claimed_at": NULLABLE_TIMESTAMP,
            "sent_at": NULLABLE_TIMESTAMP,
            "error_message": {"type": ["string", "null"]},
            "retry_count": {"type": "integer"},
            "created_at": TIMESTAMP,
            "updated_at": TIMESTAMP,
            "placement_request_ids": {
                "type": "array",
                "items": {"type": "integer"},
            },
        },
    },
    "EmailPage": {
        "type": "object",
        "required": ["items", "page", "per_page", "total"],
        "properties": {
            "items": {"type": "array", "items": _ref("Email")},
            "page": {"type": "integer", "minimum": 1},
            "per_page": {"type": "integer", "minimum": 1, "maximum": 100},
            "total": {"type": "integer", "minimum": 0},
        },
    },
}

_AUTH_ERRORS = {
    "401": _error_response("Missing, unknown or revoked bearer token."),
}
_VALIDATION_ERROR = _error_response("A field breaks a rule; `field` names it.")
_BAD_JSON = _error_response("The body is not a JSON object.")

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
    "info": {
        "title": "Communication Service API",
        "version": "1.0.0",
        "description": (
            "Intake of therapists and placement requests from the matching"
            " service, and email orders and their state. Every route except"
            " this document needs `Authorization: Bearer <token>`; an admin"
            " creates tokens with `flask create-api-token NAME`. Times are"
            " UTC. Every error has the `Error` shape."
        ),
    },
    "security": [{"bearerAuth": []}],
    "paths": {
        "/api/openapi.json": {
            "get": {
                "operationId": "getOpenApiDocument",
                "summary": "This document",
                "security": [],
                "responses": {
                    "200": {
                        "description": "The OpenAPI document.",
                        "content": _json({"type": "object"}),
                    }
                },
            }
        },
        "/api/therapists/{external_id}": {
            "parameters": [
                {
                    "name": "external_id",
                    "in": "path",
                    "required": True,
                    "schema": _ref("ExternalId"),
                }
            ],
            "get": {
                "operationId": "getTherapist",
                "summary": "Read a therapist",
                "responses": {
                    "200": {
                        "description": "The therapist.",
                        "content": _json(_ref("Therapist")),
                    },
                    **_AUTH_ERRORS,
                    "404": _error_response("No therapist with this id."),
                },
            },
            "put": {
                "operationId": "putTherapist",
                "summary": "Create or replace a therapist",
                "requestBody": {
                    "required": True,
                    "content": _json(_ref("TherapistInput")),
                },
                "responses": {
                    "200": {
                        "description": "Updated.",
                        "content": _json(_ref("Therapist")),
                    },
                    "201": {
                        "description": "Created.",
                        "content": _json(_ref("Therapist")),
                    },
                    "400": _BAD_JSON,
                    **_AUTH_ERRORS,
                    "409": _error_response("Created concurrently; try again."),
                    "422": _VALIDATION_ERROR,
                },
            },
        },
        "/api/placement-requests": {
            "post": {
                "operationId": "createPlacementRequest",
                "summary": "Hand in a placement request (idempotent)",
                "requestBody": {
                    "required": True,
                    "content": _json(_ref("PlacementRequestInput")),
                },
                "responses": {
                    "200": {
                        "description": "Already known with the same payload.",
                        "content": _json(_ref("PlacementRequest")),
                    },
                    "201": {
                        "description": "Created.",
                        "content": _json(_ref("PlacementRequest")),
                    },
                    "400": _BAD_JSON,
                    **_AUTH_ERRORS,
                    "409": _error_response(
                        "Known `external_id` with a different payload; `field`"
                        " names the first differing field."
                    ),
                    "422": _VALIDATION_ERROR,
                },
            }
        },
        "/api/emails": {
            "get": {
                "operationId": "listEmails",
                "summary": "List emails, newest first",
                "parameters": [
                    {
                        "name": "status",
                        "in": "query",
                        "schema": {"type": "string", "enum": EMAIL_STATUSES},
                    },
                    {
                        "name": "therapist_id",
                        "in": "query",
                        "schema": ROW_ID,
                    },
                    {
                        "name": "kind",
                        "in": "query",
                        "schema": {"type": "string", "enum": EMAIL_KINDS},
                    },
                    {
                        "name": "created_from",
                        "in": "query",
                        "description": (
                            "First day (Europe/Berlin) of the creation range,"
                            " inclusive."
                        ),
                        "schema": {"type": "string", "format": "date"},
                    },
                    {
                        "name": "created_to",
                        "in": "query",
                        "description": (
                            "Last day (Europe/Berlin) of the creation range, inclusive."
                        ),
                        "schema": {"type": "string", "format": "date"},
                    },
                    {
                        "name": "page",
                        "in": "query",
                        "schema": {**ROW_ID, "default": 1},
                    },
                    {
                        "name": "per_page",
                        "in": "query",
                        "schema": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": 100,
                            "default": 20,
                        },
                    },
                ],
                "responses": {
                    "200": {
                        "description": "One page of emails.",
                        "content": _json(_ref("EmailPage")),
                    },
                    "400": _error_response(
                        "A query parameter is invalid; `field` names it."
                    ),
                    **_AUTH_ERRORS,
                },
            },
            "post": {
                "operationId": "createEmail",
                "summary": "Draft an email, and queue it if asked",
                "requestBody": {
                    "required": True,
                    "content": _json(_ref("EmailCreate")),
                },
                "responses": {
                    "201": {
                        "description": "The draft, or the queued email.",
                        "content": _json(_ref("Email")),
                    },
                    "400": _BAD_JSON,
                    **_AUTH_ERRORS,
                    "409": _error_response(
                        "Weekly cap reached (`weekly_cap_exceeded`, field"
                        " `therapist_id`), an open draft exists for the"
                        " therapist, or a request already sits in another"
                        " pending email. Nothing is stored."
                    ),
                    "422": _VALIDATION_ERROR,
                },
            },
        },
        "/api/emails/{email_id}": {
            "parameters": [
                {
                    "name": "email_id",
                    "in": "path",
                    "required": True,
                    "schema": ROW_ID,
                }
            ],
            "get": {
                "operationId": "getEmail",
                "summary": "Read an email and its state",
                "responses": {
                    "200": {
                        "description": "The email.",
                        "content": _json(_ref("Email")),
                    },
                    **_AUTH_ERRORS,
                    "404": _error_response("No email with this id."),
                },
            },
        },
    },
    "components": {
        "securitySchemes": {
            "bearerAuth": {
                "type": "http",
                "scheme": "bearer",
                "description": "A token from `flask create-api-token NAME`.",
            }
        },
        "schemas": SCHEMAS,
    },
}
