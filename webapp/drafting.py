"""Create draft emails from placement requests."""

import logging

from flask import current_app
from sqlalchemy.orm import Session

from webapp.clock import Clock
from webapp.message import refuse_header_breaks
from webapp.models import (
    KIND_PRIORITY,
    Email,
    EmailKind,
    EmailStatus,
    PlacementRequest,
    Therapist,
)
from webapp.rendering import render_email

log = logging.getLogger(__name__)


def create_draft(
    session: Session,
    therapist: Therapist,
    kind: EmailKind | str,
    requests: list[PlacementRequest],
    clock: Clock,
) -> Email:
    """Render a draft for the therapist and add it to the session."""
    kind = EmailKind(kind)
    rendered = render_email(kind, therapist, requests)
    config = current_app.config
    refuse_header_breaks(subject=rendered.subject, recipient_name=therapist.full_name)

    now = clock.now()
    email = Email(
        therapist=therapist,
        kind=kind,
        priority=KIND_PRIORITY[kind],
        subject=rendered.subject,
        body_html=rendered.html,
        body_text=rendered.text,
        recipient_email=therapist.email,
        recipient_name=therapist.full_name,
        sender_email=config["MAIL_SENDER_EMAIL"],
        sender_name=config["MAIL_SENDER_NAME"],
        status=EmailStatus.DRAFT,
        created_at=now,
        updated_at=now,
    )
    email.placement_requests = list(requests)
    session.add(email)
    return email
