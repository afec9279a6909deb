"""Keep the database and the job queue in step (DESIGN.md rule 11).

The database is the source of truth. Emails left in wird_gesendet by a
worker that died go back to the queue and are sent again with the same
Message-ID; queued emails whose job vanished get a new one.
"""

import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from webapp.clock import Clock
from webapp.models import AttemptOutcome, DeliveryAttempt, Email, EmailStatus

log = logging.getLogger(__name__)

INTERRUPTED_MESSAGE = "Zustellung unterbrochen: der Worker ist ausgefallen"


@dataclass
class ReconcileReport:
    """What one reconciler pass did."""

    recovered: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    due_priorities: list[int] = field(default_factory=list)

    def as_dict(self) -> dict:
        """Return the report as plain data."""
        return {
            "recovered": len(self.recovered),
            "failed": len(self.failed),
            "due_priorities": self.due_priorities,
        }


def recover_stuck_emails(
    session: Session,
    clock: Clock,
    timeout: timedelta,
    live_workers: Collection[str],
    max_tries: int,
    report: ReconcileReport,
) -> None:
    """Requeue emails a dead worker claimed longer than `timeout` ago.

    The interrupted try counts as an attempt, so an email that kills its
    worker every time ends failed instead of looping.
    """
    now = clock.now()
    stuck = session.execute(
        select(Email.id, Email.claimed_by, Email.claimed_at, Email.retry_count)
        .where(
            Email.status == EmailStatus.SENDING,
            Email.claimed_at < now - timeout,
        )
        .with_for_update(skip_locked=True)
    ).all()
    orphans = [row for row in stuck if row.claimed_by not in live_workers]
    if not orphans:
        session.commit()
        return

    changes = []
    for row in orphans:
        tries = row.retry_count + 1
        gives_up = tries > max_tries
        changes.append(
            {
                "id": row.id,
                "status": EmailStatus.FAILED if gives_up else EmailStatus.QUEUED,
                "retry_count": tries,
                "next_attempt_at": now,
                "claimed_by": None,
                "error_message": INTERRUPTED_MESSAGE,
                "updated_at": now,
            }
        )
        (report.failed if gives_up else report.recovered).append(row.id)
    session.execute(update(Email), changes)
    session.execute(
        insert(DeliveryAttempt),
        [
            {
                "email_id": row.id,
                "attempted_at": row.claimed_at,
                "worker": row.claimed_by or "unbekannt",
                "outcome": AttemptOutcome.INTERRUPTED,
                "smtp_reply": INTERRUPTED_MESSAGE,
            }
            for row in orphans
        ],
    )
    session.commit()
    log.warning(
        "recovered %s emails from dead workers, %s failed for good: %s",
        len(report.recovered),
        len(report.failed),
        [row.id for row in orphans],
    )


def due_priorities(session: Session, clock: Clock) -> list[int]:
    """Return the priorities that have queued emails due now."""
    rows = session.scalars(
        select(Email.priority)
        .where(
            Email.status == EmailStatus.QUEUED,
            Email.next_attempt_at <= clock.now(),
        )
        .distinct()
        .order_by(Email.priority)
    )
    return list(rows)
