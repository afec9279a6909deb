"""Operator endpoints: the health check and Prometheus metrics.

Both answer without a login. `/metrics` reads the database and Redis at
scrape time through a custom collector, so every web process reports the
same numbers however many workers there are; `METRICS_TOKEN` guards it with a
bearer token when set.
"""

import hmac
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from flask import Blueprint, Response, current_app, make_response, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
)
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Worker
from sqlalchemy import func, select

from webapp.clock import app_clock
from webapp.extensions import db
from webapp.models import (
    Alert,
    AttemptOutcome,
    DeliveryAttempt,
    Email,
    EmailStatus,
)
from webapp.queueing import WORKER_QUEUES

log = logging.getLogger(__name__)

ops = Blueprint("ops", __name__)

# Seconds; Redis on the same host answers in milliseconds.
REDIS_TIMEOUT = 2
# Upper bounds of the attempt-duration buckets, in seconds.
DURATION_QUANTILES = (0.5, 0.9, 0.99, 1.0)
# Attempts that feed the duration histogram, newest first.
DURATION_SAMPLE = 10_000


def ops_redis() -> Redis | None:
    """Return a Redis client with short timeouts, or None without REDIS_URL."""
    url = current_app.config.get("REDIS_URL")
    if not url:
        return None
    return Redis.from_url(
        url, socket_connect_timeout=REDIS_TIMEOUT, socket_timeout=REDIS_TIMEOUT
    )


def _naive_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def worker_heartbeats(connection: Redis) -> tuple[int, datetime | None]:
    """Return how many RQ workers are registered and their newest heartbeat."""
    workers = Worker.all(connection=connection)
    beats = [_naive_utc(w.last_heartbeat) for w in workers if w.last_heartbeat]
    return len(workers), max(beats, default=None)


def queue_lengths(connection: Redis) -> dict[str, int]:
    """Return the number of waiting jobs per queue the worker drains."""
    return {name: Queue(name, connection=connection).count for name in WORKER_QUEUES}


# Health -------------------------------------------------------------------------


@ops.route("/health")
def health():
    """Tell operators whether the database, Redis and workers are there."""
    try:
        db.session.execute(db.text("SELECT 1"))
        database = "ok"
    except Exception:
        log.exception("health check: database unreachable")
        db.session.rollback()
        database = "error"

    report = {
        "database": database,
        "redis": "error",
        "workers": 0,
        "last_worker_heartbeat": None,
        "queues": {},
    }
    try:
        connection = ops_redis()
        if connection is None:
            raise RedisError("REDIS_URL is not set")
        connection.ping()
        workers, last_seen = worker_heartbeats(connection)
        report.update(
            redis="ok",
            workers=workers,
            last_worker_heartbeat=(
                last_seen.replace(tzinfo=UTC).isoformat() if last_seen else None
            ),
            queues=queue_lengths(connection),
        )
    except RedisError:
        log.warning("health check: Redis unreachable")

    healthy = database == "ok" and report["redis"] == "ok"
    response = make_response(report, 200 if healthy else 503)
    response.headers["Cache-Control"] = "no-store"
    return response


# Metrics ------------------------------------------------------------------------


class DeliveryCollector:
    """Read queue, email and attempt numbers at scrape time."""

    def __init__(self, session, clock, redis: Redis | None) -> None:
        self.session = session
        self.clock = clock
        self.redis = redis

    def collect(self) -> Iterator:
        """Yield every metric family of the service."""
        yield from self._queue_metrics()
        yield from self._email_metrics()
        yield from self._attempt_metrics()

    def _queue_metrics(self) -> Iterator:
        up = GaugeMetricFamily("comms_redis_up", "1 if Redis answered the scrape.")
        lengths = GaugeMetricFamily(
            "comms_queue_length", "Jobs waiting in each RQ queue.", labels=["queue"]
        )
        workers = GaugeMetricFamily("comms_workers", "RQ workers registered in Redis.")
        heartbeat = GaugeMetricFamily(
            "comms_worker_last_heartbeat_timestamp_seconds",
            "Unix time of the newest RQ worker heartbeat.",
        )
        try:
            if self.redis is None:
                raise RedisError("REDIS_URL is not set")
            for name, length in queue_lengths(self.redis).items():
                lengths.add_metric([name], length)
            count, last_seen = worker_heartbeats(self.redis)
        except RedisError:
            log.warning("metrics: Redis unreachable")
            up.add_metric([], 0)
            yield up
            return

        up.add_metric([], 1)
        workers.add_metric([], count)
        yield from (up, lengths, workers)
        if last_seen is not None:
            heartbeat.add_metric([], last_seen.replace(tzinfo=UTC).timestamp())
            yield heartbeat

    def _email_metrics(self) -> Iterator:
        by_status = dict(
            self.session.execute(
                select(Email.status, func.count(Email.id)).group_by(Email.status)
            ).all()
        )
        emails = GaugeMetricFamily(
            "comms_emails", "Emails in each status.", labels=["status"]
        )
        for status in EmailStatus:
            emails.add_metric([status.value], by_status.get(status.value, 0))
        yield emails

        now = self.clock.now()
        oldest_due = self.session.scalar(
            select(func.min(Email.next_attempt_at)).where(
                Email.status == EmailStatus.QUEUED, Email.next_attempt_at <= now
            )
        )
        waiting = GaugeMetricFamily(
            "comms_oldest_due_email_age_seconds",
            "How long the oldest due queued email has been waiting; 0 if none.",
        )
        waiting.add_metric(
            [], (now - oldest_due).total_seconds() if oldest_due else 0.0
        )
        yield waiting

        alerts = GaugeMetricFamily("comms_alerts_open", "Alerts not yet acknowledged.")
        alerts.add_metric(
            [],
            self.session.scalar(
                select(func.count(Alert.id)).where(Alert.acknowledged_at.is_(None))
            ),
        )
        yield alerts

    def _attempt_metrics(self) -> Iterator:
        since = self.clock.now() - timedelta(hours=1)
        total = CounterMetricFamily(
            "comms_delivery_attempts",
            "Delivery attempts ever recorded, by outcome.",
            labels=["outcome"],
        )
        recent = GaugeMetricFamily(
            "comms_delivery_attempts_last_hour",
            "Delivery attempts in the last hour, by outcome.",
            labels=["outcome"],
        )
        overall = self._attempts_by_outcome()
        last_hour = self._attempts_by_outcome(DeliveryAttempt.attempted_at >= since)
        for outcome in AttemptOutcome:
            total.add_metric([outcome.value], overall.get(outcome.value, 0))
            recent.add_metric([outcome.value], last_hour.get(outcome.value, 0))
        yield from (total, recent)
        yield self._duration_quantiles(since)

    def _attempts_by_outcome(self, *conditions) -> dict[str, int]:
        return dict(
            self.session.execute(
                select(DeliveryAttempt.outcome, func.count(DeliveryAttempt.id))
                .where(*conditions)
                .group_by(DeliveryAttempt.outcome)
            ).all()
        )

    def _duration_quantiles(self, since: datetime) -> GaugeMetricFamily:
        # Quantiles of a recent window as gauges: a cumulative histogram
        # would need a running total no single process keeps.
        durations = sorted(
            self.session.scalars(
                select(DeliveryAttempt.duration_ms)
                .where(
                    DeliveryAttempt.attempted_at >= since,
                    DeliveryAttempt.duration_ms.is_not(None),
                )
                .order_by(DeliveryAttempt.id.desc())
                .limit(DURATION_SAMPLE)
            ).all()
        )
        family = GaugeMetricFamily(
            "comms_delivery_attempt_seconds_last_hour",
            "SMTP time of the delivery attempts of the last hour, by quantile.",
            labels=["quantile"],
        )
        for quantile in DURATION_QUANTILES:
            value = _quantile(durations, quantile) / 1000 if durations else 0.0
            family.add_metric([str(quantile)], value)
        return family


def _quantile(ordered: list[int], quantile: float) -> float:
    """Nearest-rank quantile of an ordered, non-empty list."""
    index = min(len(ordered) - 1, max(0, round(quantile * len(ordered)) - 1))
    return ordered[index]


def _token_accepted() -> bool:
    token = current_app.config.get("METRICS_TOKEN")
    if not token:
        return True
    given = request.headers.get("Authorization", "")
    expected = f"Bearer {token}"
    return hmac.compare_digest(given.encode(), expected.encode())


@ops.route("/metrics")
def metrics():
    """Serve Prometheus metrics read from the database and Redis."""
    if not _token_accepted():
        response = make_response("Bearer-Token fehlt oder ist falsch.\n", 401)
        response.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response

    registry = CollectorRegistry(auto_describe=False)
    registry.register(DeliveryCollector(db.session, app_clock(), ops_redis()))
    response = Response(generate_latest(registry), mimetype=None)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    response.headers["Cache-Control"] = "no-store"
    return response
