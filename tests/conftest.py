"""Shared fixtures: a real database, Redis, SMTP server and browser.

Without settings the tests run on SQLite and an embedded Valkey server.
With TEST_DATABASE_URL (PostgreSQL) and REDIS_URL they use those servers;
a throwaway database is created for the run and dropped afterwards.
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from werkzeug.serving import make_server

from webapp import create_app
from webapp.extensions import db as _db
from webapp.models import Role, User

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A fresh database for this run: PostgreSQL if configured, else SQLite."""
    base = os.environ.get("TEST_DATABASE_URL")
    if not base:
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{folder}/test.db"
        return

    name = f"comms_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(base).set(database=name)
    yield url.render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis server: REDIS_URL if set, else an embedded Valkey server."""
    configured = os.environ.get("REDIS_URL")
    if configured:
        yield configured
        return

    from webapp.devstack import start_embedded_redis

    with tempfile.TemporaryDirectory() as folder:
        url, process = start_embedded_redis(Path(folder))
        yield url
        process.terminate()
        process.wait(timeout=10)


class SmtpSink:
    """Handler for aiosmtpd that keeps every message it receives."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope) -> str:
        with self.lock:
            self.messages.append(
                (envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content)
            )
        return "250 Message accepted for delivery"

    def parsed(self) -> list[EmailMessage]:
        """Return the received messages parsed with the modern policy."""
        with self.lock:
            raws = [raw for _, _, raw in self.messages]
        return [message_from_bytes(raw, policy=policy.default) for raw in raws]

    def wait_for(self, count: int, timeout: float = 15) -> None:
        """Wait until at least `count` messages arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.messages) >= count:
                return
            time.sleep(0.05)
        raise AssertionError(f"expected {count} messages, got {len(self.messages)}")


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[tuple[SmtpSink, int]]:
    """An in-process aiosmtpd server on 127.0.0.1 for the whole run."""
    sink = SmtpSink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    yield sink, port
    controller.stop()


@pytest.fixture(scope="session")
def app_instance(database_url, redis_url, smtp_server):
    """The application, migrated once for the run."""
    from flask_migrate import upgrade

    _, smtp_port = smtp_server
    app = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": database_url,
            "REDIS_URL": redis_url,
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": smtp_port,
            "SECRET_KEY": "test-secret",
        }
    )
    with app.app_context():
        upgrade()
    return app


@pytest.fixture
def app(app_instance, redis_conn):
    """The application with empty tables and an empty Redis."""
    with app_instance.app_context():
        _clear_tables()
        yield app_instance
        _db.session.remove()


def _clear_tables() -> None:
    with _db.engine.begin() as conn:
        for table in reversed(_db.metadata.sorted_tables):
            conn.execute(table.delete())


@pytest.fixture
def redis_conn(redis_url):
    """A Redis connection to a flushed database."""
    from redis import Redis

    conn = Redis.from_url(redis_url)
    conn.flushdb()
    yield conn
    conn.close()


@pytest.fixture
def sink(smtp_server) -> SmtpSink:
    """The SMTP server's message store, emptied for this test."""
    store, _ = smtp_server
    with store.lock:
        store.messages.clear()
    return store


@pytest.fixture
def client(app):
    """A Flask test client."""
    return app.test_client()


def create_user(
    email: str = "koordination@example.org",
    password: str = "geheim-123",
    role: Role = Role.COORDINATOR,
    name: str = "Kim Koordination",
) -> User:
    """Store a staff user and return it."""
    user = User(email=email, name=name, role=role)
    user.set_password(password)
    _db.session.add(user)
    _db.session.commit()
    return user


@pytest.fixture
def coordinator(app) -> User:
    """A stored coordinator with password geheim-123."""
    return create_user()


@pytest.fixture
def logged_in_client(app, coordinator):
    """A test client signed in as the coordinator, CSRF checks off."""
    app.config["WTF_CSRF_ENABLED"] = False
    client = app.test_client()
    client.post("/login", data={"email": coordinator.email, "password": "geheim-123"})
    yield client
    app.config["WTF_CSRF_ENABLED"] = True


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """Drive Debian's Chromium; Playwright never downloads a browser here."""
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": ["--disable-gpu", "--disable-quic", "--no-first-run"],
    }


@pytest.fixture
def live_server(app) -> Iterator[str]:
    """Serve the app on 127.0.0.1 in a thread; yields the base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)


def start_worker(
    database_url: str, redis_url: str, smtp_port: int, *args: str, **env: str
) -> subprocess.Popen:
    """Start `worker.py` on the test database, Redis and an SMTP port."""
    environment = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp_port),
        "SECRET_KEY": "test-secret",
        **env,
    }
    root = Path(__file__).resolve().parent.parent
    # Its own process group, so RQ's scheduler child goes down with it.
    return subprocess.Popen(
        [sys.executable, str(root / "worker.py"), *args],
        env=environment,
        cwd=root,
        start_new_session=True,
    )


def stop_worker(process: subprocess.Popen) -> None:
    """Stop a worker process and its children, politely first."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=5)


@pytest.fixture
def worker_process(app, database_url, redis_url, smtp_server) -> Iterator:
    """A real `worker.py` process on the test database, Redis and SMTP."""
    _, smtp_port = smtp_server
    process = start_worker(database_url, redis_url, smtp_port)
    yield process
    stop_worker(process)
