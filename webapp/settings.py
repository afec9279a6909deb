"""Settings read from environment variables, with safe defaults."""

import os
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Where the demo keeps its SQLite file, mailbox and Valkey folder.
INSTANCE_DIR = Path(os.environ.get("INSTANCE_DIR") or PROJECT_ROOT / "instance")


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from exc


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a number, got {raw!r}") from exc


def _env_intervals(name: str, default: str) -> list[int]:
    raw = os.environ.get(name) or default
    try:
        values = [int(part) for part in raw.split(",") if part.strip()]
    except ValueError as exc:
        raise ValueError(f"{name} must be comma-separated seconds") from exc
    if any(value <= 0 for value in values):
        raise ValueError(f"{name} must hold positive seconds")
    return values


def _default_database_url() -> str:
    return f"sqlite:///{INSTANCE_DIR / 'comms.db'}"


@dataclass
class Settings:
    """Every setting of the service; `from_env` reads them at start."""

    SECRET_KEY: str = "dev-only-secret-change-me"
    SQLALCHEMY_DATABASE_URI: str = field(default_factory=_default_database_url)
    REDIS_URL: str | None = None

    SMTP_HOST: str = "127.0.0.1"
    SMTP_PORT: int = 8025
    SMTP_SECURITY: str = "none"  # none, starttls or tls
    SMTP_USERNAME: str | None = None
    SMTP_PASSWORD: str | None = None
    SMTP_TIMEOUT: int = 30
    SMTP_CA_FILE: str | None = None

    MAIL_SENDER_EMAIL: str = "vermittlung@therapieplatz.example"
    MAIL_SENDER_NAME: str = "Therapieplatz-Vermittlung"

    WEEKLY_CAP_DAYS: int = 7
    BATCH_MAX_REQUESTS: int = 6
    RETRY_INTERVALS: list[int] = field(default_factory=lambda: [60, 300, 900, 3600])
    SEND_CHUNK_SIZE: int = 200
    # Seconds after which an email a dead worker left in wird_gesendet
    # goes back to the queue.
    SENDING_TIMEOUT: int = 600
    # Alert when more than this share of the last hour's tries failed.
    FAILURE_RATE_THRESHOLD: float = 0.2
    FAILURE_RATE_MIN_ATTEMPTS: int = 20
    WORKER_SILENT_MINUTES: int = 5
    # Failed call attempts before a supervisor is alerted (rule 7).
    CALL_MAX_ATTEMPTS: int = 3
    # Local hour after which the morning call digest goes out.
    DIGEST_HOUR: int = 7
    CALL_LINES: int = 1
    FOLLOW_UP_AFTER_DAYS: int = 7
    COOLING_DAYS: int = 28

    LOGIN_RATE_LIMIT: str = "10 per minute;50 per hour"
    # Bearer token that /metrics asks for; unset, the metrics are open.
    METRICS_TOKEN: str | None = None
    TIMEZONE: str = "Europe/Berlin"
    # Folder of the demo's SMTP sink; enables the "Demo-Postfach" page.
    DEMO_MAILBOX_DIR: str | None = None
    WTF_CSRF_TIME_LIMIT: int | None = None
    SESSION_COOKIE_HTTPONLY: bool = True
    SESSION_COOKIE_SAMESITE: str = "Lax"

    @classmethod
    def from_env(cls) -> "Settings":
        """Build settings from the environment and check them."""
        env = os.environ
        settings = cls(
            SECRET_KEY=env.get("SECRET_KEY", cls.SECRET_KEY),
            SQLALCHEMY_DATABASE_URI=env.get("DATABASE_URL") or _default_database_url(),
            REDIS_URL=env.get("REDIS_URL") or None,
            SMTP_HOST=env.get("SMTP_HOST", cls.SMTP_HOST),
            SMTP_PORT=_env_int("SMTP_PORT", cls.SMTP_PORT),
            SMTP_SECURITY=env.get("SMTP_SECURITY", cls.SMTP_SECURITY).lower(),
            SMTP_USERNAME=env.get("SMTP_USERNAME") or None,
            SMTP_PASSWORD=env.get("SMTP_PASSWORD") or None,
            SMTP_TIMEOUT=_env_int("SMTP_TIMEOUT", cls.SMTP_TIMEOUT),
            SMTP_CA_FILE=env.get("SMTP_CA_FILE") or None,
            MAIL_SENDER_EMAIL=env.get("MAIL_SENDER_EMAIL", cls.MAIL_SENDER_EMAIL),
            MAIL_SENDER_NAME=env.get("MAIL_SENDER_NAME", cls.MAIL_SENDER_NAME),
            WEEKLY_CAP_DAYS=_env_int("WEEKLY_CAP_DAYS", cls.WEEKLY_CAP_DAYS),
            BATCH_MAX_REQUESTS=_env_int("BATCH_MAX_REQUESTS", cls.BATCH_MAX_REQUESTS),
            RETRY_INTERVALS=_env_intervals("RETRY_INTERVALS", "60,300,900,3600"),
            SEND_CHUNK_SIZE=_env_int("SEND_CHUNK_SIZE", cls.SEND_CHUNK_SIZE),
            SENDING_TIMEOUT=_env_int("SENDING_TIMEOUT", cls.SENDING_TIMEOUT),
            FAILURE_RATE_THRESHOLD=_env_float(
                "FAILURE_RATE_THRESHOLD", cls.FAILURE_RATE_THRESHOLD
            ),
            FAILURE_RATE_MIN_ATTEMPTS=_env_int(
                "FAILURE_RATE_MIN_ATTEMPTS", cls.FAILURE_RATE_MIN_ATTEMPTS
            ),
            WORKER_SILENT_MINUTES=_env_int(
                "WORKER_SILENT_MINUTES", cls.WORKER_SILENT_MINUTES
            ),
            CALL_MAX_ATTEMPTS=_env_int("CALL_MAX_ATTEMPTS", cls.CALL_MAX_ATTEMPTS),
            DIGEST_HOUR=_env_int("DIGEST_HOUR", cls.DIGEST_HOUR),
            CALL_LINES=_env_int("CALL_LINES", cls.CALL_LINES),
            FOLLOW_UP_AFTER_DAYS=_env_int(
                "FOLLOW_UP_AFTER_DAYS", cls.FOLLOW_UP_AFTER_DAYS
            ),
            COOLING_DAYS=_env_int("COOLING_DAYS", cls.COOLING_DAYS),
            DEMO_MAILBOX_DIR=env.get("DEMO_MAILBOX_DIR") or None,
            LOGIN_RATE_LIMIT=env.get("LOGIN_RATE_LIMIT") or cls.LOGIN_RATE_LIMIT,
            METRICS_TOKEN=env.get("METRICS_TOKEN") or None,
        )
        settings.check()
        return settings

    def check(self) -> None:
        """Refuse settings that cannot work."""
        if self.SMTP_SECURITY not in {"none", "starttls", "tls"}:
            raise ValueError("SMTP_SECURITY must be none, starttls or tls")
        if self.BATCH_MAX_REQUESTS < 1:
            raise ValueError("BATCH_MAX_REQUESTS must be at least 1")
        if self.SEND_CHUNK_SIZE < 1:
            raise ValueError("SEND_CHUNK_SIZE must be at least 1")
        if self.CALL_LINES < 1:
            raise ValueError("CALL_LINES must be at least 1")

    def as_mapping(self) -> dict:
        """Return the settings as a Flask config mapping."""
        return dict(self.__dict__)
