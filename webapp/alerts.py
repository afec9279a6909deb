"""Alerts for supervisors, raised once until acknowledged (rule 12)."""

import logging
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from webapp.clock import Clock
from webapp.models import Alert, AlertKind, User

log = logging.getLogger(__name__)


def raise_alert(
    session: Session, clock: Clock, kind: AlertKind, subject_key: str, message: str
) -> Alert | None:
    """Store an alert unless the same one is still open; return the new one.

    One INSERT .. ON CONFLICT DO NOTHING against the unique index on open
    alerts, so concurrent raises store one alert and need no savepoint.
    The caller commits.
    """
    insert = _dialect_insert(session)
    statement = (
        insert(Alert)
        .values(
            kind=kind,
            subject_key=subject_key,
            message=message,
            created_at=clock.now(),
        )
        .on_conflict_do_nothing()
        .returning(Alert.id)
    )
    alert_id = session.execute(statement).scalar()
    if alert_id is None:
        return None

    log.warning("alert %s raised: %s %s", alert_id, kind, subject_key)
    return session.get(Alert, alert_id)


def _dialect_insert(session: Session):
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert
    return sqlite.insert


def alert_failed_emails(
    session: Session, clock: Clock, email_ids: Iterable[int]
) -> None:
    """Raise one alert per email that failed for good; the caller commits."""
    for email_id in email_ids:
        raise_alert(
            session,
            clock,
            AlertKind.EMAIL_FAILED,
            f"email:{email_id}",
            f"E-Mail {email_id} ist endgültig fehlgeschlagen.",
        )


def acknowledge(session: Session, clock: Clock, alert: Alert, user: User) -> None:
    """Mark an alert as seen by a supervisor."""
    alert.acknowledged_at = clock.now()
    alert.acknowledged_by_id = user.id
    session.commit()
    log.info("alert %s acknowledged by user %s", alert.id, user.id)


def open_alerts(session: Session) -> list[Alert]:
    """Return unacknowledged alerts, newest first."""
    return list(
        session.scalars(
            select(Alert)
            .where(Alert.acknowledged_at.is_(None))
            .order_by(Alert.created_at.desc())
        )
    )
