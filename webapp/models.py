"""Database models of the communication service."""

from datetime import date, datetime
from enum import StrEnum

from flask_login import UserMixin
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from webapp.clock import system_clock
from webapp.extensions import db


def _now() -> datetime:
    return system_clock.now()


class Role(StrEnum):
    COORDINATOR = "coordinator"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"


class EmailStatus(StrEnum):
    DRAFT = "entwurf"
    QUEUED = "in_warteschlange"
    SENDING = "wird_gesendet"
    SENT = "gesendet"
    FAILED = "fehlgeschlagen"
    DISCARDED = "verworfen"


class EmailKind(StrEnum):
    INITIAL_CONTACT = "initial_contact"
    BATCH_REQUEST = "batch_request"
    FOLLOW_UP = "follow_up"
    CONFIRMATION = "confirmation"


# Lower number drains first (DESIGN.md rule 4).
KIND_PRIORITY = {
    EmailKind.CONFIRMATION: 1,
    EmailKind.FOLLOW_UP: 2,
    EmailKind.INITIAL_CONTACT: 3,
    EmailKind.BATCH_REQUEST: 3,
}

# Kinds that count against the weekly cap; confirmations answer the therapist.
CAPPED_KINDS = (
    EmailKind.INITIAL_CONTACT,
    EmailKind.BATCH_REQUEST,
    EmailKind.FOLLOW_UP,
)


class PlacementStatus(StrEnum):
    OPEN = "offen"
    ACCEPTED = "angenommen"
    DECLINED = "abgelehnt"
    WITHDRAWN = "zurueckgezogen"


class AttemptOutcome(StrEnum):
    SENT = "gesendet"
    TRANSIENT = "voruebergehend"
    PERMANENT = "dauerhaft"
    # The worker died mid-send: the server may or may not have the message.
    INTERRUPTED = "unterbrochen"


class User(UserMixin, db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    role: Mapped[str] = mapped_column(String(20), default=Role.COORDINATOR)
    password_hash: Mapped[str] = mapped_column(String(255))
    # Secret of the personal ICS link; renewing it kills the old link.
    calendar_token: Mapped[str | None] = mapped_column(String(64), unique=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)

    def set_password(self, password: str) -> None:
        """Store a salted hash of the password."""
        self.password_hash = generate_password_hash(password)

    def check_password(self, password: str) -> bool:
        """Tell whether the password matches the stored hash."""
        return check_password_hash(self.password_hash, password)

    @property
    def is_active(self) -> bool:
        return self.active


class ApiToken(db.Model):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)


class Therapist(db.Model):
    __tablename__ = "therapists"

    id: Mapped[int] = mapped_column(primary_key=True)
    external_id: Mapped[str] = mapped_column(String(64), unique=True)
    salutation: Mapped[str | None] = mapped_column(String(10))
    title: Mapped[str | None] = mapped_column(String(40))
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str | None] = mapped_column(String(254))
    phone: Mapped[str | None] = mapped_column(String(40))
    federal_state: Mapped[str] = mapped_column(String(2))
    # List of {"weekday": 0-6, "start": "HH:MM", "end": "HH:MM"}, local time.
    phone_availability: Mapped[list] = mapped_column(JSON, default=list)
    potentially_available: Mapped[bool] = mapped_column(Boolean, default=False)
    knows_platform: Mapped[bool] = mapped_column(Boolean, default=False)
    next_contact_after: Mapped[date | None] = mapped_column(Date)
    blocked: Mapped[bool] = mapped_column(Boolean, default=False)
    blocked_reason: Mapped[str | None] = mapped_column(Text)
    # Bumped by an UPDATE to serialise cap checks on this therapist.
    cap_lock: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=_now, onupdate=_now)

    placement_requests: Mapped[list["PlacementRequest"]] = relationship(
        back_populates="therapist"
    )

    @property
    def full_name(self) -> str:
        """Name with title, as written in an address line."""
        parts = [self.title, self.first_name, self.last_name]
        return " ".join(part for part in parts if part)


email_placement_requests = Table(
    "email_placement_requests",
    db.metadata,
    Column("email_id", ForeignKey("emails.id"), primary_key=True),
    Column(
        "placement_request_id", ForeignKey("placement_requests.id"), primary_key=True
    ),
)


class PlacementRequest(db.Model):
    __tablename__ = "placement_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    external_id: Mapped[str] = mapped_column(String(64), unique=True)
    therapist_id: Mapped[int] = mapped_column(ForeignKey("therapists.id"), index=True)
    patient_pseudonym: Mapped[str] = mapped_column(String(64))
    patient_age: Mapped[int] = mapped_column(Integer)
    patient_gender: Mapped[str] = mapped_column(String(20))
    diagnosis_code: Mapped[str] = mapped_column(String(20))
    time_availability: Mapped[str] = mapped_column(Text, default="")
    patient_registered_at: Mapped[datetime] = mapped_column(DateTime)
    status: Mapped[str] = mapped_column(String(20), default=PlacementStatus.OPEN)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=_now, onupdate=_now)

    therapist: Mapped[Therapist] = relationship(back_populates="placement_requests")


_ONE_DRAFT = "status = 'entwurf' AND kind IN ('initial_contact', 'batch_request')"
_ONE_PENDING = (
    "status IN ('in_warteschlange', 'wird_gesendet') AND kind <> 'confirmation'"
)


class Email(db.Model):
    __tablename__ = "emails"
    __table_args__ = (
        Index("ix_emails_due", "status", "priority", "next_attempt_at"),
        Index("ix_emails_therapist_status", "therapist_id", "status"),
        # At most one batching draft and one pending request email per
        # therapist: concurrent runs and approvals cannot double up.
        Index(
            "uq_emails_one_draft",
            "therapist_id",
            unique=True,
            postgresql_where=text(_ONE_DRAFT),
            sqlite_where=text(_ONE_DRAFT),
        ),
        Index(
            "uq_emails_one_pending",
            "therapist_id",
            unique=True,
            postgresql_where=text(_ONE_PENDING),
            sqlite_where=text(_ONE_PENDING),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    therapist_id: Mapped[int] = mapped_column(ForeignKey("therapists.id"))
    kind: Mapped[str] = mapped_column(String(20))
    priority: Mapped[int] = mapped_column(Integer, default=3)
    subject: Mapped[str] = mapped_column(String(255))
    body_html: Mapped[str] = mapped_column(Text)
    body_text: Mapped[str] = mapped_column(Text)
    recipient_email: Mapped[str] = mapped_column(String(254))
    recipient_name: Mapped[str] = mapped_column(String(255))
    sender_email: Mapped[str] = mapped_column(String(254))
    sender_name: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(20), default=EmailStatus.DRAFT)
    message_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    # The whole message, serialised once at approval (without Date).
    mime_bytes: Mapped[bytes | None] = mapped_column(LargeBinary)
    approved_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    approved_at: Mapped[datetime | None] = mapped_column(DateTime)
    queued_at: Mapped[datetime | None] = mapped_column(DateTime)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(120))
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime)
    error_message: Mapped[str | None] = mapped_column(Text)
    retry_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=_now, onupdate=_now)

    therapist: Mapped[Therapist] = relationship()
    approved_by: Mapped[User | None] = relationship()
    placement_requests: Mapped[list[PlacementRequest]] = relationship(
        secondary=email_placement_requests, order_by=PlacementRequest.id
    )
    attempts: Mapped[list["DeliveryAttempt"]] = relationship(
        back_populates="email", order_by="DeliveryAttempt.id"
    )

    @property
    def placement_request_ids(self) -> list[int]:
        """Ids of the placement requests this email carries."""
        return [request.id for request in self.placement_requests]


class DeliveryAttempt(db.Model):
    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    email_id: Mapped[int] = mapped_column(ForeignKey("emails.id"), index=True)
    attempted_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    worker: Mapped[str] = mapped_column(String(120))
    smtp_code: Mapped[int | None] = mapped_column(Integer)
    smtp_reply: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(String(20))
    duration_ms: Mapped[int | None] = mapped_column(Integer)

    email: Mapped[Email] = relationship(back_populates="attempts")


# Phone side (DESIGN.md rules 5-9) ------------------------------------------


class CallStatus(StrEnum):
    PLANNED = "geplant"
    COMPLETED = "abgeschlossen"
    FAILED = "fehlgeschlagen"
    CANCELLED = "abgebrochen"


class CallReason(StrEnum):
    FOLLOW_UP = "follow_up"  # a request email went unanswered for 7 days
    NO_EMAIL = "no_email"  # the therapist has no email address
    CALL_BACK = "call_back"  # the therapist asked to be called again
    MANUAL = "manual"


class CallOutcome(StrEnum):
    REACHED = "erreicht"
    NO_ANSWER = "keine_antwort"
    BUSY = "besetzt"
    VOICEMAIL = "mailbox"
    WRONG_NUMBER = "falsche_nummer"


# Outcomes after which the same call is tried again on a later day.
RETRY_OUTCOMES = (CallOutcome.NO_ANSWER, CallOutcome.BUSY, CallOutcome.VOICEMAIL)


class RequestAnswer(StrEnum):
    """A therapist's answer about one placement request."""

    ACCEPTED = "angenommen"
    DECLINED = "abgelehnt"
    CALL_BACK = "rueckruf"


phone_call_requests = Table(
    "phone_call_requests",
    db.metadata,
    Column("phone_call_id", ForeignKey("phone_calls.id"), primary_key=True),
    Column(
        "placement_request_id", ForeignKey("placement_requests.id"), primary_key=True
    ),
    Column("answer", String(20)),
)

_ONE_CALL_PER_SLOT = "status = 'geplant'"


class PhoneCall(db.Model):
    __tablename__ = "phone_calls"
    __table_args__ = (
        Index("ix_phone_calls_start", "planned_start"),
        Index("ix_phone_calls_therapist", "therapist_id", "status"),
        # At most one planned call per slot and coordinator line (rule 6).
        Index(
            "uq_phone_calls_slot_line",
            "planned_start",
            "line",
            unique=True,
            postgresql_where=text(_ONE_CALL_PER_SLOT),
            sqlite_where=text(_ONE_CALL_PER_SLOT),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    therapist_id: Mapped[int] = mapped_column(ForeignKey("therapists.id"))
    planned_start: Mapped[datetime] = mapped_column(DateTime)  # UTC
    duration_minutes: Mapped[int] = mapped_column(Integer, default=5)
    line: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(20), default=CallStatus.PLANNED)
    reason: Mapped[str] = mapped_column(String(20), default=CallReason.MANUAL)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    source_email_id: Mapped[int | None] = mapped_column(ForeignKey("emails.id"))
    previous_call_id: Mapped[int | None] = mapped_column(ForeignKey("phone_calls.id"))
    outcome: Mapped[str | None] = mapped_column(String(20))
    notes: Mapped[str | None] = mapped_column(Text)
    change_reason: Mapped[str | None] = mapped_column(Text)
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    recorded_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=_now, onupdate=_now)

    therapist: Mapped[Therapist] = relationship()
    source_email: Mapped[Email | None] = relationship()
    recorded_by: Mapped[User | None] = relationship()
    placement_requests: Mapped[list[PlacementRequest]] = relationship(
        secondary=phone_call_requests, order_by=PlacementRequest.id
    )


class EmailReply(db.Model):
    """A therapist's answer to an email, recorded by a coordinator."""

    __tablename__ = "email_replies"

    id: Mapped[int] = mapped_column(primary_key=True)
    email_id: Mapped[int] = mapped_column(ForeignKey("emails.id"), index=True)
    received_on: Mapped[date] = mapped_column(Date)
    content: Mapped[str] = mapped_column(Text, default="")
    # {"<placement request id>": "angenommen" | "abgelehnt"}
    answers: Mapped[dict] = mapped_column(JSON, default=dict)
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    recorded_at: Mapped[datetime] = mapped_column(DateTime, default=_now)

    email: Mapped[Email] = relationship()
    recorded_by: Mapped[User | None] = relationship()


# Supervision (DESIGN.md rules 10-12) ----------------------------------------


class AlertKind(StrEnum):
    EMAIL_FAILED = "email_failed"
    FAILURE_RATE = "failure_rate"
    WORKER_SILENT = "worker_silent"
    CALL_FAILED = "call_failed"


class Alert(db.Model):
    """Something a supervisor must see; raised once until acknowledged."""

    __tablename__ = "alerts"
    __table_args__ = (
        # One open alert per kind and subject: raising twice changes nothing.
        Index(
            "uq_alerts_open",
            "kind",
            "subject_key",
            unique=True,
            postgresql_where=text("acknowledged_at IS NULL"),
            sqlite_where=text("acknowledged_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(30))
    subject_key: Mapped[str] = mapped_column(String(80))
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    mailed_at: Mapped[datetime | None] = mapped_column(DateTime)
    acknowledged_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime)

    acknowledged_by: Mapped[User | None] = relationship()


class AuditEntry(db.Model):
    """Who did what and why, for actions that override a rule."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    action: Mapped[str] = mapped_column(String(40))
    object_type: Mapped[str] = mapped_column(String(40))
    object_id: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)

    user: Mapped[User | None] = relationship()


class CallDigestDay(db.Model):
    """A local day whose morning call digest went out; claimed before sending."""

    __tablename__ = "call_digest_days"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    sent_at: Mapped[datetime] = mapped_column(DateTime)
