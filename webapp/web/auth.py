"""Login and logout of staff users."""

import logging
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_limiter.util import get_remote_address
from flask_login import login_required, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired

from webapp.extensions import db, limiter, login_manager
from webapp.models import User

log = logging.getLogger(__name__)

auth = Blueprint("auth", __name__)


class LoginForm(FlaskForm):
    email = EmailField("E-Mail", validators=[DataRequired("Bitte E-Mail angeben.")])
    password = PasswordField(
        "Passwort", validators=[DataRequired("Bitte Passwort angeben.")]
    )


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    return db.session.get(User, int(user_id))


def _login_limit() -> str:
    return current_app.config["LOGIN_RATE_LIMIT"]


def _address_and_account() -> str:
    # Per account and address: one colleague's typos behind a shared office
    # address do not lock out the others.
    account = (request.form.get("email") or "").strip().lower()
    return f"{get_remote_address()}|{account}"


def _failed(response) -> bool:
    return response.status_code != 302


@auth.route("/login", methods=["GET", "POST"])
@limiter.limit(
    _login_limit, methods=["POST"], key_func=_address_and_account, deduct_when=_failed
)
@limiter.limit("200 per hour", methods=["POST"], deduct_when=_failed)
def login():
    """Show the login form and sign the user in."""
    form = LoginForm()
    if form.validate_on_submit():
        email = form.email.data.strip().lower()
        user = db.session.scalar(db.select(User).filter_by(email=email))
        if user and user.is_active and user.check_password(form.password.data):
            login_user(user)
            log.info("user %s logged in", user.id)
            return redirect(_safe_next(request.args.get("next")))
        log.info("failed login attempt")
        form.password.errors.append("E-Mail oder Passwort ist falsch.")
    return render_template("auth/login.html", form=form)


@auth.route("/logout", methods=["POST"])
@login_required
def logout():
    """Sign the user out."""
    logout_user()
    flash("Sie wurden abgemeldet.")
    return redirect(url_for("auth.login"))


def _safe_next(target: str | None) -> str:
    # Only follow local paths, never another host.
    if target and target.startswith("/") and not urlsplit(target).netloc:
        return target
    return url_for("dashboard.drafts")


@auth.app_errorhandler(429)
def too_many_attempts(error):
    """Explain throttled logins in German; the API answers in JSON."""
    if request.path.startswith("/api/"):
        message = "Zu viele Anfragen, bitte später erneut versuchen."
        return {"error": {"code": "rate_limited", "message": message}}, 429
    notice = (
        "Zu viele fehlgeschlagene Anmeldeversuche. Bitte warten Sie einige Minuten."
    )
    return render_template("auth/login.html", form=LoginForm(), notice=notice), 429
