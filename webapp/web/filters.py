"""Jinja filters that show times and numbers the German way."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from babel.dates import format_datetime
from flask import Flask, current_app, request


def to_local(value: datetime) -> datetime:
    """Convert a datetime (naive means UTC) into the configured local zone."""
    zone = ZoneInfo(current_app.config["TIMEZONE"])
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(zone)


def german_datetime(value: datetime | None) -> str:
    """Format as 04.12.2026 14:35 in Europe/Berlin."""
    if value is None:
        return "–"
    return format_datetime(to_local(value), "dd.MM.yyyy HH:mm", locale="de_DE")


def german_date(value) -> str:
    """Format a date or datetime as 04.12.2026."""
    if value is None:
        return "–"
    if isinstance(value, datetime):
        value = to_local(value)
    return value.strftime("%d.%m.%Y")


def is_htmx() -> bool:
    """Tell whether the current request came from htmx."""
    return request.headers.get("HX-Request") == "true"


def register(app: Flask) -> None:
    """Make the filters available to every template."""
    app.jinja_env.filters["datetime_de"] = german_datetime
    app.jinja_env.filters["date_de"] = german_date
