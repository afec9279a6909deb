"""Apply a therapist's answers about placement requests, by phone or email.

Shared by recorded calls and recorded email replies: an acceptance marks
the request accepted and drafts one confirmation email per answer, a decline
marks it declined and starts the cooling period (rules 8 and 9).
"""

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from webapp.approval import approve_email
from webapp.clock import Clock
from webapp.cooling import cancel_calls_in_cooling, start_cooling
from webapp.drafting import create_draft
from webapp.models import (
    CallStatus,
    Email,
    EmailKind,
    PhoneCall,
    PlacementRequest,
    PlacementStatus,
    RequestAnswer,
    Therapist,
    User,
)

log = logging.getLogger(__name__)

ALL_ANSWERED = "Alle Platzanfragen sind beantwortet"


@dataclass
class AnswerEffects:
    """What a therapist's answers changed."""

    accepted: list[PlacementRequest] = field(default_factory=list)
    declined: list[PlacementRequest] = field(default_factory=list)
    # Answers about requests that were no longer open change nothing.
    ignored: list[PlacementRequest] = field(default_factory=list)
    cooling_until: date | None = None
    cancelled_calls: list[PhoneCall] = field(default_factory=list)
    confirmation: Email | None = None

    @property
    def confirmation_missing(self) -> bool:
        """Tell whether accepted requests got no confirmation (no address)."""
        return bool(self.accepted) and self.confirmation is None


def apply_answers(
    session: Session,
    clock: Clock,
    therapist: Therapist,
    answers: Iterable[tuple[PlacementRequest, RequestAnswer]],
    answered_on: date | None = None,
) -> AnswerEffects:
    """Set request states, start cooling on a decline, draft the confirmation.

    Only open requests change. Planned calls that fall into the cooling
    period, or that have no open request left, are cancelled. Does not
    commit; `send_confirmation` approves the draft and commits.
    """
    effects = AnswerEffects()
    for request, answer in answers:
        if request.status != PlacementStatus.OPEN:
            effects.ignored.append(request)
            continue
        if answer == RequestAnswer.ACCEPTED:
            request.status = PlacementStatus.ACCEPTED
            effects.accepted.append(request)
        elif answer == RequestAnswer.DECLINED:
            request.status = PlacementStatus.DECLINED
            effects.declined.append(request)
        request.updated_at = clock.now()

    if effects.declined:
        effects.cooling_until = start_cooling(therapist, clock, answered_on)
        effects.cancelled_calls = cancel_calls_in_cooling(session, clock, therapist)
    effects.cancelled_calls += _cancel_answered_calls(session, clock, therapist)

    if effects.accepted and therapist.email:
        effects.confirmation = create_draft(
            session, therapist, EmailKind.CONFIRMATION, effects.accepted, clock
        )
    log.info(
        "answers of therapist %s: %s accepted, %s declined, %s calls cancelled",
        therapist.id,
        len(effects.accepted),
        len(effects.declined),
        len(effects.cancelled_calls),
    )
    return effects


def send_confirmation(
    session: Session, clock: Clock, effects: AnswerEffects, user: User | None
) -> Email | None:
    """Commit, then approve the drafted confirmation; return it, queued.

    Confirmations are exempt from the weekly cap. The caller wakes the
    sender (`jobs.enqueue_sending`) once this returns an email.
    """
    if effects.confirmation is None:
        session.commit()
        return None
    # approve_email commits the answers first, then queues the draft.
    session.flush()
    email = approve_email(session, effects.confirmation.id, user, clock)
    effects.confirmation = email
    return email


def _cancel_answered_calls(
    session: Session, clock: Clock, therapist: Therapist
) -> list[PhoneCall]:
    """Cancel planned calls whose placement requests are all answered."""
    session.flush()
    calls = session.scalars(
        select(PhoneCall)
        .where(
            PhoneCall.therapist_id == therapist.id,
            PhoneCall.status == CallStatus.PLANNED,
        )
        .options(selectinload(PhoneCall.placement_requests))
    )
    cancelled = []
    for call in calls:
        if not call.placement_requests:
            continue
        if any(r.status == PlacementStatus.OPEN for r in call.placement_requests):
            continue
        call.status = CallStatus.CANCELLED
        call.change_reason = ALL_ANSWERED
        call.updated_at = clock.now()
        cancelled.append(call)
        log.info("call %s cancelled: all its requests are answered", call.id)
    return cancelled
