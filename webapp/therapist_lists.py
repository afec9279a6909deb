"""Find therapists by name, for the coordinators' directory page."""

from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from webapp.models import PlacementRequest, PlacementStatus, Therapist

PER_PAGE = 50


@dataclass
class TherapistRow:
    """One therapist in the directory with the count of open requests."""

    therapist: Therapist
    open_requests: int


def search_therapists(
    session: Session, query: str, page: int = 1
) -> tuple[list[TherapistRow], int]:
    """Return one page of therapists whose name matches, and the total."""
    conditions = []
    query = query.strip()
    if query:
        pattern = "%" + _escape_like(query) + "%"
        full_name = Therapist.first_name + " " + Therapist.last_name
        conditions.append(
            or_(
                Therapist.last_name.ilike(pattern, escape="\\"),
                Therapist.first_name.ilike(pattern, escape="\\"),
                full_name.ilike(pattern, escape="\\"),
                Therapist.external_id == query,
            )
        )

    total = session.scalar(select(func.count(Therapist.id)).where(*conditions)) or 0
    open_count = (
        select(func.count(PlacementRequest.id))
        .where(
            PlacementRequest.therapist_id == Therapist.id,
            PlacementRequest.status == PlacementStatus.OPEN,
        )
        .scalar_subquery()
    )
    rows = session.execute(
        select(Therapist, open_count)
        .where(*conditions)
        .order_by(Therapist.last_name, Therapist.first_name, Therapist.id)
        .limit(PER_PAGE)
        .offset((max(page, 1) - 1) * PER_PAGE)
    ).all()
    return [TherapistRow(therapist, count) for therapist, count in rows], total


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
