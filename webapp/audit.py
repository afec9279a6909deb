"""Audit log: who overrode a rule or changed planned work, and why."""

import logging

from sqlalchemy.orm import Session

from webapp.clock import Clock
from webapp.exceptions import ValidationFailed
from webapp.models import AuditEntry, User

log = logging.getLogger(__name__)


def record(
    session: Session,
    clock: Clock,
    user: User | None,
    action: str,
    obj,
    reason: str,
) -> AuditEntry:
    """Add an audit entry for `obj`; a reason is required."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed("reason", "Bitte einen Grund angeben.")

    entry = AuditEntry(
        user_id=user.id if user else None,
        action=action,
        object_type=obj.__tablename__,
        object_id=obj.id,
        reason=reason,
        created_at=clock.now(),
    )
    session.add(entry)
    log.info(
        "audit %s on %s %s by user %s", action, entry.object_type, obj.id, entry.user_id
    )
    return entry
