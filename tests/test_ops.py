"""Operator endpoints: /health and /metrics, with Redis up and down."""

import os
from datetime import datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families
from rq import Queue, Worker

from tests.conftest import free_port
from tests.test_supervision import make_email, store_alert
from webapp.clock import system_clock
from webapp.extensions import db
from webapp.models import AttemptOutcome, DeliveryAttempt, EmailStatus
from webapp.queueing import WORKER_QUEUES


def _ping() -> None:
    """A job function for queue-length tests; never run."""


@pytest.fixture(params=["tcp", "unix"])
def redis_down(request, app, monkeypatch, tmp_path):
    """Point the app at a Redis that is not there: a closed port or no socket."""
    if request.param == "tcp":
        url = f"redis://127.0.0.1:{free_port()}/0"
    else:
        url = f"unix://{tmp_path / 'keine-redis.sock'}?db=0"
    monkeypatch.setitem(app.config, "REDIS_URL", url)
    return url


def metric_families(text: str) -> dict:
    """Parse Prometheus text into {name: family}."""
    return {family.name: family for family in text_string_to_metric_families(text)}


def samples(family) -> dict:
    """Map a family's samples to values by (sample name, sorted labels)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for sample in family.samples
    }


# Health -------------------------------------------------------------------------


def test_health_needs_no_login_and_reports_everything(client, redis_conn):
    Queue("emails-request", connection=redis_conn).enqueue(_ping)

    response = client.get("/health")

    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert response.get_json() == {
        "database": "ok",
        "redis": "ok",
        "workers": 0,
        "last_worker_heartbeat": None,
        "queues": {name: int(name == "emails-request") for name in WORKER_QUEUES},
    }


def test_health_reports_the_newest_worker_heartbeat(client, redis_conn):
    worker = Worker([Queue("default", connection=redis_conn)], connection=redis_conn)
    worker.register_birth()
    try:
        body = client.get("/health").get_json()
    finally:
        worker.register_death()

    assert body["workers"] == 1
    beat = datetime.fromisoformat(body["last_worker_heartbeat"])
    assert beat.utcoffset() == timedelta(0)
    now = system_clock.now()
    assert abs(beat.replace(tzinfo=None) - now) < timedelta(minutes=1)


def test_health_is_503_when_redis_is_down(client, redis_down):
    response = client.get("/health")

    assert response.status_code == 503
    body = response.get_json()
    assert (body["database"], body["redis"], body["workers"]) == ("ok", "error", 0)
    assert body["queues"] == {}


def test_health_is_503_without_a_redis_url(app, client, monkeypatch):
    monkeypatch.setitem(app.config, "REDIS_URL", None)

    assert client.get("/health").status_code == 503


# Metrics ------------------------------------------------------------------------


def test_metrics_parse_and_count_from_the_database(client, redis_conn):
    now = system_clock.now()
    failed = make_email(
        attempts=[
            (AttemptOutcome.TRANSIENT, 421, "busy", now - timedelta(minutes=10)),
            (AttemptOutcome.PERMANENT, 550, "5.1.1 unknown", now - timedelta(hours=3)),
        ]
    )
    make_email(status=EmailStatus.QUEUED, next_attempt_at=now - timedelta(minutes=2))
    db.session.add(
        DeliveryAttempt(
            email_id=failed.id,
            attempted_at=now - timedelta(minutes=1),
            worker="w",
            outcome=AttemptOutcome.SENT,
            duration_ms=2500,
        )
    )
    db.session.commit()
    store_alert()
    Queue("emails-confirmation", connection=redis_conn).enqueue(_ping)

    response = client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    families = metric_families(response.get_data(as_text=True))
    assert samples(families["comms_redis_up"]) == {("comms_redis_up", ()): 1.0}
    queues = samples(families["comms_queue_length"])
    assert queues[("comms_queue_length", (("queue", "emails-confirmation"),))] == 1
    assert queues[("comms_queue_length", (("queue", "emails-request"),))] == 0
    emails = samples(families["comms_emails"])
    assert emails[("comms_emails", (("status", "fehlgeschlagen"),))] == 1
    assert emails[("comms_emails", (("status", "in_warteschlange"),))] == 1
    assert emails[("comms_emails", (("status", "gesendet"),))] == 0
    total = samples(families["comms_delivery_attempts"])
    assert total[("comms_delivery_attempts_total", (("outcome", "dauerhaft"),))] == 1
    assert total[("comms_delivery_attempts_total", (("outcome", "gesendet"),))] == 1
    recent = samples(families["comms_delivery_attempts_last_hour"])
    key = ("comms_delivery_attempts_last_hour", (("outcome", "dauerhaft"),))
    assert recent[key] == 0
    key = ("comms_delivery_attempts_last_hour", (("outcome", "voruebergehend"),))
    assert recent[key] == 1
    name = "comms_delivery_attempt_seconds_last_hour"
    durations = samples(families[name])
    assert durations[(name, (("quantile", "0.5"),))] == 0.012  # the 12 ms try
    assert durations[(name, (("quantile", "1.0"),))] == 2.5
    assert samples(families["comms_alerts_open"]) == {("comms_alerts_open", ()): 1}
    waiting = families["comms_oldest_due_email_age_seconds"].samples[0].value
    assert 100 < waiting < 300


def test_metrics_still_report_the_database_when_redis_is_down(client, redis_down):
    make_email()

    response = client.get("/metrics")

    assert response.status_code == 200
    families = metric_families(response.get_data(as_text=True))
    assert samples(families["comms_redis_up"]) == {("comms_redis_up", ()): 0.0}
    assert "comms_queue_length" not in families
    emails = samples(families["comms_emails"])
    assert emails[("comms_emails", (("status", "fehlgeschlagen"),))] == 1


@pytest.mark.parametrize(
    ("header", "status"),
    [
        (None, 401),
        ("Bearer falsch", 401),
        ("metrics-geheim", 401),
        ("Bearer metrics-geheim", 200),
    ],
)
def test_metrics_token_guards_the_scrape(app, client, monkeypatch, header, status):
    monkeypatch.setitem(app.config, "METRICS_TOKEN", "metrics-geheim")
    headers = {"Authorization": header} if header else {}

    response = client.get("/metrics", headers=headers)

    assert response.status_code == status
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_metrics_token_is_read_from_the_environment(monkeypatch):
    from webapp.settings import Settings

    monkeypatch.setitem(os.environ, "METRICS_TOKEN", "aus-der-umgebung")

    assert Settings.from_env().METRICS_TOKEN == "aus-der-umgebung"
