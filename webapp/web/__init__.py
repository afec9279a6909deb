"""Web layer: blueprints, template helpers and response headers."""

from flask import Flask, Response

from webapp.web import errors, filters


def register_web(app: Flask) -> None:
    """Register every blueprint and the shared template helpers."""
    from webapp.web.api import api
    from webapp.web.auth import auth
    from webapp.web.calendars import calendars
    from webapp.web.calls import calls
    from webapp.web.dashboard import dashboard
    from webapp.web.mailbox import mailbox
    from webapp.web.ops import ops
    from webapp.web.supervision import supervision
    from webapp.web.therapists import therapists

    app.register_blueprint(auth)
    app.register_blueprint(dashboard)
    app.register_blueprint(api, url_prefix="/api")
    app.register_blueprint(mailbox)
    app.register_blueprint(calendars)
    app.register_blueprint(ops)
    app.register_blueprint(supervision)
    app.register_blueprint(calls)
    app.register_blueprint(therapists)
    filters.register(app)
    errors.register(app)
    app.after_request(_security_headers)


def _security_headers(response: Response) -> Response:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "SAMEORIGIN")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline';"
        " frame-src 'self'; frame-ancestors 'self'",
    )
    return response
