"""Supervision pages: failure report, attempt timeline, charts and alerts.

Every route is for supervisors and admins; coordinators get 403 from the
server, not only a hidden menu entry.
"""

import logging
from dataclasses import replace
from datetime import timedelta
from zoneinfo import ZoneInfo

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    send_from_directory,
    url_for,
)
from flask_login import current_user
from redis.exceptions import RedisError
from sqlalchemy import func, select
from wtforms import EmailField, Form, SelectChoice, SelectField, TextAreaField

from webapp import jobs
from webapp import supervision as service
from webapp.alerts import acknowledge, open_alerts
from webapp.clock import app_clock
from webapp.exceptions import InvalidTransition, ValidationFailed, WeeklyCapExceeded
from webapp.extensions import db
from webapp.models import Alert, AlertKind, AttemptOutcome, Email, EmailStatus
from webapp.monitoring import check_workers, mail_new_alerts
from webapp.sending import SmtpSettings
from webapp.settings import PROJECT_ROOT
from webapp.supervision import (
    ERROR_CLASS_LABELS,
    REPORT_STATE_LABELS,
    SPANS,
    ErrorClass,
    ReportFilters,
    ReportState,
)
from webapp.web.dashboard import KIND_LABELS, Notice, render_view, wants_fragment
from webapp.web.filters import german_datetime
from webapp.web.ops import ops_redis, worker_heartbeats
from webapp.web.roles import SUPERVISING_ROLES, has_role, role_required

log = logging.getLogger(__name__)

supervision = Blueprint("supervision", __name__, url_prefix="/supervision")

CHART_DIST = PROJECT_ROOT / "node_modules" / "chart.js" / "dist"

FAILURES_PER_PAGE = 50
RECENTLY_ACKNOWLEDGED = 10
STATUS_POLL_AHEAD = timedelta(minutes=2)

PERIODS = {
    "24h": ("Letzte 24 Stunden", timedelta(hours=24)),
    "7d": ("Letzte 7 Tage", timedelta(days=7)),
    "30d": ("Letzte 30 Tage", timedelta(days=30)),
}

ALERT_KIND_LABELS = {
    AlertKind.EMAIL_FAILED: "E-Mail endgültig fehlgeschlagen",
    AlertKind.FAILURE_RATE: "Hohe Fehlerquote",
    AlertKind.WORKER_SILENT: "Kein Worker aktiv",
    AlertKind.CALL_FAILED: "Telefonat dreimal erfolglos",
}

ATTEMPT_OUTCOME_LABELS = {
    AttemptOutcome.SENT: "Angenommen",
    AttemptOutcome.TRANSIENT: "Vorübergehender Fehler",
    AttemptOutcome.PERMANENT: "Dauerhafter Fehler",
    AttemptOutcome.INTERRUPTED: "Unterbrochen",
}

AUDIT_ACTION_LABELS = {
    "email_requeued": "Erneut eingereiht",
    "email_readdressed": "Adresse korrigiert",
    "email_cancelled": "Abgebrochen",
}

supervised = role_required(*SUPERVISING_ROLES)


@supervision.after_request
def _keep_pages_out_of_caches(response: Response) -> Response:
    # Reports name therapists and addresses; only Chart.js may be cached.
    if request.endpoint != "supervision.vendor_chartjs":
        response.headers.setdefault("Cache-Control", "no-store")
    return response


@supervision.app_template_global("has_role")
def has_role_global(*roles: str) -> bool:
    """Tell templates whether the signed-in user has one of `roles`."""
    return has_role(*roles)


@supervision.app_template_filter("error_class_label")
def error_class_label(error_class: str | None) -> str:
    """Name an error class in plain German."""
    if not error_class:
        return "–"
    return ERROR_CLASS_LABELS.get(ErrorClass(error_class), error_class)


@supervision.app_template_filter("alert_kind_label")
def alert_kind_label(kind: str) -> str:
    """Name an alert kind in German."""
    return ALERT_KIND_LABELS.get(kind, kind)


@supervision.app_template_filter("attempt_outcome_label")
def attempt_outcome_label(outcome: str) -> str:
    """Name an attempt's outcome in German, interrupted ones included."""
    return ATTEMPT_OUTCOME_LABELS.get(outcome, outcome)


@supervision.app_template_filter("audit_action_label")
def audit_action_label(action: str) -> str:
    """Name a supervisor's action on an email in German."""
    return AUDIT_ACTION_LABELS.get(action, action)


@supervision.app_template_filter("percent_de")
def percent_de(value: float | None) -> str:
    """Write a share as a German percentage: 12,5 %."""
    if value is None:
        return "–"
    return f"{value * 100:.1f}".replace(".", ",") + " %"


@supervision.route("/vendor/chart.umd.min.js")
def vendor_chartjs():
    """Serve Chart.js as installed from npm."""
    return send_from_directory(CHART_DIST, "chart.umd.min.js", max_age=86400)


def _user():
    return current_user._get_current_object()


# Failure report -----------------------------------------------------------------


class ReportFilterForm(Form):
    """Filters of the failure report, read from the query string."""

    class Meta:
        locales = ("de_DE", "de")

    state = SelectField(
        "Status",
        choices=[
            SelectChoice(s.value, label) for s, label in REPORT_STATE_LABELS.items()
        ],
        default="",
    )
    period = SelectField(
        "Zeitraum",
        choices=[
            SelectChoice("", "Gesamter Zeitraum"),
            *(SelectChoice(key, label) for key, (label, _) in PERIODS.items()),
        ],
        default="",
    )
    kind = SelectField(
        "Art",
        choices=[
            SelectChoice("", "Alle Arten"),
            *(SelectChoice(kind.value, label) for kind, label in KIND_LABELS.items()),
        ],
        default="",
    )
    error = SelectField(
        "Fehlerart",
        choices=[
            SelectChoice("", "Alle Fehlerarten"),
            *(SelectChoice(c.value, label) for c, label in ERROR_CLASS_LABELS.items()),
        ],
        default="",
    )

    def query_args(self) -> dict[str, str]:
        """Return the valid filters that are set, as query-string arguments."""
        return {
            name: request.args[name]
            for name in ("state", "period", "kind", "error")
            if request.args.get(name) and not self[name].errors
        }

    def filters(self) -> ReportFilters:
        """Turn the valid filters into the service's filters."""
        args = self.query_args()
        period = PERIODS.get(args.get("period", ""))
        return ReportFilters(
            state=ReportState(args.get("state", "")),
            since=app_clock().now() - period[1] if period else None,
            kind=args.get("kind"),
            error_class=ErrorClass(args["error"]) if "error" in args else None,
        )


@supervision.route("/")
@supervised
def index():
    """Open the failure report."""
    return redirect(url_for("supervision.failures"))


@supervision.route("/fehler")
@supervised
def failures():
    """List failed and retrying emails with their last error, filtered."""
    form = ReportFilterForm(request.args)
    form.validate()
    filters = form.filters()
    clock = app_clock()
    pagination = service.failure_report(
        db.session,
        clock,
        filters,
        page=request.args.get("page", 1, type=int),
        per_page=FAILURES_PER_PAGE,
    )
    counts = service.error_class_counts(
        db.session, clock, replace(filters, error_class=None)
    )
    return render_view(
        "supervision/failures.html",
        "supervision/_failure_results.html",
        form=form,
        pagination=pagination,
        counts=counts,
        query_args=form.query_args(),
        error_classes=ERROR_CLASS_LABELS,
        now=clock.now(),
    )


# Timeline and actions -----------------------------------------------------------


class RequeueForm(Form):
    """Reason and an optional corrected address for sending again."""

    reason = TextAreaField(
        "Grund für das erneute Senden",
        render_kw={"rows": 2, "required": True, "maxlength": service.REASON_MAX_LENGTH},
    )
    new_address = EmailField(
        "Korrigierte Adresse (optional)", render_kw={"autocomplete": "off"}
    )


class CancelForm(Form):
    """Reason for cancelling an email."""

    reason = TextAreaField(
        "Grund für den Abbruch",
        render_kw={"rows": 2, "required": True, "maxlength": service.REASON_MAX_LENGTH},
    )


def _render_timeline(
    email: Email,
    notice: Notice | None = None,
    requeue_form: RequeueForm | None = None,
    cancel_form: CancelForm | None = None,
    status: int = 200,
) -> Response:
    """Render the timeline as page or panel; errors answer 422 outside htmx."""
    page = render_view(
        "supervision/timeline.html",
        "supervision/_timeline.html",
        timeline=service.email_timeline(db.session, email),
        notice=notice,
        requeue_form=requeue_form or RequeueForm(prefix="requeue"),
        cancel_form=cancel_form or CancelForm(prefix="cancel"),
        can_requeue=service.can_requeue(email),
        can_cancel=service.can_cancel(email),
        poll_until=_poll_until(),
    )
    # htmx swaps only 2xx answers; the form errors must show in the panel.
    return make_response(page, 200 if wants_fragment() else status)


@supervision.route("/emails/<int:email_id>")
@supervised
def timeline(email_id: int):
    """Show every delivery attempt of one email and the actions on it."""
    email = db.get_or_404(Email, email_id)
    return _render_timeline(email)


def _poll_until():
    # Poll the status only for emails due soon, not for those planned later.
    return app_clock().now() + STATUS_POLL_AHEAD


@supervision.route("/emails/<int:email_id>/status")
@supervised
def delivery_status(email_id: int):
    """Report where an email stands; the fragment polls until it settles."""
    email = db.get_or_404(Email, email_id)
    poll_until = _poll_until()
    response = make_response(
        render_template(
            "supervision/_delivery_status.html", email=email, poll_until=poll_until
        )
    )
    in_flight = email.status == EmailStatus.SENDING or (
        email.status == EmailStatus.QUEUED
        and (email.next_attempt_at or poll_until) <= poll_until
    )
    if not in_flight:
        # The panel reloads with the new attempts, the list without the email.
        response.headers["HX-Trigger"] = "email-settled, failures-changed"
    return response


@supervision.route("/emails/<int:email_id>/erneut-senden", methods=["POST"])
@supervised
def requeue_email(email_id: int):
    """Queue a failed or retrying email again, maybe to a corrected address."""
    email = db.get_or_404(Email, email_id)
    form = RequeueForm(request.form, prefix="requeue")
    try:
        service.requeue(
            db.session,
            app_clock(),
            _user(),
            email,
            form.reason.data,
            form.new_address.data,
        )
    except ValidationFailed as exc:
        db.session.rollback()
        field = form.reason if exc.field == "reason" else form.new_address
        field.errors = [exc.message]
        return _render_timeline(email, requeue_form=form, status=422)
    except WeeklyCapExceeded:
        notice = Notice(
            "Nicht eingereiht: Für diese Therapeut:in ist bereits eine andere "
            "Anfrage in der Warteschlange oder im Versand.",
            "error",
        )
        return _after_action(email, notice, requeue_form=form, status=409)
    except InvalidTransition:
        return _after_action(email, _not_in_trouble(email), status=409)

    return _after_action(email, _requeued_notice(email))


def _requeued_notice(email: Email) -> Notice:
    """Say that the email is queued again, and wake the worker if it is due."""
    if email.next_attempt_at > app_clock().now():
        return Notice(
            "Erneut eingereiht. Wegen des Wochenlimits geht die E-Mail frühestens "
            f"am {german_datetime(email.next_attempt_at)} Uhr hinaus.",
            "warning",
        )
    try:
        jobs.enqueue_sending([email])
    except RedisError:
        # The database holds the email as queued; the reconciler wakes sending.
        log.exception("send job for requeued email %s not enqueued", email.id)
        return Notice(
            "Erneut eingereiht. Der Versand beginnt, sobald die Warteschlange "
            "erreichbar ist.",
            "warning",
        )
    return Notice("Erneut eingereiht; die E-Mail wird gleich gesendet.")


def _not_in_trouble(email: Email) -> Notice:
    db.session.rollback()
    db.session.refresh(email)
    return Notice(
        "Diese E-Mail ist inzwischen nicht mehr fehlgeschlagen oder eingereiht; "
        "bitte die Ansicht prüfen.",
        "error",
    )


@supervision.route("/emails/<int:email_id>/abbrechen", methods=["POST"])
@supervised
def cancel_email(email_id: int):
    """Cancel a queued or failed email; it is never sent."""
    email = db.get_or_404(Email, email_id)
    form = CancelForm(request.form, prefix="cancel")
    try:
        service.cancel(db.session, app_clock(), _user(), email, form.reason.data)
    except ValidationFailed as exc:
        db.session.rollback()
        form.reason.errors = [exc.message]
        return _render_timeline(email, cancel_form=form, status=422)
    except InvalidTransition:
        return _after_action(email, _not_in_trouble(email), status=409)

    notice = Notice("E-Mail abgebrochen; sie wird nicht gesendet.")
    return _after_action(email, notice)


def _after_action(
    email: Email,
    notice: Notice,
    requeue_form: RequeueForm | None = None,
    status: int = 200,
) -> Response:
    """Answer an action: the refreshed panel for htmx, else a redirect."""
    if not wants_fragment() and status == 200:
        flash(notice.text, notice.level)
        return redirect(url_for("supervision.timeline", email_id=email.id))

    response = _render_timeline(email, notice, requeue_form=requeue_form, status=status)
    # The failure list on the same page reloads itself on this event.
    response.headers["HX-Trigger"] = "failures-changed"
    return response


# Charts -------------------------------------------------------------------------


def _span():
    return SPANS.get(request.args.get("zeitraum", "24h"))


@supervision.route("/diagramme")
@supervised
def charts():
    """Show sent, retried and failed attempts and the failure rate over time."""
    span = _span() or SPANS["24h"]
    series = service.delivery_series(
        db.session, app_clock(), span, ZoneInfo(current_app.config["TIMEZONE"])
    )
    return render_view(
        "supervision/charts.html",
        "supervision/_charts.html",
        series=series,
        spans=SPANS,
        threshold=current_app.config["FAILURE_RATE_THRESHOLD"],
    )


@supervision.route("/diagramme/daten")
@supervised
def chart_data():
    """Return the chart series of one span as JSON."""
    span = _span()
    if span is None:
        message = "Unbekannter Zeitraum; erlaubt sind " + ", ".join(SPANS) + "."
        return {"error": {"field": "zeitraum", "message": message}}, 400
    series = service.delivery_series(
        db.session, app_clock(), span, ZoneInfo(current_app.config["TIMEZONE"])
    )
    return {
        **series.as_dict(),
        "threshold": current_app.config["FAILURE_RATE_THRESHOLD"],
    }


# Alerts -------------------------------------------------------------------------


def _alerts_context() -> dict:
    return {
        "alerts": open_alerts(db.session),
        "acknowledged": service.recently_acknowledged(
            db.session, RECENTLY_ACKNOWLEDGED
        ),
    }


@supervision.route("/warnungen")
@supervised
def alerts():
    """List open alerts, newest first, and the last acknowledged ones."""
    return render_view(
        "supervision/alerts.html", "supervision/_alerts.html", **_alerts_context()
    )


@supervision.route("/warnungen/<int:alert_id>/bestaetigen", methods=["POST"])
@supervised
def acknowledge_alert(alert_id: int):
    """Mark an alert as seen; it leaves the list and the badge."""
    alert = db.get_or_404(Alert, alert_id)
    if alert.acknowledged_at is None:
        acknowledge(db.session, app_clock(), alert, _user())
        notice = Notice("Warnung bestätigt.")
    else:
        notice = Notice("Diese Warnung war schon bestätigt.", "warning")

    if not wants_fragment():
        flash(notice.text, notice.level)
        return redirect(url_for("supervision.alerts"))
    response = make_response(
        render_template("supervision/_alerts.html", notice=notice, **_alerts_context())
    )
    response.headers["HX-Trigger"] = "alerts-changed"
    return response


@supervision.route("/warnungen/anzahl")
@supervised
def alert_badge():
    """Count open alerts for the menu badge; also watch the workers.

    The worker's reconciler raises most alerts, but it cannot report its
    own death: the badge, polled by supervisors' browsers, does.
    """
    _watch_workers()
    count = db.session.scalar(
        select(func.count(Alert.id)).where(Alert.acknowledged_at.is_(None))
    )
    return render_template("supervision/_alert_badge.html", count=count)


def _watch_workers() -> None:
    config = current_app.config
    clock = app_clock()
    try:
        connection = ops_redis()
        if connection is None:
            return
        _, last_seen = worker_heartbeats(connection)
    except RedisError:
        log.warning("worker watchdog skipped: Redis unreachable")
        return

    silent_after = timedelta(minutes=config["WORKER_SILENT_MINUTES"])
    check_workers(db.session, clock, last_seen, silent_after)
    db.session.commit()
    mail_new_alerts(
        db.session,
        clock,
        SmtpSettings.from_config(config),
        (config["MAIL_SENDER_NAME"], config["MAIL_SENDER_EMAIL"]),
    )
