"""Approve drafts under the weekly cap (DESIGN.md rule 1)."""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from webapp.clock import Clock
from webapp.exceptions import InvalidTransition, WeeklyCapExceeded
from webapp.message import email_mime, new_message_id
from webapp.models import (
    CAPPED_KINDS,
    Email,
    EmailKind,
    EmailStatus,
    Therapist,
    User,
)

log = logging.getLogger(__name__)


@dataclass
class SelectionOutcome:
    """Which emails of a selection were approved and why others were not."""

    approved: list[Email] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)


def lock_therapist(session: Session, therapist_id: int) -> None:
    """Take the therapist's row lock for the rest of the transaction.

    An UPDATE rather than SELECT FOR UPDATE, so SQLite takes its write
    lock here as well and concurrent cap checks queue up behind it.
    """
    session.execute(
        update(Therapist)
        .where(Therapist.id == therapist_id)
        .values(cap_lock=Therapist.cap_lock + 1, updated_at=Therapist.updated_at)
        .execution_options(synchronize_session=False)
    )


def cap_frees_at(
    session: Session,
    therapist_ids: list[int],
    now: datetime,
    exclude_ids: list[int] | tuple[int, ...] = (),
) -> dict[int, datetime]:
    """Map each capped therapist to the moment the cap frees up.

    Counts request emails queued, sending, or sent inside the window;
    therapists missing from the result are free to be emailed.
    """
    window = timedelta(days=current_app.config["WEEKLY_CAP_DAYS"])
    statement = (
        select(Email.therapist_id, func.max(Email.sent_at))
        .where(
            Email.therapist_id.in_(therapist_ids),
            Email.kind.in_(CAPPED_KINDS),
            Email.id.not_in(exclude_ids),
            or_(
                Email.status.in_((EmailStatus.QUEUED, EmailStatus.SENDING)),
                (Email.status == EmailStatus.SENT) & (Email.sent_at > now - window),
            ),
        )
        .group_by(Email.therapist_id)
    )
    return {
        therapist_id: (last_sent or now) + window
        for therapist_id, last_sent in session.execute(statement)
    }


def cap_blocks(
    session: Session, therapist_id: int, now: datetime, exclude_id: int | None = None
) -> datetime | None:
    """Return when the cap frees up for the therapist, or None if it is free."""
    excluded = (exclude_id,) if exclude_id is not None else ()
    return cap_frees_at(session, [therapist_id], now, excluded).get(therapist_id)


def approve_email(
    session: Session,
    email_id: int,
    user: User | None,
    clock: Clock,
    not_before: datetime | None = None,
) -> Email:
    """Queue one draft for sending, or raise if the cap or its status forbid it.

    With `not_before` (naive UTC) the email waits until then to go out.
    """
    # End any open transaction so the lock below starts a fresh one.
    session.commit()
    email = session.get(Email, email_id)
    if email is None:
        raise InvalidTransition(f"email {email_id} does not exist")
    capped = email.kind != EmailKind.CONFIRMATION

    if capped:
        lock_therapist(session, email.therapist_id)
    session.refresh(email)
    if email.status != EmailStatus.DRAFT:
        session.rollback()
        raise InvalidTransition(f"email {email_id} is {email.status}, not a draft")

    now = clock.now()
    if capped and cap_blocks(session, email.therapist_id, now, exclude_id=email.id):
        session.rollback()
        log.info("approval of email %s refused: weekly cap", email_id)
        raise WeeklyCapExceeded(email.therapist_id, email_id)

    _queue(email, user, now, not_before)
    try:
        session.commit()
    except IntegrityError as exc:
        # The unique index on pending emails caught a race the lock missed.
        session.rollback()
        raise WeeklyCapExceeded(email.therapist_id, email_id) from exc

    log.info("email %s approved by user %s", email.id, user.id if user else "api")
    return email


def approve_emails(
    session: Session,
    emails: list[Email],
    user: User | None,
    clock: Clock,
    not_before: datetime | None = None,
) -> list[Email]:
    """Approve each email in turn; raise at the first that may not be sent."""
    return [
        approve_email(session, email.id, user, clock, not_before) for email in emails
    ]


def approve_selection(
    session: Session, email_ids: list[int], user: User | None, clock: Clock
) -> SelectionOutcome:
    """Approve what may be approved and explain each refusal in German."""
    outcome = SelectionOutcome()
    for email_id in email_ids:
        try:
            outcome.approved.append(approve_email(session, email_id, user, clock))
        except WeeklyCapExceeded:
            outcome.refused[email_id] = (
                "Wochenlimit erreicht: Diese Therapeut:in hat in den letzten "
                "7 Tagen bereits eine Anfrage erhalten oder eine ist unterwegs."
            )
        except InvalidTransition:
            outcome.refused[email_id] = "Diese E-Mail ist kein Entwurf mehr."
    return outcome


def discard_draft(session: Session, email_id: int, user: User | None) -> Email:
    """Mark a draft as discarded; its placement requests become open again."""
    email = session.get(Email, email_id)
    if email is None or email.status != EmailStatus.DRAFT:
        raise InvalidTransition(f"email {email_id} is not a draft")

    email.status = EmailStatus.DISCARDED
    session.commit()
    log.info("draft %s discarded by user %s", email.id, user.id if user else "api")
    return email


def _queue(
    email: Email, user: User | None, now: datetime, not_before: datetime | None
) -> None:
    email.message_id = email.message_id or new_message_id(email.sender_email)
    email.mime_bytes = email_mime(email, email.message_id)
    email.status = EmailStatus.QUEUED
    email.approved_by = user
    email.approved_at = now
    email.queued_at = now
    email.next_attempt_at = max(now, not_before) if not_before else now
    email.updated_at = now
