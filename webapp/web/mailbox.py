"""Demo mailbox: what the local SMTP sink received, for the one-command demo."""

from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from flask import Blueprint, abort, current_app, render_template
from flask_login import login_required

mailbox = Blueprint("mailbox", __name__, url_prefix="/demo-postfach")

SHOWN = 200


def _folder() -> Path:
    configured = current_app.config.get("DEMO_MAILBOX_DIR")
    if not configured:
        abort(404)
    return Path(configured)


def _read(path: Path) -> EmailMessage:
    return message_from_bytes(path.read_bytes(), policy=policy.default)


@mailbox.route("/")
@login_required
def index():
    """List the newest messages the sink received."""
    paths = sorted(_folder().glob("*.eml"), reverse=True)
    messages = [(path.stem, _read(path)) for path in paths[:SHOWN]]
    return render_template(
        "mailbox/index.html", messages=messages, total=len(paths), shown=SHOWN
    )


@mailbox.route("/<name>")
@login_required
def show(name: str):
    """Show one received message with both parts."""
    path = _folder() / f"{name}.eml"
    if not name.isdigit() or not path.is_file():
        abort(404)
    message = _read(path)
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    return render_template(
        "mailbox/show.html",
        message=message,
        text=text.get_content() if text else "",
        html=html.get_content() if html else "",
    )
