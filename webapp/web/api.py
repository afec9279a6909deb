"""JSON API for the platform's other services.

Every route needs a bearer token except the OpenAPI document. Every error,
routing errors included, has the shape `{"error": {"code", "message",
"field"}}`; a catch-all route keeps unknown paths and wrong methods under
/api inside this blueprint, so its error handlers answer them.
"""

import json
import logging
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, current_app, g, jsonify, request
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from webapp.api_tokens import verify_api_token
from webapp.clock import (
    EARLIEST_DATE,
    LATEST_DATE,
    Clock,
    app_clock,
    day_start_utc,
)
from webapp.exceptions import (
    IntakeConflict,
    InvalidTransition,
    ValidationFailed,
    WeeklyCapExceeded,
)
from webapp.extensions import csrf, db
from webapp.intake import (
    intake_placement_request,
    order_email,
    upsert_therapist,
)
from webapp.jobs import enqueue_sending
from webapp.models import (
    Email,
    EmailKind,
    EmailStatus,
    PlacementRequest,
    Therapist,
)
from webapp.openapi import OPENAPI

log = logging.getLogger(__name__)

api = Blueprint("api", __name__)
csrf.exempt(api)

PUBLIC_ENDPOINTS = {"api.openapi_document"}
MAX_PER_PAGE = 100
MAX_ROW_ID = 2**31 - 1
DEFAULT_PER_PAGE = 20
_PROBE_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")

# Columns that stay inside the service.
_HIDDEN_COLUMNS = {"mime_bytes", "cap_lock"}


def api_error(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[Response, int, dict[str, str]]:
    """Build the one error response shape of the API."""
    body = {"error": {"code": code, "message": message, "field": field}}
    return jsonify(body), status, headers or {}


def _clock() -> Clock:
    return app_clock()


# Authentication


@api.before_request
def require_token():
    """Refuse requests without a live bearer token."""
    if request.endpoint in PUBLIC_ENDPOINTS or request.method == "OPTIONS":
        return None

    challenge = {"WWW-Authenticate": 'Bearer realm="api"'}
    credentials = request.authorization
    if credentials is None or credentials.type != "bearer" or not credentials.token:
        return api_error(401, "unauthorized", "Bearer-Token fehlt", headers=challenge)
    token = verify_api_token(db.session, credentials.token)
    if token is None:
        return api_error(
            401, "unauthorized", "Token ist ungültig oder widerrufen", headers=challenge
        )
    g.api_token = token
    return None


# Errors


@api.errorhandler(ValidationFailed)
def _validation_failed(exc: ValidationFailed):
    db.session.rollback()
    return api_error(422, "validation_error", exc.message, exc.field)


@api.errorhandler(IntakeConflict)
def _intake_conflict(exc: IntakeConflict):
    db.session.rollback()
    return api_error(409, "conflict", exc.message, exc.field)


@api.errorhandler(WeeklyCapExceeded)
def _weekly_cap(exc: WeeklyCapExceeded):
    db.session.rollback()
    return api_error(
        409,
        "weekly_cap_exceeded",
        "Wochenlimit erreicht: Diese Therapeut:in hat in den letzten Tagen bereits"
        " eine Anfrage erhalten oder eine ist unterwegs.",
        "therapist_id",
    )


@api.errorhandler(InvalidTransition)
def _invalid_transition(exc: InvalidTransition):
    db.session.rollback()
    return api_error(409, "conflict", "Die E-Mail ist nicht mehr im passenden Status")


@api.errorhandler(IntegrityError)
def _integrity_error(exc: IntegrityError):
    # A concurrent request stored the same thing first.
    db.session.rollback()
    log.info("api request hit a constraint: %s", type(exc.orig).__name__)
    return api_error(409, "conflict", "Gleichzeitig geändert; bitte erneut senden")


_HTTP_ERRORS = {
    400: ("bad_request", "Ungültige Anfrage"),
    404: ("not_found", "Nicht gefunden"),
    405: ("method_not_allowed", "Methode nicht erlaubt"),
    413: ("bad_request", "Der Inhalt ist zu groß"),
}


@api.errorhandler(HTTPException)
def _http_error(exc: HTTPException):
    db.session.rollback()
    code, message = _HTTP_ERRORS.get(exc.code, ("bad_request", "Ungültige Anfrage"))
    headers = {}
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        headers["Allow"] = ", ".join(sorted(exc.valid_methods))
    return api_error(exc.code or 400, code, message, headers=headers)


class BadJson(Exception):
    """The request body is not a JSON object."""


@api.errorhandler(BadJson)
def _bad_json(exc: BadJson):
    return api_error(400, "invalid_json", "Der Inhalt muss ein JSON-Objekt sein")


class BadQuery(Exception):
    """A query parameter is invalid; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@api.errorhandler(BadQuery)
def _bad_query(exc: BadQuery):
    return api_error(400, "validation_error", exc.message, exc.field)


@api.errorhandler(Exception)
def _unexpected(exc: Exception):
    db.session.rollback()
    log.exception("api request %s %s failed", request.method, request.path)
    return api_error(500, "internal_error", "Interner Fehler")


@api.route("/", defaults={"unknown": ""}, methods=_PROBE_METHODS)
@api.route("/<path:unknown>", methods=_PROBE_METHODS)
def unknown_route(unknown: str):
    """Answer paths and methods no other route takes, in the API's shape."""
    adapter = current_app.url_map.bind_to_environ(request.environ)
    allowed = set()
    for method in _PROBE_METHODS:
        try:
            endpoint, _ = adapter.match(method=method)
        except HTTPException:
            continue
        if endpoint != "api.unknown_route":
            allowed.add(method)
    if allowed:
        raise MethodNotAllowed(valid_methods=allowed)
    raise NotFound()


def _json_body() -> dict[str, Any]:
    data = request.get_json(force=True, silent=True)
    if not isinstance(data, dict):
        raise BadJson()
    try:
        # JSON may escape lone surrogates, which no database can store.
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise BadJson() from None
    return data


# Serialisation


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat() + "Z"
    if isinstance(value, date):
        return value.isoformat()
    return value


def _columns(row: Any) -> dict[str, Any]:
    return {
        column.key: _jsonable(getattr(row, column.key))
        for column in row.__table__.columns
        if column.key not in _HIDDEN_COLUMNS
    }


def therapist_json(therapist: Therapist) -> dict[str, Any]:
    """Return the API representation of a therapist."""
    return _columns(therapist)


def placement_request_json(placement: PlacementRequest) -> dict[str, Any]:
    """Return the API representation of a placement request."""
    return {
        **_columns(placement),
        "therapist_external_id": placement.therapist.external_id,
    }


def email_json(email: Email) -> dict[str, Any]:
    """Return the API representation of an email, without its MIME bytes."""
    return {**_columns(email), "placement_request_ids": email.placement_request_ids}


# Documentation


@api.get("/openapi.json")
def openapi_document():
    """Serve the OpenAPI document; it needs no token."""
    return jsonify(OPENAPI)


# Therapists


@api.get("/therapists/<external_id>")
def therapist_get(external_id: str):
    """Return one therapist by external id."""
    therapist = db.session.scalar(select(Therapist).filter_by(external_id=external_id))
    if therapist is None:
        raise NotFound()
    return therapist_json(therapist)


@api.put("/therapists/<external_id>")
def therapist_put(external_id: str):
    """Create or replace a therapist."""
    therapist, created = upsert_therapist(db.session, external_id, _json_body())
    db.session.commit()
    log.info(
        "therapist %s %s via api token %s",
        therapist.id,
        "created" if created else "updated",
        g.api_token.id,
    )
    return therapist_json(therapist), 201 if created else 200


# Placement requests


@api.post("/placement-requests")
def placement_request_post():
    """Store a placement request; the same payload again changes nothing."""
    data = _json_body()
    try:
        placement, created = intake_placement_request(db.session, data)
        db.session.commit()
    except IntegrityError:
        # Someone stored the same external id a moment ago: compare with it.
        db.session.rollback()
        placement, created = intake_placement_request(db.session, data)
        db.session.commit()
    if created:
        log.info(
            "placement request %s created via api token %s",
            placement.id,
            g.api_token.id,
        )
    return placement_request_json(placement), 201 if created else 200


# Emails


@api.get("/emails/<int:email_id>")
def email_get(email_id: int):
    """Return one email with its state."""
    # Larger numbers are no row id; the database would refuse to compare them.
    email = db.session.get(Email, email_id) if email_id <= MAX_ROW_ID else None
    if email is None:
        raise NotFound()
    return email_json(email)


@api.get("/emails")
def email_list():
    """List emails newest first, filtered and paginated."""
    args = request.args
    page = _int_arg("page", 1, minimum=1, maximum=MAX_ROW_ID)
    per_page = _int_arg("per_page", DEFAULT_PER_PAGE, minimum=1, maximum=MAX_PER_PAGE)
    statement = (
        select(Email)
        .options(selectinload(Email.placement_requests))
        .order_by(Email.created_at.desc(), Email.id.desc())
    )

    if "status" in args:
        statement = statement.where(Email.status == _choice_arg("status", EmailStatus))
    if "kind" in args:
        statement = statement.where(Email.kind == _choice_arg("kind", EmailKind))
    if "therapist_id" in args:
        therapist_id = _int_arg("therapist_id", None, minimum=1, maximum=MAX_ROW_ID)
        statement = statement.where(Email.therapist_id == therapist_id)

    first = _date_arg("created_from")
    last = _date_arg("created_to")
    if first and last and last < first:
        raise BadQuery("created_to", "darf nicht vor created_from liegen")
    zone = ZoneInfo(current_app.config["TIMEZONE"])
    if first:
        statement = statement.where(Email.created_at >= _day_start_utc(first, zone))
    if last:
        next_day = last + timedelta(days=1)
        statement = statement.where(Email.created_at < _day_start_utc(next_day, zone))

    result = db.paginate(statement, page=page, per_page=per_page, error_out=False)
    return {
        "items": [email_json(email) for email in result.items],
        "page": page,
        "per_page": per_page,
        "total": result.total,
    }


@api.post("/emails")
def email_post():
    """Draft an email for a therapist, and queue it if asked."""
    clock = _clock()
    email = order_email(db.session, _json_body(), clock)
    # An email planned for later is woken by the reconciler when it is due.
    if email.status == EmailStatus.QUEUED and email.next_attempt_at <= clock.now():
        enqueue_sending([email])
    log.info(
        "email %s ordered as %s via api token %s",
        email.id,
        email.status,
        g.api_token.id,
    )
    return email_json(email), 201


# Query parameters


def _int_arg(
    name: str, default: int | None, minimum: int, maximum: int | None = None
) -> int | None:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadQuery(name, "muss eine ganze Zahl sein") from None
    if value < minimum:
        raise BadQuery(name, f"muss mindestens {minimum} sein")
    if maximum is not None and value > maximum:
        raise BadQuery(name, f"darf höchstens {maximum} sein")
    return value


def _choice_arg(name: str, choices: type[EmailStatus] | type[EmailKind]) -> str:
    raw = request.args[name]
    allowed = [choice.value for choice in choices]
    if raw not in allowed:
        raise BadQuery(name, "muss einer dieser Werte sein: " + ", ".join(allowed))
    return raw


def _date_arg(name: str) -> date | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        if len(raw) != 10:
            raise ValueError(raw)
        day = date.fromisoformat(raw)
    except ValueError:
        raise BadQuery(name, "muss ein Datum JJJJ-MM-TT sein") from None
    if not EARLIEST_DATE <= day <= LATEST_DATE:
        raise BadQuery(name, "liegt außerhalb der Jahre 1900 bis 2999")
    return day


def _day_start_utc(day: date, zone: ZoneInfo) -> datetime:
    return day_start_utc(day, zone)
