"""Watch delivery and workers; raise and mail alerts (DESIGN.md rule 12)."""

import logging
import smtplib
from datetime import datetime, timedelta

from markupsafe import escape
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from webapp.alerts import raise_alert
from webapp.clock import Clock
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

    `sender` is (name, address). Marks alerts as mailed only after the
    server accepted the message, so a mail outage retries on the next pass.
    """
    alerts = list(
        session.scalars(
            select(Alert)
            .where(Alert.mailed_at.is_(None), Alert.acknowledged_at.is_(None))
            .order_by(Alert.id)
        )
    )
    supervisors = list(
        session.scalars(
            select(User).where(
                User.role.in_((Role.SUPERVISOR, Role.ADMIN)), User.active.is_(True)
            )
        )
    )
    if not alerts or not supervisors:
        return 0

    try:
        connection = open_connection(smtp)
    except Exception:
        log.warning("alert mail postponed: SMTP unreachable")
        return 0
    try:
        for alert in alerts:
            _mail_alert(connection, alert, supervisors, sender, clock)
            alert.mailed_at = clock.now()
            session.commit()
    except (OSError, smtplib.SMTPException):
        log.warning("alert mail interrupted; the rest goes out next time")
    finally:
        connection.close()
    return sum(1 for alert in alerts if alert.mailed_at)


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
