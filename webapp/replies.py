"""Record a therapist's email reply: answers, cancelled follow-up calls.

A reply makes the planned follow-up call of that email unnecessary (rule 5),
a decline starts the cooling period (rule 8), and an acceptance queues a
confirmation email.
"""

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from webapp.answers import AnswerEffects, apply_answers, send_confirmation
from webapp.approval import lock_therapist
from webapp.clock import Clock, local_today
from webapp.exceptions import InvalidTransition, ValidationFailed
from webapp.models import (
    CallStatus,
    Email,
    EmailReply,
    EmailStatus,
    PhoneCall,
    RequestAnswer,
    User,
)
from webapp.scheduling import local_date

log = logging.getLogger(__name__)

# By email a therapist accepts or declines; "call me back" is a phone answer.
REPLY_ANSWERS = (RequestAnswer.ACCEPTED, RequestAnswer.DECLINED)
CANCELLED_BY_REPLY = "Antwort per E-Mail"


@dataclass
class ReplyResult:
    """What recording a reply did."""

    reply: EmailReply
    cancelled_calls: list[PhoneCall] = field(default_factory=list)
    effects: AnswerEffects = field(default_factory=AnswerEffects)


def record_reply(
    session: Session,
    clock: Clock,
    email: Email,
    user: User | None,
    received_on: date | None,
    content: str,
    answers: Mapping[int | str, RequestAnswer | str | None] | None = None,
) -> ReplyResult:
    """Store a reply to a sent email, apply its answers, and commit.

    `answers` maps placement request ids of the email to "angenommen" or
    "abgelehnt"; empty values mean no answer. Raises ValidationFailed for a
    date in the future or before the email was sent, for an answer that does
    not belong to the email, and when neither content nor an answer is given;
    InvalidTransition when the email was never sent. The confirmation email,
    if any, is in `result.effects.confirmation`, already queued.
    """
    if email.status != EmailStatus.SENT or email.sent_at is None:
        raise InvalidTransition(f"email {email.id} is {email.status}, not sent")
    content = (content or "").strip()
    parsed = parse_reply_answers(email, answers or {})
    _check_date(email, received_on, clock)
    if not parsed and not content:
        raise ValidationFailed(
            "content",
            "Bitte den Inhalt eintragen oder mindestens eine Zu- oder Absage wählen.",
        )

    lock_therapist(session, email.therapist_id)
    session.expire_all()
    now = clock.now()
    reply = EmailReply(
        email_id=email.id,
        received_on=received_on,
        content=content,
        answers={
            str(request_id): answer.value for request_id, answer in parsed.items()
        },
        recorded_by_id=user.id if user else None,
        recorded_at=now,
    )
    session.add(reply)
    result = ReplyResult(
        reply, cancelled_calls=_cancel_follow_ups(session, clock, email)
    )

    requests = {request.id: request for request in email.placement_requests}
    result.effects = apply_answers(
        session,
        clock,
        email.therapist,
        [(requests[request_id], answer) for request_id, answer in parsed.items()],
        answered_on=reply.received_on,
    )
    result.cancelled_calls += result.effects.cancelled_calls
    send_confirmation(session, clock, result.effects, user)
    log.info(
        "reply %s to email %s recorded by user %s; %s calls cancelled",
        reply.id,
        email.id,
        reply.recorded_by_id,
        len(result.cancelled_calls),
    )
    return result


def parse_reply_answers(
    email: Email, answers: Mapping[int | str, RequestAnswer | str | None]
) -> dict[int, RequestAnswer]:
    """Return the given answers by request id; raise for a foreign or bad one."""
    request_ids = {request.id for request in email.placement_requests}
    parsed = {}
    for key, raw in answers.items():
        if raw in (None, ""):
            continue
        request_id = int(key)
        if request_id not in request_ids:
            raise ValidationFailed(
                f"answer_{request_id}", "Diese Platzanfrage gehört nicht zur E-Mail."
            )
        if raw not in REPLY_ANSWERS:
            raise ValidationFailed(
                f"answer_{request_id}", "Bitte Zusage oder Absage wählen."
            )
        parsed[request_id] = RequestAnswer(raw)
    return parsed


def _check_date(email: Email, received_on: date | None, clock: Clock) -> None:
    if received_on is None:
        raise ValidationFailed("received_on", "Bitte das Eingangsdatum angeben.")
    if received_on > local_today(clock):
        raise ValidationFailed(
            "received_on", "Das Datum darf nicht in der Zukunft liegen."
        )
    sent_on = local_date(email.sent_at)
    if received_on < sent_on:
        raise ValidationFailed(
            "received_on",
            f"Die E-Mail wurde erst am {sent_on:%d.%m.%Y} gesendet.",
        )


def _cancel_follow_ups(session: Session, clock: Clock, email: Email) -> list[PhoneCall]:
    """Cancel the planned calls that follow up on this email."""
    calls = list(
        session.scalars(
            select(PhoneCall).where(
                PhoneCall.source_email_id == email.id,
                PhoneCall.status == CallStatus.PLANNED,
            )
        )
    )
    for call in calls:
        call.status = CallStatus.CANCELLED
        call.change_reason = CANCELLED_BY_REPLY
        call.updated_at = clock.now()
        log.info("call %s cancelled: reply to email %s", call.id, email.id)
    return calls


def replies_to(session: Session, email: Email) -> list[EmailReply]:
    """Return the replies recorded for an email, newest first."""
    return list(
        session.scalars(
            select(EmailReply)
            .where(EmailReply.email_id == email.id)
            .order_by(EmailReply.received_on.desc(), EmailReply.id.desc())
        )
    )
