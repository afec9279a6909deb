"""Read emails for the dashboard lists: drafts, approved emails, counts.

Plain queries for the coordinator pages. They take the session and explicit
filter values and never read the request, so the views only parse input,
call these, and render.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from flask_sqlalchemy.pagination import Pagination, SelectPagination
from sqlalchemy import ColumnElement, Select, func, or_, select
from sqlalchemy.orm import Session, selectinload

from webapp.clock import day_start_utc
from webapp.models import Email, EmailKind, EmailStatus, Therapist

# What the "E-Mails" page lists unless a status is chosen: everything approved.
APPROVED_STATUSES = (
    EmailStatus.QUEUED,
    EmailStatus.SENDING,
    EmailStatus.SENT,
    EmailStatus.FAILED,
)


@dataclass(frozen=True)
class EmailFilters:
    """The filters of the email list; None means "not filtered by this"."""

    status: EmailStatus | None = None
    kind: EmailKind | None = None
    name: str | None = None
    date_from: date | None = None
    date_to: date | None = None


def draft_page(session: Session, page: int, per_page: int) -> Pagination:
    """Return one page of drafts, most urgent kind first, oldest first within it.

    A page past the end gives the last page, so approving the last drafts of
    the last page shows the page before instead of an empty list.
    """
    statement = (
        select(Email)
        .where(Email.status == EmailStatus.DRAFT)
        .options(selectinload(Email.therapist), selectinload(Email.placement_requests))
        .order_by(Email.priority, Email.created_at, Email.id)
    )
    return _page_or_last(session, statement, page, per_page)


def drafts_per_priority(session: Session) -> dict[int, int]:
    """Count all drafts per priority, across every page."""
    statement = (
        select(Email.priority, func.count(Email.id))
        .where(Email.status == EmailStatus.DRAFT)
        .group_by(Email.priority)
    )
    return dict(session.execute(statement).all())


def statuses_of(session: Session, email_ids: Iterable[int]) -> dict[int, EmailStatus]:
    """Map each existing email id to its current status; unknown ids are left out."""
    ids = list(email_ids)
    if not ids:
        return {}
    statement = select(Email.id, Email.status).where(Email.id.in_(ids))
    return {
        email_id: EmailStatus(status) for email_id, status in session.execute(statement)
    }


def email_page(
    session: Session, filters: EmailFilters, zone: ZoneInfo, page: int, per_page: int
) -> Pagination:
    """Return one page of emails matching the filters, the latest first.

    Without a status filter the approved emails are listed. A page past the
    end gives the last page.
    """
    statuses = (filters.status,) if filters.status else APPROVED_STATUSES
    statement = (
        select(Email)
        .join(Email.therapist)
        .where(*_conditions(filters, zone), Email.status.in_(statuses))
        .options(
            selectinload(Email.therapist),
            selectinload(Email.placement_requests),
            selectinload(Email.attempts),
        )
        .order_by(_moment().desc(), Email.id.desc())
    )
    return _page_or_last(session, statement, page, per_page)


def count_by_status(
    session: Session, filters: EmailFilters, zone: ZoneInfo
) -> dict[str, int]:
    """Count the emails matching every filter but the status, per status."""
    statement = (
        select(Email.status, func.count(Email.id))
        .join(Email.therapist)
        .where(*_conditions(filters, zone))
        .group_by(Email.status)
    )
    return dict(session.execute(statement).all())


def _page_or_last(
    session: Session, statement: Select, page: int, per_page: int
) -> Pagination:
    pagination = SelectPagination(
        select=statement,
        session=session,
        page=max(page, 1),
        per_page=per_page,
        error_out=False,
    )
    if pagination.pages and pagination.page > pagination.pages:
        pagination = SelectPagination(
            select=statement,
            session=session,
            page=pagination.pages,
            per_page=per_page,
            error_out=False,
        )
    return pagination


def _moment() -> ColumnElement[datetime]:
    """The time an email list row stands for: sent, else queued, else made."""
    return func.coalesce(Email.sent_at, Email.queued_at, Email.created_at)


def _conditions(filters: EmailFilters, zone: ZoneInfo) -> list[ColumnElement[bool]]:
    """Turn the filters, except status, into WHERE conditions."""
    conditions = []
    if filters.kind:
        conditions.append(Email.kind == filters.kind)
    if filters.name:
        pattern = "%" + _escape_like(filters.name) + "%"
        conditions.append(
            or_(
                Therapist.last_name.ilike(pattern, escape="\\"),
                Therapist.first_name.ilike(pattern, escape="\\"),
                Email.recipient_name.ilike(pattern, escape="\\"),
            )
        )
    if filters.date_from:
        conditions.append(_moment() >= day_start_utc(filters.date_from, zone))
    if filters.date_to:
        next_day = filters.date_to + timedelta(days=1)
        conditions.append(_moment() < day_start_utc(next_day, zone))
    return conditions


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
