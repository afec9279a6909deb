"""Bundle open placement requests into one draft email per therapist."""

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta

from flask import current_app
from sqlalchemy import and_, exists, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from webapp.clock import Clock, local_today
from webapp.drafting import create_draft
from webapp.models import (
    CAPPED_KINDS,
    Email,
    EmailKind,
    EmailStatus,
    PlacementRequest,
    PlacementStatus,
    Therapist,
    email_placement_requests,
)

log = logging.getLogger(__name__)

# An email in one of these states still holds its placement requests.
HOLDING_STATUSES = (
    EmailStatus.DRAFT,
    EmailStatus.QUEUED,
    EmailStatus.SENDING,
    EmailStatus.SENT,
    EmailStatus.FAILED,
)


@dataclass
class BatchingReport:
    """What one batching run did."""

    drafts_created: int = 0
    requests_drafted: int = 0
    requests_waiting: int = 0
    draft_ids: list[int] = field(default_factory=list)

    def as_dict(self) -> dict:
        """Return the report as plain data, for jobs and the CLI."""
        return {
            "drafts_created": self.drafts_created,
            "requests_drafted": self.requests_drafted,
            "requests_waiting": self.requests_waiting,
        }


def run_batching(session: Session, clock: Clock) -> BatchingReport:
    """Create drafts for every therapist who may be emailed now."""
    max_per_email = current_app.config["BATCH_MAX_REQUESTS"]
    report = BatchingReport()

    pending = _open_requests_by_therapist(session, clock)
    for therapist_id, requests in pending.items():
        chosen = requests[:max_per_email]
        therapist = session.get(Therapist, therapist_id)
        kind = (
            EmailKind.INITIAL_CONTACT if len(chosen) == 1 else EmailKind.BATCH_REQUEST
        )

        email = _store_draft(session, therapist, kind, chosen, clock)
        if email is None:
            continue

        report.drafts_created += 1
        report.requests_drafted += len(chosen)
        report.requests_waiting += len(requests) - len(chosen)
        report.draft_ids.append(email.id)

    log.info(
        "batching created %s drafts with %s requests; %s requests wait",
        report.drafts_created,
        report.requests_drafted,
        report.requests_waiting,
    )
    return report


def _store_draft(session, therapist, kind, requests, clock) -> Email | None:
    # The unique index on open drafts makes a concurrent run lose quietly.
    try:
        with session.begin_nested():
            email = create_draft(session, therapist, kind, requests, clock)
            session.flush()
    except IntegrityError:
        log.info("therapist %s got a draft from another run", therapist.id)
        return None
    session.commit()
    return email


def _open_requests_by_therapist(
    session: Session, clock: Clock
) -> dict[int, list[PlacementRequest]]:
    """Return open, undrafted requests of emailable therapists, oldest first."""
    statement = (
        select(PlacementRequest)
        .join(PlacementRequest.therapist)
        .where(
            PlacementRequest.status == PlacementStatus.OPEN,
            ~_held_by_an_email(),
            *_emailable_now(clock),
        )
        .order_by(
            PlacementRequest.therapist_id,
            PlacementRequest.patient_registered_at,
            PlacementRequest.id,
        )
    )
    grouped: dict[int, list[PlacementRequest]] = defaultdict(list)
    for request in session.scalars(statement):
        grouped[request.therapist_id].append(request)
    return grouped


def _held_by_an_email():
    return exists().where(
        email_placement_requests.c.placement_request_id == PlacementRequest.id,
        email_placement_requests.c.email_id == Email.id,
        Email.status.in_(HOLDING_STATUSES),
    )


def _emailable_now(clock: Clock) -> list:
    """Conditions on Therapist: rules 1 and 2 of DESIGN.md."""
    today = local_today(clock)
    window_start = clock.now() - timedelta(days=current_app.config["WEEKLY_CAP_DAYS"])
    recent_or_open = exists().where(
        Email.therapist_id == Therapist.id,
        Email.kind.in_(CAPPED_KINDS),
        or_(
            Email.status.in_(
                (EmailStatus.DRAFT, EmailStatus.QUEUED, EmailStatus.SENDING)
            ),
            and_(Email.status == EmailStatus.SENT, Email.sent_at > window_start),
        ),
    )
    return [
        Therapist.blocked.is_(False),
        Therapist.email.is_not(None),
        Therapist.email != "",
        or_(
            Therapist.next_contact_after.is_(None),
            Therapist.next_contact_after <= today,
        ),
        ~recent_or_open,
    ]
