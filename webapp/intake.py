"""Intake from other services: therapists, placement requests, email orders.

Every function validates its whole input before it writes anything and
raises `ValidationFailed` naming the offending field. None of them commits
except `order_email`, so an import can take many items in one transaction.
"""

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache
from typing import Any

from email_validator import EmailNotValidError, validate_email
from flask import current_app
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from sqlalchemy import select
from sqlalchemy.orm import Session

from webapp.approval import approve_emails, cap_blocks
from webapp.clock import Clock, local_today
from webapp.drafting import create_draft
from webapp.exceptions import IntakeConflict, ValidationFailed, WeeklyCapExceeded
from webapp.models import (
    CAPPED_KINDS,
    Email,
    EmailKind,
    EmailStatus,
    PlacementRequest,
    PlacementStatus,
    Therapist,
    email_placement_requests,
)
from webapp.openapi import OPENAPI

log = logging.getLogger(__name__)

_DOCUMENT_URI = "urn:comms:openapi"

# An email in one of these states still works on its placement requests.
PENDING_STATUSES = (EmailStatus.DRAFT, EmailStatus.QUEUED, EmailStatus.SENDING)
# Kinds of which a therapist has at most one draft at a time.
BATCHING_KINDS = (EmailKind.INITIAL_CONTACT, EmailKind.BATCH_REQUEST)

_TYPE_NAMES = {
    "string": "eine Zeichenkette",
    "integer": "eine ganze Zahl",
    "number": "eine Zahl",
    "boolean": "true oder false",
    "array": "eine Liste",
    "object": "ein Objekt",
    "null": "null",
}


@dataclass
class ImportReport:
    """What one import did."""

    therapists_created: int = 0
    therapists_updated: int = 0
    requests_created: int = 0
    requests_unchanged: int = 0


# Validation against the OpenAPI document's schemas


@cache
def _validator(component: str) -> Draft202012Validator:
    resource = Resource(contents=OPENAPI, specification=DRAFT202012)
    registry = Registry().with_resource(_DOCUMENT_URI, resource)
    schema = {"$ref": f"{_DOCUMENT_URI}#/components/schemas/{component}"}
    return Draft202012Validator(schema, registry=registry)


def check_schema(component: str, data: Any) -> None:
    """Raise ValidationFailed at the first rule of the named schema `data` breaks."""
    error = best_match(_validator(component).iter_errors(data))
    if error is not None:
        field, message = _describe(error)
        raise ValidationFailed(field, message)


def _describe(error: ValidationError) -> tuple[str | None, str]:
    path = list(error.absolute_path)
    keyword = error.validator
    value = error.validator_value
    schema = error.schema if isinstance(error.schema, dict) else {}

    if keyword == "required":
        missing = next(name for name in value if name not in error.instance)
        return field_path([*path, missing]), "fehlt"
    if keyword == "additionalProperties":
        known = schema.get("properties", {})
        unknown = sorted(name for name in error.instance if name not in known)
        return field_path([*path, unknown[0]]), "ist kein bekanntes Feld"

    field = field_path(path)
    if keyword == "type" and field is None:
        return None, "Der Inhalt muss ein JSON-Objekt sein"
    return field, _keyword_message(keyword, value, schema)


def _keyword_message(keyword: str, value: Any, schema: dict) -> str:
    if keyword == "type":
        names = [value] if isinstance(value, str) else value
        return "muss " + " oder ".join(_TYPE_NAMES[name] for name in names) + " sein"
    if keyword == "enum":
        shown = ", ".join("null" if option is None else str(option) for option in value)
        return f"muss einer dieser Werte sein: {shown}"
    if keyword == "pattern":
        return schema.get("x-pattern-message", "hat ein ungültiges Format")
    if keyword == "minimum":
        return f"muss mindestens {value} sein"
    if keyword == "maximum":
        return f"darf höchstens {value} sein"
    if keyword in ("minLength", "minItems") and value == 1:
        return "darf nicht leer sein"
    if keyword == "minLength":
        return f"muss mindestens {value} Zeichen lang sein"
    if keyword == "maxLength":
        return f"darf höchstens {value} Zeichen lang sein"
    if keyword == "minItems":
        return f"muss mindestens {value} Einträge enthalten"
    if keyword == "maxItems":
        return f"darf höchstens {value} Einträge enthalten"
    if keyword == "uniqueItems":
        return "enthält doppelte Einträge"
    return "ist ungültig"


def field_path(parts: list[str | int]) -> str | None:
    """Write a JSON path as `phone_availability[1].start`; None for the root."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else part
    return text or None


@contextmanager
def field_prefix(prefix: str) -> Iterator[None]:
    """Put `prefix` in front of the field of errors raised inside."""
    try:
        yield
    except ValidationFailed as exc:
        raise ValidationFailed(_join(prefix, exc.field), exc.message) from exc
    except IntakeConflict as exc:
        raise IntakeConflict(_join(prefix, exc.field), exc.message) from exc


def _join(prefix: str, field: str | None) -> str:
    if not field:
        return prefix
    return f"{prefix}{field}" if field.startswith("[") else f"{prefix}.{field}"


# Therapists


def upsert_therapist(
    session: Session, external_id: str, data: Mapping[str, Any]
) -> tuple[Therapist, bool]:
    """Create or replace the therapist with this external id; tell if it is new."""
    try:
        check_schema("ExternalId", external_id)
    except ValidationFailed as exc:
        raise ValidationFailed("external_id", exc.message) from None
    values = therapist_values(data)
    if data.get("external_id", external_id) != external_id:
        raise ValidationFailed("external_id", "passt nicht zur Id in der Adresse")

    therapist = session.scalar(select(Therapist).filter_by(external_id=external_id))
    created = therapist is None
    if created:
        therapist = Therapist(external_id=external_id)
        session.add(therapist)
    else:
        values["next_contact_after"] = _keep_cooling_period(
            therapist.next_contact_after, values["next_contact_after"]
        )
    for name, value in values.items():
        setattr(therapist, name, value)
    session.flush()

    log.info("therapist %s %s", therapist.id, "created" if created else "updated")
    return therapist, created


def _keep_cooling_period(stored: date | None, given: date | None) -> date | None:
    # A decline here sets the cooling period (DESIGN.md rule 8) and only an
    # audited override may shorten it, so intake can extend it, never cut it.
    if stored is not None and (given is None or given < stored):
        return stored
    return given


def therapist_values(data: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a therapist payload and return the model's column values."""
    check_schema("TherapistInput", data)

    return {
        "salutation": data.get("salutation"),
        "title": _clean(data.get("title")),
        "first_name": _clean(data["first_name"]),
        "last_name": _clean(data["last_name"]),
        "email": _email_address(data.get("email")),
        "phone": _clean(data.get("phone")),
        "federal_state": data["federal_state"],
        "phone_availability": _phone_windows(data.get("phone_availability", [])),
        "potentially_available": data.get("potentially_available", False),
        "knows_platform": data.get("knows_platform", False),
        "next_contact_after": _date(
            data.get("next_contact_after"), "next_contact_after"
        ),
        "blocked": data.get("blocked", False),
        "blocked_reason": _clean(data.get("blocked_reason")),
    }


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    return value.strip() or None


def _email_address(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    try:
        checked = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError:
        raise ValidationFailed("email", "ist keine gültige E-Mail-Adresse") from None
    return checked.normalized


def _date(value: str | None, field: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValidationFailed(field, "ist kein gültiges Datum") from None


def _phone_windows(windows: list[dict]) -> list[dict]:
    # The schema already checked the shape and the 5-minute times.
    for index, window in enumerate(windows):
        if window["start"] >= window["end"]:
            field = f"phone_availability[{index}].end"
            raise ValidationFailed(field, "muss nach dem Beginn liegen")

    def position(index: int) -> tuple[int, str, str]:
        window = windows[index]
        return window["weekday"], window["start"], window["end"]

    order = sorted(range(len(windows)), key=position)
    for before, after in zip(order, order[1:], strict=False):
        same_day = windows[before]["weekday"] == windows[after]["weekday"]
        if same_day and windows[after]["start"] < windows[before]["end"]:
            raise ValidationFailed(
                f"phone_availability[{after}]",
                "überschneidet sich mit einem anderen Zeitfenster",
            )
    return [
        dict(zip(("weekday", "start", "end"), position(i), strict=True)) for i in order
    ]


# Placement requests


def intake_placement_request(
    session: Session, data: Mapping[str, Any]
) -> tuple[PlacementRequest, bool]:
    """Store a placement request once; tell whether it is new.

    The same payload again returns the stored row; a different payload
    under a known external id raises IntakeConflict.
    """
    values = placement_request_values(data)
    therapist = session.scalar(
        select(Therapist).filter_by(external_id=data["therapist_external_id"])
    )
    if therapist is None:
        raise ValidationFailed("therapist_external_id", "Therapeut:in ist unbekannt")
    values["therapist_id"] = therapist.id

    existing = session.scalar(
        select(PlacementRequest).filter_by(external_id=values["external_id"])
    )
    if existing is not None:
        differing = [
            name for name, value in values.items() if getattr(existing, name) != value
        ]
        if differing:
            field = (
                "therapist_external_id"
                if differing[0] == "therapist_id"
                else differing[0]
            )
            raise IntakeConflict(
                field, "weicht von der schon gespeicherten Platzanfrage ab"
            )
        return existing, False

    request = PlacementRequest(**values, therapist=therapist)
    session.add(request)
    session.flush()
    log.info("placement request %s created for therapist %s", request.id, therapist.id)
    return request, True


def placement_request_values(data: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a placement request payload and return column values."""
    check_schema("PlacementRequestInput", data)

    return {
        "external_id": data["external_id"],
        "patient_pseudonym": data["patient_pseudonym"].strip(),
        "patient_age": int(data["patient_age"]),
        "patient_gender": data["patient_gender"],
        "diagnosis_code": data["diagnosis_code"],
        "time_availability": data.get("time_availability", "").strip(),
        "patient_registered_at": _utc_datetime(
            data["patient_registered_at"], "patient_registered_at"
        ),
    }


def _utc_datetime(value: str, field: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationFailed(
            field, "ist kein gültiger Zeitpunkt nach ISO 8601"
        ) from None
    if parsed.tzinfo is None:
        raise ValidationFailed(field, "braucht eine Zeitzone, z. B. +01:00 oder Z")
    try:
        return parsed.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:
        raise ValidationFailed(field, "liegt außerhalb des gültigen Bereichs") from None


# Import files


def import_records(session: Session, data: Any) -> ImportReport:
    """Take therapists, then placement requests, from one import document.

    Raises at the first bad item with its index in the field path; the
    caller rolls back, so an import stores all or nothing.
    """
    if not isinstance(data, dict):
        raise ValidationFailed(None, "Die Datei muss ein JSON-Objekt enthalten")
    unknown = sorted(set(data) - {"therapists", "placement_requests"})
    if unknown:
        raise ValidationFailed(unknown[0], "ist kein bekanntes Feld")
    for key in ("therapists", "placement_requests"):
        if not isinstance(data.get(key, []), list):
            raise ValidationFailed(key, "muss eine Liste sein")

    report = ImportReport()
    for index, item in enumerate(data.get("therapists", [])):
        with field_prefix(f"therapists[{index}]"):
            if not isinstance(item, dict):
                raise ValidationFailed(None, "muss ein Objekt sein")
            if "external_id" not in item:
                raise ValidationFailed("external_id", "fehlt")
            _, created = upsert_therapist(session, item["external_id"], item)
        if created:
            report.therapists_created += 1
        else:
            report.therapists_updated += 1

    for index, item in enumerate(data.get("placement_requests", [])):
        with field_prefix(f"placement_requests[{index}]"):
            _, created = intake_placement_request(session, item)
        if created:
            report.requests_created += 1
        else:
            report.requests_unchanged += 1
    return report


# Email orders


def order_email(session: Session, data: Mapping[str, Any], clock: Clock) -> Email:
    """Draft the ordered email and commit it; queue it at once if asked.

    Everything is checked before the draft is written. If the weekly cap
    refuses the approval after all, the draft is removed again and
    WeeklyCapExceeded propagates.
    """
    check_schema("EmailCreate", data)
    kind = EmailKind(data["kind"])
    queue_now = data.get("status", EmailStatus.DRAFT) == EmailStatus.QUEUED
    not_before = _not_before(data, queue_now)
    therapist = _emailable_therapist(session, int(data["therapist_id"]), kind, clock)
    ids = [int(request_id) for request_id in data["placement_request_ids"]]
    requests = _requests_for_email(session, therapist, kind, ids)

    capped = kind in CAPPED_KINDS
    if capped and queue_now and cap_blocks(session, therapist.id, clock.now()):
        raise WeeklyCapExceeded(therapist.id)

    email = create_draft(session, therapist, kind, requests, clock)
    session.flush()
    log.info("email %s drafted for therapist %s via api", email.id, therapist.id)
    if not queue_now:
        session.commit()
        return email

    try:
        approve_emails(session, [email], user=None, clock=clock, not_before=not_before)
    except WeeklyCapExceeded:
        # Approval commits the draft before it locks; take it back.
        session.rollback()
        session.delete(session.get(Email, email.id))
        session.commit()
        log.info("email %s removed again: weekly cap", email.id)
        raise
    return email


def _not_before(data: Mapping[str, Any], queue_now: bool) -> datetime | None:
    """Read the optional sending time; only a queued order may carry one."""
    if data.get("not_before") is None:
        return None
    if not queue_now:
        # A draft waits for a coordinator, who decides when it goes out.
        raise ValidationFailed("not_before", "nur mit status in_warteschlange")
    return _utc_datetime(data["not_before"], "not_before")


def _emailable_therapist(
    session: Session, therapist_id: int, kind: EmailKind, clock: Clock
) -> Therapist:
    therapist = session.get(Therapist, therapist_id)
    if therapist is None:
        raise ValidationFailed("therapist_id", "Therapeut:in nicht gefunden")
    if not therapist.email:
        raise ValidationFailed("therapist_id", "Therapeut:in hat keine E-Mail-Adresse")
    if therapist.blocked:
        raise ValidationFailed("therapist_id", "Therapeut:in ist gesperrt")

    cooling_until = therapist.next_contact_after
    if kind in CAPPED_KINDS and cooling_until and cooling_until > local_today(clock):
        raise ValidationFailed(
            "therapist_id",
            f"Kontaktpause, Kontakt wieder ab {cooling_until:%d.%m.%Y}",
        )
    if kind in BATCHING_KINDS:
        # Mirrors the unique index uq_emails_one_draft, to answer in words.
        draft_id = session.scalar(
            select(Email.id).where(
                Email.therapist_id == therapist.id,
                Email.kind.in_(BATCHING_KINDS),
                Email.status == EmailStatus.DRAFT,
            )
        )
        if draft_id is not None:
            raise IntakeConflict(
                "therapist_id",
                f"Für diese Therapeut:in liegt schon Entwurf {draft_id} vor",
            )
    return therapist


def _requests_for_email(
    session: Session, therapist: Therapist, kind: EmailKind, ids: list[int]
) -> list[PlacementRequest]:
    field = "placement_request_ids"
    max_requests = current_app.config["BATCH_MAX_REQUESTS"]
    if len(ids) > max_requests:
        raise ValidationFailed(
            field, f"höchstens {max_requests} Platzanfragen je E-Mail"
        )
    if kind == EmailKind.INITIAL_CONTACT and len(ids) != 1:
        raise ValidationFailed(field, "eine Erstanfrage trägt genau eine Platzanfrage")

    found = {
        request.id: request
        for request in session.scalars(
            select(PlacementRequest).where(PlacementRequest.id.in_(ids))
        )
    }
    wanted_status = (
        PlacementStatus.ACCEPTED
        if kind == EmailKind.CONFIRMATION
        else PlacementStatus.OPEN
    )
    for index, request_id in enumerate(ids):
        request = found.get(request_id)
        if request is None:
            raise ValidationFailed(f"{field}[{index}]", "Platzanfrage nicht gefunden")
        if request.therapist_id != therapist.id:
            raise ValidationFailed(
                f"{field}[{index}]", "Platzanfrage gehört zu einer anderen Therapeut:in"
            )
        if request.status != wanted_status:
            raise ValidationFailed(
                f"{field}[{index}]", f"Platzanfrage hat den Status {request.status}"
            )

    busy = session.execute(
        select(email_placement_requests.c.placement_request_id, Email.id)
        .join(Email, Email.id == email_placement_requests.c.email_id)
        .where(
            email_placement_requests.c.placement_request_id.in_(ids),
            Email.status.in_(PENDING_STATUSES),
        )
    ).first()
    if busy is not None:
        request_id, email_id = busy
        raise IntakeConflict(
            f"{field}[{ids.index(request_id)}]",
            f"Platzanfrage steckt schon in E-Mail {email_id}",
        )

    # Longest-waiting patients first, as in batching.
    return sorted(found.values(), key=lambda r: (r.patient_registered_at, r.id))
