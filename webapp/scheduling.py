"""Find 5-minute call slots in a therapist's weekly windows (DESIGN.md rule 6).

The first half is pure: it turns weekly windows in Europe/Berlin wall time,
the therapist's federal state and the existing bookings into the next free
slot, as naive UTC. The second half, `plan_call`, loads the bookings from the
database and stores the call; the partial unique index on (planned_start,
line) of planned calls keeps two planners off the same slot and line.
"""

import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache

import holidays
from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from webapp.approval import lock_therapist
from webapp.clock import BERLIN, Clock
from webapp.exceptions import ValidationFailed
from webapp.models import (
    CallReason,
    CallStatus,
    Email,
    PhoneCall,
    PlacementRequest,
    Therapist,
)

log = logging.getLogger(__name__)

SLOT_MINUTES = 5
HORIZON_DAYS = 60
# How often plan_call moves on after losing a slot to a concurrent planner.
SLOT_CONFLICT_RETRIES = 5

FEDERAL_STATES = frozenset(
    {
        "BW", "BY", "BE", "BB", "HB", "HH", "HE", "MV",
        "NI", "NW", "RP", "SL", "SN", "ST", "SH", "TH",
    }
)  # fmt: skip

_CLOCK_TIME = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")


@dataclass(frozen=True, order=True)
class Window:
    """A weekly window in Europe/Berlin wall time; weekday 0 is Monday."""

    weekday: int
    start: time
    end: time


# Pure slot finding ----------------------------------------------------------


def parse_windows(raw: Iterable[Mapping | Window] | None) -> list[Window]:
    """Turn stored phone availability into windows; refuse malformed ones."""
    windows = []
    for index, item in enumerate(raw or ()):
        if isinstance(item, Window):
            windows.append(item)
            continue

        field = f"phone_availability[{index}]"
        try:
            weekday, start, end = item["weekday"], item["start"], item["end"]
        except (KeyError, TypeError):
            raise ValidationFailed(field, "braucht weekday, start und end") from None
        if type(weekday) is not int or not 0 <= weekday <= 6:
            raise ValidationFailed(f"{field}.weekday", "muss 0 bis 6 sein")
        for name, value in (("start", start), ("end", end)):
            if not isinstance(value, str) or not _CLOCK_TIME.match(value):
                raise ValidationFailed(f"{field}.{name}", "muss HH:MM sein")
        if start >= end:
            raise ValidationFailed(f"{field}.end", "muss nach dem Beginn liegen")
        windows.append(
            Window(weekday, time.fromisoformat(start), time.fromisoformat(end))
        )
    return sorted(windows)


@lru_cache(maxsize=32)
def state_holidays(state: str | None) -> holidays.HolidayBase:
    """Return the public holidays of a German federal state.

    An unknown or missing state is an input error: a national calendar would
    silently plan calls on state holidays such as Heilige Drei Könige.
    """
    if state not in FEDERAL_STATES:
        raise ValidationFailed("federal_state", "ist kein deutsches Bundesland")
    return holidays.country_holidays("DE", subdiv=state)


def wall_slots(windows: Sequence[Window], day: date) -> list[time]:
    """Return the wall-clock starts of the slots on one local date.

    A slot must end inside its window: 09:00-09:50 has 09:00 ... 09:45.
    Starts are aligned to 5-minute marks; overlapping windows count once.
    """
    starts: set[time] = set()
    for window in windows:
        if window.weekday != day.weekday():
            continue
        begin = _minutes(window.start)
        begin += -begin % SLOT_MINUTES
        last = _minutes(window.end) - SLOT_MINUTES
        for minute in range(begin, last + 1, SLOT_MINUTES):
            starts.add(time(minute // 60, minute % 60))
    return sorted(starts)


def wall_time_to_utc(day: date, wall_time: time) -> datetime | None:
    """Return the naive-UTC instant of a Berlin wall time, or None if it is skipped.

    On the spring-forward day 02:00-02:59 does not exist. On the fall-back day
    02:00-02:59 happens twice; the first occurrence (summer time) is taken.
    """
    local = datetime.combine(day, wall_time, tzinfo=BERLIN)  # fold=0: first
    instant = local.astimezone(UTC)
    if instant.astimezone(BERLIN).replace(tzinfo=None) != local.replace(tzinfo=None):
        return None
    return instant.replace(tzinfo=None)


def local_date(instant_utc: datetime) -> date:
    """Return the Berlin date of a naive-UTC instant."""
    return instant_utc.replace(tzinfo=UTC).astimezone(BERLIN).date()


def first_search_day(now_utc: datetime, not_before_date: date | None = None) -> date:
    """Return the first local date the search looks at."""
    today = local_date(now_utc)
    if not_before_date is not None and not_before_date > today:
        return not_before_date
    return today


def candidate_slots(
    windows: Iterable[Mapping | Window],
    state: str | None,
    now_utc: datetime,
    not_before_date: date | None = None,
    horizon_days: int = HORIZON_DAYS,
) -> Iterator[datetime]:
    """Yield every slot start, naive UTC, in time order, free or not.

    Slots lie strictly after `now_utc`, on or after `not_before_date` (a
    Berlin date), off the state's public holidays, and within `horizon_days`
    local dates counted from the first allowed date.
    """
    parsed = parse_windows(windows)
    state_calendar = state_holidays(state)
    first_day = first_search_day(now_utc, not_before_date)

    for offset in range(horizon_days):
        day = first_day + timedelta(days=offset)
        if day in state_calendar:
            continue
        for wall_time in wall_slots(parsed, day):
            instant = wall_time_to_utc(day, wall_time)
            if instant is not None and instant > now_utc:
                yield instant


def next_free_slot(
    windows: Iterable[Mapping | Window],
    state: str | None,
    booked: Mapping[datetime, int],
    now_utc: datetime,
    lines: int,
    not_before_date: date | None = None,
    horizon_days: int = HORIZON_DAYS,
) -> datetime | None:
    """Return the earliest slot with fewer than `lines` bookings, or None.

    `booked` maps a slot start (naive UTC) to the number of planned calls in
    it. `not_before_date` moves the search to a later Berlin date: the day
    after a failed call, or the end of a cooling period.
    """
    if lines < 1:
        raise ValueError("lines must be at least 1")
    for slot in candidate_slots(windows, state, now_utc, not_before_date, horizon_days):
        if booked.get(slot, 0) < lines:
            return slot
    return None


def search_range(
    now_utc: datetime,
    not_before_date: date | None = None,
    horizon_days: int = HORIZON_DAYS,
) -> tuple[datetime, datetime]:
    """Return naive-UTC bounds that hold every slot `candidate_slots` may yield."""
    first_day = first_search_day(now_utc, not_before_date)
    last_day = first_day + timedelta(days=horizon_days)
    # Berlin is at most two hours ahead of UTC; a day's margin covers it.
    start = datetime.combine(first_day - timedelta(days=1), time())
    end = datetime.combine(last_day + timedelta(days=1), time())
    return max(start, now_utc), end


def later_day(now_utc: datetime, planned_start: datetime | None = None) -> date:
    """Return the first Berlin date after today and after a call's own date.

    Rescheduling a failed call passes this as `not_before_date`, so the
    next try lands "on a later day" even when the call is recorded late.
    """
    day = local_date(now_utc)
    if planned_start is not None:
        day = max(day, local_date(planned_start))
    return day + timedelta(days=1)


def _minutes(value: time) -> int:
    return value.hour * 60 + value.minute


# Planning in the database ---------------------------------------------------


def plan_call(
    session: Session,
    therapist: Therapist,
    requests: Sequence[PlacementRequest],
    reason: CallReason,
    clock: Clock,
    *,
    not_before_date: date | None = None,
    source_email: Email | None = None,
    previous_call: PhoneCall | None = None,
    attempt: int = 1,
) -> PhoneCall | None:
    """Plan a call in the therapist's next free slot and return it.

    Returns None (and logs) for a blocked therapist or when no slot is free
    within the horizon. Nothing is planned before the therapist's next
    possible contact date. Takes the therapist's row lock and flushes the
    call inside a savepoint, but does not commit: the caller commits, so
    recording an outcome and planning the next try share one transaction.
    `source_email` defaults to the previous call's. Raises ValidationFailed
    for an unknown federal state or malformed windows.
    """
    if therapist.blocked:
        log.info("therapist %s is blocked; no call planned", therapist.id)
        return None

    # Planners of one therapist queue up here. The UPDATE also opens the
    # transaction on SQLite, whose driver would otherwise let the savepoint
    # below commit on release.
    lock_therapist(session, therapist.id)
    lines = current_app.config["CALL_LINES"]
    not_before = _latest(not_before_date, therapist.next_contact_after)
    if source_email is None and previous_call is not None:
        source_email = previous_call.source_email

    for _ in range(SLOT_CONFLICT_RETRIES):
        now = clock.now()
        taken = taken_lines(session, therapist.id, now, not_before, lines)
        booked = {slot: len(used) for slot, used in taken.items()}
        slot = next_free_slot(
            therapist.phone_availability,
            therapist.federal_state,
            booked,
            now,
            lines,
            not_before_date=not_before,
        )
        if slot is None:
            log.warning(
                "no free slot for therapist %s within %s days",
                therapist.id,
                HORIZON_DAYS,
            )
            return None

        line = min(set(range(1, lines + 1)) - taken.get(slot, set()))
        call = PhoneCall(
            therapist_id=therapist.id,
            planned_start=slot,
            duration_minutes=SLOT_MINUTES,
            line=line,
            status=CallStatus.PLANNED,
            reason=reason,
            attempt=attempt,
            source_email_id=source_email.id if source_email else None,
            previous_call_id=previous_call.id if previous_call else None,
            created_at=now,
            updated_at=now,
        )
        call.placement_requests = list(requests)
        try:
            with session.begin_nested():
                session.add(call)
        except IntegrityError:
            # Another planner took this slot and line a moment ago.
            log.info("slot %s line %s taken meanwhile; trying the next", slot, line)
            continue

        log.info(
            "call %s planned for therapist %s at %s line %s (%s, attempt %s)",
            call.id,
            therapist.id,
            slot,
            line,
            reason,
            attempt,
        )
        return call

    raise RuntimeError(
        f"no slot for therapist {therapist.id} after {SLOT_CONFLICT_RETRIES} conflicts"
    )


def taken_lines(
    session: Session,
    therapist_id: int,
    now_utc: datetime,
    not_before: date | None,
    lines: int,
    horizon_days: int = HORIZON_DAYS,
) -> dict[datetime, set[int]]:
    """Map each booked slot in the search range to the lines in use.

    The therapist's own calls fill every line of their slot: one therapist
    is never called twice at once.
    """
    start, end = search_range(now_utc, not_before, horizon_days)
    rows = session.execute(
        select(PhoneCall.planned_start, PhoneCall.line, PhoneCall.therapist_id).where(
            PhoneCall.status == CallStatus.PLANNED,
            PhoneCall.planned_start >= start,
            PhoneCall.planned_start < end,
        )
    )
    taken: dict[datetime, set[int]] = defaultdict(set)
    for planned_start, line, owner_id in rows:
        if owner_id == therapist_id:
            # One therapist is never called on two lines at once.
            taken[planned_start].update(range(1, lines + 1))
        taken[planned_start].add(line)
    return taken


def _latest(*days: date | None) -> date | None:
    known = [day for day in days if day is not None]
    return max(known) if known else None
