"""Calendars: a therapist's contact history and the coordinators' call week.

Plain functions over a database session. Times are stored as naive UTC and
come back here as aware datetimes in the staff's zone (Europe/Berlin); a day
is always a local day, so a week that crosses a daylight-saving change is
still Monday 00:00 to the next Monday 00:00 on the wall clock.
"""

import calendar
import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from webapp.clock import BERLIN
from webapp.models import (
    CallStatus,
    Email,
    EmailReply,
    EmailStatus,
    PhoneCall,
    PlacementRequest,
    RequestAnswer,
    Therapist,
    phone_call_requests,
)

log = logging.getLogger(__name__)

SLOT_MINUTES = 5
# Hours a time grid shows at least, so an empty week still looks like a day.
DEFAULT_FIRST_HOUR = 8
DEFAULT_LAST_HOUR = 18
# Emails that went out or are on their way; drafts are not contacts yet.
CONTACT_EMAIL_STATUSES = (EmailStatus.QUEUED, EmailStatus.SENDING, EmailStatus.SENT)
FEED_DAYS_BACK = 7
FEED_DAYS_AHEAD = 60

_CLOCK_TIME = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")


# Dates and zones ------------------------------------------------------------


def utc_start_of(day: date, zone: ZoneInfo = BERLIN) -> datetime:
    """Return local midnight of the day as naive UTC, as times are stored."""
    local = datetime.combine(day, time.min, tzinfo=zone)
    return local.astimezone(UTC).replace(tzinfo=None)


def to_zone(value: datetime, zone: ZoneInfo = BERLIN) -> datetime:
    """Turn a stored naive-UTC time into an aware local time."""
    return value.replace(tzinfo=UTC).astimezone(zone)


def week_start(day: date) -> date:
    """Return the Monday of the day's week."""
    return day - timedelta(days=day.weekday())


def week_days(day: date) -> list[date]:
    """Return Monday to Sunday of the day's week."""
    monday = week_start(day)
    return [monday + timedelta(days=offset) for offset in range(7)]


def month_weeks(day: date) -> list[list[date]]:
    """Return the weeks (Monday to Sunday) that cover the day's month."""
    return calendar.Calendar(firstweekday=0).monthdatescalendar(day.year, day.month)


def shift_month(day: date, months: int) -> date:
    """Return the first day of the month `months` away from the day's month."""
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


# Weekly phone windows -------------------------------------------------------


@dataclass(frozen=True, order=True)
class PhoneWindow:
    """A weekly phone window in local wall time; weekday 0 is Monday."""

    weekday: int
    start: time
    end: time

    @property
    def start_minute(self) -> int:
        """Minutes from local midnight to the window's start."""
        return self.start.hour * 60 + self.start.minute

    @property
    def end_minute(self) -> int:
        """Minutes from local midnight to the window's end."""
        return self.end.hour * 60 + self.end.minute


def phone_windows(availability: Iterable[dict] | None) -> list[PhoneWindow]:
    """Read a therapist's stored windows, sorted; malformed ones are skipped.

    The calendar only shows windows: a broken one is the intake's problem
    and must not take the page down.
    """
    windows = []
    for raw in availability or []:
        try:
            weekday = int(raw["weekday"])
            start, end = str(raw["start"]), str(raw["end"])
        except (KeyError, TypeError, ValueError):
            continue
        if not (0 <= weekday <= 6 and _CLOCK_TIME.match(start)):
            continue
        if not _CLOCK_TIME.match(end):
            continue
        start_time, end_time = time.fromisoformat(start), time.fromisoformat(end)
        if end_time > start_time:
            windows.append(PhoneWindow(weekday, start_time, end_time))
    return sorted(windows)


# Therapist contact calendar -------------------------------------------------


@dataclass(frozen=True)
class CalendarEntry:
    """One thing that happened or will happen with a therapist.

    `kind` is "email", "call" or "reply"; `state` is the email status, the
    call's state (see `call_state`) or "reply"; `detail` is the email kind,
    the call's attempt number, or "abgelehnt" for a reply with a decline.
    Replies have a day but no time.
    """

    kind: str
    object_id: int
    day: date
    start: datetime | None
    duration_minutes: int
    state: str
    detail: str = ""

    @property
    def start_minute(self) -> int:
        """Minutes from local midnight to the start; 0 for all-day entries."""
        if self.start is None:
            return 0
        return self.start.hour * 60 + self.start.minute


def call_state(call: PhoneCall) -> str:
    """Say what a call's entry shows: planned, cancelled, or its outcome."""
    if call.status == CallStatus.PLANNED:
        return CallStatus.PLANNED
    if call.status == CallStatus.CANCELLED:
        return CallStatus.CANCELLED
    return call.outcome or call.status


def therapist_entries(
    session: Session,
    therapist_id: int,
    first_day: date,
    last_day: date,
    zone: ZoneInfo = BERLIN,
) -> list[CalendarEntry]:
    """Collect the therapist's emails, calls and replies between two local days."""
    start = utc_start_of(first_day, zone)
    end = utc_start_of(last_day + timedelta(days=1), zone)
    entries: list[CalendarEntry] = []

    # Emails stand at the moment they went out, or were queued to go out.
    moment = func.coalesce(Email.sent_at, Email.queued_at)
    emails = session.execute(
        select(Email.id, Email.kind, Email.status, moment)
        .where(
            Email.therapist_id == therapist_id,
            Email.status.in_(CONTACT_EMAIL_STATUSES),
            moment >= start,
            moment < end,
        )
        .order_by(moment, Email.id)
    ).all()
    for email_id, kind, status, at in emails:
        local = to_zone(at, zone)
        entries.append(
            CalendarEntry("email", email_id, local.date(), local, 0, status, kind)
        )

    calls = session.scalars(
        select(PhoneCall)
        .where(
            PhoneCall.therapist_id == therapist_id,
            PhoneCall.planned_start >= start,
            PhoneCall.planned_start < end,
        )
        .order_by(PhoneCall.planned_start, PhoneCall.id)
    ).all()
    for call in calls:
        local = to_zone(call.planned_start, zone)
        entries.append(
            CalendarEntry(
                "call",
                call.id,
                local.date(),
                local,
                call.duration_minutes,
                call_state(call),
                str(call.attempt),
            )
        )

    replies = session.execute(
        select(EmailReply.id, EmailReply.received_on, EmailReply.answers)
        .join(EmailReply.email)
        .where(
            Email.therapist_id == therapist_id,
            EmailReply.received_on >= first_day,
            EmailReply.received_on <= last_day,
        )
        .order_by(EmailReply.received_on, EmailReply.id)
    ).all()
    for reply_id, received_on, answers in replies:
        declined = RequestAnswer.DECLINED in (answers or {}).values()
        detail = RequestAnswer.DECLINED if declined else ""
        entries.append(
            CalendarEntry("reply", reply_id, received_on, None, 0, "reply", detail)
        )

    entries.sort(key=lambda entry: (entry.day, entry.start is not None, entry.start))
    log.debug(
        "calendar of therapist %s: %s entries from %s to %s",
        therapist_id,
        len(entries),
        first_day,
        last_day,
    )
    return entries


@dataclass(frozen=True)
class CoolingPeriod:
    """Days on which the therapist must not be contacted: [start, until)."""

    start: date
    until: date

    def covers(self, day: date) -> bool:
        """Tell whether the day lies inside the pause."""
        return self.start <= day < self.until

    @property
    def last_day(self) -> date:
        """The last day without contact, as people read "bis"."""
        return self.until - timedelta(days=1)


def cooling_period(
    session: Session, therapist: Therapist, today: date, zone: ZoneInfo = BERLIN
) -> CoolingPeriod | None:
    """Return the therapist's cooling period, or None if there is none to show.

    The period ends on `next_contact_after` (contact is allowed again that
    day, as batching and scheduling read it). It starts at the latest decline
    before that day, by email reply or on the phone. Without a recorded
    decline (the date came in through intake) it is shown from today on.
    """
    until = therapist.next_contact_after
    if until is None:
        return None

    declined_on = _latest_decline(session, therapist.id, until, zone)
    if declined_on is not None:
        return CoolingPeriod(declined_on, until)
    if until > today:
        return CoolingPeriod(today, until)
    return None


def _latest_decline(
    session: Session, therapist_id: int, before: date, zone: ZoneInfo
) -> date | None:
    days: list[date] = []

    # Reply answers live in a JSON map; a therapist has few replies.
    replies = session.execute(
        select(EmailReply.received_on, EmailReply.answers)
        .join(EmailReply.email)
        .where(Email.therapist_id == therapist_id, EmailReply.received_on < before)
    ).all()
    days.extend(
        received_on
        for received_on, answers in replies
        if RequestAnswer.DECLINED in (answers or {}).values()
    )

    decided_at = func.coalesce(PhoneCall.recorded_at, PhoneCall.planned_start)
    latest_call = session.scalar(
        select(func.max(decided_at))
        .join(
            phone_call_requests,
            phone_call_requests.c.phone_call_id == PhoneCall.id,
        )
        .where(
            PhoneCall.therapist_id == therapist_id,
            phone_call_requests.c.answer == RequestAnswer.DECLINED,
            decided_at < utc_start_of(before, zone),
        )
    )
    if latest_call is not None:
        days.append(to_zone(latest_call, zone).date())
    return max(days, default=None)


def hour_span(
    minutes: Iterable[tuple[int, int]],
    first: int = DEFAULT_FIRST_HOUR,
    last: int = DEFAULT_LAST_HOUR,
) -> tuple[int, int]:
    """Widen a default range of hours to cover (start, end) minute pairs."""
    for start, end in minutes:
        first = min(first, start // 60)
        last = max(last, -(-end // 60))
    return first, min(last, 24)


@dataclass
class TherapistCalendar:
    """Everything a therapist's month or week view shows."""

    therapist: Therapist
    view: str  # "monat" or "woche"
    day: date
    today: date
    days: list[date]
    entries_by_day: dict[date, list[CalendarEntry]]
    windows: list[PhoneWindow]
    cooling: CoolingPeriod | None
    first_hour: int = DEFAULT_FIRST_HOUR
    last_hour: int = DEFAULT_LAST_HOUR

    @property
    def weeks(self) -> list[list[date]]:
        """The shown days in rows of seven."""
        return [self.days[index : index + 7] for index in range(0, len(self.days), 7)]

    def windows_on(self, day: date) -> list[PhoneWindow]:
        """Return the phone windows that fall on the day's weekday."""
        return [window for window in self.windows if window.weekday == day.weekday()]

    @property
    def cooling_shown(self) -> bool:
        """Tell whether the pause touches the shown days or still runs today."""
        if self.cooling is None:
            return False
        return self.cooling.until > self.today or any(
            self.cooling.covers(day) for day in self.days
        )


def therapist_calendar(
    session: Session,
    therapist: Therapist,
    view: str,
    day: date,
    today: date,
    zone: ZoneInfo = BERLIN,
) -> TherapistCalendar:
    """Build a therapist's month view ("monat") or week view ("woche")."""
    if view == "woche":
        days = week_days(day)
    else:
        days = [shown for week in month_weeks(day) for shown in week]

    entries = therapist_entries(session, therapist.id, days[0], days[-1], zone)
    by_day: dict[date, list[CalendarEntry]] = defaultdict(list)
    for entry in entries:
        by_day[entry.day].append(entry)

    windows = phone_windows(therapist.phone_availability)
    timed = [
        (entry.start_minute, entry.start_minute + max(entry.duration_minutes, 30))
        for entry in entries
        if entry.start is not None
    ]
    spans = [(window.start_minute, window.end_minute) for window in windows]
    first_hour, last_hour = hour_span(timed + spans)
    return TherapistCalendar(
        therapist=therapist,
        view=view,
        day=day,
        today=today,
        days=days,
        entries_by_day=dict(by_day),
        windows=windows,
        cooling=cooling_period(session, therapist, today, zone),
        first_hour=first_hour,
        last_hour=last_hour,
    )


# Coordinator week of planned calls ------------------------------------------


@dataclass
class SlotCell:
    """The planned calls in one 5-minute slot of one day."""

    day: date
    slot: time
    calls: list[PhoneCall] = field(default_factory=list)

    def state(self, lines: int) -> str:
        """Say "free", "partial" (some lines left) or "full"."""
        if not self.calls:
            return "free"
        return "full" if len(self.calls) >= lines else "partial"


@dataclass
class SlotWeek:
    """Planned calls of one week by day and 5-minute slot."""

    day: date
    today: date
    days: list[date]
    slots: list[time]
    cells: dict[tuple[date, time], SlotCell]
    lines: int
    holidays: dict[date, str]
    call_count: int

    def cell(self, day: date, slot: time) -> SlotCell:
        """Return the cell of a day and slot, empty if nothing is booked."""
        return self.cells.get((day, slot)) or SlotCell(day, slot)


def coordinator_week(
    session: Session,
    day: date,
    today: date,
    lines: int,
    zone: ZoneInfo = BERLIN,
) -> SlotWeek:
    """Build the week of all planned calls by slot, Monday to Friday.

    Saturday and Sunday appear only when a call is planned on them. The
    rows run from the earliest to the latest booked or window time of the
    week, at least from 08:00 to 18:00.
    """
    monday = week_start(day)
    sunday = monday + timedelta(days=6)
    calls = session.scalars(
        select(PhoneCall)
        .where(
            PhoneCall.status == CallStatus.PLANNED,
            PhoneCall.planned_start >= utc_start_of(monday, zone),
            PhoneCall.planned_start < utc_start_of(sunday + timedelta(days=1), zone),
        )
        .options(selectinload(PhoneCall.therapist))
        .order_by(PhoneCall.planned_start, PhoneCall.line, PhoneCall.id)
    ).all()

    cells: dict[tuple[date, time], SlotCell] = {}
    spans: list[tuple[int, int]] = []
    for call in calls:
        local = to_zone(call.planned_start, zone)
        minute = local.hour * 60 + local.minute
        minute -= minute % SLOT_MINUTES
        slot = time(minute // 60, minute % 60)
        key = (local.date(), slot)
        cells.setdefault(key, SlotCell(*key)).calls.append(call)
        spans.append((minute, minute + call.duration_minutes))

    booked_days = {key[0] for key in cells}
    days = [
        shown
        for shown in week_days(monday)
        if shown.weekday() < 5 or shown in booked_days
    ]
    weekdays = {shown.weekday() for shown in days}
    spans += [
        (window.start_minute, window.end_minute)
        for window in _open_windows(session)
        if window.weekday in weekdays
    ]
    first_hour, last_hour = hour_span(spans)
    slots = [
        time(minute // 60, minute % 60)
        for minute in range(first_hour * 60, last_hour * 60, SLOT_MINUTES)
    ]
    return SlotWeek(
        day=day,
        today=today,
        days=days,
        slots=slots,
        cells=cells,
        lines=lines,
        holidays=national_holidays(days),
        call_count=len(calls),
    )


def _open_windows(session: Session) -> list[PhoneWindow]:
    """Return the phone windows of every therapist who may be called."""
    rows = session.scalars(
        select(Therapist.phone_availability).where(Therapist.blocked.is_(False))
    ).all()
    return [window for availability in rows for window in phone_windows(availability)]


def national_holidays(days: Sequence[date]) -> dict[date, str]:
    """Name the nationwide German public holidays among the days."""
    if not days:
        return {}
    years = sorted({shown.year for shown in days})
    german = holidays.country_holidays("DE", years=years, language="de")
    return {shown: german[shown] for shown in days if shown in german}


# Single entries -------------------------------------------------------------


def load_call(session: Session, call_id: int) -> PhoneCall | None:
    """Load a call with its therapist, placement requests and recorder."""
    return session.scalar(
        select(PhoneCall)
        .where(PhoneCall.id == call_id)
        .options(
            selectinload(PhoneCall.therapist),
            selectinload(PhoneCall.placement_requests),
            selectinload(PhoneCall.recorded_by),
        )
    )


def call_answers(session: Session, call_id: int) -> dict[int, str]:
    """Return the answer given on the call per placement request id."""
    rows = session.execute(
        select(
            phone_call_requests.c.placement_request_id,
            phone_call_requests.c.answer,
        ).where(phone_call_requests.c.phone_call_id == call_id)
    ).all()
    return {request_id: answer for request_id, answer in rows if answer}


def reply_requests(session: Session, reply: EmailReply) -> list[PlacementRequest]:
    """Return the placement requests a reply answers, by id."""
    ids = [int(key) for key in (reply.answers or {}) if str(key).isdigit()]
    if not ids:
        return []
    return list(
        session.scalars(
            select(PlacementRequest)
            .where(PlacementRequest.id.in_(ids))
            .order_by(PlacementRequest.id)
        ).all()
    )


# Feed of planned calls ------------------------------------------------------


def planned_calls_for_feed(
    session: Session,
    now: datetime,
    days_back: int = FEED_DAYS_BACK,
    days_ahead: int = FEED_DAYS_AHEAD,
) -> list[PhoneCall]:
    """Return the planned calls from `days_back` ago to `days_ahead` ahead.

    Calls are not assigned to a coordinator yet, so every coordinator's
    feed carries all planned calls.
    """
    return list(
        session.scalars(
            select(PhoneCall)
            .where(
                PhoneCall.status == CallStatus.PLANNED,
                PhoneCall.planned_start >= now - timedelta(days=days_back),
                PhoneCall.planned_start < now + timedelta(days=days_ahead),
            )
            .options(
                selectinload(PhoneCall.therapist),
                selectinload(PhoneCall.placement_requests),
            )
            .order_by(PhoneCall.planned_start, PhoneCall.id)
        ).all()
    )
