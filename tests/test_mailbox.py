"""The demo mailbox shows what the local SMTP sink received."""

import smtplib
from email.message import EmailMessage

from tests.conftest import free_port
from webapp.devstack import start_smtp_sink


def store_message(folder, subject: str) -> None:
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = "Therapieplatz-Vermittlung <vermittlung@therapieplatz.example>"
    message["To"] = "Dr. Johanna Weiß <praxis@weiss.example>"
    message["Date"] = "Fri, 04 Dec 2026 13:35:00 +0000"
    message.set_content("Sehr geehrte Frau Dr. Weiß,")
    message.add_alternative("<p>Sehr geehrte Frau Dr. Weiß,</p>", subtype="html")
    (folder / "1764855300000000000.eml").write_bytes(message.as_bytes())


def test_mailbox_lists_and_shows_received_mail(app, logged_in_client, tmp_path):
    app.config["DEMO_MAILBOX_DIR"] = str(tmp_path)
    store_message(tmp_path, "Anfrage: Therapieplatz für eine Patientin")

    listing = logged_in_client.get("/demo-postfach/").get_data(as_text=True)
    shown = logged_in_client.get("/demo-postfach/1764855300000000000")
    app.config["DEMO_MAILBOX_DIR"] = None

    page = shown.get_data(as_text=True)
    assert "(1 Nachricht)" in listing
    assert "Anfrage: Therapieplatz für eine Patientin" in listing
    assert "04.12.2026 14:35" in page
    assert "Sehr geehrte Frau Dr. Weiß," in page
    assert "sandbox" in page


def test_mailbox_is_off_without_a_sink(app, logged_in_client):
    assert logged_in_client.get("/demo-postfach/").status_code == 404


def test_sink_stores_each_message_as_a_file(tmp_path):
    controller = start_smtp_sink(tmp_path / "mailbox", free_port())
    try:
        with smtplib.SMTP("127.0.0.1", controller.port, timeout=5) as smtp:
            smtp.sendmail("a@example.org", ["b@example.org"], b"Subject: x\r\n\r\ny")
    finally:
        controller.stop()

    [stored] = (tmp_path / "mailbox").glob("*.eml")
    assert b"Subject: x" in stored.read_bytes()
