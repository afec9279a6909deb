"""German error pages for the dashboard; JSON for the API."""

import logging

from flask import Flask, flash, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

from webapp.web.filters import is_htmx

log = logging.getLogger(__name__)

TITLES = {
    400: "Ungültige Anfrage",
    404: "Seite nicht gefunden",
    405: "Aktion nicht erlaubt",
    500: "Interner Fehler",
}
TEXTS = {
    400: "Die Anfrage konnte nicht verarbeitet werden.",
    404: "Diese Seite gibt es nicht (mehr). Vielleicht wurde der Eintrag gelöscht.",
    405: "Diese Aktion ist auf dieser Seite nicht möglich.",
    500: "Etwas ist schiefgegangen. Der Fehler wurde protokolliert; "
    "bitte versuchen Sie es gleich noch einmal.",
}
CSRF_TEXT = (
    "Das Formular war abgelaufen oder unvollständig. Die Seite wurde neu "
    "geladen; bitte versuchen Sie es noch einmal."
)


def register(app: Flask) -> None:
    """Answer HTTP errors outside the API with German pages."""
    app.register_error_handler(CSRFError, _csrf_error)
    # By class, not by code: the API blueprint's own handlers then win.
    app.register_error_handler(HTTPException, _http_error)


def _csrf_error(error: CSRFError):
    log.info("csrf check failed on %s", request.path)
    if is_htmx():
        # Reload the page: it brings a fresh token and shows the message.
        flash(CSRF_TEXT, "error")
        return "", 400, {"HX-Refresh": "true"}
    return _page(400, CSRF_TEXT)


def _http_error(error: HTTPException):
    code = error.code or 500
    if code not in TITLES:
        return error
    if isinstance(error, InternalServerError):
        log.error(
            "unexpected error on %s", request.path, exc_info=error.original_exception
        )
    if request.path.startswith("/api/"):
        body = {"error": {"code": _api_code(code), "message": TEXTS.get(code, "")}}
        return body, code
    return _page(code, TEXTS.get(code, ""))


def _api_code(code: int) -> str:
    return {
        400: "bad_request",
        404: "not_found",
        405: "method_not_allowed",
        500: "internal_error",
    }.get(code, "error")


def _page(code: int, text: str):
    page = render_template(
        "errors/error.html", code=code, title=TITLES.get(code, "Fehler"), text=text
    )
    return page, code
