"""Build the MIME message of an email once, at approval."""

from datetime import UTC, datetime
from email.charset import QP, Charset
from email.header import Header
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import compat32
from email.utils import format_datetime, formataddr, make_msgid

from webapp.exceptions import ValidationFailed

# CRLF line endings, as SMTP wants them, so nothing is rewritten per send.
_SMTP_POLICY = compat32.clone(linesep="\r\n")

_UTF8_QP = Charset("utf-8")
_UTF8_QP.body_encoding = QP


def refuse_header_breaks(**values: str | None) -> None:
    """Reject CR or LF in header values; they would inject headers."""
    for field, value in values.items():
        if value and ("\r" in value or "\n" in value):
            raise ValidationFailed(field, "darf keinen Zeilenumbruch enthalten")


def new_message_id(sender_email: str) -> str:
    """Return a fresh Message-ID in the sender's domain."""
    domain = sender_email.rpartition("@")[2] or "localhost"
    return make_msgid(domain=domain)


def _address(name: str, address: str) -> str:
    # formataddr encodes non-ASCII display names as RFC 2047 words.
    return formataddr((name, address), charset="utf-8")


def build_mime(
    *,
    subject: str,
    sender_name: str,
    sender_email: str,
    recipient_name: str,
    recipient_email: str,
    message_id: str,
    html: str,
    text: str,
) -> bytes:
    """Serialise a multipart/alternative UTF-8 message without a Date header."""
    refuse_header_breaks(
        subject=subject,
        sender_name=sender_name,
        sender_email=sender_email,
        recipient_name=recipient_name,
        recipient_email=recipient_email,
    )

    message = MIMEMultipart("alternative")
    message["Subject"] = Header(subject, "utf-8")
    message["From"] = _address(sender_name, sender_email)
    message["To"] = _address(recipient_name, recipient_email)
    message["Message-ID"] = message_id
    message["Auto-Submitted"] = "auto-generated"
    message.attach(MIMEText(text, "plain", _UTF8_QP))
    message.attach(MIMEText(html, "html", _UTF8_QP))
    return message.as_bytes(policy=_SMTP_POLICY)


def email_mime(email, message_id: str, recipient_email: str | None = None) -> bytes:
    """Serialise a stored Email row; the recipient may be a corrected one."""
    return build_mime(
        subject=email.subject,
        sender_name=email.sender_name,
        sender_email=email.sender_email,
        recipient_name=email.recipient_name,
        recipient_email=recipient_email or email.recipient_email,
        message_id=message_id,
        html=email.body_html,
        text=email.body_text,
    )


def with_date(mime_bytes: bytes, when: datetime) -> bytes:
    """Prepend the Date header for the moment of sending."""
    stamp = format_datetime(when.replace(tzinfo=UTC))
    return b"Date: " + stamp.encode("ascii") + b"\r\n" + mime_bytes
