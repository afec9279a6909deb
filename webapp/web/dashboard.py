"""Dashboard pages for coordinators: drafts, preview, approval, email lists."""

import itertools
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit
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
from flask_login import current_user, login_required
from redis.exceptions import RedisError
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from wtforms import DateField, Form, SearchField, SelectChoice, SelectField
from wtforms.validators import Optional, ValidationError

from webapp import email_lists, jobs
from webapp.approval import SelectionOutcome, approve_selection, discard_draft
from webapp.clock import EARLIEST_DATE, LATEST_DATE, system_clock
from webapp.email_lists import APPROVED_STATUSES, EmailFilters
from webapp.exceptions import InvalidTransition
from webapp.extensions import db
from webapp.models import (
    CAPPED_KINDS,
    AttemptOutcome,
    Email,
    EmailKind,
    EmailStatus,
)
from webapp.queueing import redis_connection
from webapp.settings import PROJECT_ROOT
from webapp.web.filters import is_htmx, to_local

log = logging.getLogger(__name__)

dashboard = Blueprint("dashboard", __name__)

HTMX_DIST = PROJECT_ROOT / "node_modules" / "htmx.org" / "dist"

DRAFTS_PER_PAGE = 50
EMAILS_PER_PAGE = 50

KIND_LABELS = {
    EmailKind.INITIAL_CONTACT: "Erstkontakt",
    EmailKind.BATCH_REQUEST: "Sammelanfrage",
    EmailKind.FOLLOW_UP: "Nachfass-E-Mail",
    EmailKind.CONFIRMATION: "Bestätigung",
}

STATUS_LABELS = {
    EmailStatus.DRAFT: "Entwurf",
    EmailStatus.QUEUED: "In Warteschlange",
    EmailStatus.SENDING: "Wird gesendet",
    EmailStatus.SENT: "Gesendet",
    EmailStatus.FAILED: "Fehlgeschlagen",
    EmailStatus.DISCARDED: "Verworfen",
}

# Headings of the priority groups on the drafts page (DESIGN.md rule 4).
PRIORITY_LABELS = {
    1: "Bestätigungen",
    2: "Nachfass-E-Mails",
    3: "Anfragen",
}

OUTCOME_LABELS = {
    AttemptOutcome.SENT: "Angenommen",
    AttemptOutcome.TRANSIENT: "Vorübergehender Fehler",
    AttemptOutcome.PERMANENT: "Dauerhafter Fehler",
}

FEDERAL_STATES = {
    "BW": "Baden-Württemberg",
    "BY": "Bayern",
    "BE": "Berlin",
    "BB": "Brandenburg",
    "HB": "Bremen",
    "HH": "Hamburg",
    "HE": "Hessen",
    "MV": "Mecklenburg-Vorpommern",
    "NI": "Niedersachsen",
    "NW": "Nordrhein-Westfalen",
    "RP": "Rheinland-Pfalz",
    "SL": "Saarland",
    "SN": "Sachsen",
    "ST": "Sachsen-Anhalt",
    "SH": "Schleswig-Holstein",
    "TH": "Thüringen",
}

IN_FLIGHT = (EmailStatus.QUEUED, EmailStatus.SENDING)

# The batching run the drafts page shows. Starting again while it waits or
# runs shows it instead of queueing a second run (see _start_or_join_batching).
BATCHING_JOB_KEY = "dashboard:batching:job"
BATCHING_LOCK_KEY = "dashboard:batching:start-lock"
BATCHING_JOB_TTL = 3600  # as long as RQ keeps the run's result
# A start this soon after a run ended is the second click of a double-click.
BATCHING_REPEAT_GUARD = timedelta(seconds=5)


# Shared helpers -------------------------------------------------------------


def wants_fragment() -> bool:
    """Tell whether to answer with the partial instead of the whole page.

    An htmx request gets the fragment it swaps in; a history restore asks
    for the whole page even though htmx sent it.
    """
    restoring = request.headers.get("HX-History-Restore-Request") == "true"
    return is_htmx() and not restoring


def render_view(page: str, fragment: str, **context) -> str:
    """Render the whole page, or only its fragment for an htmx request."""
    return render_template(fragment if wants_fragment() else page, **context)


@dataclass
class Notice:
    """A short message shown above a list or in the preview after an action."""

    text: str
    level: str = "success"  # success, warning or error


@dashboard.before_request
def _send_expired_htmx_sessions_to_login() -> Response | None:
    # Without this, htmx would follow the login redirect and swap the whole
    # login page into a table cell.
    if request.endpoint == "dashboard.vendor_htmx":
        return None
    if not is_htmx() or current_user.is_authenticated:
        return None

    current = urlsplit(request.headers.get("HX-Current-URL", ""))
    next_path = current.path + (f"?{current.query}" if current.query else "")
    response = make_response("", 401)
    response.headers["HX-Redirect"] = url_for("auth.login", next=next_path or None)
    return response


@dashboard.after_request
def _keep_patient_data_out_of_caches(response: Response) -> Response:
    # Pages carry health data of patients; only the htmx file may be cached.
    if request.endpoint != "dashboard.vendor_htmx":
        response.headers.setdefault("Cache-Control", "no-store")
    return response


@dashboard.app_template_filter("kind_label")
def kind_label(kind: str) -> str:
    """Name an email kind in German."""
    return KIND_LABELS.get(kind, kind)


@dashboard.app_template_filter("status_label")
def status_label(status: str) -> str:
    """Name an email status in German."""
    return STATUS_LABELS.get(status, status)


@dashboard.app_template_filter("outcome_label")
def outcome_label(outcome: str) -> str:
    """Name a delivery attempt's outcome in German."""
    return OUTCOME_LABELS.get(outcome, outcome)


@dashboard.app_template_filter("federal_state")
def federal_state_name(code: str | None) -> str:
    """Spell out a federal state code such as BY."""
    if not code:
        return "–"
    return FEDERAL_STATES.get(code.upper(), code)


@dashboard.app_template_filter("age_de")
def waiting_since(value: datetime | None) -> str:
    """Say since when something waits: "seit heute", "seit 2 Tagen"."""
    if value is None:
        return "–"
    days = (to_local(system_clock.now()).date() - to_local(value).date()).days
    if days <= 0:
        return "seit heute"
    if days == 1:
        return "seit gestern"
    return f"seit {days} Tagen"


@dashboard.app_template_filter("count_de")
def count_de(number: int, singular: str, plural: str) -> str:
    """Write a count with the right German noun form: "1 Entwurf", "2 Entwürfe"."""
    return f"{number} {singular if number == 1 else plural}"


@dashboard.route("/vendor/htmx.min.js")
def vendor_htmx():
    """Serve htmx as installed from npm."""
    return send_from_directory(HTMX_DIST, "htmx.min.js", max_age=86400)


@dashboard.app_template_test("in_flight")
def is_in_flight(status: str) -> bool:
    """Tell whether an email with this status is queued or being sent."""
    return status in IN_FLIGHT


@dashboard.app_template_test("awaiting_reply")
def awaits_reply(email: Email) -> bool:
    """Tell whether a therapist may have replied to this email: a sent request."""
    return email.status == EmailStatus.SENT and email.kind in CAPPED_KINDS


# Drafts ---------------------------------------------------------------------


@dashboard.route("/")
@login_required
def drafts():
    """List drafts awaiting approval, the most urgent kind first."""
    context = _drafts_context(
        page=request.args.get("page", 1, type=int),
        select_page=request.args.get("auswahl") == "alle",
    )
    job_id = request.args.get("job")
    batching = _batching_progress(job_id) if job_id else None
    return render_view(
        "dashboard/drafts.html", "dashboard/_drafts.html", batching=batching, **context
    )


@dashboard.route("/drafts/approve", methods=["POST"])
@login_required
def approve_drafts():
    """Approve the chosen drafts; refused ones stay, with their reason."""
    page = request.form.get("page", 1, type=int)
    email_ids = _chosen_ids()
    if not email_ids:
        return _after_list_action(
            page, Notice("Bitte wählen Sie Entwürfe aus.", "warning")
        )

    outcome = approve_selection(db.session, email_ids, _user(), system_clock)
    queued = _wake_sender(outcome.approved)
    context = _drafts_context(page, outcome.refused) if wants_fragment() else {}
    notice = _approval_notice(outcome, queued, set(context.get("refused", ())))
    return _after_list_action(page, notice, context)


@dashboard.route("/drafts/discard", methods=["POST"])
@login_required
def discard_drafts():
    """Discard the chosen drafts; their placement requests become free again."""
    page = request.form.get("page", 1, type=int)
    email_ids = _chosen_ids()
    if not email_ids:
        return _after_list_action(
            page, Notice("Bitte wählen Sie Entwürfe aus.", "warning")
        )

    discarded = 0
    refused: dict[int, str] = {}
    for email_id in email_ids:
        try:
            discard_draft(db.session, email_id, _user())
            discarded += 1
        except InvalidTransition:
            db.session.rollback()
            refused[email_id] = "Bitte versuchen Sie es erneut."

    sentences = []
    if discarded:
        sentences.append(count_de(discarded, "Entwurf", "Entwürfe") + " verworfen.")
    sentences += _unlisted_refusals(refused, discarding=True)
    notice = Notice(" ".join(sentences), "warning" if refused else "success")
    return _after_list_action(page, notice)


def _after_list_action(
    page: int, notice: Notice, context: dict | None = None
) -> Response | str:
    """Answer a list action: the refreshed list for htmx, else a redirect."""
    if not wants_fragment():
        flash(notice.text, notice.level)
        return redirect(url_for("dashboard.drafts", page=page))

    context = context or _drafts_context(page)
    return render_template("dashboard/_drafts.html", notice=notice, **context)


def _approval_notice(
    outcome: SelectionOutcome, queued: bool, beside: set[int]
) -> Notice:
    """Sum up an approval; a reason not shown beside its draft goes in here."""
    sentences = []
    if outcome.approved:
        sentences.append(
            count_de(len(outcome.approved), "E-Mail", "E-Mails")
            + " freigegeben und zum Versand eingereiht."
        )
        if not queued:
            sentences.append(
                "Der Versand beginnt, sobald die Warteschlange erreichbar ist."
            )

    shown = [email_id for email_id in outcome.refused if email_id in beside]
    if shown:
        sentences.append(
            count_de(len(shown), "Entwurf", "Entwürfe")
            + " nicht freigegeben; der Grund steht beim Entwurf."
        )
    unlisted = {
        email_id: reason
        for email_id, reason in outcome.refused.items()
        if email_id not in beside
    }
    sentences += _unlisted_refusals(unlisted, discarding=False)
    return Notice(" ".join(sentences), "warning" if outcome.refused else "success")


def _unlisted_refusals(refused: dict[int, str], discarding: bool) -> list[str]:
    """Explain refusals whose email has no row showing the reason.

    Mostly emails another tab or colleague approved or discarded meanwhile;
    their current status says why.
    """
    statuses = email_lists.statuses_of(db.session, refused)
    draft_reasons: Counter[str] = Counter()
    approved = discarded = missing = 0
    for email_id, reason in refused.items():
        status = statuses.get(email_id)
        if status == EmailStatus.DRAFT:
            draft_reasons[reason] += 1
        elif status in APPROVED_STATUSES:
            approved += 1
        elif status == EmailStatus.DISCARDED:
            discarded += 1
        else:
            missing += 1

    action = "verworfen" if discarding else "freigegeben"
    sentences = [
        f"{count_de(count, 'Entwurf', 'Entwürfe')} nicht {action}: {reason}"
        for reason, count in draft_reasons.items()
    ]
    if approved:
        sentence = count_de(approved, "E-Mail war", "E-Mails waren")
        sentence += " bereits freigegeben"
        if discarding:
            sentence += " und " + ("kann" if approved == 1 else "können")
            sentence += " nicht mehr verworfen werden"
        sentences.append(sentence + ".")
    if discarded:
        sentences.append(
            count_de(discarded, "Entwurf war", "Entwürfe waren") + " bereits verworfen."
        )
    if missing:
        sentences.append(
            count_de(missing, "E-Mail gibt", "E-Mails gibt") + " es nicht."
        )
    return sentences


def _drafts_context(
    page: int, refused: dict[int, str] | None = None, select_page: bool = False
) -> dict:
    """Collect one page of drafts, grouped by priority, for the templates.

    Refusal reasons are kept for the drafts on this page, which stay
    selected so they can be tried again.
    """
    pagination = email_lists.draft_page(db.session, page, DRAFTS_PER_PAGE)
    on_page = {email.id for email in pagination.items}
    refused = {
        email_id: reason
        for email_id, reason in (refused or {}).items()
        if email_id in on_page
    }
    groups = [
        (priority, PRIORITY_LABELS.get(priority, f"Priorität {priority}"), list(rows))
        for priority, rows in itertools.groupby(
            pagination.items, key=lambda email: email.priority
        )
    ]
    return {
        "pagination": pagination,
        "groups": groups,
        "totals": email_lists.drafts_per_priority(db.session),
        "selected": on_page if select_page else set(refused),
        "refused": refused,
    }


def _chosen_ids() -> list[int]:
    ids = []
    for raw in request.form.getlist("email_ids"):
        if raw.isdigit() and int(raw) not in ids:
            ids.append(int(raw))
    return ids


def _user():
    # The model layer stores the user on the email; hand it the real object.
    return current_user._get_current_object()


def _wake_sender(approved: Iterable[Email]) -> bool:
    """Enqueue send jobs for approved emails; tell whether that worked."""
    approved = list(approved)
    if not approved:
        return True
    try:
        jobs.enqueue_sending(approved)
    except RedisError:
        # The emails are queued in the database, which is the source of
        # truth; the reconciler enqueues them once Redis answers again.
        log.exception(
            "send jobs for emails %s could not be enqueued",
            ",".join(str(email.id) for email in approved),
        )
        return False
    return True


# Batching progress ----------------------------------------------------------


@dataclass
class BatchingProgress:
    """Where a batching run stands, as the status fragment shows it."""

    job_id: str | None
    state: str  # waiting, running, done, failed, unknown, unavailable
    result: dict = field(default_factory=dict)
    ended_at: datetime | None = None  # aware UTC, once the run is done

    @property
    def polling(self) -> bool:
        """Tell whether the fragment should ask again in a second."""
        return self.state in {"waiting", "running"}

    def ended_moments_ago(self, now: datetime) -> bool:
        """Tell whether the run was done within the double-click guard."""
        if self.ended_at is None:
            return False
        return now - self.ended_at < BATCHING_REPEAT_GUARD


@dashboard.route("/batching", methods=["POST"])
@login_required
def start_batching():
    """Queue a batching run, or join the one under way, and show its progress."""
    try:
        progress = _start_or_join_batching()
    except RedisError:
        log.exception("batching job could not be enqueued")
        progress = BatchingProgress(None, "unavailable")

    if not wants_fragment():
        return redirect(url_for("dashboard.drafts", job=progress.job_id))
    return _batching_fragment(progress)


@dashboard.route("/batching/<job_id>")
@login_required
def batching_status(job_id: str):
    """Report a batching run; the fragment polls itself until the run ends."""
    if not wants_fragment():
        return redirect(url_for("dashboard.drafts", job=job_id))
    return _batching_fragment(_batching_progress(job_id))


def _batching_fragment(progress: BatchingProgress) -> Response:
    response = make_response(
        render_template("dashboard/_batching_status.html", batching=progress)
    )
    if progress.state == "done":
        # The drafts list listens for this event and reloads itself.
        response.headers["HX-Trigger"] = "drafts-changed"
    return response


def _start_or_join_batching() -> BatchingProgress:
    """Queue a batching run unless one is waiting, running or just ended.

    Two coordinators, or the two clicks of a double-click, then watch the
    same run, instead of a second run that finds nothing left and reports
    zero drafts over the first run's result.
    """
    connection = redis_connection()
    # The lock makes simultaneous starts agree on one run.
    with connection.lock(BATCHING_LOCK_KEY, timeout=10, blocking_timeout=5):
        current = connection.get(BATCHING_JOB_KEY)
        if current:
            progress = _batching_progress(current.decode())
            if progress.polling or progress.ended_moments_ago(datetime.now(UTC)):
                log.info(
                    "batching job %s is current; not starting another",
                    progress.job_id,
                )
                return progress

        job_id = jobs.enqueue_batching()
        connection.set(BATCHING_JOB_KEY, job_id, ex=BATCHING_JOB_TTL)
    return BatchingProgress(job_id, "waiting")


def _batching_progress(job_id: str) -> BatchingProgress:
    """Read a batching job's state from Redis."""
    try:
        job = Job.fetch(job_id, connection=redis_connection())
        status = job.get_status()
    except NoSuchJobError:
        return BatchingProgress(job_id, "unknown")
    except RedisError:
        log.exception("batching job %s could not be read", job_id)
        return BatchingProgress(job_id, "unavailable")

    # Only batching jobs: the route must not reveal other jobs' results.
    if job.func_name != f"{jobs.__name__}.run_batching":
        return BatchingProgress(job_id, "unknown")
    if status == JobStatus.FINISHED:
        ended_at = job.ended_at
        if ended_at is not None and ended_at.tzinfo is None:
            ended_at = ended_at.replace(tzinfo=UTC)  # older RQ stores naive UTC
        return BatchingProgress(job_id, "done", job.return_value() or {}, ended_at)
    if status == JobStatus.STARTED:
        return BatchingProgress(job_id, "running")
    if status in {JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED}:
        return BatchingProgress(job_id, "failed")
    return BatchingProgress(job_id, "waiting")


# Preview --------------------------------------------------------------------


@dashboard.route("/emails/<int:email_id>")
@login_required
def email_detail(email_id: int):
    """Show one email exactly as it goes out, with requests and attempts."""
    email = db.get_or_404(Email, email_id)
    return render_view(
        "dashboard/email_detail.html", "dashboard/_email_detail.html", email=email
    )


@dashboard.route("/emails/<int:email_id>/status")
@login_required
def email_status(email_id: int):
    """Report the previewed email's status; polls itself while it is in flight."""
    if not wants_fragment():
        return redirect(url_for("dashboard.email_detail", email_id=email_id))

    email = db.get_or_404(Email, email_id)
    return render_template(
        "dashboard/_email_status.html", email=email, attempts_out_of_band=True
    )


@dashboard.route("/emails/<int:email_id>/body")
@login_required
def email_body(email_id: int):
    """Serve the email's HTML part alone, sandboxed, for the preview frame."""
    email = db.get_or_404(Email, email_id)
    response = make_response(email.body_html)
    response.mimetype = "text/html"
    # Scripts, forms and plugins stay off even if the frame is opened alone.
    response.headers["Content-Security-Policy"] = (
        "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline';"
        " frame-ancestors 'self'"
    )
    return response


@dashboard.route("/emails/<int:email_id>/approve", methods=["POST"])
@login_required
def approve_email(email_id: int):
    """Approve the previewed draft, or show why it may not go out."""
    email = db.get_or_404(Email, email_id)
    outcome = approve_selection(db.session, [email.id], _user(), system_clock)
    queued = _wake_sender(outcome.approved)

    if email.id in outcome.refused:
        reason = outcome.refused[email.id]
        notice = Notice(_preview_refusal(email, reason, discarding=False), "error")
    elif queued:
        notice = Notice("Freigegeben und zum Versand eingereiht.")
    else:
        notice = Notice(
            "Freigegeben. Der Versand beginnt, sobald die Warteschlange "
            "erreichbar ist.",
            "warning",
        )
    return _after_preview_action(email, notice)


@dashboard.route("/emails/<int:email_id>/discard", methods=["POST"])
@login_required
def discard_email(email_id: int):
    """Discard the previewed draft."""
    email = db.get_or_404(Email, email_id)
    try:
        discard_draft(db.session, email.id, _user())
        notice = Notice("Entwurf verworfen; die Platzanfragen sind wieder frei.")
    except InvalidTransition:
        db.session.rollback()
        reason = "Bitte versuchen Sie es erneut."
        notice = Notice(_preview_refusal(email, reason, discarding=True), "error")
    return _after_preview_action(email, notice)


def _preview_refusal(email: Email, reason: str, discarding: bool) -> str:
    """Say why the previewed email was not approved or discarded."""
    db.session.refresh(email)
    if email.status in APPROVED_STATUSES:
        if discarding:
            return (
                "Diese E-Mail wurde bereits freigegeben und kann nicht mehr "
                "verworfen werden."
            )
        return "Diese E-Mail wurde bereits freigegeben."
    if email.status == EmailStatus.DISCARDED:
        return "Dieser Entwurf wurde bereits verworfen."
    return reason


def _after_preview_action(email: Email, notice: Notice) -> Response:
    """Answer a preview action: the refreshed preview, else a redirect."""
    if not wants_fragment():
        flash(notice.text, notice.level)
        return redirect(url_for("dashboard.email_detail", email_id=email.id))

    db.session.refresh(email)
    response = make_response(
        render_template("dashboard/_email_detail.html", email=email, notice=notice)
    )
    # A drafts list on the same page reloads itself on this event.
    response.headers["HX-Trigger"] = "drafts-changed"
    return response


# Email list -----------------------------------------------------------------


def _plausible_date(form, field) -> None:
    """Refuse dates no one means; the far years overflow time zone maths."""
    if field.data and not EARLIEST_DATE <= field.data <= LATEST_DATE:
        raise ValidationError("Kein gültiges Datum.")


class EmailFilterForm(Form):
    """Filters of the "E-Mails" page, read from the query string."""

    class Meta:
        locales = ("de_DE", "de")

    status = SelectField(
        "Status",
        choices=[
            SelectChoice("", "Alle freigegebenen"),
            *(SelectChoice(s.value, STATUS_LABELS[s]) for s in APPROVED_STATUSES),
            SelectChoice(EmailStatus.DISCARDED.value, "Verworfene Entwürfe"),
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
    q = SearchField(
        "Therapeut:in",
        filters=[lambda value: value.strip() if value else value],
        render_kw={"placeholder": "Name", "autocomplete": "off"},
    )
    date_from = DateField("Von", validators=[Optional(), _plausible_date])
    date_to = DateField("Bis", validators=[Optional(), _plausible_date])

    def validate_date_from(self, field) -> None:
        """Refuse a start after the end, which would match nothing."""
        end = self.date_to.data
        if field.data and end and EARLIEST_DATE <= end <= LATEST_DATE:
            if field.data > end:
                raise ValidationError("Liegt nach „Bis“.")

    def filters(self) -> EmailFilters:
        """Return the valid filters; invalid ones are left out."""
        status, kind, date_from, date_to = (
            self[name].data if self[name].data and not self[name].errors else None
            for name in ("status", "kind", "date_from", "date_to")
        )
        return EmailFilters(
            status=EmailStatus(status) if status else None,
            kind=EmailKind(kind) if kind else None,
            name=self.q.data or None,
            date_from=date_from,
            date_to=date_to,
        )

    def query_args(self) -> dict[str, str]:
        """Return the filters that are set, as query-string arguments."""
        return {
            name: request.args[name]
            for name in ("status", "kind", "q", "date_from", "date_to")
            if request.args.get(name) and not self[name].errors
        }


@dashboard.route("/emails")
@login_required
def emails():
    """List approved emails with filters; the list polls while mail is in flight."""
    form = EmailFilterForm(request.args)
    form.validate()
    filters = form.filters()
    zone = ZoneInfo(current_app.config["TIMEZONE"])
    page = request.args.get("page", 1, type=int)

    pagination = email_lists.email_page(
        db.session, filters, zone, page, EMAILS_PER_PAGE
    )
    counts = email_lists.count_by_status(db.session, filters, zone)
    polling = any(counts.get(state, 0) for state in IN_FLIGHT)
    return render_view(
        "dashboard/emails.html",
        "dashboard/_email_results.html",
        form=form,
        pagination=pagination,
        counts=counts,
        listed_statuses=APPROVED_STATUSES,
        polling=polling,
        query_args=form.query_args(),
        # Only the filter form's own requests update the hints beside it;
        # polls and page links keep what the form shows.
        hints_out_of_band=request.headers.get("HX-Trigger") == "email-filters",
    )
