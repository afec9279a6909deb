"""STARTTLS, implicit TLS and login against a real aiosmtpd server."""

import ssl
import subprocess
from datetime import datetime

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from tests.conftest import free_port
from tests.factories import make_request, make_therapist
from webapp.approval import approve_email
from webapp.clock import FixedClock
from webapp.drafting import create_draft
from webapp.extensions import db
from webapp.models import Email, EmailKind, EmailStatus
from webapp.sending import SendPolicy, SmtpSettings, send_due_emails

NOW = datetime(2026, 12, 4, 9, 0)
USER, PASSWORD = "versand", "geheim-123"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1, made with openssl."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


class Inbox:
    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.logins: list[bytes] = []

    async def handle_DATA(self, server, session, envelope):
        self.received.append(envelope.original_content)
        return "250 OK"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        self.logins.append(auth_data.login)
        ok = (
            auth_data.login == USER.encode() and auth_data.password == PASSWORD.encode()
        )
        return AuthResult(success=ok, handled=False)


def serve(certificate, implicit_tls: bool):
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    inbox = Inbox()
    # aiosmtpd cannot tell an implicit-TLS socket is encrypted; it would hide
    # AUTH unless told the transport is fine.
    tls = (
        {"ssl_context": context, "auth_require_tls": False}
        if implicit_tls
        else {
            "tls_context": context,
            "require_starttls": True,
        }
    )
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=free_port(),
        authenticator=inbox.authenticate,
        auth_required=True,
        **tls,
    )
    controller.start()
    return controller, inbox


def queued_email() -> int:
    clock = FixedClock(NOW)
    therapist = make_therapist()
    email = create_draft(
        db.session,
        therapist,
        EmailKind.INITIAL_CONTACT,
        [make_request(therapist)],
        clock,
    )
    db.session.commit()
    approve_email(db.session, email.id, None, clock)
    return email.id


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_secured_login_delivers(app, certificate, security):
    controller, inbox = serve(certificate, implicit_tls=security == "tls")
    email_id = queued_email()
    settings = SmtpSettings(
        host="127.0.0.1",
        port=controller.port,
        security=security,
        username=USER,
        password=PASSWORD,
        timeout=5,
        ca_file=str(certificate[0]),
    )
    try:
        report = send_due_emails(
            db.session, FixedClock(NOW), settings, "w", SendPolicy()
        )
    finally:
        controller.stop()

    assert report.sent == 1, db.session.get(Email, email_id).error_message
    assert inbox.logins == [USER.encode()]
    assert db.session.get(Email, email_id).status == EmailStatus.SENT


def test_wrong_password_is_retried_not_lost(app, certificate):
    controller, inbox = serve(certificate, implicit_tls=False)
    email_id = queued_email()
    settings = SmtpSettings(
        host="127.0.0.1",
        port=controller.port,
        security="starttls",
        username=USER,
        password="falsch",
        timeout=5,
        ca_file=str(certificate[0]),
    )
    try:
        report = send_due_emails(
            db.session, FixedClock(NOW), settings, "w", SendPolicy()
        )
    finally:
        controller.stop()

    email = db.session.get(Email, email_id)
    assert report.retrying == 1
    assert email.status == EmailStatus.QUEUED
    assert email.error_message.startswith("535")


def test_untrusted_certificate_is_refused(app, certificate):
    controller, _ = serve(certificate, implicit_tls=False)
    email_id = queued_email()
    settings = SmtpSettings(
        host="127.0.0.1", port=controller.port, security="starttls", timeout=5
    )
    try:
        send_due_emails(db.session, FixedClock(NOW), settings, "w", SendPolicy())
    finally:
        controller.stop()

    email = db.session.get(Email, email_id)
    assert email.status == EmailStatus.QUEUED
    assert "CERTIFICATE_VERIFY_FAILED" in email.error_message
