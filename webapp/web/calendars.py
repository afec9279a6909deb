"""Calendars: a therapist's contacts, the call week, and the personal ICS feed."""

import logging
import secrets
from datetime import date, timedelta
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from babel.dates import format_date
from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user, login_required
from sqlalchemy import select

from webapp import audit
from webapp import calendars as calendar_service
from webapp.calendars import shift_month, to_zone, week_start
from webapp.clock import EARLIEST_DATE, LATEST_DATE, app_clock, local_today
from webapp.extensions import db
from webapp.ics import calls_ics
from webapp.models import (
    CallOutcome,
    CallStatus,
    EmailReply,
    EmailStatus,
    RequestAnswer,
    Therapist,
    User,
)
from webapp.web.filters import is_htmx

log = logging.getLogger(__name__)

calendars = Blueprint("calendars", __name__)

VIEWS = ("monat", "woche")

# The action says "Absagen", so a cancelled call reads "Abgesagt".
CALL_STATE_LABELS = {
    CallStatus.PLANNED: "Geplant",
    CallStatus.CANCELLED: "Abgesagt",
    CallStatus.COMPLETED: "Abgeschlossen",
    CallStatus.FAILED: "Fehlgeschlagen",
    CallOutcome.REACHED: "Erreicht",
    CallOutcome.NO_ANSWER: "Keine Antwort",
    CallOutcome.BUSY: "Besetzt",
    CallOutcome.VOICEMAIL: "Mailbox",
    CallOutcome.WRONG_NUMBER: "Falsche Nummer",
}

EMAIL_STATE_LABELS = {
    EmailStatus.QUEUED: "E-Mail eingereiht",
    EmailStatus.SENDING: "E-Mail wird gesendet",
    EmailStatus.SENT: "E-Mail gesendet",
}

ANSWER_LABELS = {
    RequestAnswer.ACCEPTED: "Angenommen",
    RequestAnswer.DECLINED: "Abgelehnt",
    RequestAnswer.CALL_BACK: "Rückruf erbeten",
}

WEEKDAYS_SHORT = ("Mo", "Di", "Mi", "Do", "Fr", "Sa", "So")

RENEW_REASON = "Link erneuert"


# Shared helpers -------------------------------------------------------------


def _zone() -> ZoneInfo:
    return ZoneInfo(current_app.config["TIMEZONE"])


def _today() -> date:
    return local_today(app_clock(), _zone())


def _wants_fragment() -> bool:
    # A history restore asks for the whole page even though htmx sends it.
    restoring = request.headers.get("HX-History-Restore-Request") == "true"
    return is_htmx() and not restoring


def _render(page: str, fragment: str, **context) -> str:
    """Render the whole page, or only its fragment for an htmx request."""
    return render_template(fragment if _wants_fragment() else page, **context)


def _requested_day() -> date:
    """Read ?datum=YYYY-MM-DD; a missing, broken or absurd date means today."""
    raw = request.args.get("datum", "")
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        return _today()
    # Far years would overflow when the view steps to its neighbours.
    if not EARLIEST_DATE <= day <= LATEST_DATE:
        return _today()
    return day


@calendars.before_request
def _send_expired_htmx_sessions_to_login() -> Response | None:
    # htmx would otherwise swap the login page into the calendar.
    if not is_htmx() or current_user.is_authenticated:
        return None
    response = make_response("", 401)
    current = urlsplit(request.headers.get("HX-Current-URL", ""))
    next_path = current.path + (f"?{current.query}" if current.query else "")
    response.headers["HX-Redirect"] = url_for("auth.login", next=next_path or None)
    return response


@calendars.after_request
def _keep_out_of_caches(response: Response) -> Response:
    # Calendars show pseudonyms and the feed link is a secret.
    response.headers.setdefault("Cache-Control", "no-store")
    return response


@calendars.context_processor
def _calendar_helpers() -> dict:
    return {
        "email_state_label": lambda state: EMAIL_STATE_LABELS.get(state, state),
        "answer_label": lambda answer: ANSWER_LABELS.get(answer, answer or "–"),
        "weekday_short": lambda weekday: WEEKDAYS_SHORT[weekday],
        "month_title": month_title,
        "week_title": week_title,
        "to_local": lambda value: to_zone(value, _zone()),
        "timedelta_minutes": lambda minutes: timedelta(minutes=minutes),
    }


def month_title(day: date) -> str:
    """Name the day's month in German: "Dezember 2026"."""
    return format_date(day, "LLLL yyyy", locale="de_DE")


def week_title(day: date) -> str:
    """Name the day's week: "KW 49 · 30.11.–06.12.2026"."""
    monday = week_start(day)
    sunday = monday + timedelta(days=6)
    week = monday.isocalendar().week
    return f"KW {week} · {monday:%d.%m.}–{sunday:%d.%m.%Y}"


def _neighbours(view: str, day: date) -> tuple[date, date]:
    """Return the day to show for "back" and for "forward"."""
    if view == "woche":
        return day - timedelta(days=7), day + timedelta(days=7)
    return shift_month(day, -1), shift_month(day, 1)


# Therapist contact calendar -------------------------------------------------


@calendars.route("/therapeuten/<int:therapist_id>/kalender")
@login_required
def therapist_calendar(therapist_id: int):
    """Show a therapist's contacts by month or week."""
    therapist = db.get_or_404(Therapist, therapist_id)
    view = request.args.get("ansicht", "monat")
    if view not in VIEWS:
        view = "monat"
    day = _requested_day()

    calendar = calendar_service.therapist_calendar(
        db.session, therapist, view, day, _today(), _zone()
    )
    previous, following = _neighbours(view, day)
    return _render(
        "calendars/therapist.html",
        "calendars/_therapist_calendar.html",
        cal=calendar,
        previous=previous,
        following=following,
    )


@calendars.route("/anrufe/<int:call_id>/kalendereintrag")
@login_required
def call_entry(call_id: int):
    """Show one call of a calendar: time, state, outcome, notes, requests."""
    call = calendar_service.load_call(db.session, call_id)
    if call is None:
        abort(404)

    return _render(
        "calendars/call_entry.html",
        "calendars/_call_entry.html",
        call=call,
        answers=calendar_service.call_answers(db.session, call.id),
    )


@calendars.route("/antworten/<int:reply_id>/kalendereintrag")
@login_required
def reply_entry(reply_id: int):
    """Show one recorded email reply with its answer per placement request."""
    reply = db.get_or_404(EmailReply, reply_id)
    return _render(
        "calendars/reply_entry.html",
        "calendars/_reply_entry.html",
        reply=reply,
        requests=calendar_service.reply_requests(db.session, reply),
    )


# Coordinator week -----------------------------------------------------------


@calendars.route("/kalender/woche")
@login_required
def coordinator_week():
    """Show all planned calls of a week by 5-minute slot."""
    day = _requested_day()
    lines = current_app.config.get("CALL_LINES", 1)
    week = calendar_service.coordinator_week(db.session, day, _today(), lines, _zone())
    return _render(
        "calendars/coordinator_week.html",
        "calendars/_coordinator_week.html",
        week=week,
        previous=day - timedelta(days=7),
        following=day + timedelta(days=7),
        now=to_zone(app_clock().now(), _zone()).replace(tzinfo=None),
    )


# ICS feed -------------------------------------------------------------------


@calendars.route("/kalender/<token>.ics")
def ics_feed(token: str):
    """Serve the planned calls as ICS; the secret token in the link is the login."""
    user = db.session.scalar(select(User).where(User.calendar_token == token))
    if user is None or not user.is_active:
        abort(404)

    now = app_clock().now()
    calls = calendar_service.planned_calls_for_feed(db.session, now)
    host = urlsplit(request.host_url).hostname or "localhost"
    body = calls_ics(calls, host, now, _zone())
    log.info("ICS feed for user %s with %s calls", user.id, len(calls))
    response = make_response(body)
    response.headers["Content-Type"] = "text/calendar; charset=utf-8"
    response.headers["Content-Disposition"] = 'inline; filename="anrufe.ics"'
    response.headers["X-Robots-Tag"] = "noindex"
    return response


def _feed_urls(user: User) -> tuple[str, str]:
    """Return the feed's https link and its webcal:// twin for calendar apps."""
    url = url_for("calendars.ics_feed", token=user.calendar_token, _external=True)
    return url, "webcal://" + url.split("://", 1)[1]


@calendars.route("/kalender/abo")
@login_required
def subscription():
    """Show the user's personal ICS link, creating it on first view."""
    user: User = current_user._get_current_object()
    if not user.calendar_token:
        user.calendar_token = secrets.token_urlsafe(32)
        db.session.commit()
        log.info("calendar link created for user %s", user.id)

    feed_url, webcal_url = _feed_urls(user)
    return render_template(
        "calendars/subscription.html", feed_url=feed_url, webcal_url=webcal_url
    )


@calendars.route("/kalender/abo/erneuern", methods=["POST"])
@login_required
def renew_subscription():
    """Replace the user's ICS link; the old one stops working at once."""
    user: User = current_user._get_current_object()
    user.calendar_token = secrets.token_urlsafe(32)
    audit.record(
        db.session, app_clock(), user, "calendar_link_renewed", user, RENEW_REASON
    )
    db.session.commit()
    log.info("calendar link renewed for user %s", user.id)

    notice = "Neuer Link erstellt. Der bisherige Link funktioniert nicht mehr."
    if not _wants_fragment():
        flash(notice, "success")
        return redirect(url_for("calendars.subscription"))
    feed_url, webcal_url = _feed_urls(user)
    return render_template(
        "calendars/_subscription_link.html",
        feed_url=feed_url,
        webcal_url=webcal_url,
        notice=notice,
    )
