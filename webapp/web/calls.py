"""Working the calls: the "Heute" page, outcomes, moves, replies, cooling."""

import logging
import re
from dataclasses import dataclass
from datetime import date, datetime

from flask import (
    Blueprint,
    Response,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user, login_required
from redis.exceptions import RedisError
from wtforms import (
    DateField,
    Form,
    RadioField,
    SelectChoice,
    SelectField,
    TextAreaField,
)
from wtforms.validators import InputRequired, Length, Optional
from wtforms.widgets import TextInput

from webapp import calls as call_service
from webapp import jobs
from webapp.calendars import phone_windows, to_zone
from webapp.clock import BERLIN, app_clock, local_today
from webapp.cooling import cooling_until, override_cooling
from webapp.exceptions import InvalidTransition, ValidationFailed
from webapp.extensions import db
from webapp.models import (
    CallOutcome,
    CallReason,
    CallStatus,
    Email,
    EmailStatus,
    PhoneCall,
    PlacementStatus,
    RequestAnswer,
    Therapist,
)
from webapp.replies import record_reply as record_reply_service
from webapp.replies import replies_to
from webapp.web.calendars import CALL_STATE_LABELS, WEEKDAYS_SHORT
from webapp.web.dashboard import (
    Notice,
    _keep_patient_data_out_of_caches,
    _send_expired_htmx_sessions_to_login,
    render_view,
    wants_fragment,
)

log = logging.getLogger(__name__)

calls = Blueprint("calls", __name__)
# Same guards as the dashboard: htmx requests of an expired session go to the
# login page, and pages with patient data stay out of caches.
calls.before_request(_send_expired_htmx_sessions_to_login)
calls.after_request(_keep_patient_data_out_of_caches)

OUTCOME_CHOICES = [
    SelectChoice(CallOutcome.REACHED.value, "Erreicht"),
    SelectChoice(CallOutcome.NO_ANSWER.value, "Keine Antwort"),
    SelectChoice(CallOutcome.BUSY.value, "Besetzt"),
    SelectChoice(CallOutcome.VOICEMAIL.value, "Mailbox"),
    SelectChoice(CallOutcome.WRONG_NUMBER.value, "Falsche Nummer"),
]
# The same words on the form and wherever an answer is shown.
ANSWER_LABELS = {
    RequestAnswer.ACCEPTED: "Zugesagt",
    RequestAnswer.DECLINED: "Abgesagt",
    RequestAnswer.CALL_BACK: "Später zurückrufen",
}
PHONE_ANSWER_CHOICES = [
    SelectChoice(answer.value, label) for answer, label in ANSWER_LABELS.items()
]
REPLY_ANSWER_CHOICES = [
    SelectChoice("", "Keine Angabe"),
    SelectChoice(RequestAnswer.ACCEPTED.value, "Zugesagt"),
    SelectChoice(RequestAnswer.DECLINED.value, "Abgesagt"),
]
REASON_LABELS = {
    CallReason.FOLLOW_UP: "Nachfass-Anruf",
    CallReason.NO_EMAIL: "Ohne E-Mail-Adresse",
    CallReason.CALL_BACK: "Rückruf",
    CallReason.MANUAL: "Manuell geplant",
}
PLACEMENT_LABELS = {
    PlacementStatus.OPEN: "Offen",
    PlacementStatus.ACCEPTED: "Zugesagt",
    PlacementStatus.DECLINED: "Abgesagt",
    PlacementStatus.WITHDRAWN: "Zurückgezogen",
}
NEXT_FREE = "naechster"
GERMAN_DATE = ["%d.%m.%Y", "%Y-%m-%d"]
NOT_PLANNED = "Dieser Anruf ist nicht mehr geplant; die Ansicht wurde aktualisiert."
NEED_REASON = "Bitte einen Grund angeben."
# Tells the counters above the list to reload after a card action.
CALLS_CHANGED = "calls-changed"


# Template helpers -----------------------------------------------------------


@calls.app_template_filter("time_de")
def time_de(value: datetime | None) -> str:
    """Format a stored UTC time as 14:35 in Berlin."""
    return to_zone(value, BERLIN).strftime("%H:%M") if value else "–"


@calls.app_template_filter("day_time_de")
def day_time_de(value: datetime | None) -> str:
    """Format a stored UTC time as "Mo 07.12.2026 09:05" in Berlin."""
    if value is None:
        return "–"
    local = to_zone(value, BERLIN)
    return f"{WEEKDAYS_SHORT[local.weekday()]} {local:%d.%m.%Y %H:%M}"


@calls.app_template_filter("call_state_de")
def call_state_de(state: str | None) -> str:
    """Name a call status or outcome in German."""
    return CALL_STATE_LABELS.get(state, state or "–")


@calls.app_template_filter("call_label_de")
def call_label_de(call: PhoneCall) -> str:
    """Say what became of a call: "Verschoben", its outcome or its status."""
    if call_service.was_moved(call):
        return "Verschoben"
    return call_state_de(call.outcome or call.status)


@calls.app_template_filter("request_answer_de")
def request_answer_de(answer: str | None) -> str:
    """Name a therapist's answer about a placement request in German."""
    return ANSWER_LABELS.get(answer, answer or "–")


@calls.app_template_filter("tel_href")
def tel_href(phone: str | None) -> str:
    """Turn a written phone number into a tel: link target."""
    digits = re.sub(r"[^\d+]", "", phone or "")
    return f"tel:{digits}"


@calls.context_processor
def _call_helpers() -> dict:
    return {
        "reason_label": lambda reason: REASON_LABELS.get(reason, reason),
        "placement_label": lambda status: PLACEMENT_LABELS.get(status, status),
        "windows_of": phone_windows,
        "weekday_short": lambda weekday: WEEKDAYS_SHORT[weekday],
        "is_overdue": lambda call: call_service.is_overdue(call, app_clock()),
        "card_forms": CardForms.fresh,
        "max_attempts": call_service.max_attempts(),
    }


# Forms ----------------------------------------------------------------------


class GermanForm(Form):
    """A form read from request.form; CSRF comes from CSRFProtect."""

    class Meta:
        locales = ("de_DE", "de")


class GermanDateField(DateField):
    """A text input for dates as 04.12.2026 (ISO dates are accepted too)."""

    widget = TextInput()

    def __init__(self, label: str, **kwargs) -> None:
        kwargs.setdefault("render_kw", {})
        kwargs["render_kw"].setdefault("placeholder", "TT.MM.JJJJ")
        kwargs["render_kw"].setdefault("inputmode", "numeric")
        super().__init__(
            label,
            format=GERMAN_DATE,
            invalid_value_message="Bitte ein Datum wie 04.12.2026 eingeben.",
            **kwargs,
        )


class CancelForm(GermanForm):
    reason = TextAreaField(
        "Grund der Absage",
        validators=[InputRequired(NEED_REASON), Length(max=2000)],
        render_kw={"rows": 2},
    )


class CoolingForm(GermanForm):
    until = GermanDateField(
        "Neues Ende (leer lassen zum Aufheben)", validators=[Optional()]
    )
    reason = TextAreaField(
        "Grund",
        validators=[InputRequired(NEED_REASON), Length(max=2000)],
        render_kw={"rows": 2},
    )


class MoveForm(GermanForm):
    slot = SelectField("Neuer Termin", validate_choice=False)
    reason = TextAreaField(
        "Grund",
        validators=[InputRequired(NEED_REASON), Length(max=2000)],
        render_kw={"rows": 2},
    )


def cancel_form(call: PhoneCall, formdata=None) -> CancelForm:
    """Build a call's cancel form; the prefix keeps ids unique on the page."""
    return CancelForm(formdata, prefix=f"cancel{call.id}")


def move_form(call: PhoneCall, formdata=None) -> MoveForm:
    """Build a call's move form, without its slot choices."""
    return MoveForm(formdata, prefix=f"move{call.id}")


def cooling_form(therapist: Therapist, formdata=None) -> CoolingForm:
    """Build the cooling override form of a therapist."""
    return CoolingForm(formdata, prefix=f"cooling{therapist.id}")


def outcome_form(call: PhoneCall, formdata=None) -> Form:
    """Build the outcome form of a call: one answer field per open request."""

    class OutcomeForm(GermanForm):
        outcome = RadioField(
            "Ergebnis",
            choices=OUTCOME_CHOICES,
            validators=[InputRequired("Bitte ein Ergebnis wählen.")],
        )
        notes = TextAreaField(
            "Notizen", validators=[Optional(), Length(max=4000)], render_kw={"rows": 3}
        )

        def validate(self, extra_validators=None) -> bool:
            valid = super().validate(extra_validators)
            if self.outcome.data != CallOutcome.REACHED:
                return valid
            for _, answer in self.answer_fields():
                if not answer.data:
                    answer.errors = [*answer.errors, call_service.NEED_ANSWER]
                    valid = False
            return valid

        def answer_fields(self) -> list:
            """Return (placement request, answer field) pairs in request order."""
            return [(r, self[f"answer_{r.id}"]) for r in open_]

        def answers(self) -> dict[int, str]:
            """Return {placement request id: answer} as entered."""
            return {request.id: self[f"answer_{request.id}"].data for request in open_}

    open_ = [r for r in call.placement_requests if r.status == PlacementStatus.OPEN]
    for placement in open_:
        setattr(
            OutcomeForm,
            f"answer_{placement.id}",
            RadioField(
                placement.patient_pseudonym,
                choices=PHONE_ANSWER_CHOICES,
                validators=[Optional()],
            ),
        )
    return OutcomeForm(formdata, prefix=f"call{call.id}")


def reply_form(email: Email, today: date, formdata=None) -> Form:
    """Build the reply form of an email: one answer field per request."""

    class ReplyForm(GermanForm):
        received_on = GermanDateField(
            "Eingegangen am",
            validators=[InputRequired("Bitte das Eingangsdatum angeben.")],
            default=today,
        )
        content = TextAreaField(
            "Inhalt der Antwort",
            validators=[Optional(), Length(max=20000)],
            render_kw={"rows": 6},
        )

        def answer_fields(self) -> list:
            """Return (placement request, field) pairs in request order."""
            return [(r, self[f"answer_{r.id}"]) for r in email.placement_requests]

        def answers(self) -> dict[int, str]:
            """Return {placement request id: answer} for the given answers."""
            return {r.id: field.data for r, field in self.answer_fields() if field.data}

    for placement in email.placement_requests:
        setattr(
            ReplyForm,
            f"answer_{placement.id}",
            RadioField(
                placement.patient_pseudonym,
                choices=REPLY_ANSWER_CHOICES,
                default="",
                validate_choice=False,
            ),
        )
    return ReplyForm(formdata)


@dataclass
class CardForms:
    """The forms on one call card; `open` names the one shown unfolded."""

    outcome: Form | None = None
    move: Form | None = None
    cancel: Form | None = None
    cooling: Form | None = None
    open: str | None = None

    @classmethod
    def fresh(cls, card: call_service.CallCard) -> "CardForms":
        """Return empty forms for a card."""
        therapist = card.call.therapist
        if card.call.status != CallStatus.PLANNED:
            return cls(cooling=cooling_form(therapist))
        return cls(
            outcome=outcome_form(card.call),
            cancel=cancel_form(card.call),
            cooling=cooling_form(therapist),
        )


def _apply_error(form: Form, exc: ValidationFailed) -> bool:
    """Put a service's validation error beside its field; tell if it fit."""
    if exc.field in form:
        form[exc.field].errors = [*form[exc.field].errors, exc.message]
        return True
    return False


# The "Heute" page -----------------------------------------------------------


@calls.route("/heute")
@login_required
def today():
    """Show overdue calls and today's calls; the list refreshes itself."""
    board = call_service.call_board(db.session, app_clock())
    return render_view("calls/today.html", "calls/_board.html", board=board)


@calls.route("/heute/stand")
@login_required
def board_summary():
    """Answer the counters above the list, reloaded after each card action."""
    if not wants_fragment():
        return redirect(url_for("calls.today"))
    board = call_service.call_board(db.session, app_clock())
    return render_template("calls/_board_summary.html", board=board)


@calls.route("/anrufe/<int:call_id>")
@login_required
def call_detail(call_id: int):
    """Show one call as its card, alone on a page or as a swap."""
    card = _card(call_id)
    return render_view("calls/call.html", "calls/_card.html", card=card)


@calls.route("/anrufe/<int:call_id>/ergebnis", methods=["POST"])
@login_required
def record_outcome(call_id: int):
    """Record a call's outcome and plan what follows."""
    card = _card(call_id)
    if card.call.status != CallStatus.PLANNED:
        return _card_response(card, Notice(NOT_PLANNED, "warning"), changed=True)

    form = outcome_form(card.call, request.form)
    forms = CardForms(
        outcome=form,
        cancel=cancel_form(card.call),
        cooling=cooling_form(card.call.therapist),
        open="outcome",
    )
    if not form.validate():
        return _card_response(card, forms=forms, failed=True)

    try:
        result = call_service.record_outcome(
            db.session,
            app_clock(),
            card.call,
            _user(),
            form.outcome.data,
            form.answers(),
            form.notes.data or "",
        )
    except ValidationFailed as exc:
        if not _apply_error(form, exc):
            raise
        return _card_response(_card(call_id), forms=forms, failed=True)
    except InvalidTransition:
        return _card_response(
            _card(call_id), Notice(NOT_PLANNED, "warning"), changed=True
        )

    queued = _wake_sender(result.effects.confirmation)
    return _card_response(_card(call_id), _outcome_notice(result, queued), changed=True)


@calls.route("/anrufe/<int:call_id>/verschieben", methods=["GET", "POST"])
@login_required
def move_call(call_id: int):
    """Show the move form (lazily, inside the card) or move the call."""
    card = _card(call_id)
    if card.call.status != CallStatus.PLANNED:
        if request.method == "GET" and wants_fragment():
            # The lazy load fills a slot inside the card, not the whole card.
            return '<p class="hint">Dieser Anruf ist nicht mehr geplant.</p>'
        return _card_response(card, Notice(NOT_PLANNED, "warning"), changed=True)

    form = move_form(card.call, request.form if request.method == "POST" else None)
    slots_error = _fill_slots(form, card.call)
    if request.method == "GET":
        if wants_fragment():
            return render_template(
                "calls/_move_form.html", card=card, form=form, slots_error=slots_error
            )
        forms = CardForms.fresh(card)
        forms.move, forms.open = form, "move"
        return render_template("calls/call.html", card=card, forms=forms)

    forms = CardForms.fresh(card)
    forms.move, forms.open = form, "move"
    if not form.validate():
        return _card_response(card, forms=forms, failed=True)

    try:
        moved = call_service.move_call(
            db.session,
            app_clock(),
            card.call,
            _user(),
            form.reason.data,
            _parse_slot(form.slot.data),
        )
    except ValidationFailed as exc:
        if not _apply_error(form, exc):
            raise
        card = _card(call_id)
        _fill_slots(form, card.call)
        return _card_response(card, forms=forms, failed=True)
    except InvalidTransition:
        return _card_response(
            _card(call_id), Notice(NOT_PLANNED, "warning"), changed=True
        )

    notice = Notice(f"Verschoben auf {day_time_de(moved.planned_start)}.")
    return _card_response(_card(call_id), notice, changed=True)


@calls.route("/anrufe/<int:call_id>/absagen", methods=["POST"])
@login_required
def cancel_call(call_id: int):
    """Cancel a planned call with a reason."""
    card = _card(call_id)
    if card.call.status != CallStatus.PLANNED:
        return _card_response(card, Notice(NOT_PLANNED, "warning"), changed=True)

    form = cancel_form(card.call, request.form)
    forms = CardForms.fresh(card)
    forms.cancel, forms.open = form, "cancel"
    if not form.validate():
        return _card_response(card, forms=forms, failed=True)

    try:
        call_service.cancel_call(
            db.session, app_clock(), card.call, _user(), form.reason.data
        )
    except ValidationFailed as exc:
        _apply_error(form, exc)
        return _card_response(_card(call_id), forms=forms, failed=True)
    except InvalidTransition:
        return _card_response(
            _card(call_id), Notice(NOT_PLANNED, "warning"), changed=True
        )
    return _card_response(_card(call_id), Notice("Anruf abgesagt."), changed=True)


def _card(call_id: int) -> call_service.CallCard:
    call = db.get_or_404(PhoneCall, call_id)
    [card] = call_service.call_cards(db.session, app_clock(), [call])
    return card


def _card_response(
    card: call_service.CallCard,
    notice: Notice | None = None,
    forms: CardForms | None = None,
    failed: bool = False,
    changed: bool = False,
) -> Response | str:
    """Answer a card action: the card for htmx, else a page or a redirect.

    `changed` says the day's calls changed, so the counters reload at once.
    """
    if wants_fragment():
        response = make_response(
            render_template("calls/_card.html", card=card, notice=notice, forms=forms)
        )
        if changed:
            response.headers["HX-Trigger"] = CALLS_CHANGED
        return response
    if failed:
        page = render_template("calls/call.html", card=card, forms=forms)
        return make_response(page, 422)

    if notice is not None:
        flash(notice.text, notice.level)
    return redirect(url_for("calls.today", _anchor=f"call-{card.call.id}"))


def _fill_slots(form: MoveForm, call: PhoneCall) -> str | None:
    """Offer the next free slots, grouped by day; return a problem, if any."""
    try:
        slots = call_service.free_slots(db.session, app_clock(), call.therapist)
    except ValidationFailed:
        log.warning("therapist %s has invalid windows or state", call.therapist_id)
        slots = []
    if not slots:
        form.slot.choices = [SelectChoice(NEXT_FREE, "Nächster freier Termin")]
        return "In den nächsten 14 Tagen ist kein Termin frei."

    first = f"Nächster freier Termin ({day_time_de(slots[0])})"
    choices = [SelectChoice(NEXT_FREE, first, optgroup="Automatisch")]
    for slot in slots:
        day, _, clock_time = day_time_de(slot).rpartition(" ")
        choices.append(SelectChoice(slot.isoformat(), clock_time, optgroup=day))
    form.slot.choices = choices
    return None


def _parse_slot(value: str | None) -> datetime | None:
    if not value or value == NEXT_FREE:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise ValidationFailed(
            "slot", "Bitte einen Termin aus der Liste wählen."
        ) from None


def _outcome_notice(result: call_service.OutcomeResult, queued: bool) -> Notice:
    """Say in German what recording the outcome did."""
    parts = ["Ergebnis gespeichert."]
    effects = result.effects
    # The card itself shows the next call; the notice adds what it cannot.
    if result.no_slot:
        parts.append("Kein freier Termin gefunden; die Leitung wurde informiert.")
    elif result.call.status == CallStatus.FAILED and result.alert is not None:
        parts.append("Die Leitung wurde informiert.")
    if effects.confirmation is not None:
        parts.append(
            "Bestätigung per E-Mail eingereiht."
            if queued
            else "Bestätigung freigegeben; der Versand beginnt, sobald die "
            "Warteschlange erreichbar ist."
        )
    elif effects.confirmation_missing:
        parts.append("Keine E-Mail-Adresse: Bitte die Zusage anders bestätigen.")
    if effects.cooling_until is not None:
        parts.append(f"Kontakt wieder ab {effects.cooling_until:%d.%m.%Y}.")
    if effects.cancelled_calls:
        count = len(effects.cancelled_calls)
        parts.append(
            "1 weiterer Anruf abgesagt."
            if count == 1
            else f"{count} weitere Anrufe abgesagt."
        )
    level = "warning" if result.no_slot or result.alert else "success"
    return Notice(" ".join(parts), level)


# Email replies --------------------------------------------------------------


@calls.route("/emails/<int:email_id>/antwort", methods=["GET", "POST"])
@login_required
def record_reply(email_id: int):
    """Record a therapist's reply to an email: date, content, answers."""
    email = db.get_or_404(Email, email_id)
    clock = app_clock()
    today = local_today(clock)
    form = reply_form(email, today, request.form if request.method == "POST" else None)
    notice = None

    if request.method == "POST" and form.validate():
        try:
            result = record_reply_service(
                db.session,
                clock,
                email,
                _user(),
                form.received_on.data,
                form.content.data or "",
                form.answers(),
            )
        except ValidationFailed as exc:
            if not _apply_error(form, exc):
                raise
        except InvalidTransition:
            db.session.rollback()
            notice = Notice("Auf diese E-Mail kann noch keine Antwort erfasst werden.")
        else:
            queued = _wake_sender(result.effects.confirmation)
            notice = _reply_notice(result, queued)
            if not wants_fragment():
                flash(notice.text, notice.level)
                return redirect(url_for("calls.record_reply", email_id=email.id))
            form = reply_form(email, today)

    failed = request.method == "POST" and notice is None
    html = render_view(
        "calls/reply.html",
        "calls/_reply_panel.html",
        email=email,
        form=form,
        notice=notice,
        replies=replies_to(db.session, email),
        follow_ups=_planned_follow_ups(email),
        cooling=cooling_until(email.therapist, clock),
        cooling_form=cooling_form(email.therapist),
        can_reply=email.status == EmailStatus.SENT,
    )
    status = 422 if failed and not wants_fragment() else 200
    return make_response(html, status)


def _planned_follow_ups(email: Email) -> list[PhoneCall]:
    return list(
        db.session.scalars(
            db.select(PhoneCall)
            .where(
                PhoneCall.source_email_id == email.id,
                PhoneCall.status == CallStatus.PLANNED,
            )
            .order_by(PhoneCall.planned_start)
        )
    )


def _reply_notice(result, queued: bool) -> Notice:
    parts = ["Antwort gespeichert."]
    effects = result.effects
    if result.cancelled_calls:
        count = len(result.cancelled_calls)
        parts.append(
            "1 geplanter Anruf abgesagt."
            if count == 1
            else f"{count} geplante Anrufe abgesagt."
        )
    if effects.confirmation is not None:
        parts.append(
            "Bestätigung per E-Mail eingereiht."
            if queued
            else "Bestätigung freigegeben; der Versand beginnt, sobald die "
            "Warteschlange erreichbar ist."
        )
    if effects.cooling_until is not None:
        parts.append(f"Kontakt wieder ab {effects.cooling_until:%d.%m.%Y}.")
    if effects.ignored:
        parts.append(
            "Antworten zu bereits entschiedenen Platzanfragen ändern nichts mehr."
        )
    return Notice(" ".join(parts))


# Cooling override -----------------------------------------------------------


@calls.route("/therapeuten/<int:therapist_id>/kontaktpause", methods=["GET", "POST"])
@login_required
def cooling_override(therapist_id: int):
    """Lift or shorten a therapist's cooling period with a written reason."""
    therapist = db.get_or_404(Therapist, therapist_id)
    clock = app_clock()
    formdata = request.form if request.method == "POST" else None
    form = cooling_form(therapist, formdata)
    notice = None

    if request.method == "POST" and form.validate():
        try:
            until = override_cooling(
                db.session, clock, _user(), therapist, form.reason.data, form.until.data
            )
        except ValidationFailed as exc:
            db.session.rollback()
            if not _apply_error(form, exc):
                notice = Notice(exc.message, "warning")
        else:
            text = (
                "Kontaktpause aufgehoben."
                if until is None
                else f"Kontaktpause verkürzt bis {until:%d.%m.%Y}."
            )
            notice = Notice(text)
            if not wants_fragment():
                flash(text, "success")
                return redirect(
                    url_for("calls.cooling_override", therapist_id=therapist.id)
                )
            form = cooling_form(therapist)

    return render_view(
        "calls/cooling.html",
        "calls/_cooling_box.html",
        therapist=therapist,
        cooling=cooling_until(therapist, clock),
        cooling_form=form,
        notice=notice,
        # The page exists for the form; inside a card it stays folded.
        open_form=bool(form.errors) or not wants_fragment(),
    )


# Shared ---------------------------------------------------------------------


def _user():
    # Services store the user; hand them the real object, not the proxy.
    return current_user._get_current_object()


def _wake_sender(email: Email | None) -> bool:
    """Enqueue the send job for a queued confirmation; tell if that worked."""
    if email is None:
        return True
    try:
        jobs.enqueue_sending([email])
    except RedisError:
        # The email is queued in the database; the reconciler picks it up.
        log.exception("send job for confirmation %s could not be enqueued", email.id)
        return False
    return True


@calls.errorhandler(ValidationFailed)
def _unplaced_validation_error(exc: ValidationFailed):
    # A service error no form field shows: say it instead of a server error.
    db.session.rollback()
    log.info("validation failed on %s: %s", request.endpoint, exc.field)
    return make_response(exc.message, 400)
