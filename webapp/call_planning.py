"""Plan calls automatically: follow-ups and therapists without email (rule 5).

Each call is planned in its own transaction under the therapist's row lock,
after checking again that it is still needed, so two runs at the same moment
plan nothing twice. A therapist who already has a planned call gets no second
automatic one; the rest is picked up once that call is done.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.orm import Session

from webapp.approval import lock_therapist
from webapp.clock import Clock
from webapp.exceptions import ValidationFailed
from webapp.models import (
    CAPPED_KINDS,
    AuditEntry,
    CallReason,
    CallStatus,
    Email,
    EmailReply,
    EmailStatus,
    PhoneCall,
    PlacementRequest,
    PlacementStatus,
    Therapist,
    email_placement_requests,
    phone_call_requests,
)
from webapp.scheduling import plan_call

log = logging.getLogger(__name__)

# A placement request in a call of these states needs no new no-email call.
NO_EMAIL_HOLDING_STATUSES = (CallStatus.PLANNED, CallStatus.COMPLETED)

# What became of one candidate.
_PLANNED, _NO_SLOT, _NOT_NEEDED = "planned", "no_slot", "not_needed"


@dataclass
class PlanningReport:
    """What one planning run did."""

    follow_up: int = 0
    no_email: int = 0
    without_slot: int = 0
    invalid: int = 0

    @property
    def planned(self) -> int:
        """Calls planned in this run."""
        return self.follow_up + self.no_email

    def as_dict(self) -> dict:
        """Return the report as plain data, for jobs and the CLI."""
        return {
            "follow_up": self.follow_up,
            "no_email": self.no_email,
            "without_slot": self.without_slot,
            "invalid": self.invalid,
        }


@dataclass(frozen=True)
class _Candidate:
    therapist_id: int
    potentially_available: bool
    waiting_since: datetime
    reason: CallReason
    email_id: int | None = None

    def order(self) -> tuple:
        # Potentially available therapists take the earlier slots (rule 6).
        return (not self.potentially_available, self.waiting_since, self.therapist_id)


def plan_calls(session: Session, clock: Clock) -> PlanningReport:
    """Plan every follow-up call and no-email call that is due now.

    Both kinds share one queue, potentially available therapists first, so
    they get the earlier slots when slots are scarce. Commits per call.
    """
    candidates = _follow_up_candidates(session, clock) + _no_email_candidates(session)
    return _plan(session, clock, candidates)


def plan_follow_up_calls(session: Session, clock: Clock) -> int:
    """Plan a call for each request email unanswered for FOLLOW_UP_AFTER_DAYS."""
    return _plan(session, clock, _follow_up_candidates(session, clock)).follow_up


def plan_calls_without_email(session: Session, clock: Clock) -> int:
    """Plan a call for each therapist without email who has open requests."""
    return _plan(session, clock, _no_email_candidates(session)).no_email


def _plan(
    session: Session, clock: Clock, candidates: list[_Candidate]
) -> PlanningReport:
    report = PlanningReport()

    for candidate in sorted(candidates, key=_Candidate.order):
        try:
            outcome = _plan_one(session, clock, candidate)
        except ValidationFailed as exc:
            session.rollback()
            log.warning(
                "therapist %s not planned: invalid %s",
                candidate.therapist_id,
                exc.field,
            )
            report.invalid += 1
            continue

        if outcome == _PLANNED:
            session.commit()
            if candidate.reason == CallReason.FOLLOW_UP:
                report.follow_up += 1
            else:
                report.no_email += 1
            continue

        session.rollback()
        if outcome == _NO_SLOT:
            report.without_slot += 1

    log.info(
        "call planning: %s follow-up and %s no-email calls; %s without slot, "
        "%s invalid",
        report.follow_up,
        report.no_email,
        report.without_slot,
        report.invalid,
    )
    return report


def _plan_one(session: Session, clock: Clock, candidate: _Candidate) -> str:
    """Plan one candidate's call; return _PLANNED, _NO_SLOT or _NOT_NEEDED."""
    lock_therapist(session, candidate.therapist_id)
    therapist = session.get(Therapist, candidate.therapist_id)
    # Checked again under the lock: another run may have planned meanwhile.
    if therapist.blocked or _has_planned_call(session, therapist.id):
        return _NOT_NEEDED

    if candidate.reason == CallReason.FOLLOW_UP:
        email = session.get(Email, candidate.email_id)
        if not _needs_follow_up(session, email.id):
            return _NOT_NEEDED
        requests = _open_requests_of_email(session, email.id)
    else:
        email = None
        limit = current_app.config["BATCH_MAX_REQUESTS"]
        requests = _unheld_open_requests(session, therapist.id, limit)
    if not requests:
        return _NOT_NEEDED

    call = plan_call(
        session, therapist, requests, candidate.reason, clock, source_email=email
    )
    return _NO_SLOT if call is None else _PLANNED


# Candidate queries ----------------------------------------------------------


def _follow_up_candidates(session: Session, clock: Clock) -> list[_Candidate]:
    """Return sent, unanswered request emails old enough for a follow-up call."""
    days = current_app.config["FOLLOW_UP_AFTER_DAYS"]
    sent_before = clock.now() - timedelta(days=days)
    rows = session.execute(
        select(
            Email.id,
            Email.therapist_id,
            Email.sent_at,
            Therapist.potentially_available,
        )
        .join(Therapist, Email.therapist_id == Therapist.id)
        .where(
            Email.kind.in_(CAPPED_KINDS),
            Email.status == EmailStatus.SENT,
            Email.sent_at <= sent_before,
            Therapist.blocked.is_(False),
            _follow_up_still_open(),
        )
    )
    return [
        _Candidate(
            therapist_id=therapist_id,
            potentially_available=potentially_available,
            waiting_since=sent_at,
            reason=CallReason.FOLLOW_UP,
            email_id=email_id,
        )
        for email_id, therapist_id, sent_at, potentially_available in rows
    ]


def _no_email_candidates(session: Session) -> list[_Candidate]:
    """Return therapists without email whose open requests have no call yet."""
    rows = session.execute(
        select(
            Therapist.id,
            Therapist.potentially_available,
            func.min(PlacementRequest.patient_registered_at),
        )
        .join(PlacementRequest, PlacementRequest.therapist_id == Therapist.id)
        .where(
            or_(Therapist.email.is_(None), Therapist.email == ""),
            Therapist.blocked.is_(False),
            PlacementRequest.status == PlacementStatus.OPEN,
            ~_held_by_call(NO_EMAIL_HOLDING_STATUSES),
        )
        .group_by(Therapist.id, Therapist.potentially_available)
    )
    return [
        _Candidate(
            therapist_id=therapist_id,
            potentially_available=potentially_available,
            waiting_since=oldest,
            reason=CallReason.NO_EMAIL,
        )
        for therapist_id, potentially_available, oldest in rows
    ]


def _follow_up_still_open():
    """Condition on Email: no reply, no call yet, an open request left."""
    replied = exists().where(EmailReply.email_id == Email.id)
    called = exists().where(
        PhoneCall.source_email_id == Email.id,
        or_(PhoneCall.status != CallStatus.CANCELLED, _cancelled_by_coordinator()),
    )
    open_request = exists().where(
        email_placement_requests.c.email_id == Email.id,
        email_placement_requests.c.placement_request_id == PlacementRequest.id,
        PlacementRequest.status == PlacementStatus.OPEN,
        ~_held_by_call((CallStatus.PLANNED,)),
    )
    return ~replied & ~called & open_request


def _held_by_call(statuses: tuple[CallStatus, ...]):
    """Condition on PlacementRequest: it is part of a call in these states.

    A call a coordinator cancelled holds its requests too: someone decided
    not to call, and the planner must not undo that ten minutes later.
    """
    return exists().where(
        phone_call_requests.c.placement_request_id == PlacementRequest.id,
        phone_call_requests.c.phone_call_id == PhoneCall.id,
        or_(PhoneCall.status.in_(statuses), _cancelled_by_coordinator()),
    )


def _cancelled_by_coordinator():
    """Condition on PhoneCall: cancelled by hand, as its audit entry shows."""
    return and_(
        PhoneCall.status == CallStatus.CANCELLED,
        exists().where(
            AuditEntry.object_type == PhoneCall.__tablename__,
            AuditEntry.object_id == PhoneCall.id,
            AuditEntry.action == "call_cancelled",
        ),
    )


def _needs_follow_up(session: Session, email_id: int) -> bool:
    return bool(
        session.scalar(
            select(Email.id).where(Email.id == email_id, _follow_up_still_open())
        )
    )


def _has_planned_call(session: Session, therapist_id: int) -> bool:
    return bool(
        session.scalar(
            select(PhoneCall.id)
            .where(
                PhoneCall.therapist_id == therapist_id,
                PhoneCall.status == CallStatus.PLANNED,
            )
            .limit(1)
        )
    )


def _open_requests_of_email(session: Session, email_id: int) -> list[PlacementRequest]:
    """Return the email's requests that are open and in no planned call."""
    return list(
        session.scalars(
            select(PlacementRequest)
            .join(
                email_placement_requests,
                email_placement_requests.c.placement_request_id == PlacementRequest.id,
            )
            .where(
                email_placement_requests.c.email_id == email_id,
                PlacementRequest.status == PlacementStatus.OPEN,
                ~_held_by_call((CallStatus.PLANNED,)),
            )
            .order_by(PlacementRequest.patient_registered_at, PlacementRequest.id)
        )
    )


def _unheld_open_requests(
    session: Session, therapist_id: int, limit: int
) -> list[PlacementRequest]:
    """Return the therapist's oldest open requests that no call holds yet."""
    return list(
        session.scalars(
            select(PlacementRequest)
            .where(
                PlacementRequest.therapist_id == therapist_id,
                PlacementRequest.status == PlacementStatus.OPEN,
                ~_held_by_call(NO_EMAIL_HOLDING_STATUSES),
            )
            .order_by(PlacementRequest.patient_registered_at, PlacementRequest.id)
            .limit(limit)
        )
    )
