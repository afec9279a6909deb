"""Role checks for views: the server refuses, not only the menu."""

import logging
from collections.abc import Callable
from functools import wraps

from flask import (
    Response,
    current_app,
    make_response,
    render_template,
    request,
    url_for,
)
from flask_login import current_user

from webapp.models import Role
from webapp.web.filters import is_htmx

log = logging.getLogger(__name__)

SUPERVISING_ROLES = (Role.SUPERVISOR, Role.ADMIN)

ROLE_LABELS = {
    Role.COORDINATOR: "Koordination",
    Role.SUPERVISOR: "Supervision",
    Role.ADMIN: "Administration",
}


def has_role(*roles: str) -> bool:
    """Tell whether the signed-in user has one of `roles`."""
    return current_user.is_authenticated and current_user.role in roles


def forbidden(allowed: tuple[str, ...] = ()) -> Response:
    """Answer 403 with a German page naming the user's and the allowed roles."""
    page = render_template(
        "errors/403.html",
        role=ROLE_LABELS.get(current_user.role, current_user.role),
        allowed=[ROLE_LABELS.get(role, role) for role in allowed],
    )
    return make_response(page, 403)


def role_required(*roles: str) -> Callable:
    """Let in signed-in users with one of `roles`; refuse the others with 403.

    Stands in for `login_required`: anonymous users go to the login page,
    or, for an htmx request, get a 401 that sends the browser there.
    """

    def decorate(view: Callable) -> Callable:
        @wraps(view)
        def guarded(*args, **kwargs):
            if not current_user.is_authenticated:
                return _login_first()
            if current_user.role not in roles:
                log.warning(
                    "user %s with role %s refused at %s",
                    current_user.id,
                    current_user.role,
                    request.endpoint,
                )
                return forbidden(roles)
            return view(*args, **kwargs)

        return guarded

    return decorate


def _login_first() -> Response:
    if not is_htmx():
        return current_app.login_manager.unauthorized()
    # htmx would swap the login page into a fragment; send the browser there.
    response = make_response("", 401)
    response.headers["HX-Redirect"] = url_for("auth.login")
    return response
