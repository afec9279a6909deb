"""Morning digest of the day's calls for every coordinator (rule 9).

Each morning every active coordinator gets a plain German email with the
calls planned for the day and the overdue ones: time, therapist, phone and
the number of placement requests, never patient details. The digest is not
a therapist email, so it goes straight over SMTP instead of through the
email table and its weekly cap.

Schedule `webapp.jobs.send_call_digests` once each morning, e.g. with RQ's
cron scheduler (`cron="0 5 * * *"` is 06:00 in Berlin in winter, 07:00 in
summer; RQ's cron runs in UTC) or with the system cron calling
`flask --app webapp send-call-digests`. The job sends once per local day;
a second run the same day does nothing.
"""

import logging
import smtplib
from dataclasses import dataclass
from datetime import date
from zoneinfo import ZoneInfo

from flask import current_app, render_template
from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from webapp.calendars import to_zone
from webapp.calls import overdue_calls, planned_calls_on
from webapp.clock import Clock, local_today
from webapp.message import build_mime, new_message_id, with_date
from webapp.models import CallDigestDay, PhoneCall, Role, User
from webapp.sending import SmtpSettings, open_connection

log = logging.getLogger(__name__)


@dataclass
class DigestReport:
    """What one digest run did."""

    calls: int = 0
    overdue: int = 0
    recipients: int = 0
    sent: int = 0
    refused: int = 0

    def as_dict(self) -> dict:
        """Return the report as plain data, for jobs and the CLI."""
        return {
            "calls": self.calls,
            "overdue": self.overdue,
            "recipients": self.recipients,
            "sent": self.sent,
            "refused": self.refused,
        }


@dataclass(frozen=True)
class DigestLine:
    """One call in the digest, already in German wording."""

    when: str  # "14:35", or "03.12.2026 14:35" for an overdue call
    therapist: str
    phone: str
    requests: str  # "2 Platzanfragen"


def digest_lines(calls: list[PhoneCall], with_date: bool = False) -> list[DigestLine]:
    """Describe calls for the digest: time, therapist, phone, request count."""
    zone = ZoneInfo(current_app.config["TIMEZONE"])
    pattern = "%d.%m.%Y %H:%M" if with_date else "%H:%M"
    lines = []
    for call in calls:
        count = len(call.placement_requests)
        lines.append(
            DigestLine(
                when=to_zone(call.planned_start, zone).strftime(pattern),
                therapist=call.therapist.full_name,
                phone=call.therapist.phone or "keine Nummer",
                requests=f"{count} Platzanfrage{'' if count == 1 else 'n'}",
            )
        )
    return lines


def digest_subject(clock: Clock) -> str:
    """Return the digest's subject: "Ihre Anrufe am 04.12.2026"."""
    return f"Ihre Anrufe am {local_today(clock):%d.%m.%Y}"


def coordinators(session: Session) -> list[User]:
    """Return the active coordinators who get the digest."""
    return list(
        session.scalars(
            select(User)
            .where(User.role == Role.COORDINATOR, User.active.is_(True))
            .order_by(User.id)
        )
    )


def send_call_digests(
    session: Session,
    clock: Clock,
    smtp: SmtpSettings,
    sender_email: str,
    sender_name: str,
) -> DigestReport:
    """Mail each active coordinator today's and the overdue calls.

    Nothing is sent on a day without planned or overdue calls. Opens one
    SMTP connection; a recipient the server refuses is logged and skipped,
    a lost connection raises so the job can run again.
    """
    today = local_today(clock)
    calls = planned_calls_on(session, today)
    overdue = overdue_calls(session, clock)
    report = DigestReport(calls=len(calls), overdue=len(overdue))
    if not calls and not overdue:
        log.info("call digest for %s: no calls, nothing sent", today)
        return report

    recipients = coordinators(session)
    report.recipients = len(recipients)
    if not recipients:
        log.warning("call digest for %s: no active coordinator", today)
        return report

    subject = digest_subject(clock)
    today_lines = digest_lines(calls)
    overdue_lines = digest_lines(overdue, with_date=True)
    connection = open_connection(smtp)
    try:
        for user in recipients:
            context = {
                "user": user,
                "day": f"{today:%d.%m.%Y}",
                "calls": today_lines,
                "overdue": overdue_lines,
            }
            mime = build_mime(
                subject=subject,
                sender_name=sender_name,
                sender_email=sender_email,
                recipient_name=user.name,
                recipient_email=user.email,
                message_id=new_message_id(sender_email),
                html=render_template("calls/digest.html", **context),
                text=render_template("calls/digest.txt", **context),
            )
            try:
                connection.sendmail(
                    sender_email, [user.email], with_date(mime, clock.now())
                )
            except (smtplib.SMTPRecipientsRefused, smtplib.SMTPResponseException):
                log.warning("call digest for user %s refused by the server", user.id)
                report.refused += 1
                continue
            report.sent += 1
    finally:
        _quit(connection)

    log.info(
        "call digest for %s: %s calls, %s overdue, sent to %s of %s coordinators",
        today,
        report.calls,
        report.overdue,
        report.sent,
        report.recipients,
    )
    return report


def _quit(connection: smtplib.SMTP) -> None:
    try:
        connection.quit()
    except (OSError, smtplib.SMTPException):
        connection.close()


def claim_digest_day(session: Session, clock: Clock, day: date) -> bool:
    """Claim the day's digest; False if another run already has it."""
    insert = (
        postgresql.insert
        if session.get_bind().dialect.name == "postgresql"
        else sqlite.insert
    )
    claimed = session.execute(
        insert(CallDigestDay)
        .values(day=day, sent_at=clock.now())
        .on_conflict_do_nothing()
        .returning(CallDigestDay.day)
    ).scalar()
    session.commit()
    return claimed is not None


def release_digest_day(session: Session, day: date) -> None:
    """Give the day back after a failed run, so the next run tries again."""
    session.rollback()
    session.execute(delete(CallDigestDay).where(CallDigestDay.day == day))
    session.commit()
