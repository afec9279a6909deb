"""Supervision: failure reports, requeue and cancel, delivery charts.

Supervisors see failed and retrying emails with the last error in plain
German, read each email's attempts, send an email again (with a corrected
address, if need be) or cancel it, each with a reason in the audit log
(DESIGN.md rules 10-12).
"""

import logging
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import (
    ColumnElement,
    and_,
    case,
    func,
    not_,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased, selectinload

from webapp import audit
from webapp.approval import cap_frees_at, lock_therapist
from webapp.clock import BERLIN, Clock
from webapp.exceptions import InvalidTransition, ValidationFailed, WeeklyCapExceeded
from webapp.message import email_mime, new_message_id
from webapp.models import (
    CAPPED_KINDS,
    Alert,
    AttemptOutcome,
    AuditEntry,
    DeliveryAttempt,
    Email,
    EmailStatus,
    User,
)

log = logging.getLogger(__name__)

REASON_MAX_LENGTH = 500


# Error classes ---------------------------------------------------------------


class ErrorClass(StrEnum):
    """What went wrong with a delivery attempt, as a supervisor reads it."""

    UNREACHABLE = "nicht_erreichbar"
    TEMPORARY = "voruebergehend"
    UNKNOWN_ADDRESS = "adresse_unbekannt"
    REJECTED = "abgelehnt"
    INTERRUPTED = "worker_ausgefallen"
    OTHER = "sonstiges"


ERROR_CLASS_LABELS = {
    ErrorClass.UNREACHABLE: "Server nicht erreichbar",
    ErrorClass.TEMPORARY: "Vorübergehend abgelehnt (4xx)",
    ErrorClass.UNKNOWN_ADDRESS: "Adresse unbekannt",
    ErrorClass.REJECTED: "Dauerhaft abgelehnt (5xx)",
    ErrorClass.INTERRUPTED: "Worker ausgefallen",
    ErrorClass.OTHER: "Sonstiger Fehler",
}

# The same rules twice: `classify_attempt` for one attempt in Python and
# `error_class_sql` for filtering and counting in the database. A test
# checks that both agree on a table of replies.


def _starts_with_enhanced_code(reply: str) -> bool:
    # Mirrors LIKE '5._.%': an enhanced status code such as "5.7.1" first.
    return len(reply) >= 4 and reply[0] == "5" and reply[1] == "." and reply[3] == "."


def _is_unknown_address(code: int, reply: str) -> bool:
    if "5.1.1" in reply or reply.startswith("5.1."):
        return True
    # A bare 550 without an enhanced code usually means "no such user".
    return code == 550 and not _starts_with_enhanced_code(reply)


def classify_attempt(
    outcome: str, code: int | None, reply: str | None
) -> ErrorClass | None:
    """Name the error class of one attempt; None for a sent one."""
    if outcome == AttemptOutcome.SENT:
        return None
    if outcome == AttemptOutcome.INTERRUPTED:
        return ErrorClass.INTERRUPTED
    if code is None:
        # No reply at all: refused, dropped or timed-out connections.
        return ErrorClass.UNREACHABLE
    if 400 <= code <= 499:
        return ErrorClass.TEMPORARY
    if 500 <= code <= 599:
        if _is_unknown_address(code, reply or ""):
            return ErrorClass.UNKNOWN_ADDRESS
        return ErrorClass.REJECTED
    return ErrorClass.OTHER


def error_class_sql(attempt) -> ColumnElement:
    """Return a SQL expression with the error class of an attempt row."""
    code = attempt.smtp_code
    reply = func.coalesce(attempt.smtp_reply, "")
    unknown_address = or_(
        reply.like("%5.1.1%"),
        reply.like("5.1.%"),
        and_(code == 550, not_(reply.like("5._.%"))),
    )
    return case(
        (attempt.id.is_(None), null()),
        (attempt.outcome == AttemptOutcome.SENT, null()),
        (attempt.outcome == AttemptOutcome.INTERRUPTED, ErrorClass.INTERRUPTED.value),
        (code.is_(None), ErrorClass.UNREACHABLE.value),
        (code.between(400, 499), ErrorClass.TEMPORARY.value),
        (
            and_(code.between(500, 599), unknown_address),
            ErrorClass.UNKNOWN_ADDRESS.value,
        ),
        (code.between(500, 599), ErrorClass.REJECTED.value),
        else_=ErrorClass.OTHER.value,
    )


# Failure report ----------------------------------------------------------------


class ReportState(StrEnum):
    """Which emails the failure report lists."""

    TROUBLE = ""  # failed and retrying, the default
    FAILED = "fehlgeschlagen"
    RETRYING = "wiederholung"
    SCHEDULED = "geplant"


REPORT_STATE_LABELS = {
    ReportState.TROUBLE: "Fehlgeschlagen und Wiederholungen",
    ReportState.FAILED: "Endgültig fehlgeschlagen",
    ReportState.RETRYING: "Wiederholung geplant",
    ReportState.SCHEDULED: "Für später eingeplant",
}


@dataclass
class ReportFilters:
    """Filters of the failure report; None means "any"."""

    state: ReportState = ReportState.TROUBLE
    since: datetime | None = None
    kind: str | None = None
    error_class: ErrorClass | None = None


@dataclass
class FailureRow:
    """One email of the failure report with its attempt summary."""

    email: Email
    attempts: int
    first_try: datetime | None
    last_try: datetime | None
    last_attempt: DeliveryAttempt | None
    error_class: ErrorClass | None


@dataclass
class Page:
    """One page of a list, shaped like Flask-SQLAlchemy's pagination."""

    items: list
    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        """Return the number of pages."""
        return max(math.ceil(self.total / self.per_page), 1) if self.total else 0

    @property
    def has_prev(self) -> bool:
        """Tell whether a page comes before this one."""
        return self.page > 1

    @property
    def has_next(self) -> bool:
        """Tell whether a page follows this one."""
        return self.page < self.pages

    @property
    def prev_num(self) -> int:
        """Return the number of the previous page."""
        return self.page - 1

    @property
    def next_num(self) -> int:
        """Return the number of the next page."""
        return self.page + 1


def _state_condition(state: ReportState, now: datetime) -> ColumnElement:
    failed = Email.status == EmailStatus.FAILED
    retrying = and_(Email.status == EmailStatus.QUEUED, Email.retry_count > 0)
    if state == ReportState.FAILED:
        return failed
    if state == ReportState.RETRYING:
        return retrying
    if state == ReportState.SCHEDULED:
        return and_(
            Email.status == EmailStatus.QUEUED,
            Email.retry_count == 0,
            Email.next_attempt_at > now,
        )
    return or_(failed, retrying)


def _report_statement(clock: Clock, filters: ReportFilters):
    """Select emails of the report with attempt counts and the last attempt."""
    listed = _state_condition(filters.state, clock.now())
    stats = (
        select(
            DeliveryAttempt.email_id,
            func.count(DeliveryAttempt.id).label("attempts"),
            func.min(DeliveryAttempt.attempted_at).label("first_try"),
            func.max(DeliveryAttempt.attempted_at).label("last_try"),
            func.max(DeliveryAttempt.id).label("last_id"),
        )
        .join(Email, Email.id == DeliveryAttempt.email_id)
        .where(listed)
        .group_by(DeliveryAttempt.email_id)
        .subquery()
    )
    last = aliased(DeliveryAttempt)
    moment = func.coalesce(stats.c.last_try, Email.updated_at)
    error_class = error_class_sql(last)

    conditions = [listed]
    if filters.since is not None:
        conditions.append(moment >= filters.since)
    if filters.kind:
        conditions.append(Email.kind == filters.kind)
    statement = (
        select(
            Email,
            func.coalesce(stats.c.attempts, 0),
            stats.c.first_try,
            stats.c.last_try,
            last,
        )
        .outerjoin(stats, stats.c.email_id == Email.id)
        .outerjoin(last, last.id == stats.c.last_id)
        .where(*conditions)
    )
    return statement, error_class, moment


def failure_report(
    session: Session,
    clock: Clock,
    filters: ReportFilters,
    page: int = 1,
    per_page: int = 50,
) -> Page:
    """Return one page of failed or retrying emails, newest trouble first."""
    statement, error_class, moment = _report_statement(clock, filters)
    if filters.error_class is not None:
        statement = statement.where(error_class == filters.error_class.value)

    total = session.scalar(select(func.count()).select_from(statement.subquery()))
    page = max(1, min(page, max(math.ceil((total or 0) / per_page), 1)))
    rows = session.execute(
        statement.options(selectinload(Email.therapist))
        .order_by(moment.desc(), Email.id.desc())
        .limit(per_page)
        .offset((page - 1) * per_page)
    ).all()

    items = [
        FailureRow(
            email=email,
            attempts=attempts,
            first_try=first_try,
            last_try=last_try,
            last_attempt=attempt,
            error_class=(
                classify_attempt(attempt.outcome, attempt.smtp_code, attempt.smtp_reply)
                if attempt is not None
                else None
            ),
        )
        for email, attempts, first_try, last_try, attempt in rows
    ]
    return Page(items=items, page=page, per_page=per_page, total=total or 0)


def error_class_counts(
    session: Session, clock: Clock, filters: ReportFilters
) -> dict[ErrorClass, int]:
    """Count the report's emails per error class, ignoring that one filter."""
    statement, error_class, _ = _report_statement(clock, filters)
    # Group over a subquery: PostgreSQL does not match a CASE with bound
    # parameters in SELECT against the same CASE in GROUP BY.
    classes = statement.with_only_columns(error_class.label("error_class")).subquery()
    counts = session.execute(
        select(classes.c.error_class, func.count()).group_by(classes.c.error_class)
    ).all()
    return {ErrorClass(name): number for name, number in counts if name}


# Timeline ----------------------------------------------------------------------


@dataclass
class TimelineAttempt:
    """One delivery attempt with its error class."""

    attempt: DeliveryAttempt
    error_class: ErrorClass | None


@dataclass
class Timeline:
    """Every attempt of one email and what supervisors did with it."""

    email: Email
    attempts: list[TimelineAttempt]
    interventions: list[AuditEntry]


def email_timeline(session: Session, email: Email) -> Timeline:
    """Return the email's attempts in order and its audit entries."""
    attempts = session.scalars(
        select(DeliveryAttempt)
        .where(DeliveryAttempt.email_id == email.id)
        .order_by(DeliveryAttempt.attempted_at, DeliveryAttempt.id)
    )
    interventions = session.scalars(
        select(AuditEntry)
        .where(AuditEntry.object_type == Email.__tablename__)
        .where(AuditEntry.object_id == email.id)
        .options(selectinload(AuditEntry.user))
        .order_by(AuditEntry.created_at, AuditEntry.id)
    )
    return Timeline(
        email=email,
        attempts=[
            TimelineAttempt(
                attempt,
                classify_attempt(
                    attempt.outcome, attempt.smtp_code, attempt.smtp_reply
                ),
            )
            for attempt in attempts
        ],
        interventions=list(interventions),
    )


# Requeue and cancel ------------------------------------------------------------

REQUEUE_FROM = (EmailStatus.FAILED, EmailStatus.QUEUED)
CANCEL_FROM = (EmailStatus.FAILED, EmailStatus.QUEUED)


def can_requeue(email: Email) -> bool:
    """Tell whether a supervisor may send this email again."""
    return email.status in REQUEUE_FROM


def can_cancel(email: Email) -> bool:
    """Tell whether a supervisor may cancel this email."""
    return email.status in CANCEL_FROM


def _checked_reason(reason: str | None) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed("reason", "Bitte einen Grund angeben.")
    if len(reason) > REASON_MAX_LENGTH:
        raise ValidationFailed(
            "reason", f"Höchstens {REASON_MAX_LENGTH} Zeichen, bitte kürzen."
        )
    return reason


def checked_address(address: str) -> str:
    """Return the normalised address or raise ValidationFailed in German."""
    try:
        return validate_email(address.strip(), check_deliverability=False).normalized
    except EmailNotValidError:
        raise ValidationFailed(
            "new_address", "Bitte eine gültige E-Mail-Adresse angeben."
        ) from None


def requeue(
    session: Session,
    clock: Clock,
    user: User | None,
    email: Email,
    reason: str,
    new_address: str | None = None,
) -> Email:
    """Queue a failed or retrying email again, with fresh tries.

    The stored message is rebuilt (for a corrected address) with the same
    Message-ID, so the therapist's client can still tell duplicates apart.
    A request email still obeys the weekly cap: it waits until the cap frees
    up. The caller wakes the worker.
    """
    reason = _checked_reason(reason)
    address = checked_address(new_address) if (new_address or "").strip() else None
    if not can_requeue(email):
        raise InvalidTransition(f"email {email.id} is {email.status}")

    now = clock.now()
    due = now
    if email.kind in CAPPED_KINDS:
        # Same lock as approval, so a concurrent approval cannot slip in.
        lock_therapist(session, email.therapist_id)
        frees_at = cap_frees_at(session, [email.therapist_id], now, [email.id])
        due = max(now, frees_at.get(email.therapist_id, now))

    recipient = address or email.recipient_email
    message_id = email.message_id or new_message_id(email.sender_email)
    mime = email_mime(email, message_id, recipient)
    try:
        # Conditional, so an email a worker claimed meanwhile is left alone.
        changed = session.execute(
            update(Email)
            .where(Email.id == email.id, Email.status.in_(REQUEUE_FROM))
            .values(
                status=EmailStatus.QUEUED,
                recipient_email=recipient,
                message_id=message_id,
                mime_bytes=mime,
                retry_count=0,
                next_attempt_at=due,
                error_message=None,
                claimed_by=None,
                claimed_at=None,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        ).rowcount
    except IntegrityError as exc:
        # Another request email of this therapist is queued or sending.
        session.rollback()
        raise WeeklyCapExceeded(email.therapist_id, email.id) from exc
    if changed != 1:
        session.rollback()
        raise InvalidTransition(f"email {email.id} changed status meanwhile")

    audit.record(session, clock, user, "email_requeued", email, reason)
    if address and address != email.recipient_email:
        audit.record(session, clock, user, "email_readdressed", email, reason)
    session.commit()
    session.refresh(email)
    log.info(
        "email %s requeued by user %s, due %s", email.id, user.id if user else None, due
    )
    return email


def cancel(
    session: Session, clock: Clock, user: User | None, email: Email, reason: str
) -> Email:
    """Withdraw a queued or failed email; its placement requests become free."""
    reason = _checked_reason(reason)
    if not can_cancel(email):
        raise InvalidTransition(f"email {email.id} is {email.status}")

    now = clock.now()
    changed = session.execute(
        update(Email)
        .where(Email.id == email.id, Email.status.in_(CANCEL_FROM))
        .values(
            status=EmailStatus.DISCARDED,
            error_message=f"Abgebrochen: {reason}",
            next_attempt_at=None,
            claimed_by=None,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    if changed != 1:
        session.rollback()
        raise InvalidTransition(f"email {email.id} changed status meanwhile")

    audit.record(session, clock, user, "email_cancelled", email, reason)
    session.commit()
    session.refresh(email)
    log.info("email %s cancelled by user %s", email.id, user.id if user else None)
    return email


# Charts ------------------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    """A chart's time range and its bucket size."""

    key: str
    label: str
    unit: str  # hour or day
    buckets: int


SPANS = {
    "24h": Span("24h", "Letzte 24 Stunden", "hour", 24),
    "7d": Span("7d", "Letzte 7 Tage", "day", 7),
    "30d": Span("30d", "Letzte 30 Tage", "day", 30),
}


@dataclass
class Bucket:
    """Attempts of one hour or day."""

    start: datetime  # naive UTC
    label: str  # short, for the chart axis
    title: str  # long, for the table
    sent: int = 0
    retried: int = 0
    failed: int = 0

    @property
    def attempts(self) -> int:
        """Return all attempts of the bucket."""
        return self.sent + self.retried + self.failed

    @property
    def failure_rate(self) -> float | None:
        """Return the share of attempts that did not get through."""
        if not self.attempts:
            return None
        return (self.retried + self.failed) / self.attempts


@dataclass
class Series:
    """Sent, retried and failed attempts per hour or day."""

    span: Span
    buckets: list[Bucket] = field(default_factory=list)

    @property
    def totals(self) -> Bucket:
        """Return the sums over the whole span."""
        total = Bucket(self.buckets[0].start, "Summe", "Summe")
        for bucket in self.buckets:
            total.sent += bucket.sent
            total.retried += bucket.retried
            total.failed += bucket.failed
        return total

    def as_dict(self) -> dict:
        """Return the series as JSON-ready data for the charts."""
        return {
            "span": self.span.key,
            "unit": self.span.unit,
            "title": self.span.label,
            "labels": [bucket.label for bucket in self.buckets],
            "titles": [bucket.title for bucket in self.buckets],
            "starts": [
                bucket.start.replace(tzinfo=UTC).isoformat() for bucket in self.buckets
            ],
            "sent": [bucket.sent for bucket in self.buckets],
            "retried": [bucket.retried for bucket in self.buckets],
            "failed": [bucket.failed for bucket in self.buckets],
            "attempts": [bucket.attempts for bucket in self.buckets],
            "failure_rate": [
                None if rate is None else round(rate, 4)
                for rate in (bucket.failure_rate for bucket in self.buckets)
            ],
        }


def bucket_starts(now: datetime, span: Span, zone: ZoneInfo) -> list[datetime]:
    """Return the naive-UTC starts of the span's buckets plus the end.

    Hours end with the current one; days are local calendar days ending
    today, so a day around a DST change has 23 or 25 hours.
    """
    if span.unit == "hour":
        current = now.replace(minute=0, second=0, microsecond=0)
        first = current - timedelta(hours=span.buckets - 1)
        return [first + timedelta(hours=n) for n in range(span.buckets + 1)]

    today = now.replace(tzinfo=UTC).astimezone(zone).date()
    days = [today - timedelta(days=n) for n in range(span.buckets - 1, -2, -1)]
    return [
        datetime.combine(day, time.min, tzinfo=zone)
        .astimezone(UTC)
        .replace(tzinfo=None)
        for day in days
    ]


def _labels(start: datetime, span: Span, zone: ZoneInfo) -> tuple[str, str]:
    local = start.replace(tzinfo=UTC).astimezone(zone)
    if span.unit == "hour":
        until = local + timedelta(hours=1)
        return (
            local.strftime("%H:%M"),
            f"{local:%d.%m.%Y} {local:%H:%M}–{until:%H:%M}",
        )
    return local.strftime("%d.%m."), local.strftime("%d.%m.%Y")


def delivery_series(
    session: Session, clock: Clock, span: Span, zone: ZoneInfo = BERLIN
) -> Series:
    """Count sent, retried and failed attempts per bucket of the span.

    "Failed" is a permanent refusal or the last try of an email that ended
    failed; every other unsuccessful try was retried. Buckets come from a
    CASE over bound limits, which SQLite and PostgreSQL read alike.
    """
    edges = bucket_starts(clock.now(), span, zone)
    bucket = case(
        *[
            (DeliveryAttempt.attempted_at < edge, index)
            for index, edge in enumerate(edges[1:])
        ],
        else_=None,
    )
    later = aliased(DeliveryAttempt)
    last_try = (
        select(func.max(later.id))
        .where(later.email_id == DeliveryAttempt.email_id)
        .scalar_subquery()
    )
    category = case(
        (DeliveryAttempt.outcome == AttemptOutcome.SENT, "sent"),
        (DeliveryAttempt.outcome == AttemptOutcome.PERMANENT, "failed"),
        (
            and_(Email.status == EmailStatus.FAILED, DeliveryAttempt.id == last_try),
            "failed",
        ),
        else_="retried",
    )
    rows = (
        select(bucket.label("bucket"), category.label("category"))
        .join(Email, Email.id == DeliveryAttempt.email_id)
        .where(
            DeliveryAttempt.attempted_at >= edges[0],
            DeliveryAttempt.attempted_at < edges[-1],
        )
        .subquery()
    )
    counts = session.execute(
        select(rows.c.bucket, rows.c.category, func.count()).group_by(
            rows.c.bucket, rows.c.category
        )
    ).all()

    buckets = [Bucket(start, *_labels(start, span, zone)) for start in edges[:-1]]
    for index, name, number in counts:
        if index is None:
            continue
        setattr(buckets[index], name, getattr(buckets[index], name) + number)
    return Series(span, buckets)


# Alerts ------------------------------------------------------------------------


def recently_acknowledged(session: Session, limit: int = 10) -> list[Alert]:
    """Return the last acknowledged alerts, newest acknowledgement first."""
    return list(
        session.scalars(
            select(Alert)
            .where(Alert.acknowledged_at.is_not(None))
            .options(selectinload(Alert.acknowledged_by))
            .order_by(Alert.acknowledged_at.desc(), Alert.id.desc())
            .limit(limit)
        )
    )
