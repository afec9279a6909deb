"""ICS feed of planned calls, for Outlook, Thunderbird and phones.

Each call is one VEVENT in Europe/Berlin with a VTIMEZONE, so clients show
the slot at its wall-clock time on both sides of a daylight-saving change.
The description carries the phone number and the placement requests'
pseudonyms only: a subscribed calendar leaves the platform, health data
must not.
"""

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event

from webapp.clock import BERLIN
from webapp.models import PhoneCall

log = logging.getLogger(__name__)

PRODID = "-//Therapieplatz-Vermittlung//Kommunikation//DE"
CALENDAR_NAME = "Geplante Anrufe"
# How often clients should fetch the feed again.
REFRESH_INTERVAL = timedelta(minutes=15)


def call_uid(call: PhoneCall, host: str) -> str:
    """Return the call's event UID, stable for as long as the call exists."""
    return f"call-{call.id}@{host}"


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC)


def call_event(call: PhoneCall, host: str, stamp: datetime, zone: ZoneInfo) -> Event:
    """Build the VEVENT of one planned call."""
    start = _utc(call.planned_start).astimezone(zone)
    therapist = call.therapist
    pseudonyms = ", ".join(
        request.patient_pseudonym for request in call.placement_requests
    )
    lines = [f"Telefon: {therapist.phone or '–'}"]
    if pseudonyms:
        lines.append(f"Platzanfragen: {pseudonyms}")
    return Event.new(
        uid=call_uid(call, host),
        start=start,
        end=start + timedelta(minutes=call.duration_minutes),
        summary=f"Anruf: {therapist.full_name}",
        description="\n".join(lines),
        last_modified=_utc(call.updated_at or call.created_at),
        stamp=_utc(stamp),
    )


def calls_calendar(
    calls: Sequence[PhoneCall],
    host: str,
    now: datetime,
    zone: ZoneInfo = BERLIN,
) -> Calendar:
    """Build a calendar of the calls, with the VTIMEZONE their times need."""
    calendar = Calendar.new(
        prodid=PRODID,
        name=CALENDAR_NAME,
        method="PUBLISH",
        refresh_interval=REFRESH_INTERVAL,
        uid=f"calls@{host}",
    )
    for call in calls:
        calendar.add_component(call_event(call, host, now, zone))

    # A VTIMEZONE covering only the feed's span keeps the file small.
    if calls:
        starts = [call.planned_start for call in calls]
        first = (min(starts) - timedelta(days=1)).date()
        last = (max(starts) + timedelta(days=1)).date()
        calendar.add_missing_timezones(first_date=first, last_date=last)
    return calendar


def calls_ics(
    calls: Sequence[PhoneCall], host: str, now: datetime, zone: ZoneInfo = BERLIN
) -> bytes:
    """Serialise the calls as an iCalendar file (RFC 5545)."""
    data = calls_calendar(calls, host, now, zone).to_ical()
    log.debug("built ICS feed with %s calls", len(calls))
    return data
