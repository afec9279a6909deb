"""Property tests of the slot finder against a brute-force oracle (rule 6).

For any windows, federal state, bookings and "now", a slot found lies inside
a window in Berlin wall time, on a day that is no public holiday of the
state, after now, on a 5-minute mark, in a slot that is not yet full; and no
earlier instant would have done.
"""

from datetime import UTC, date, datetime, timedelta
from functools import cache

import holidays
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from webapp.clock import BERLIN
from webapp.scheduling import FEDERAL_STATES, candidate_slots, next_free_slot

STEP = timedelta(minutes=5)
LAST_MINUTE = 23 * 60 + 59

property_settings = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Last Sundays of March and October: the daylight-saving switches.
DST_DAYS = [
    datetime(year, month, day)
    for year, month, day in [
        (2025, 3, 30),
        (2025, 10, 26),
        (2026, 3, 29),
        (2026, 10, 25),
        (2027, 3, 28),
        (2027, 10, 31),
    ]
]


def clock_time(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


@st.composite
def phone_windows(draw) -> dict:
    """One weekly window; often a Sunday night one, where DST moves the clock."""
    if draw(st.booleans()):
        weekday, start = 6, draw(st.integers(90, 200))
    else:
        weekday, start = draw(st.integers(0, 6)), draw(st.integers(0, LAST_MINUTE - 1))
    end = draw(st.integers(start + 1, min(LAST_MINUTE, start + 240)))
    return {"weekday": weekday, "start": clock_time(start), "end": clock_time(end)}


def on_five_minute_mark(instant: datetime) -> datetime:
    minute = instant.minute - instant.minute % 5
    return instant.replace(minute=minute, second=0, microsecond=0)


any_time = st.one_of(
    st.datetimes(datetime(2025, 1, 1), datetime(2027, 12, 31)),
    st.sampled_from(DST_DAYS).flatmap(
        lambda day: st.datetimes(day - timedelta(days=3), day + timedelta(days=1))
    ),
)
# "Now" exactly on a slot start must not offer that slot.
nows = st.one_of(any_time, any_time.map(on_five_minute_mark))
states = st.sampled_from(sorted(FEDERAL_STATES))


@st.composite
def scenarios(draw) -> dict:
    """Windows, state, now, lines, later-day limit, horizon and bookings."""
    windows = draw(st.lists(phone_windows(), max_size=4))
    state = draw(states)
    now = draw(nows)
    lines = draw(st.integers(1, 3))
    horizon = draw(st.integers(1, 14))
    not_before = draw(
        st.none() | st.dates(now.date() - timedelta(days=2), now.date() + timedelta(5))
    )
    slots = list(candidate_slots(windows, state, now, not_before, horizon))
    booked: dict[datetime, int] = {}
    if slots:
        for slot in draw(st.lists(st.sampled_from(slots[:40]), max_size=30)):
            booked[slot] = draw(st.integers(0, lines + 1))
    # A few bookings anywhere, mostly off the candidate slots.
    for instant in draw(st.lists(any_time, max_size=3)):
        booked[instant.replace(second=0, microsecond=0)] = lines
    return {
        "windows": windows,
        "state": state,
        "now": now,
        "lines": lines,
        "not_before": not_before,
        "horizon": horizon,
        "booked": booked,
    }


@cache
def holiday_calendar(state: str) -> holidays.HolidayBase:
    return holidays.country_holidays("DE", subdiv=state)


def usable(instant: datetime, scenario: dict) -> bool:
    """Tell whether an instant is a free slot, judged independently."""
    if instant <= scenario["now"]:
        return False
    if instant.second or instant.microsecond or instant.minute % 5:
        return False
    local = instant.replace(tzinfo=UTC).astimezone(BERLIN)
    if local.fold:  # the repeated hour's second pass: its first pass counts
        return False

    today = scenario["now"].replace(tzinfo=UTC).astimezone(BERLIN).date()
    first_day = max(today, scenario["not_before"] or date.min)
    day = local.date()
    if not first_day <= day < first_day + timedelta(days=scenario["horizon"]):
        return False
    if day in holiday_calendar(scenario["state"]):
        return False

    wall = local.strftime("%H:%M")
    wall_end = (local.replace(tzinfo=None) + STEP).strftime("%H:%M")
    inside = any(
        window["weekday"] == day.weekday()
        and window["start"] <= wall
        and wall_end <= window["end"]
        and wall_end > wall  # a slot never runs past midnight
        for window in scenario["windows"]
    )
    return inside and scenario["booked"].get(instant, 0) < scenario["lines"]


def find(scenario: dict) -> datetime | None:
    return next_free_slot(
        scenario["windows"],
        scenario["state"],
        scenario["booked"],
        scenario["now"],
        scenario["lines"],
        not_before_date=scenario["not_before"],
        horizon_days=scenario["horizon"],
    )


def grid(start: datetime, end: datetime):
    """Every 5-minute mark strictly after `start` up to `end`."""
    instant = start.replace(second=0, microsecond=0)
    instant -= timedelta(minutes=instant.minute % 5)
    while instant <= end:
        if instant > start:
            yield instant
        instant += STEP


@property_settings
@given(scenarios())
@example(
    {
        "windows": [{"weekday": 6, "start": "02:00", "end": "03:30"}],
        "state": "BY",
        "now": datetime(2026, 3, 28, 12, 0),
        "lines": 1,
        "not_before": None,
        "horizon": 3,
        "booked": {datetime(2026, 3, 29, 1, 0): 1},
    }
)
@example(
    {
        "windows": [{"weekday": 6, "start": "02:00", "end": "03:30"}],
        "state": "SN",
        "now": datetime(2026, 10, 25, 0, 57),
        "lines": 2,
        "not_before": None,
        "horizon": 2,
        "booked": {datetime(2026, 10, 25, 2, 0): 2},
    }
)
@example(
    {
        "windows": [{"weekday": 6, "start": "02:00", "end": "02:30"}],
        "state": "BE",
        "now": datetime(2026, 3, 28, 12, 0),
        "lines": 1,
        "not_before": None,
        "horizon": 2,
        "booked": {},
    }
)
@example(
    {
        "windows": [{"weekday": 0, "start": "09:00", "end": "09:50"}],
        "state": "NW",
        "now": datetime(2026, 12, 7, 8, 0),  # Monday 09:00 in Berlin
        "lines": 1,
        "not_before": None,
        "horizon": 1,
        "booked": {},
    }
)
def test_found_slot_is_usable_and_nothing_earlier_is(scenario):
    slot = find(scenario)

    if slot is not None:
        assert usable(slot, scenario)
        local = slot.replace(tzinfo=UTC).astimezone(BERLIN)
        assert local.astimezone(UTC).replace(tzinfo=None) == slot
    horizon_end = scenario["now"] + timedelta(days=scenario["horizon"] + 7)
    earlier = grid(scenario["now"], (slot - STEP) if slot else horizon_end)
    assert not any(usable(instant, scenario) for instant in earlier)


@property_settings
@given(scenarios(), st.integers(1, 12))
def test_booking_found_slots_one_after_another_never_overbooks(scenario, calls):
    booked = dict(scenario["booked"])
    before = dict(booked)

    for _ in range(calls):
        slot = find({**scenario, "booked": booked})
        if slot is None:
            break
        assert booked.get(slot, 0) < scenario["lines"]
        booked[slot] = booked.get(slot, 0) + 1

    for slot, count in booked.items():
        assert count <= max(scenario["lines"], before.get(slot, 0))
