"""Work the calls: record outcomes, move and cancel calls, the day's list.

Rules 7 to 9: no answer, busy or voicemail plan the next try on a later
day, and after the last try a supervisor is alerted; a decline starts the
cooling period; a call left unrecorded past its local day is overdue (derived
when read: still `geplant`, planned before today).

Every change takes the therapist's row lock first, like the scheduler, so
two coordinators recording the same call cannot both succeed.
"""

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from flask import current_app
from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from webapp import audit
from webapp.alerts import raise_alert
from webapp.answers import AnswerEffects, apply_answers, send_confirmation
from webapp.approval import lock_therapist
from webapp.calendars import utc_start_of
from webapp.clock import Clock, local_today
from webapp.cooling import cooling_until
from webapp.exceptions import InvalidTransition, ValidationFailed
from webapp.models import (
    RETRY_OUTCOMES,
    Alert,
    AlertKind,
    CallOutcome,
    CallReason,
    CallStatus,
    Email,
    EmailReply,
    EmailStatus,
    PhoneCall,
    PlacementRequest,
    PlacementStatus,
    RequestAnswer,
    Therapist,
    User,
    phone_call_requests,
)
from webapp.scheduling import (
    HORIZON_DAYS,
    SLOT_MINUTES,
    candidate_slots,
    later_day,
    plan_call,
    taken_lines,
)

log = logging.getLogger(__name__)

# Failed tries of one call before a supervisor takes over (rule 7).
MAX_ATTEMPTS = 3
# How far ahead the "move" form offers free slots.
MOVE_DAYS = 14
MOVE_SLOT_LIMIT = 300
HISTORY_LIMIT = 15
# Emails that reached or are on their way to the therapist.
HISTORY_EMAIL_STATUSES = (
    EmailStatus.QUEUED,
    EmailStatus.SENDING,
    EmailStatus.SENT,
    EmailStatus.FAILED,
)

NEED_ANSWER = "Bitte Zusage, Absage oder Rückruf wählen."
NEED_REASON = "Bitte einen Grund angeben."


@dataclass
class OutcomeResult:
    """What recording a call's outcome did."""

    call: PhoneCall
    next_call: PhoneCall | None = None
    alert: Alert | None = None
    # A next call was wanted but no free slot was found.
    no_slot: bool = False
    effects: AnswerEffects = field(default_factory=AnswerEffects)


# Recording outcomes ---------------------------------------------------------


def record_outcome(
    session: Session,
    clock: Clock,
    call: PhoneCall,
    user: User | None,
    outcome: CallOutcome | str,
    answers: Mapping[int | str, RequestAnswer | str] | None = None,
    notes: str = "",
) -> OutcomeResult:
    """Record what a call brought, plan what follows, and commit.

    `answers` maps placement request ids to the therapist's answer; a reached
    call needs one for every request still open. Raises ValidationFailed for
    a missing or unknown outcome or answer, InvalidTransition when the call
    is no longer planned. Returns the confirmation email in
    `result.effects.confirmation`, already queued; the caller wakes the sender.
    """
    try:
        outcome = CallOutcome(outcome)
    except ValueError:
        raise ValidationFailed("outcome", "Bitte ein Ergebnis wählen.") from None

    lock_therapist(session, call.therapist_id)
    # Read the call and its requests again under the lock.
    session.expire_all()
    if call.status != CallStatus.PLANNED:
        session.rollback()
        raise InvalidTransition(f"call {call.id} is {call.status}, not planned")

    open_requests = _open(call.placement_requests)
    parsed: dict[int, RequestAnswer] = {}
    if outcome == CallOutcome.REACHED:
        try:
            parsed = parse_answers(open_requests, answers or {})
        except ValidationFailed:
            session.rollback()
            raise

    now = clock.now()
    call.outcome = outcome
    call.notes = (notes or "").strip() or None
    call.recorded_by_id = user.id if user else None
    call.recorded_at = now
    call.updated_at = now
    result = OutcomeResult(call)

    if outcome == CallOutcome.REACHED:
        _record_reached(session, clock, call, open_requests, parsed, result)
        send_confirmation(session, clock, result.effects, user)
    else:
        _record_failed(session, clock, call, open_requests, result)
        session.commit()

    log.info(
        "call %s recorded as %s by user %s; next call %s",
        call.id,
        outcome,
        call.recorded_by_id,
        result.next_call.id if result.next_call else None,
    )
    return result


def parse_answers(
    requests: Iterable[PlacementRequest],
    answers: Mapping[int | str, RequestAnswer | str],
) -> dict[int, RequestAnswer]:
    """Return one valid answer per request; raise for the first missing one."""
    parsed = {}
    for request in requests:
        raw = answers.get(request.id, answers.get(str(request.id)))
        try:
            parsed[request.id] = RequestAnswer(raw)
        except ValueError:
            raise ValidationFailed(f"answer_{request.id}", NEED_ANSWER) from None
    return parsed


def _record_reached(
    session: Session,
    clock: Clock,
    call: PhoneCall,
    open_requests: list[PlacementRequest],
    answers: dict[int, RequestAnswer],
    result: OutcomeResult,
) -> None:
    call.status = CallStatus.COMPLETED
    for request_id, answer in answers.items():
        session.execute(
            update(phone_call_requests)
            .where(
                phone_call_requests.c.phone_call_id == call.id,
                phone_call_requests.c.placement_request_id == request_id,
            )
            .values(answer=answer)
        )
    result.effects = apply_answers(
        session,
        clock,
        call.therapist,
        [(request, answers[request.id]) for request in open_requests],
    )

    # Planned after the answers, so a decline's cooling period applies.
    call_back = [r for r in open_requests if answers[r.id] == RequestAnswer.CALL_BACK]
    if call_back:
        _plan_next(session, clock, call, call_back, CallReason.CALL_BACK, 1, result)


def _record_failed(
    session: Session,
    clock: Clock,
    call: PhoneCall,
    open_requests: list[PlacementRequest],
    result: OutcomeResult,
) -> None:
    call.status = CallStatus.FAILED
    therapist = call.therapist

    if call.outcome == CallOutcome.WRONG_NUMBER:
        result.alert = _alert(
            session,
            clock,
            call,
            "wrong_number",
            f"Falsche Telefonnummer bei {therapist.full_name} "
            f"(Therapeut:in {therapist.id}); bitte die Nummer prüfen.",
        )
        return

    if call.outcome not in RETRY_OUTCOMES or not open_requests:
        return
    if call.attempt >= max_attempts():
        result.alert = _alert(
            session,
            clock,
            call,
            "attempts",
            f"{therapist.full_name} (Therapeut:in {therapist.id}) nach "
            f"{call.attempt} Anrufversuchen nicht erreicht; kein weiterer "
            "Versuch geplant.",
        )
        return
    _plan_next(
        session,
        clock,
        call,
        open_requests,
        CallReason(call.reason),
        call.attempt + 1,
        result,
    )


def _plan_next(
    session: Session,
    clock: Clock,
    call: PhoneCall,
    requests: list[PlacementRequest],
    reason: CallReason,
    attempt: int,
    result: OutcomeResult,
) -> None:
    """Plan the next call on a later day; alert when no slot is free."""
    therapist = call.therapist
    if therapist.blocked:
        log.info(
            "call %s: therapist %s is blocked; no next call", call.id, therapist.id
        )
        return

    try:
        result.next_call = plan_call(
            session,
            therapist,
            requests,
            reason,
            clock,
            not_before_date=later_day(clock.now(), call.planned_start),
            previous_call=call,
            attempt=attempt,
        )
    except ValidationFailed as exc:
        log.warning("call %s: next call not planned, invalid %s", call.id, exc.field)
    if result.next_call is None:
        result.no_slot = True
        result.alert = _alert(
            session,
            clock,
            call,
            "no_slot",
            f"Kein freier Anruftermin für {therapist.full_name} "
            f"(Therapeut:in {therapist.id}) in den nächsten {HORIZON_DAYS} Tagen.",
        )


def _alert(
    session: Session, clock: Clock, call: PhoneCall, topic: str, message: str
) -> Alert | None:
    # Keyed by the first try, so one series of tries alerts once.
    first = first_attempt(session, call)
    return raise_alert(
        session, clock, AlertKind.CALL_FAILED, f"call:{first.id}:{topic}", message
    )


def first_attempt(session: Session, call: PhoneCall) -> PhoneCall:
    """Return the first try of the series of tries this call belongs to."""
    current = call
    while current.attempt > 1 and current.previous_call_id is not None:
        previous = session.get(PhoneCall, current.previous_call_id)
        if previous is None:
            break
        current = previous
    return current


def max_attempts() -> int:
    """Return how many failed tries a call gets before a supervisor is alerted."""
    return current_app.config.get("CALL_MAX_ATTEMPTS", MAX_ATTEMPTS)


def _open(requests: Iterable[PlacementRequest]) -> list[PlacementRequest]:
    return [request for request in requests if request.status == PlacementStatus.OPEN]


# Moving and cancelling ------------------------------------------------------


def free_slots(
    session: Session,
    clock: Clock,
    therapist: Therapist,
    *,
    days: int = MOVE_DAYS,
    limit: int = MOVE_SLOT_LIMIT,
) -> list[datetime]:
    """Return free slots (naive UTC) of the therapist in the next `days` days.

    Same rules as the scheduler: inside the windows, off holidays, after now
    and after the cooling period, with a free line, and never in a slot in
    which the therapist already has a planned call. Raises ValidationFailed
    for malformed windows or an unknown federal state.
    """
    now = clock.now()
    not_before = therapist.next_contact_after
    lines = current_app.config["CALL_LINES"]
    taken = taken_lines(session, therapist.id, now, not_before, lines, days)

    slots = []
    for slot in candidate_slots(
        therapist.phone_availability,
        therapist.federal_state,
        now,
        not_before,
        horizon_days=days,
    ):
        if len(taken.get(slot, ())) < lines:
            slots.append(slot)
            if len(slots) >= limit:
                break
    return slots


def move_call(
    session: Session,
    clock: Clock,
    call: PhoneCall,
    user: User | None,
    reason: str,
    slot: datetime | None = None,
) -> PhoneCall:
    """Move a planned call to `slot`, or to the next free slot; audit, commit.

    The call is cancelled with the reason and a new call with the same
    requests, attempt and source email takes its place, so the history
    shows both. Returns the new call. Raises ValidationFailed without a
    reason or when the slot is not free, InvalidTransition when the call is
    no longer planned.
    """
    reason = _require_reason(reason)
    lock_therapist(session, call.therapist_id)
    session.expire_all()
    if call.status != CallStatus.PLANNED:
        session.rollback()
        raise InvalidTransition(f"call {call.id} is {call.status}, not planned")

    therapist = call.therapist
    try:
        if slot is None:
            moved = plan_call(
                session,
                therapist,
                call.placement_requests,
                CallReason(call.reason),
                clock,
                previous_call=call,
                attempt=call.attempt,
            )
            if moved is None:
                raise ValidationFailed("slot", "Kein freier Termin gefunden.")
        else:
            moved = _plan_at(session, clock, call, slot)
    except ValidationFailed:
        session.rollback()
        raise

    audit.record(session, clock, user, "call_moved", call, reason)
    call.status = CallStatus.CANCELLED
    call.change_reason = f"Verschoben: {reason}"
    call.updated_at = clock.now()
    session.commit()
    log.info("call %s moved to call %s by user %s", call.id, moved.id, _id(user))
    return moved


def cancel_call(
    session: Session, clock: Clock, call: PhoneCall, user: User | None, reason: str
) -> PhoneCall:
    """Cancel a planned call with a reason; audit and commit."""
    reason = _require_reason(reason)
    lock_therapist(session, call.therapist_id)
    session.expire_all()
    if call.status != CallStatus.PLANNED:
        session.rollback()
        raise InvalidTransition(f"call {call.id} is {call.status}, not planned")

    audit.record(session, clock, user, "call_cancelled", call, reason)
    call.status = CallStatus.CANCELLED
    call.change_reason = reason
    call.updated_at = clock.now()
    session.commit()
    log.info("call %s cancelled by user %s", call.id, _id(user))
    return call


def _plan_at(
    session: Session, clock: Clock, call: PhoneCall, slot: datetime
) -> PhoneCall:
    """Store a copy of the call at a chosen slot, if the slot is free."""
    therapist = call.therapist
    if slot not in _allowed_until(therapist, clock, slot):
        raise ValidationFailed(
            "slot", "Dieser Termin liegt nicht in den Erreichbarkeitszeiten."
        )

    lines = current_app.config["CALL_LINES"]
    taken = taken_lines(
        session, therapist.id, clock.now(), therapist.next_contact_after, lines
    )
    free = sorted(set(range(1, lines + 1)) - taken.get(slot, set()))
    if not free:
        raise ValidationFailed("slot", "Dieser Termin ist nicht mehr frei.")

    now = clock.now()
    moved = PhoneCall(
        therapist_id=therapist.id,
        planned_start=slot,
        duration_minutes=SLOT_MINUTES,
        line=free[0],
        status=CallStatus.PLANNED,
        reason=call.reason,
        attempt=call.attempt,
        source_email_id=call.source_email_id,
        previous_call_id=call.id,
        created_at=now,
        updated_at=now,
    )
    moved.placement_requests = list(call.placement_requests)
    try:
        with session.begin_nested():
            session.add(moved)
    except IntegrityError:
        raise ValidationFailed("slot", "Dieser Termin wurde gerade vergeben.") from None
    return moved


def _allowed_until(therapist: Therapist, clock: Clock, slot: datetime) -> set:
    """Return the scheduler's candidate slots up to and including `slot`."""
    allowed = set()
    for candidate in candidate_slots(
        therapist.phone_availability,
        therapist.federal_state,
        clock.now(),
        therapist.next_contact_after,
    ):
        if candidate > slot:
            break
        allowed.add(candidate)
    return allowed


def _require_reason(reason: str | None) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed("reason", NEED_REASON)
    return reason


def _id(user: User | None) -> int | None:
    return user.id if user else None


# Reading: today's list, overdue calls, contact history ----------------------


@dataclass
class HistoryEntry:
    """One contact with a therapist: an email, a call or a reply."""

    kind: str  # email, call, reply
    at: datetime  # naive UTC; a reply's day starts at local midnight
    item: Email | PhoneCall | EmailReply

    @property
    def planned(self) -> bool:
        """Tell whether this is a call still to be made, not a past contact."""
        return self.kind == "call" and self.item.status == CallStatus.PLANNED

    @property
    def moved(self) -> bool:
        """Tell whether this is a call that was moved to another slot."""
        return self.kind == "call" and was_moved(self.item)


@dataclass
class CallCard:
    """A call as the "Heute" page shows it."""

    call: PhoneCall
    overdue: bool
    answers: dict[int, str]
    next_call: PhoneCall | None
    cooling_until: date | None
    # Past contacts, newest first; the therapist's other calls still to be
    # made, soonest first.
    history: list[HistoryEntry]
    upcoming: list[HistoryEntry] = field(default_factory=list)

    @property
    def moved(self) -> bool:
        """Tell whether the call was moved rather than cancelled."""
        return was_moved(self.call)

    @property
    def open_requests(self) -> list[PlacementRequest]:
        """Requests of the call that still wait for an answer."""
        return _open(self.call.placement_requests)

    @property
    def gave_up(self) -> bool:
        """Tell whether the call failed for good: no further try follows."""
        return self.call.status == CallStatus.FAILED and self.next_call is None


@dataclass
class CallBoard:
    """The calls of a day: still open, recorded, moved or cancelled."""

    today: date
    now: datetime
    overdue: list[CallCard]
    planned: list[CallCard]
    # Outcome recorded today, or planned today and recorded.
    done: list[CallCard]
    # Moved or cancelled: today's calls and overdue ones called off today.
    cancelled: list[CallCard] = field(default_factory=list)

    @property
    def open_count(self) -> int:
        """Calls still to make, overdue ones included."""
        return len(self.overdue) + len(self.planned)

    @property
    def moved_count(self) -> int:
        """Calls of the day that were moved to another slot."""
        return sum(1 for card in self.cancelled if card.moved)

    @property
    def cancelled_count(self) -> int:
        """Calls of the day that were cancelled, not moved."""
        return len(self.cancelled) - self.moved_count


def call_board(session: Session, clock: Clock) -> CallBoard:
    """Collect the day's calls in time order, each group for itself.

    Open: planned today or overdue. Done: an outcome recorded today, whatever
    day the call was planned for, and today's calls recorded earlier.
    Cancelled (moves included): today's calls, and overdue ones called off
    today, so a call handled today never drops off the list.
    """
    today = local_today(clock)
    start, end = utc_start_of(today), utc_start_of(today + timedelta(days=1))
    planned_today = and_(
        PhoneCall.planned_start >= start, PhoneCall.planned_start < end
    )
    overdue = _load_calls(
        session,
        PhoneCall.status == CallStatus.PLANNED,
        PhoneCall.planned_start < start,
    )
    planned = _load_calls(
        session, PhoneCall.status == CallStatus.PLANNED, planned_today
    )
    done = _load_calls(
        session,
        PhoneCall.status.in_((CallStatus.COMPLETED, CallStatus.FAILED)),
        or_(
            and_(PhoneCall.recorded_at >= start, PhoneCall.recorded_at < end),
            planned_today,
        ),
    )
    # Calls only carry updated_at for when they were called off.
    cancelled = _load_calls(
        session,
        PhoneCall.status == CallStatus.CANCELLED,
        or_(
            planned_today,
            and_(
                PhoneCall.planned_start < start,
                PhoneCall.updated_at >= start,
                PhoneCall.updated_at < end,
            ),
        ),
    )
    groups = (overdue, planned, done, cancelled)
    cards = call_cards(session, clock, [call for group in groups for call in group])
    by_id = {card.call.id: card for card in cards}
    overdue_cards, planned_cards, done_cards, cancelled_cards = (
        [by_id[call.id] for call in group] for group in groups
    )
    return CallBoard(
        today=today,
        now=clock.now(),
        overdue=overdue_cards,
        planned=planned_cards,
        done=done_cards,
        cancelled=cancelled_cards,
    )


def call_cards(
    session: Session, clock: Clock, calls: list[PhoneCall]
) -> list[CallCard]:
    """Build the cards of these calls, loading their history in a few queries."""
    if not calls:
        return []
    start_of_today = utc_start_of(local_today(clock))
    histories = contact_history(session, {call.therapist_id for call in calls})
    answers = call_answers(session, [call.id for call in calls])
    cards = []
    for call in calls:
        others = [
            entry
            for entry in histories.get(call.therapist_id, [])
            if entry.item is not call
        ]
        cards.append(
            CallCard(
                call=call,
                overdue=call.status == CallStatus.PLANNED
                and call.planned_start < start_of_today,
                answers=answers.get(call.id, {}),
                next_call=next_call(session, call),
                cooling_until=cooling_until(call.therapist, clock),
                history=[entry for entry in others if not entry.planned][
                    :HISTORY_LIMIT
                ],
                upcoming=sorted(
                    (entry for entry in others if entry.planned),
                    key=lambda entry: entry.at,
                ),
            )
        )
    return cards


def overdue_calls(session: Session, clock: Clock) -> list[PhoneCall]:
    """Return planned calls of earlier local days, never recorded."""
    start = utc_start_of(local_today(clock))
    return _load_calls(
        session,
        PhoneCall.status == CallStatus.PLANNED,
        PhoneCall.planned_start < start,
    )


def planned_calls_on(session: Session, day: date) -> list[PhoneCall]:
    """Return the calls still planned on a local date, in time order."""
    return _load_calls(
        session,
        PhoneCall.status == CallStatus.PLANNED,
        PhoneCall.planned_start >= utc_start_of(day),
        PhoneCall.planned_start < utc_start_of(day + timedelta(days=1)),
    )


def is_overdue(call: PhoneCall, clock: Clock) -> bool:
    """Tell whether a call is still planned although its local day is over."""
    return call.status == CallStatus.PLANNED and call.planned_start < utc_start_of(
        local_today(clock)
    )


def next_call(session: Session, call: PhoneCall) -> PhoneCall | None:
    """Return the call that follows this one, past calls that were moved."""
    current = call
    for _ in range(20):
        successor = session.scalar(
            select(PhoneCall)
            .where(PhoneCall.previous_call_id == current.id)
            .order_by(PhoneCall.id.desc())
            .limit(1)
        )
        if successor is None:
            return None if current is call else current
        if not was_moved(successor):
            return successor
        current = successor
    return current


def was_moved(call: PhoneCall) -> bool:
    """Tell whether a call was cancelled because it was moved to another slot."""
    return call.status == CallStatus.CANCELLED and (
        call.change_reason or ""
    ).startswith("Verschoben")


def call_answers(session: Session, call_ids: list[int]) -> dict[int, dict[int, str]]:
    """Map call id to {placement request id: answer} for recorded answers."""
    rows = session.execute(
        select(
            phone_call_requests.c.phone_call_id,
            phone_call_requests.c.placement_request_id,
            phone_call_requests.c.answer,
        ).where(
            phone_call_requests.c.phone_call_id.in_(call_ids),
            phone_call_requests.c.answer.is_not(None),
        )
    )
    answers: dict[int, dict[int, str]] = defaultdict(dict)
    for call_id, request_id, answer in rows:
        answers[call_id][request_id] = answer
    return answers


def contact_history(
    session: Session, therapist_ids: Iterable[int]
) -> dict[int, list[HistoryEntry]]:
    """Map each therapist to emails, calls and replies, newest first."""
    ids = list(therapist_ids)
    history: dict[int, list[HistoryEntry]] = defaultdict(list)
    for email in session.scalars(
        select(Email).where(
            Email.therapist_id.in_(ids), Email.status.in_(HISTORY_EMAIL_STATUSES)
        )
    ):
        at = email.sent_at or email.queued_at or email.created_at
        history[email.therapist_id].append(HistoryEntry("email", at, email))
    for call in session.scalars(
        select(PhoneCall).where(PhoneCall.therapist_id.in_(ids))
    ):
        history[call.therapist_id].append(
            HistoryEntry("call", call.planned_start, call)
        )
    for reply in session.scalars(
        select(EmailReply)
        .join(Email, EmailReply.email_id == Email.id)
        .where(Email.therapist_id.in_(ids))
        .options(selectinload(EmailReply.email))
    ):
        history[reply.email.therapist_id].append(
            HistoryEntry("reply", utc_start_of(reply.received_on), reply)
        )
    for entries in history.values():
        entries.sort(key=lambda entry: entry.at, reverse=True)
    return history


def _load_calls(session: Session, *conditions) -> list[PhoneCall]:
    return list(
        session.scalars(
            select(PhoneCall)
            .where(*conditions)
            .options(
                selectinload(PhoneCall.therapist),
                selectinload(PhoneCall.placement_requests),
            )
            .order_by(PhoneCall.planned_start, PhoneCall.line, PhoneCall.id)
        )
    )
