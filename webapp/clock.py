"""Clocks: code that depends on "now" takes one, so tests can move time."""

from datetime import UTC, date, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo


class Clock(Protocol):
    """Something that tells the current time as naive UTC."""

    def now(self) -> datetime: ...


class SystemClock:
    """The real clock; times are naive UTC, as stored in the database."""

    def now(self) -> datetime:
        """Return the current time in UTC without tzinfo."""
        return datetime.now(UTC).replace(tzinfo=None)


class FixedClock:
    """A clock that stands still until moved; for tests."""

    def __init__(self, start: datetime) -> None:
        self.current = start

    def now(self) -> datetime:
        """Return the clock's current time."""
        return self.current

    def advance(self, **kwargs: float) -> None:
        """Move the clock forward by a timedelta's keyword arguments."""
        self.current += timedelta(**kwargs)


system_clock = SystemClock()


BERLIN = ZoneInfo("Europe/Berlin")

# Dates outside these bounds are input errors, not days to search; the
# outer years would overflow when converted between time zones.
EARLIEST_DATE = date(1900, 1, 1)
LATEST_DATE = date(2999, 12, 31)


def day_start_utc(day: date, zone: ZoneInfo = BERLIN) -> datetime:
    """Return when a local day starts, as naive UTC like the stored times."""
    local = datetime.combine(day, datetime.min.time(), tzinfo=zone)
    return local.astimezone(UTC).replace(tzinfo=None)


def local_today(clock: Clock, zone: ZoneInfo = BERLIN) -> date:
    """Return today's date where the staff work."""
    return clock.now().replace(tzinfo=UTC).astimezone(zone).date()


def app_clock() -> Clock:
    """The clock of the running app: `CLOCK` in its config, else the system's.

    Tests put a FixedClock there to move time under views and jobs.
    """
    from flask import current_app, has_app_context

    if has_app_context():
        return current_app.config.get("CLOCK") or system_clock
    return system_clock
