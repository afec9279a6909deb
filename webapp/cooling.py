"""Cooling period: after a decline, no email or call for a while (rule 8).

`Therapist.next_contact_after` is the first local date on which the
therapist may be contacted again; batching and the call scheduler already
respect it. This module starts the period, cancels calls that fall inside
it, and lets a coordinator lift or shorten it with an audited reason.
"""

import logging
from datetime import date, timedelta

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from webapp import audit
from webapp.calendars import utc_start_of
from webapp.clock import Clock, local_today
from webapp.exceptions import ValidationFailed
from webapp.models import CallStatus, PhoneCall, Therapist, User

log = logging.getLogger(__name__)

CANCELLED_FOR_COOLING = "Kontaktpause nach Absage"


def start_cooling(
    therapist: Therapist, clock: Clock, declined_on: date | None = None
) -> date:
    """Set the next possible contact COOLING_DAYS after the decline; return it.

    The decline is today unless `declined_on` says otherwise (an email
    reply recorded days later). A longer period already running is kept.
    The caller commits.
    """
    declined_on = declined_on or local_today(clock)
    until = declined_on + timedelta(days=current_app.config["COOLING_DAYS"])
    current = therapist.next_contact_after
    if current is None or current < until:
        therapist.next_contact_after = until
    log.info(
        "cooling period of therapist %s until %s",
        therapist.id,
        therapist.next_contact_after,
    )
    return therapist.next_contact_after


def cooling_until(therapist: Therapist, clock: Clock) -> date | None:
    """Return the next possible contact date while a cooling period runs."""
    until = therapist.next_contact_after
    if until is None or until <= local_today(clock):
        return None
    return until


def cancel_calls_in_cooling(
    session: Session,
    clock: Clock,
    therapist: Therapist,
    reason: str = CANCELLED_FOR_COOLING,
) -> list[PhoneCall]:
    """Cancel the therapist's planned calls before the next contact date."""
    until = therapist.next_contact_after
    if until is None:
        return []

    calls = list(
        session.scalars(
            select(PhoneCall).where(
                PhoneCall.therapist_id == therapist.id,
                PhoneCall.status == CallStatus.PLANNED,
                PhoneCall.planned_start < utc_start_of(until),
            )
        )
    )
    now = clock.now()
    for call in calls:
        call.status = CallStatus.CANCELLED
        call.change_reason = reason
        call.updated_at = now
        log.info("call %s cancelled: cooling period", call.id)
    return calls


def override_cooling(
    session: Session,
    clock: Clock,
    user: User | None,
    therapist: Therapist,
    reason: str,
    until: date | None = None,
) -> date | None:
    """Lift the cooling period, or shorten it to `until`; audit it and commit.

    Returns the new next possible contact date (None once lifted). Raises
    ValidationFailed without a running period, without a reason, or for an
    `until` that does not shorten the period.
    """
    current = cooling_until(therapist, clock)
    if current is None:
        raise ValidationFailed("therapist", "Es läuft keine Kontaktpause.")
    today = local_today(clock)
    if until is not None and not today < until < current:
        raise ValidationFailed(
            "until",
            f"Das neue Ende muss nach heute und vor dem {current:%d.%m.%Y} liegen.",
        )

    action = "cooling_lifted" if until is None else "cooling_shortened"
    audit.record(session, clock, user, action, therapist, reason)
    therapist.next_contact_after = until
    session.commit()
    log.info(
        "cooling period of therapist %s %s by user %s (was until %s)",
        therapist.id,
        "lifted" if until is None else f"shortened to {until}",
        user.id if user else None,
        current,
    )
    return until
