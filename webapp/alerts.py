"""Alerts for supervisors, raised once until acknowledged (rule 12)."""

import logging

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from webapp.clock import Clock
from webapp.models import Alert, AlertKind, User

log = logging.getLogger(__name__)


def raise_alert(
    session: Session, clock: Clock, kind: AlertKind, subject_key: str, message: str
) -> Alert | None:
    """Store an alert unless the same one is still open; return the new one.

    The caller commits. A unique index on open alerts makes a concurrent
    second raise fail quietly.
    """
    open_alert = session.scalar(
        select(Alert).where(
            Alert.kind == kind,
            Alert.subject_key == subject_key,
            Alert.acknowledged_at.is_(None),
        )
    )
    if open_alert is not None:
        return None

    alert = Alert(
        kind=kind, subject_key=subject_key, message=message, created_at=clock.now()
    )
    try:
        with session.begin_nested():
            session.add(alert)
    except IntegrityError:
        return None
    log.warning("alert %s raised: %s %s", alert.id, kind, subject_key)
    return alert


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
