"""Demo history: past emails, replies and calls, so every page has content.

Runs after `seed_demo_data`. Request emails went out one to three weeks
ago, some got replies, follow-up calls are planned, and a handful of calls
sit on today's list (two of them overdue from earlier days).
"""

import logging
import random
from datetime import date, datetime, time, timedelta

from sqlalchemy import exists, insert, select
from sqlalchemy.orm import Session

from webapp.call_planning import plan_calls
from webapp.clock import Clock, FixedClock, local_today
from webapp.drafting import create_draft
from webapp.message import email_mime, new_message_id
from webapp.models import (
    AttemptOutcome,
    CallReason,
    CallStatus,
    DeliveryAttempt,
    EmailKind,
    EmailStatus,
    PhoneCall,
    PlacementRequest,
    PlacementStatus,
    RequestAnswer,
    Therapist,
)
from webapp.replies import record_reply
from webapp.scheduling import wall_time_to_utc

log = logging.getLogger(__name__)

MAX_PER_EMAIL = 6


def seed_demo_history(
    session: Session,
    clock: Clock,
    emails: int = 40,
    replies: int = 8,
    calls_today: int = 6,
    seed: int = 42,
) -> dict[str, int]:
    """Add past emails, replies and calls to freshly seeded demo data; commit."""
    rng = random.Random(seed + 1)
    today = local_today(clock)

    # Today's calls first, so automatic planning leaves those therapists be.
    today_calls = _calls_for_today(session, clock, rng, calls_today, today)
    sent = _sent_emails(session, clock, rng, emails)
    answered = _replies(session, clock, rng, sent[:replies])
    planned = plan_calls(session, clock)

    counts = {
        "sent_emails": len(sent),
        "replies": answered,
        "calls_today": today_calls,
        "calls_planned": planned.planned,
    }
    log.info("seeded demo history: %s", counts)
    return counts


def _open_requests(session: Session, therapist: Therapist) -> list[PlacementRequest]:
    return list(
        session.scalars(
            select(PlacementRequest)
            .where(
                PlacementRequest.therapist_id == therapist.id,
                PlacementRequest.status == PlacementStatus.OPEN,
            )
            .order_by(PlacementRequest.patient_registered_at)
            .limit(MAX_PER_EMAIL)
        )
    )


def _candidates(session: Session, with_email: bool) -> list[Therapist]:
    has_requests = exists().where(
        PlacementRequest.therapist_id == Therapist.id,
        PlacementRequest.status == PlacementStatus.OPEN,
    )
    address = Therapist.email.is_not(None) if with_email else Therapist.email.is_(None)
    return list(
        session.scalars(
            select(Therapist)
            .where(
                address,
                Therapist.blocked.is_(False),
                Therapist.next_contact_after.is_(None),
                has_requests,
            )
            .order_by(Therapist.id)
        )
    )


def _calls_for_today(session, clock, rng, count, today: date) -> int:
    """Plan calls on today's list; the first two are overdue from before."""
    therapists = _candidates(session, with_email=False)[:count]
    for number, therapist in enumerate(therapists):
        overdue = number < 2
        day = today - timedelta(days=number + 1) if overdue else today
        start = time(9 + number, 5 * number % 60)
        # Give the therapist a window on that weekday, so the call fits it.
        window = {
            "weekday": day.weekday(),
            "start": start.strftime("%H:%M"),
            "end": (datetime.combine(day, start) + timedelta(minutes=60)).strftime(
                "%H:%M"
            ),
        }
        therapist.phone_availability = [*therapist.phone_availability, window]
        call = PhoneCall(
            therapist_id=therapist.id,
            planned_start=_free_slot(session, wall_time_to_utc(day, start)),
            status=CallStatus.PLANNED,
            reason=CallReason.NO_EMAIL,
            line=1,
            created_at=clock.now() - timedelta(days=3),
        )
        call.placement_requests = _open_requests(session, therapist)
        session.add(call)
    session.commit()
    return len(therapists)


def _free_slot(session: Session, start: datetime) -> datetime:
    # A second (forced) demo run must not book the same slot and line again.
    while session.scalar(
        select(PhoneCall.id).where(
            PhoneCall.planned_start == start,
            PhoneCall.line == 1,
            PhoneCall.status == CallStatus.PLANNED,
        )
    ):
        start += timedelta(minutes=5)
    return start


def _sent_emails(session, clock, rng, count) -> list:
    """Store request emails that went out one to three weeks ago."""
    therapists = _candidates(session, with_email=True)
    chosen = rng.sample(therapists, min(count, len(therapists)))
    sent = []
    for therapist in chosen:
        requests = _open_requests(session, therapist)
        sent_at = clock.now() - timedelta(
            days=rng.randint(8, 20), hours=rng.randint(1, 8)
        )
        kind = (
            EmailKind.INITIAL_CONTACT if len(requests) == 1 else EmailKind.BATCH_REQUEST
        )
        email = create_draft(session, therapist, kind, requests, FixedClock(sent_at))
        _mark_sent(email, sent_at)
        session.flush()
        session.execute(
            insert(DeliveryAttempt).values(
                email_id=email.id,
                attempted_at=sent_at,
                worker="demo",
                smtp_code=250,
                smtp_reply="OK",
                outcome=AttemptOutcome.SENT,
                duration_ms=rng.randint(20, 180),
            )
        )
        sent.append(email)
    session.commit()
    return sent


def _mark_sent(email, sent_at: datetime) -> None:
    email.message_id = new_message_id(email.sender_email)
    email.mime_bytes = email_mime(email, email.message_id)
    email.status = EmailStatus.SENT
    email.approved_at = email.queued_at = email.next_attempt_at = sent_at
    email.claimed_by = "demo"
    email.claimed_at = email.sent_at = sent_at


def _replies(session, clock, rng, emails) -> int:
    """Record replies: mostly one acceptance, now and then a decline."""
    for number, email in enumerate(emails):
        first = email.placement_requests[0]
        answer = RequestAnswer.DECLINED if number % 3 == 2 else RequestAnswer.ACCEPTED
        received = (email.sent_at + timedelta(days=rng.randint(1, 5))).date()
        content = (
            "Vielen Dank, ich kann einen Termin anbieten."
            if answer == RequestAnswer.ACCEPTED
            else "Leider habe ich derzeit keine freien Plätze."
        )
        record_reply(session, clock, email, None, received, content, {first.id: answer})
    return len(emails)
