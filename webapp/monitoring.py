"""Watch delivery and workers; raise and mail alerts (DESIGN.md rule 12)."""

import logging
import smtplib
from datetime import datetime, timedelta

from markupsafe import escape
from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from webapp.alerts import raise_alert
from webapp.clock import Clock
from webapp.exceptions import TransientSmtpFailure
from webapp.message import build_mime, new_message_id, with_date
from webapp.models import (
    Alert,
    AlertKind,
    AttemptOutcome,
    DeliveryAttempt,
    Role,
    User,
)
from webapp.sending import SmtpSettings, open_connection

log = logging.getLogger(__name__)


def failure_rate(session: Session, since: datetime) -> tuple[int, float]:
    """Return the number of attempts since `since` and the share that failed."""
    failed = case((DeliveryAttempt.outcome != AttemptOutcome.SENT, 1), else_=0)
    total, failures = session.execute(
        select(func.count(DeliveryAttempt.id), func.sum(failed)).where(
            DeliveryAttempt.attempted_at >= since
        )
    ).one()
    if not total:
        return 0, 0.0
    return total, (failures or 0) / total


def check_failure_rate(
    session: Session, clock: Clock, threshold: float, min_attempts: int
) -> Alert | None:
    """Alert when too many tries failed in the last hour; the caller commits."""
    total, rate = failure_rate(session, clock.now() - timedelta(hours=1))
    if total < min_attempts or rate <= threshold:
        return None
    message = (
        f"Fehlerquote der letzten Stunde: {rate:.0%} von {total} Zustellversuchen "
        f"(Schwelle {threshold:.0%})."
    )
    return raise_alert(session, clock, AlertKind.FAILURE_RATE, "last_hour", message)


def check_workers(
    session: Session,
    clock: Clock,
    last_seen: datetime | None,
    silent_after: timedelta,
) -> Alert | None:
    """Alert when no worker was seen for `silent_after`; the caller commits."""
    now = clock.now()
    if last_seen is not None and now - last_seen <= silent_after:
        return None
    minutes = int(silent_after.total_seconds() // 60)
    message = f"Seit mehr als {minutes} Minuten hat sich kein Worker gemeldet."
    return raise_alert(session, clock, AlertKind.WORKER_SILENT, "workers", message)


def mail_new_alerts(session: Session, clock: Clock, smtp: SmtpSettings, sender) -> int:
    """Mail each alert not yet mailed to every active supervisor, once.

    `sender` is (name, address). An alert is claimed by setting mailed_at
    in one UPDATE before it is sent, so two processes never mail the same
    one; when the server refuses, the claim is undone for the next pass.
    """
    supervisors = list(
        session.scalars(
            select(User).where(
                User.role.in_((Role.SUPERVISOR, Role.ADMIN)), User.active.is_(True)
            )
        )
    )
    claimed = _claim_unmailed(session, clock) if supervisors else []
    if not claimed:
        return 0

    mailed = 0
    try:
        connection = open_connection(smtp)
        try:
            for alert in claimed:
                _mail_alert(connection, alert, supervisors, sender, clock)
                mailed += 1
        finally:
            connection.close()
    except (OSError, smtplib.SMTPException, TransientSmtpFailure):
        log.warning("alert mail postponed: %s of %s sent", mailed, len(claimed))
        _unclaim(session, [alert.id for alert in claimed[mailed:]])
    return mailed


def _claim_unmailed(session: Session, clock: Clock) -> list[Alert]:
    ids = list(
        session.scalars(
            update(Alert)
            .where(Alert.mailed_at.is_(None), Alert.acknowledged_at.is_(None))
            .values(mailed_at=clock.now())
            .returning(Alert.id)
            .execution_options(synchronize_session=False)
        )
    )
    session.commit()
    if not ids:
        return []
    return list(
        session.scalars(select(Alert).where(Alert.id.in_(ids)).order_by(Alert.id))
    )


def _unclaim(session: Session, alert_ids: list[int]) -> None:
    session.execute(
        update(Alert)
        .where(Alert.id.in_(alert_ids))
        .values(mailed_at=None)
        .execution_options(synchronize_session=False)
    )
    session.commit()


def _mail_alert(connection, alert: Alert, supervisors, sender, clock) -> None:
    name, address = sender
    subject = f"Warnung: {alert.message}"[:200]
    text = (
        f"{alert.message}\n\nBitte prüfen Sie die Warnungen im Dashboard und "
        "bestätigen Sie sie dort.\n"
    )
    for supervisor in supervisors:
        raw = build_mime(
            subject=subject,
            sender_name=name,
            sender_email=address,
            recipient_name=supervisor.name,
            recipient_email=supervisor.email,
            message_id=new_message_id(address),
            html=f"<p>{escape(alert.message)}</p>",
            text=text,
        )
        connection.sendmail(address, [supervisor.email], with_date(raw, clock.now()))
    log.info("alert %s mailed to %s supervisors", alert.id, len(supervisors))
