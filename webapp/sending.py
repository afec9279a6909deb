"""Send queued emails over SMTP in chunks, one connection per run.

A run claims due emails in one statement, re-checks the weekly cap under
the therapists' row locks, pushes the stored bytes over one connection and
records every attempt. Transient failures come back later with backoff;
permanent ones fail at once (DESIGN.md rules 1, 10 and 11).
"""

import logging
import random
import smtplib
import socket
import ssl
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from webapp.alerts import alert_failed_emails
from webapp.approval import cap_frees_at
from webapp.clock import Clock
from webapp.exceptions import PermanentSmtpFailure, SmtpFailure, TransientSmtpFailure
from webapp.message import with_date
from webapp.models import (
    CAPPED_KINDS,
    AttemptOutcome,
    DeliveryAttempt,
    Email,
    EmailStatus,
    Therapist,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SmtpSettings:
    """How to reach the SMTP server."""

    host: str
    port: int
    security: str = "none"  # none, starttls or tls
    username: str | None = None
    password: str | None = None
    timeout: float = 30
    # CA bundle to trust instead of the system's, e.g. for an internal relay.
    ca_file: str | None = None

    @classmethod
    def from_config(cls, config) -> "SmtpSettings":
        """Read the SMTP_* settings of a Flask config."""
        return cls(
            host=config["SMTP_HOST"],
            port=config["SMTP_PORT"],
            security=config["SMTP_SECURITY"],
            username=config["SMTP_USERNAME"],
            password=config["SMTP_PASSWORD"],
            timeout=config["SMTP_TIMEOUT"],
            ca_file=config.get("SMTP_CA_FILE"),
        )


@dataclass
class SendPolicy:
    """Chunking and retry rules of a send run."""

    chunk_size: int = 200
    retry_intervals: list[int] = field(default_factory=lambda: [60, 300, 900, 3600])


@dataclass
class SendReport:
    """Counts of one send run and when retries fall due."""

    sent: int = 0
    retrying: int = 0
    failed: int = 0
    deferred: int = 0
    failed_ids: list[int] = field(default_factory=list)
    retry_times: list[datetime] = field(default_factory=list)

    def as_dict(self) -> dict:
        """Return the counts as plain data."""
        return {
            "sent": self.sent,
            "retrying": self.retrying,
            "failed": self.failed,
            "deferred": self.deferred,
        }


@dataclass
class _Outcome:
    email_id: int
    outcome: AttemptOutcome
    code: int | None
    reply: str
    started: datetime
    duration_ms: int


@dataclass
class ClaimedEmail:
    """What a worker needs of a claimed email to send it."""

    id: int
    therapist_id: int
    kind: str
    sender: str
    recipient: str
    mime: bytes
    retry_count: int


# Connection ----------------------------------------------------------------


def open_connection(settings: SmtpSettings) -> smtplib.SMTP:
    """Connect, secure and log in as configured; raise TransientSmtpFailure."""
    context = None
    if settings.security != "none":
        context = ssl.create_default_context(cafile=settings.ca_file)
    try:
        if settings.security == "tls":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                settings.host, settings.port, timeout=settings.timeout, context=context
            )
        else:
            smtp = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
        if settings.security == "starttls":
            smtp.starttls(context=context)
        if settings.username:
            smtp.login(settings.username, settings.password or "")
    except smtplib.SMTPResponseException as exc:
        raise TransientSmtpFailure(exc.smtp_code, _reply_text(exc.smtp_error)) from exc
    except (OSError, smtplib.SMTPException) as exc:
        raise TransientSmtpFailure(None, f"Verbindung fehlgeschlagen: {exc}") from exc
    return smtp


def _close(smtp: smtplib.SMTP | None) -> None:
    if smtp is None:
        return
    try:
        smtp.quit()
    except (OSError, smtplib.SMTPException):
        smtp.close()


def _reply_text(raw: bytes | str) -> str:
    if isinstance(raw, bytes):
        return raw.decode("utf-8", "replace")
    return str(raw)


def classify(exc: Exception) -> SmtpFailure:
    """Turn an smtplib or socket error into a transient or permanent failure."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code, reply = next(iter(exc.recipients.values()))
        return _by_code(code, _reply_text(reply))
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return TransientSmtpFailure(None, f"Verbindung abgebrochen: {exc}")
    if isinstance(exc, smtplib.SMTPResponseException):
        return _by_code(exc.smtp_code, _reply_text(exc.smtp_error))
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return TransientSmtpFailure(None, "Zeitüberschreitung beim Senden")
    return TransientSmtpFailure(None, f"Verbindungsfehler: {exc}")


def _by_code(code: int, reply: str) -> SmtpFailure:
    if 500 <= code < 600:
        return PermanentSmtpFailure(code, reply)
    return TransientSmtpFailure(code, reply)


def _connection_lost(failure: SmtpFailure) -> bool:
    # Without a reply code the socket itself broke; the rest needs a new one.
    return failure.code is None or failure.code == 421


# Claiming ------------------------------------------------------------------


def claim_due(
    session: Session,
    clock: Clock,
    worker: str,
    limit: int,
    priority: int | None = None,
) -> list[ClaimedEmail]:
    """Atomically move due queued emails to wird_gesendet and return them.

    One statement: concurrent workers skip rows another one has locked, so
    each email is claimed exactly once.
    """
    now = clock.now()
    due = (
        select(Email.id)
        .where(Email.status == EmailStatus.QUEUED, Email.next_attempt_at <= now)
        .order_by(Email.priority, Email.next_attempt_at, Email.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    if priority is not None:
        due = due.where(Email.priority == priority)

    statement = (
        update(Email)
        .where(Email.id.in_(due.scalar_subquery()))
        .values(
            status=EmailStatus.SENDING,
            claimed_by=worker,
            claimed_at=now,
            updated_at=now,
        )
        .returning(
            Email.id,
            Email.therapist_id,
            Email.kind,
            Email.sender_email,
            Email.recipient_email,
            Email.mime_bytes,
            Email.retry_count,
            Email.priority,
        )
        .execution_options(synchronize_session=False)
    )
    rows = sorted(session.execute(statement).all(), key=lambda r: (r[-1], r[0]))
    return [ClaimedEmail(*row[:-1]) for row in rows]


def defer_capped(
    session: Session, clock: Clock, claimed: list[ClaimedEmail]
) -> set[int]:
    """Re-check the weekly cap under row locks; push back what breaks it."""
    now = clock.now()
    capped = [email for email in claimed if email.kind in CAPPED_KINDS]
    therapist_ids = sorted({email.therapist_id for email in capped})
    if not therapist_ids:
        return set()

    # One statement locks all therapists of the chunk, in id order, so an
    # approval of the same therapist waits for this check (and vice versa).
    session.execute(
        select(Therapist.id)
        .where(Therapist.id.in_(therapist_ids))
        .order_by(Therapist.id)
        .with_for_update()
    ).all()

    claimed_ids = [email.id for email in claimed]
    frees_at = cap_frees_at(session, therapist_ids, now, exclude_ids=claimed_ids)
    deferred = [email for email in capped if email.therapist_id in frees_at]
    if deferred:
        session.execute(
            update(Email),
            [
                {
                    "id": email.id,
                    "status": EmailStatus.QUEUED,
                    "next_attempt_at": frees_at[email.therapist_id],
                    "claimed_by": None,
                    "updated_at": now,
                }
                for email in deferred
            ],
        )
        log.warning("emails %s deferred by the weekly cap", [e.id for e in deferred])
    return {email.id for email in deferred}


# Sending -------------------------------------------------------------------


def send_due_emails(
    session: Session,
    clock: Clock,
    smtp_settings: SmtpSettings,
    worker: str,
    policy: SendPolicy,
    priority: int | None = None,
) -> SendReport:
    """Send every due email, chunk by chunk, over one SMTP connection."""
    report = SendReport()
    smtp: smtplib.SMTP | None = None
    try:
        while True:
            claimed = claim_due(session, clock, worker, policy.chunk_size, priority)
            if not claimed:
                session.commit()
                break
            deferred = defer_capped(session, clock, claimed)
            session.commit()
            report.deferred += len(deferred)

            chunk = [email for email in claimed if email.id not in deferred]
            smtp = _send_chunk(
                session, clock, smtp_settings, smtp, chunk, worker, policy, report
            )
    finally:
        _close(smtp)

    log.info(
        "worker %s sent %s, retrying %s, failed %s, deferred %s",
        worker,
        report.sent,
        report.retrying,
        report.failed,
        report.deferred,
    )
    return report


def _send_chunk(
    session: Session,
    clock: Clock,
    smtp_settings: SmtpSettings,
    smtp: smtplib.SMTP | None,
    chunk: list[ClaimedEmail],
    worker: str,
    policy: SendPolicy,
    report: SendReport,
) -> smtplib.SMTP | None:
    """Send one claimed chunk and record the outcomes in one transaction."""
    outcomes: list[_Outcome] = []
    released: list[int] = []
    # The open connection plus one new one if it drops mid-chunk.
    connects_left = 2 if smtp is None else 1

    for position, due in enumerate(chunk):
        if smtp is None:
            if connects_left == 0:
                released = [rest.id for rest in chunk[position:]]
                break
            connects_left -= 1
            try:
                smtp = open_connection(smtp_settings)
            except TransientSmtpFailure as failure:
                # The server is unreachable: everything left counts as a try.
                for rest in chunk[position:]:
                    outcomes.append(_failed(rest.id, failure, clock.now(), 0))
                break

        started = clock.now()
        began = time.perf_counter()
        try:
            smtp.sendmail(due.sender, [due.recipient], with_date(due.mime, started))
            failure = None
        except (OSError, smtplib.SMTPException) as exc:
            failure = classify(exc)
        duration = int((time.perf_counter() - began) * 1000)

        if failure is None:
            outcomes.append(
                _Outcome(due.id, AttemptOutcome.SENT, 250, "OK", started, duration)
            )
        elif _connection_lost(failure):
            outcomes.append(_failed(due.id, failure, started, duration))
            _close(smtp)
            smtp = None
        else:
            outcomes.append(_failed(due.id, failure, started, duration))
            _reset(smtp)

    _record(session, clock, chunk, outcomes, released, worker, policy, report)
    return smtp


def _reset(smtp: smtplib.SMTP) -> None:
    # After a refused message the session must be reset before the next.
    try:
        smtp.rset()
    except (OSError, smtplib.SMTPException):
        pass


def _failed(
    email_id: int, failure: SmtpFailure, started: datetime, ms: int
) -> _Outcome:
    outcome = (
        AttemptOutcome.PERMANENT
        if isinstance(failure, PermanentSmtpFailure)
        else AttemptOutcome.TRANSIENT
    )
    return _Outcome(email_id, outcome, failure.code, failure.reply, started, ms)


def _record(
    session: Session,
    clock: Clock,
    chunk: list[ClaimedEmail],
    outcomes: list[_Outcome],
    released: list[int],
    worker: str,
    policy: SendPolicy,
    report: SendReport,
) -> None:
    """Write attempts and new statuses of a chunk in one transaction."""
    now = clock.now()
    retries = {due.id: due.retry_count for due in chunk}
    failed_before = len(report.failed_ids)
    changes = []

    for result in outcomes:
        changes.append(
            _status_change(result, retries[result.email_id], now, policy, report)
        )
    for email_id in released:
        changes.append(
            {
                "id": email_id,
                "status": EmailStatus.QUEUED,
                "claimed_by": None,
                "updated_at": now,
            }
        )

    if outcomes:
        session.execute(
            insert(DeliveryAttempt),
            [
                {
                    "email_id": result.email_id,
                    "attempted_at": result.started,
                    "worker": worker,
                    "smtp_code": result.code,
                    "smtp_reply": result.reply,
                    "outcome": result.outcome,
                    "duration_ms": result.duration_ms,
                }
                for result in outcomes
            ],
        )
    if changes:
        session.execute(update(Email), changes)
    # Supervisors learn of a final failure in the same transaction.
    alert_failed_emails(session, clock, report.failed_ids[failed_before:])
    session.commit()


def _status_change(
    result: _Outcome,
    retry_count: int,
    now: datetime,
    policy: SendPolicy,
    report: SendReport,
) -> dict:
    if result.outcome == AttemptOutcome.SENT:
        report.sent += 1
        return {
            "id": result.email_id,
            "status": EmailStatus.SENT,
            "sent_at": result.started,
            "error_message": None,
            "updated_at": now,
        }

    error = f"{result.code} {result.reply}" if result.code else result.reply
    attempts_done = retry_count + 1
    if result.outcome == AttemptOutcome.PERMANENT or attempts_done > len(
        policy.retry_intervals
    ):
        report.failed += 1
        report.failed_ids.append(result.email_id)
        log.warning(
            "email %s failed for good after %s tries", result.email_id, attempts_done
        )
        return {
            "id": result.email_id,
            "status": EmailStatus.FAILED,
            "error_message": error,
            "retry_count": retry_count,
            "updated_at": now,
        }

    delay = policy.retry_intervals[retry_count] * random.uniform(0.8, 1.2)
    retry_at = now + timedelta(seconds=delay)
    report.retrying += 1
    report.retry_times.append(retry_at)
    log.warning(
        "email %s try %s failed transiently; retry at %s",
        result.email_id,
        attempts_done,
        retry_at,
    )
    return {
        "id": result.email_id,
        "status": EmailStatus.QUEUED,
        "error_message": error,
        "retry_count": retry_count + 1,
        "next_attempt_at": retry_at,
        "claimed_by": None,
        "updated_at": now,
    }
