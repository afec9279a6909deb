"""Plain functions that store test rows with sensible German defaults."""

import itertools
from datetime import datetime, timedelta

from webapp.extensions import db
from webapp.models import (
    Email,
    EmailKind,
    EmailStatus,
    PlacementRequest,
    Therapist,
)

_serial = itertools.count(1)


def make_therapist(**fields) -> Therapist:
    """Store a therapist; keyword arguments override the defaults."""
    number = next(_serial)
    values = {
        "external_id": f"T-{number}",
        "salutation": "Frau",
        "title": "Dr.",
        "first_name": "Johanna",
        "last_name": "Weiß",
        "email": f"praxis{number}@weiss.example",
        "phone": "030 1234567",
        "federal_state": "BE",
        "phone_availability": [{"weekday": 0, "start": "09:00", "end": "09:50"}],
    }
    values.update(fields)
    therapist = Therapist(**values)
    db.session.add(therapist)
    db.session.commit()
    return therapist


def make_request(therapist: Therapist, days_waiting: int = 10, **fields):
    """Store an open placement request for the therapist."""
    number = next(_serial)
    values = {
        "external_id": f"PR-{number}",
        "therapist_id": therapist.id,
        "patient_pseudonym": f"P-{number:05d}",
        "patient_age": 34,
        "patient_gender": "weiblich",
        "diagnosis_code": "F32.1",
        "time_availability": "Mo–Mi vormittags",
        "patient_registered_at": datetime(2026, 12, 4, 9, 0)
        - timedelta(days=days_waiting),
    }
    values.update(fields)
    request = PlacementRequest(**values)
    db.session.add(request)
    db.session.commit()
    return request


def make_sent_email(
    therapist: Therapist, sent_at: datetime, kind=EmailKind.BATCH_REQUEST
):
    """Store a request email that went out at `sent_at`."""
    email = Email(
        therapist_id=therapist.id,
        kind=kind,
        subject="Frühere Anfrage",
        body_html="<p>früher</p>",
        body_text="früher",
        recipient_email=therapist.email,
        recipient_name=therapist.full_name,
        sender_email="vermittlung@therapieplatz.example",
        sender_name="Therapieplatz-Vermittlung",
        status=EmailStatus.SENT,
        queued_at=sent_at,
        sent_at=sent_at,
    )
    db.session.add(email)
    db.session.commit()
    return email
