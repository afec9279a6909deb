"""Alerts are raised once until acknowledged; audit entries need a reason."""

import pytest
from sqlalchemy import func, select

from tests.factories import make_therapist
from webapp.alerts import acknowledge, open_alerts, raise_alert
from webapp.audit import record
from webapp.clock import system_clock
from webapp.exceptions import ValidationFailed
from webapp.extensions import db
from webapp.models import Alert, AlertKind, AuditEntry


def test_same_alert_is_raised_once_until_acknowledged(app, coordinator):
    first = raise_alert(db.session, system_clock, AlertKind.CALL_FAILED, "call:1", "x")
    again = raise_alert(db.session, system_clock, AlertKind.CALL_FAILED, "call:1", "x")
    db.session.commit()

    assert first is not None and again is None
    assert open_alerts(db.session) == [first]

    acknowledge(db.session, system_clock, first, coordinator)
    later = raise_alert(db.session, system_clock, AlertKind.CALL_FAILED, "call:1", "x")
    db.session.commit()

    assert later is not None
    assert db.session.scalar(select(func.count(Alert.id))) == 2


def test_audit_entry_needs_a_reason(app, coordinator):
    therapist = make_therapist()

    with pytest.raises(ValidationFailed) as error:
        record(db.session, system_clock, coordinator, "override", therapist, "  ")
    record(db.session, system_clock, coordinator, "override", therapist, "Rückruf")
    db.session.commit()

    assert error.value.field == "reason"
    [entry] = db.session.scalars(select(AuditEntry)).all()
    assert (entry.object_type, entry.object_id) == ("therapists", therapist.id)
